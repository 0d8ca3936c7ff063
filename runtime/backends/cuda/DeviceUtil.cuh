//===- DeviceUtil.cuh - device helpers of the CUDA kernels ------*- C++ -*-===//
//
// Element loads and stores of every type through f32 (bf16 and f16 round
// to nearest even, as the CPU backend stores them), index loads, block
// reductions, grid sizes and the error word.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_DEVICEUTIL_CUH
#define VEOMNI_RUNTIME_BACKENDS_CUDA_DEVICEUTIL_CUH

#include "runtime/backends/cuda/Launch.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

namespace veomni::rt::cuda::dev {

using launch::Buf;

constexpr int kThreads = 256;

inline unsigned Blocks(int64_t n, int64_t perBlock = kThreads) {
  int64_t b = (n + perBlock - 1) / perBlock;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, 1 << 20));
}

__device__ inline float Load(const void *p, int type, int64_t i) {
  switch (type) {
  case launch::F32:
    return static_cast<const float *>(p)[i];
  case launch::BF16:
    return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
  case launch::F16:
    return __half2float(static_cast<const __half *>(p)[i]);
  case launch::I32:
    return static_cast<float>(static_cast<const int32_t *>(p)[i]);
  default:
    return static_cast<float>(static_cast<const int64_t *>(p)[i]);
  }
}

__device__ inline void Store(void *p, int type, int64_t i, float v) {
  switch (type) {
  case launch::F32:
    static_cast<float *>(p)[i] = v;
    break;
  case launch::BF16:
    static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
    break;
  case launch::F16:
    static_cast<__half *>(p)[i] = __float2half_rn(v);
    break;
  case launch::I32:
    static_cast<int32_t *>(p)[i] = static_cast<int32_t>(v);
    break;
  default:
    static_cast<int64_t *>(p)[i] = static_cast<int64_t>(v);
  }
}

__device__ inline int64_t LoadIndex(const void *p, int type, int64_t i) {
  return type == launch::I32 ? static_cast<const int32_t *>(p)[i]
                             : static_cast<const int64_t *>(p)[i];
}

/// Keeps the first error a kernel reports.
__device__ inline void Report(int *word, int code) {
  if (word)
    atomicCAS(word, 0, code);
}

/// The sum over the block of each thread's `v` (every thread gets it);
/// blockDim.x is a multiple of 32, at most 1024.
template <typename T> __device__ inline T BlockSum(T v) {
  __shared__ T partial[32];
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); // partial may still be read by a previous call
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  T total = 0;
  for (int w = 0; w < warps; ++w) // same order on every thread
    total += partial[w];
  return total;
}

__device__ inline float BlockMax(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  float m = -INFINITY;
  for (int w = 0; w < warps; ++w)
    m = fmaxf(m, partial[w]);
  return m;
}

__device__ inline float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Numbered as cpu::UnaryKind.
__device__ inline float ApplyUnary(int kind, float x) {
  switch (kind) {
  case 0:
    return -x;
  case 1:
    return expf(x);
  case 2:
    return logf(x);
  case 3:
    return sqrtf(x);
  case 4:
    return rsqrtf(x);
  case 5:
    return sinf(x);
  case 6:
    return cosf(x);
  case 7:
    return tanhf(x);
  case 8:
    return 1.0f / (1.0f + expf(-x));
  case 9:
    return x / (1.0f + expf(-x));
  case 10:
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  case 12: // IsFinite
    return isfinite(x) ? 1.0f : 0.0f;
  default: {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
  }
}

#define VEOMNI_GRID_LOOP(i, n)                                                 \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n);    \
       i += int64_t(gridDim.x) * blockDim.x)

} // namespace veomni::rt::cuda::dev

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_DEVICEUTIL_CUH
