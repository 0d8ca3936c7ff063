//===- Matmul.cpp - matmul and grouped matmul, forward and backward -------===//
//
// Everything ends in cblas_sgemm. bf16/f16 operands are widened to f32
// first (this OpenBLAS build has no sbgemm), which is exact, so results
// differ from an f32 matmul of the same values only by summation order.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Checks.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/MoEUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

absl::StatusOr<MatmulShape> CheckMatmul(const TensorView &lhs,
                                        const TensorView &rhs,
                                        const TensorView &out,
                                        bool transposeLhs, bool transposeRhs) {
  constexpr absl::string_view K = "Matmul";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  int64_t rank = lhs.rank();
  if (rank < 2)
    return BadView(K, "lhs", lhs, "must have rank >= 2");
  if (rhs.rank() != 2 && rhs.rank() != rank)
    return BadView(K, "rhs", rhs, "must have rank 2 or the rank of lhs ",
                   lhs.ToString());
  bool sharedRhs = rhs.rank() == 2 && rank != 2;
  if (!sharedRhs)
    for (int64_t d = 0; d < rank - 2; ++d)
      if (rhs.dim(d) != lhs.dim(d))
        return BadView(K, "rhs", rhs, "batch dimension ", d,
                       " differs from lhs ", lhs.ToString());
  int64_t rr = rhs.rank();
  int64_t m = lhs.dim(transposeLhs ? rank - 1 : rank - 2);
  int64_t k = lhs.dim(transposeLhs ? rank - 2 : rank - 1);
  int64_t rk = rhs.dim(transposeRhs ? rr - 1 : rr - 2);
  int64_t n = rhs.dim(transposeRhs ? rr - 2 : rr - 1);
  if (rk != k)
    return BadView(K, "rhs", rhs, "contracting dimension ", rk,
                   " differs from lhs ", lhs.ToString(), " (", k, ")");
  Shape expected(lhs.shape.begin(), lhs.shape.end() - 2);
  expected.push_back(m);
  expected.push_back(n);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, expected));
  if (!FitsBlas(m) || !FitsBlas(n) || !FitsBlas(k))
    return BadView(K, "lhs", lhs, "exceeds the 32-bit BLAS interface with rhs ",
                   rhs.ToString());
  return MatmulShape{Product(lhs.shape, 0, rank - 2), m, n, k, sharedRhs};
}

absl::Status Matmul(const TensorView &lhs, const TensorView &rhs,
                    const TensorView &out, bool transposeLhs,
                    bool transposeRhs) {
  constexpr absl::string_view K = "Matmul";
  VEOMNI_ASSIGN_OR_RETURN(
      const MatmulShape shape,
      CheckMatmul(lhs, rhs, out, transposeLhs, transposeRhs));
  const int64_t batch = shape.batch, m = shape.m, n = shape.n, k = shape.k;
  const bool sharedRhs = shape.sharedRhs;
  if (out.numel() == 0)
    return absl::OkStatus();

  int64_t lda = transposeLhs ? m : k, ldb = transposeRhs ? k : n;
  // bf16 x bf16 on a CPU that multiplies bf16 itself: no widening.
  if (lhs.dtype == DType::BF16 && rhs.dtype == DType::BF16 &&
      (out.dtype == DType::F32 || out.dtype == DType::BF16) &&
      Bf16GemmNative()) {
    auto *a = static_cast<const uint16_t *>(lhs.data);
    auto *b = static_cast<const uint16_t *>(rhs.data);
    auto *c = static_cast<char *>(out.data);
    const size_t cs = SizeOf(out.dtype);
    bool done = true;
    if (sharedRhs && !transposeLhs && FitsBlas(batch * m))
      done = Bf16Gemm(false, transposeRhs, batch * m, n, k, a, lda, b, ldb, c,
                      out.dtype, n);
    else
      for (int64_t i = 0; i < batch && done; ++i)
        done = Bf16Gemm(transposeLhs, transposeRhs, m, n, k, a + i * m * k, lda,
                        b + (sharedRhs ? 0 : i * k * n), ldb,
                        c + i * m * n * cs, out.dtype, n);
    if (done)
      return absl::OkStatus();
  }
  F32Input a(lhs), b(rhs);
  F32Output c(out);
  if (sharedRhs && !transposeLhs && FitsBlas(batch * m)) {
    // Every batch multiplies the same rhs: one tall GEMM instead of many.
    BlasGemm(false, transposeRhs, batch * m, n, k, 1.0f, a.data(), lda,
             b.data(), ldb, 0.0f, c.data(), n);
  } else {
    for (int64_t i = 0; i < batch; ++i)
      BlasGemm(transposeLhs, transposeRhs, m, n, k, 1.0f, a.data() + i * m * k,
               lda, b.data() + (sharedRhs ? 0 : i * k * n), ldb, 0.0f,
               c.data() + i * m * n, n);
  }
  c.Commit();
  return absl::OkStatus();
}

absl::StatusOr<GroupedShape> CheckGroupedMatmul(const TensorView &input,
                                                const TensorView &weight,
                                                const TensorView &groupSizes,
                                                const TensorView &out,
                                                bool transposeWeight) {
  constexpr absl::string_view K = "GroupedMatmul";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 2));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "groupSizes", groupSizes));
  int64_t rows = input.dim(0), k = input.dim(1), experts = weight.dim(0);
  int64_t wk = weight.dim(transposeWeight ? 2 : 1);
  int64_t m = weight.dim(transposeWeight ? 1 : 2);
  if (groupSizes.dim(0) != experts)
    return BadView(K, "groupSizes", groupSizes,
                   "must have one entry per expert of weight ",
                   weight.ToString());
  if (wk != k)
    return BadView(K, "weight", weight, "contracting dimension ", wk,
                   " differs from input ", input.ToString());
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {rows, m}));
  if (!FitsBlas(rows) || !FitsBlas(m) || !FitsBlas(k))
    return BadView(K, "input", input,
                   "exceeds the 32-bit BLAS interface with weight ",
                   weight.ToString());
  return GroupedShape{rows, k, m, experts};
}

absl::Status CheckGroupSizes(absl::string_view K, const TensorView &groupSizes,
                             absl::Span<const int64_t> sizes,
                             const TensorView &input) {
  // Sizes come from run-time data: each must be >= 0 and they must tile the
  // rows exactly, checked before anything is written.
  const int64_t rows = input.dim(0);
  int64_t total = 0;
  for (size_t e = 0; e < sizes.size(); ++e) {
    int64_t g = sizes[e];
    if (g < 0 || g > rows - total)
      return BadView(K, "groupSizes", groupSizes, "entry ", e, " = ", g,
                     " is negative or overruns the ", rows, " rows of input ",
                     input.ToString());
    total += g;
  }
  if (total != rows)
    return BadView(K, "groupSizes", groupSizes, "sums to ", total,
                   " but input ", input.ToString(), " has ", rows, " rows");
  return absl::OkStatus();
}

namespace {
std::vector<int64_t> HostSizes(const TensorView &groupSizes) {
  std::vector<int64_t> sizes(groupSizes.numel());
  for (size_t e = 0; e < sizes.size(); ++e)
    sizes[e] = IndexAt(groupSizes, e);
  return sizes;
}
} // namespace

absl::Status GroupedMatmul(const TensorView &input, const TensorView &weight,
                           const TensorView &groupSizes, const TensorView &out,
                           bool transposeWeight) {
  constexpr absl::string_view K = "GroupedMatmul";
  VEOMNI_ASSIGN_OR_RETURN(
      const GroupedShape shape,
      CheckGroupedMatmul(input, weight, groupSizes, out, transposeWeight));
  const int64_t k = shape.k, m = shape.m, experts = shape.experts;
  VEOMNI_RETURN_IF_ERROR(
      CheckGroupSizes(K, groupSizes, HostSizes(groupSizes), input));
  if (out.numel() == 0)
    return absl::OkStatus();

  F32Input a(input);
  F32Output c(out);
  bool f32 = weight.dtype == DType::F32;
  // Only the experts that received rows have their weights widened.
  std::unique_ptr<float[]> wbuf = f32 ? nullptr : Scratch(k * m);
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t g = IndexAt(groupSizes, e);
    if (g == 0)
      continue;
    const float *w;
    if (f32) {
      w = static_cast<const float *>(weight.data) + e * k * m;
    } else {
      LoadF32(weight, e * k * m, k * m, wbuf.get());
      w = wbuf.get();
    }
    BlasGemm(false, transposeWeight, g, m, k, 1.0f, a.data() + row * k, k, w,
             transposeWeight ? k : m, 0.0f, c.data() + row * m, m);
    row += g;
  }
  c.Commit();
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

absl::StatusOr<GroupedShape> CheckGroupedMatmulWeightGrad(
    const TensorView &input, const TensorView &groupSizes,
    const TensorView &dout, const TensorView &dweight, bool transposeWeight) {
  constexpr absl::string_view K = "GroupedMatmulWeightGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dweight", dweight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", dweight));
  int64_t rows = input.dim(0), k = input.dim(1), m = dout.dim(1);
  int64_t experts = groupSizes.dim(0);
  if (dout.dim(0) != rows)
    return BadView(K, "dout", dout, "must have the rows of input ",
                   input.ToString());
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", dweight,
                                    transposeWeight ? Shape{experts, m, k}
                                                    : Shape{experts, k, m}));
  if (!FitsBlas(rows) || !FitsBlas(m) || !FitsBlas(k))
    return BadView(K, "input", input,
                   "exceeds the 32-bit BLAS interface with dout ",
                   dout.ToString());
  return GroupedShape{rows, k, m, experts};
}

absl::Status GroupedMatmulWeightGrad(const TensorView &input,
                                     const TensorView &groupSizes,
                                     const TensorView &dout,
                                     const TensorView &dweight,
                                     bool transposeWeight) {
  constexpr absl::string_view K = "GroupedMatmulWeightGrad";
  VEOMNI_ASSIGN_OR_RETURN(const GroupedShape shape,
                          CheckGroupedMatmulWeightGrad(input, groupSizes, dout,
                                                       dweight,
                                                       transposeWeight));
  const int64_t k = shape.k, m = shape.m, experts = shape.experts;
  VEOMNI_RETURN_IF_ERROR(
      CheckGroupSizes(K, groupSizes, HostSizes(groupSizes), input));
  if (dweight.numel() == 0)
    return absl::OkStatus();

  F32Input a(input), g(dout);
  F32Output dw(dweight);
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t n = IndexAt(groupSizes, e);
    float *dwe = dw.data() + e * k * m;
    const float *ae = a.data() + row * k, *ge = g.data() + row * m;
    // k == 0 (no rows) leaves zeros: Gemm's beta = 0 path.
    if (transposeWeight)
      BlasGemm(true, false, m, k, n, 1.0f, ge, m, ae, k, 0.0f, dwe, k);
    else
      BlasGemm(true, false, k, m, n, 1.0f, ae, k, ge, m, 0.0f, dwe, m);
    row += n;
  }
  dw.Commit();
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
