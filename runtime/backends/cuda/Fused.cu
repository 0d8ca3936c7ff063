//===- Fused.cu - the fused kernel's register program on the GPU ----------===//
//
// One thread per element of the domain: it loads its inputs (by mode) into
// f32 registers, runs the program, and stores the unreduced outputs (so an
// output written over its Full input reads before it writes, on the same
// thread). Reduced outputs: one block per row, f64 sums and f32 maxima
// combined by the block; when everything reduces to one value, blocks
// write partials that one block then combines in order, so results do
// not depend on timing.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"
#include "runtime/program/Fused.h"

namespace veomni::rt::cuda {
namespace {

using namespace dev;
using kernel_table::fused::kMaxRegisters;
using launch::FusedCall;
using Op = kernel_table::fused::Op;
using Fold = kernel_table::fused::Reduce;

/// Element i's registers after the program, for a domain of c.n.
__device__ inline void Run(const FusedCall &c, int64_t i, float *r) {
  for (int j = 0; j < c.numIns; ++j) {
    const Buf &x = c.ins[j];
    int64_t at = x.numel == c.n || c.modes[j] == 0 ? i
                 : x.numel == 1                    ? 0
                 : c.modes[j] == 1                 ? i % x.numel
                                                   : i / (c.n / x.numel);
    r[j] = Load(x.data, x.type, at);
  }
  for (int at = 0; at < c.numCode; at += 4) {
    Op op = static_cast<Op>(c.code[at]);
    int dst = c.code[at + 1], a = c.code[at + 2], b = c.code[at + 3];
    float v;
    switch (op) {
    case Op::Const:
      v = c.constants[a];
      break;
    case Op::RoundBf16:
      v = __bfloat162float(__float2bfloat16_rn(r[a]));
      break;
    case Op::RoundF16:
      v = __half2float(__float2half_rn(r[a]));
      break;
    case Op::Add:
      v = r[a] + r[b];
      break;
    case Op::Sub:
      v = r[a] - r[b];
      break;
    case Op::Mul:
      v = r[a] * r[b];
      break;
    case Op::Div:
      v = r[a] / r[b];
      break;
    case Op::IsFinite:
      v = isfinite(r[a]) ? 1.0f : 0.0f;
      break;
    case Op::MulNoNan:
      v = r[b] == 0.0f ? 0.0f : r[a] * r[b];
      break;
    default:
      v = ApplyUnary(static_cast<int>(op) - static_cast<int>(Op::Neg), r[a]);
    }
    r[dst] = v;
  }
}

__device__ inline void StoreUnreduced(const FusedCall &c, int64_t i,
                                      const float *r) {
  for (int o = 0; o < c.numOuts; ++o)
    if (c.resultReduce[o] == static_cast<int>(Fold::None))
      Store(c.outs[o].data, c.outs[o].type, i, r[c.resultRegister[o]]);
}

__global__ void ElementwiseKernel(FusedCall c) {
  float r[kMaxRegisters];
  VEOMNI_GRID_LOOP(i, c.n) {
    Run(c, i, r);
    StoreUnreduced(c, i, r);
  }
}

/// Reduces [begin, end) of the domain into this block's sum and max per
/// reduced output (every thread gets them).
__device__ inline void ReduceRange(const FusedCall &c, int64_t begin,
                                   int64_t end, double *sums, float *maxes) {
  float r[kMaxRegisters];
  for (int o = 0; o < c.numOuts; ++o) {
    sums[o] = 0;
    maxes[o] = -INFINITY;
  }
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    Run(c, i, r);
    StoreUnreduced(c, i, r);
    for (int o = 0; o < c.numOuts; ++o) {
      float v = r[c.resultRegister[o]];
      sums[o] += v;
      if (!isnan(maxes[o]) && (isnan(v) || v > maxes[o]))
        maxes[o] = v;
    }
  }
  for (int o = 0; o < c.numOuts; ++o) {
    if (c.resultReduce[o] == static_cast<int>(Fold::None))
      continue;
    sums[o] = BlockSum(sums[o]);
    __shared__ int sawNan;
    if (threadIdx.x == 0)
      sawNan = 0;
    __syncthreads();
    if (isnan(maxes[o]))
      sawNan = 1;
    __syncthreads();
    maxes[o] = sawNan ? NAN : BlockMax(maxes[o]);
  }
}

__device__ inline float Finish(int reduce, double sum, float max,
                               int64_t count) {
  if (reduce == static_cast<int>(Fold::Max))
    return max;
  if (reduce == static_cast<int>(Fold::Mean))
    return static_cast<float>(sum / static_cast<double>(count));
  return static_cast<float>(sum);
}

/// rows > 1: one block per row.
__global__ void RowsKernel(FusedCall c) {
  double sums[launch::kFusedMaxOuts];
  float maxes[launch::kFusedMaxOuts];
  const int64_t rowLen = c.n / c.rows;
  for (int64_t row = blockIdx.x; row < c.rows; row += gridDim.x) {
    ReduceRange(c, row * rowLen, (row + 1) * rowLen, sums, maxes);
    if (threadIdx.x == 0)
      for (int o = 0; o < c.numOuts; ++o)
        if (c.resultReduce[o] != static_cast<int>(Fold::None))
          Store(c.outs[o].data, c.outs[o].type, row,
                Finish(c.resultReduce[o], sums[o], maxes[o], rowLen));
    __syncthreads();
  }
}

/// rows == 1: block b reduces its chunk into partials[b] (sums) and
/// partials[kFusedPartials + b] (maxima, as doubles), per output.
__global__ void PartialsKernel(FusedCall c, double *partials) {
  double sums[launch::kFusedMaxOuts];
  float maxes[launch::kFusedMaxOuts];
  const int64_t chunk = (c.n + gridDim.x - 1) / gridDim.x;
  const int64_t begin = blockIdx.x * chunk;
  ReduceRange(c, begin, min(c.n, begin + chunk), sums, maxes);
  if (threadIdx.x == 0)
    for (int o = 0; o < c.numOuts; ++o) {
      double *p = partials + o * 2 * launch::kFusedPartials;
      p[blockIdx.x] = sums[o];
      p[launch::kFusedPartials + blockIdx.x] = maxes[o];
    }
}

__global__ void CombineKernel(FusedCall c, const double *partials, int blocks) {
  if (threadIdx.x != 0)
    return;
  for (int o = 0; o < c.numOuts; ++o) {
    if (c.resultReduce[o] == static_cast<int>(Fold::None))
      continue;
    const double *p = partials + o * 2 * launch::kFusedPartials;
    double sum = 0;
    float mx = -INFINITY;
    for (int b = 0; b < blocks; ++b) { // in order
      sum += p[b];
      float v = static_cast<float>(p[launch::kFusedPartials + b]);
      if (!isnan(mx) && (isnan(v) || v > mx))
        mx = v;
    }
    Store(c.outs[o].data, c.outs[o].type, 0,
          Finish(c.resultReduce[o], sum, mx, c.n));
  }
}

} // namespace

namespace launch {

cudaError_t Fused(cudaStream_t s, const FusedCall &c, double *scratch) {
  if (c.n == 0)
    return cudaSuccess;
  if (c.rows == 0) {
    ElementwiseKernel<<<dev::Blocks(c.n), dev::kThreads, 0, s>>>(c);
  } else if (c.rows > 1) {
    RowsKernel<<<dev::Blocks(c.rows, 1), dev::kThreads, 0, s>>>(c);
  } else {
    int blocks = static_cast<int>(std::min<int64_t>(
        kFusedPartials, (c.n + dev::kThreads - 1) / dev::kThreads));
    PartialsKernel<<<blocks, dev::kThreads, 0, s>>>(c, scratch);
    CombineKernel<<<1, 32, 0, s>>>(c, scratch, blocks);
  }
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
