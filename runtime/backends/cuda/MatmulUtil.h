//===- MatmulUtil.h - the CUDA backend's GEMM -------------------*- C++ -*-===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_MATMULUTIL_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_MATMULUTIL_H

#include "runtime/backends/cuda/Context.h"

#include "absl/status/status.h"

#include <cstdint>

namespace veomni::rt::cuda {

/// Row-major out[batch, m, n] (= or += with accumulate) op(lhs) op(rhs);
/// lhs and rhs of one type (`inType`, launch::Type), out of `outType`:
/// f32 x f32 -> f32, or bf16/f16 x the same -> that type or f32.
struct GemmArgs {
  const void *lhs = nullptr, *rhs = nullptr;
  void *out = nullptr;
  int inType = 0, outType = 0;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool transposeLhs = false, transposeRhs = false, sharedRhs = false;
  bool accumulate = false;
};
absl::Status LtMatmul(const Context &c, const GemmArgs &g);

} // namespace veomni::rt::cuda

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_MATMULUTIL_H
