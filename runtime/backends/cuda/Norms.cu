//===- Norms.cu - rms_norm and its VJP ------------------------------------===//
//
// One block per row; the statistics in f64 over the row, as the CPU
// backend sums them. The weight gradient sums over rows per column, one
// thread a column, in row order.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;

__device__ inline float RowRstd(Buf x, int64_t base, int64_t n, double eps) {
  double ss = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    double v = Load(x.data, x.type, base + j);
    ss += v * v;
  }
  ss = BlockSum(ss);
  // The mean rounded to f32 as HF keeps it, rsqrt rounded once from f64
  // (as Norms.cpp).
  float mean = static_cast<float>(ss / static_cast<double>(n));
  float e = static_cast<float>(eps);
  return static_cast<float>(1.0 / sqrt(static_cast<double>(mean + e)));
}

__global__ void RmsNormKernel(Buf in, Buf weight, Buf out, int64_t rows,
                              int64_t n, double eps) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t base = row * n;
    float r = RowRstd(in, base, n, eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      // n = x r, rounded to x's type as HF stores it, then weight * n.
      float v = Load(in.data, in.type, base + j) * r;
      if (in.type == launch::BF16)
        v = __bfloat162float(__float2bfloat16_rn(v));
      else if (in.type == launch::F16)
        v = __half2float(__float2half_rn(v));
      Store(out.data, out.type, base + j,
            Load(weight.data, weight.type, j) * v);
    }
  }
}

__global__ void RmsNormGradRows(Buf x, Buf weight, Buf dy, Buf dx, float *rstd,
                                int64_t rows, int64_t n, double eps) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int64_t base = row * n;
    float r = RowRstd(x, base, n, eps);
    double dot = 0; // sum of dn * x
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      dot += static_cast<double>(Load(dy.data, dy.type, base + j) *
                                 Load(weight.data, weight.type, j)) *
             Load(x.data, x.type, base + j);
    float mean = static_cast<float>(BlockSum(dot) / static_cast<double>(n));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      float dn =
          Load(dy.data, dy.type, base + j) * Load(weight.data, weight.type, j);
      float xv = Load(x.data, x.type, base + j);
      Store(dx.data, dx.type, base + j, r * dn - xv * r * r * r * mean);
    }
    if (threadIdx.x == 0)
      rstd[row] = r;
    __syncthreads();
  }
}

__global__ void RmsNormGradWeight(Buf x, Buf dy, const float *rstd, Buf dweight,
                                  int64_t rows, int64_t n) {
  VEOMNI_GRID_LOOP(j, n) {
    double acc = 0; // in f64, as the CPU backend sums it
    for (int64_t row = 0; row < rows; ++row)
      acc += Load(dy.data, dy.type, row * n + j) *
             (Load(x.data, x.type, row * n + j) * rstd[row]);
    Store(dweight.data, dweight.type, j, static_cast<float>(acc));
  }
}

} // namespace

namespace launch {

cudaError_t RmsNorm(cudaStream_t s, Buf in, Buf weight, Buf out, int64_t rows,
                    int64_t n, double epsilon) {
  if (rows == 0 || n == 0)
    return cudaSuccess;
  RmsNormKernel<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      in, weight, out, rows, n, epsilon);
  return cudaGetLastError();
}

cudaError_t RmsNormGrad(cudaStream_t s, Buf x, Buf weight, Buf dy, Buf dx,
                        Buf dweight, int64_t rows, int64_t n, double epsilon) {
  if (n == 0)
    return cudaSuccess;
  if (rows == 0)
    return Fill(s, dweight, 0.0);
  float *rstd = nullptr;
  if (cudaError_t e = cudaMallocAsync(reinterpret_cast<void **>(&rstd),
                                      rows * sizeof(float), s);
      e != cudaSuccess)
    return e;
  RmsNormGradRows<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      x, weight, dy, dx, rstd, rows, n, epsilon);
  RmsNormGradWeight<<<dev::Blocks(n), dev::kThreads, 0, s>>>(x, dy, rstd,
                                                             dweight, rows, n);
  cudaFreeAsync(rstd, s);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
