//===- Loss.cu - softmax cross entropy and its VJP ------------------------===//
//
// One block per row of logits: max, sum of exponentials and the label's
// logit; the mean or sum over rows by one block in a fixed order (f64).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;

/// Row r's log-sum-exp of logits (every thread of the block gets it).
__device__ inline float RowLse(Buf logits, int64_t base, int64_t vocab) {
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    mx = fmaxf(mx, Load(logits.data, logits.type, base + j));
  mx = BlockMax(mx);
  double sum = 0;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    sum += expf(Load(logits.data, logits.type, base + j) - mx);
  sum = BlockSum(sum);
  return mx + static_cast<float>(log(sum));
}

/// Whether row r counts; reports labels outside [0, vocab).
__device__ inline bool Counted(Buf labels, int64_t r, int64_t vocab,
                               int64_t ignore, int64_t *label, int *error) {
  int64_t y = LoadIndex(labels.data, labels.type, r);
  *label = y;
  if (y == ignore)
    return false;
  if (y < 0 || y >= vocab) {
    Report(error, launch::kLabelOutOfRange);
    return false;
  }
  return true;
}

__global__ void RowLosses(Buf logits, Buf labels, float *losses, int64_t rows,
                          int64_t vocab, int64_t ignore, int *error) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    int64_t y;
    bool counted = Counted(labels, r, vocab, ignore, &y, error);
    float lse = RowLse(logits, r * vocab, vocab);
    if (threadIdx.x == 0)
      losses[r] =
          counted ? lse - Load(logits.data, logits.type, r * vocab + y) : 0.0f;
    __syncthreads();
  }
}

/// out[0] = the sum (or mean over counted rows) of losses; one block.
__global__ void ReduceLosses(const float *losses, Buf labels, Buf out,
                             int64_t rows, int64_t ignore, bool mean) {
  double sum = 0, count = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    sum += losses[r];
    count += LoadIndex(labels.data, labels.type, r) != ignore;
  }
  sum = BlockSum(sum);
  count = BlockSum(count);
  if (threadIdx.x == 0)
    Store(out.data, out.type, 0,
          static_cast<float>(mean ? (count > 0 ? sum / count : 0.0) : sum));
}

/// The rows whose label is not ignored, as an f64 in scratch[0, 2); one
/// block.
__global__ void CountLabelsKernel(Buf labels, float *scratch, int64_t rows,
                                  int64_t ignore) {
  double count = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    count += LoadIndex(labels.data, labels.type, r) != ignore;
  count = BlockSum(count);
  if (threadIdx.x == 0)
    *reinterpret_cast<double *>(scratch) = count;
}

__global__ void RowGrads(Buf logits, Buf labels, Buf dloss, Buf dlogits,
                         const float *count, int64_t rows, int64_t vocab,
                         int64_t ignore, int reduction, int *error) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    int64_t y;
    bool counted = Counted(labels, r, vocab, ignore, &y, error);
    float g = 0.0f;
    if (counted) {
      if (reduction == 2)
        g = Load(dloss.data, dloss.type, r);
      else if (reduction == 1)
        g = Load(dloss.data, dloss.type, 0);
      else
        g = static_cast<float>(Load(dloss.data, dloss.type, 0) /
                               *reinterpret_cast<const double *>(count));
    }
    float lse = RowLse(logits, r * vocab, vocab);
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      float p = expf(Load(logits.data, logits.type, r * vocab + j) - lse);
      float d = counted ? (p - (j == y ? 1.0f : 0.0f)) * g : 0.0f;
      Store(dlogits.data, dlogits.type, r * vocab + j, d);
    }
    __syncthreads();
  }
}

} // namespace

namespace launch {

cudaError_t CrossEntropy(cudaStream_t s, Buf logits, Buf labels, Buf out,
                         int64_t rows, int64_t vocab, int64_t ignoreIndex,
                         int reduction, float *scratch) {
  // With reduction none the row losses are the output (f32).
  float *losses = reduction == 2 ? static_cast<float *>(out.data) : scratch;
  if (rows > 0)
    RowLosses<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
        logits, labels, losses, rows, vocab, ignoreIndex, ErrorWord());
  if (reduction != 2)
    ReduceLosses<<<1, 1024, 0, s>>>(losses, labels, out, rows, ignoreIndex,
                                    reduction == 0);
  return cudaGetLastError();
}

cudaError_t CrossEntropyGrad(cudaStream_t s, Buf logits, Buf labels, Buf dloss,
                             Buf dlogits, int64_t rows, int64_t vocab,
                             int64_t ignoreIndex, int reduction,
                             float *scratch) {
  if (rows == 0 || vocab == 0)
    return cudaSuccess;
  CountLabelsKernel<<<1, 1024, 0, s>>>(labels, scratch, rows, ignoreIndex);
  RowGrads<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      logits, labels, dloss, dlogits, scratch, rows, vocab, ignoreIndex,
      reduction, ErrorWord());
  return cudaGetLastError();
}

cudaError_t CountLabels(cudaStream_t s, Buf labels, int64_t rows,
                        int64_t ignoreIndex, double *count) {
  CountLabelsKernel<<<1, 1024, 0, s>>>(labels, reinterpret_cast<float *>(count),
                                       rows, ignoreIndex);
  return cudaGetLastError();
}

cudaError_t LossRows(cudaStream_t s, float *logits, Buf labels, float *losses,
                     int64_t rows, int64_t vocab, int64_t ignoreIndex) {
  if (rows == 0)
    return cudaSuccess;
  Buf l{logits, F32, rows * vocab};
  RowLosses<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      l, labels, losses, rows, vocab, ignoreIndex, ErrorWord());
  return cudaGetLastError();
}

cudaError_t LossGradRows(cudaStream_t s, float *logits, Buf labels, Buf dloss,
                         const double *count, int64_t rows, int64_t vocab,
                         int64_t ignoreIndex, int reduction) {
  if (rows == 0 || vocab == 0)
    return cudaSuccess;
  Buf l{logits, F32, rows * vocab};
  // In place: each row's log-sum-exp is taken before any of it is written.
  RowGrads<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      l, labels, dloss, l, reinterpret_cast<const float *>(count), rows, vocab,
      ignoreIndex, reduction, ErrorWord());
  return cudaGetLastError();
}

cudaError_t SumLosses(cudaStream_t s, const float *losses, Buf labels, Buf out,
                      int64_t rows, int64_t ignoreIndex, bool mean) {
  ReduceLosses<<<1, 1024, 0, s>>>(losses, labels, out, rows, ignoreIndex, mean);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
