//===- Matmul.cpp - matmuls through cuBLASLt ------------------------------===//
//
// Row-major out[..., M, N] = op(lhs) op(rhs) as the column-major product
// out^T = op(rhs)^T op(lhs)^T, batched by strides (a shared rank-2 rhs has
// stride 0). f32 runs in f32 (CUBLAS_COMPUTE_32F, no TF32: the CPU
// reference's numerics); bf16 and f16 multiply on tensor cores with f32
// accumulation. Operands of mixed types, and f32 products stored to 16
// bits, are widened or rounded through f32 scratch.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/Context.h"
#include "runtime/backends/cuda/CudaStatus.h"
#include "runtime/backends/cuda/Launch.h"
#include "runtime/backends/cuda/MatmulUtil.h"

#include "absl/strings/str_cat.h"

#include <cstdint>
#include <memory>
#include <utility>

namespace veomni::rt::cuda {

namespace {

cudaDataType_t CudaType(int t) {
  return t == launch::BF16  ? CUDA_R_16BF
         : t == launch::F16 ? CUDA_R_16F
                            : CUDA_R_32F;
}

/// Owns the cuBLASLt descriptors of one call.
struct LtCall {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  ~LtCall() {
    if (op)
      cublasLtMatmulDescDestroy(op);
    for (cublasLtMatrixLayout_t l : {a, b, d})
      if (l)
        cublasLtMatrixLayoutDestroy(l);
  }
};

absl::Status Layout(cublasLtMatrixLayout_t *l, cudaDataType_t t, int64_t rows,
                    int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  VEOMNI_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(l, t, rows, cols, ld));
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    VEOMNI_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        *l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    VEOMNI_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
        sizeof(stride)));
  }
  return absl::OkStatus();
}

} // namespace

absl::Status LtMatmul(const Context &c, const GemmArgs &g) {
  if (g.m == 0 || g.n == 0)
    return absl::OkStatus();
  if (g.k == 0) { // an empty sum: out = 0, or out += 0
    if (!g.accumulate) {
      launch::Buf out{g.out, g.outType, g.batch * g.m * g.n};
      VEOMNI_CUDA_CHECK(launch::Fill(c.stream, out, 0.0));
    }
    return absl::OkStatus();
  }
  LtCall call;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulDescCreate(&call.op, compute, CUDA_R_32F));
  // cuBLASLt's A is our rhs, its B our lhs (see the file comment).
  cublasOperation_t opA = g.transposeRhs ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opB = g.transposeLhs ? CUBLAS_OP_T : CUBLAS_OP_N;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      call.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
      call.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
  // Stored row-major [r0, r1] is column-major [r1, r0] with ld r1.
  int64_t rhsRows = g.transposeRhs ? g.n : g.k,
          rhsCols = g.transposeRhs ? g.k : g.n;
  int64_t lhsRows = g.transposeLhs ? g.k : g.m,
          lhsCols = g.transposeLhs ? g.m : g.k;
  VEOMNI_RETURN_IF_ERROR(Layout(&call.a, CudaType(g.inType), rhsCols, rhsRows,
                                rhsCols, g.batch, g.sharedRhs ? 0 : g.k * g.n));
  VEOMNI_RETURN_IF_ERROR(Layout(&call.b, CudaType(g.inType), lhsCols, lhsRows,
                                lhsCols, g.batch, g.m * g.k));
  VEOMNI_RETURN_IF_ERROR(
      Layout(&call.d, CudaType(g.outType), g.n, g.m, g.n, g.batch, g.m * g.n));
  cublasLtMatmulPreference_t pref = nullptr;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  std::unique_ptr<void, void (*)(void *)> prefOwner(pref, [](void *p) {
    cublasLtMatmulPreferenceDestroy(static_cast<cublasLtMatmulPreference_t>(p));
  });
  size_t ws = c.workspaceBytes;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  // cuBLASLt assumes 256-byte aligned operands unless told otherwise; the
  // planner aligns buffers to 64 bytes, and batches step by their size.
  const int64_t in = g.inType == launch::F32 ? 4 : 2;
  const int64_t out = g.outType == launch::F32 ? 4 : 2;
  auto alignment = [](const void *p, int64_t strideBytes) {
    uint32_t a = 256;
    uintptr_t v =
        reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(strideBytes);
    while (a > 1 && v % a)
      a /= 2;
    return a;
  };
  const uint32_t alignA = alignment(g.rhs, g.sharedRhs ? 0 : g.k * g.n * in);
  const uint32_t alignB = alignment(g.lhs, g.m * g.k * in);
  const uint32_t alignD = alignment(g.out, g.m * g.n * out);
  for (auto [attr, value] :
       {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignA},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignB},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignD},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignD}})
    VEOMNI_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value,
                                                             sizeof(value)));
  cublasLtMatmulHeuristicResult_t result = {};
  int found = 0;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(
      c.lt, call.op, call.a, call.b, call.d, call.d, pref, 1, &result, &found));
  if (found == 0)
    return absl::UnimplementedError(
        absl::StrCat("Matmul: cuBLASLt has no algorithm for [", g.m, "x", g.k,
                     "] x [", g.k, "x", g.n, "] (batch ", g.batch, ")"));
  float alpha = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
  VEOMNI_CUBLAS_CHECK(cublasLtMatmul(
      c.lt, call.op, &alpha, g.rhs, call.a, g.lhs, call.b, &beta, g.out, call.d,
      g.out, call.d, &result.algo, c.workspace, c.workspaceBytes, c.stream));
  return absl::OkStatus();
}

} // namespace veomni::rt::cuda
