//===- Matmul.cpp - reference matmul and grouped matmul -------------------===//
//
// Naive loop nests in double, for the tests to compare the fast kernels with.
//
//===----------------------------------------------------------------------===//

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "test/unit/runtime/reference/Reference.h"
#include "test/unit/runtime/reference/ReferenceUtil.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu::ref {

using namespace detail;

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

absl::Status Matmul(const TensorView &lhs, const TensorView &rhs,
                    const TensorView &out, bool transposeLhs,
                    bool transposeRhs) {
  const char *kName = "Matmul";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  int64_t rank = lhs.rank();
  if (rank < 2)
    return BadView(kName, "lhs", lhs, "must have rank >= 2");
  if (rhs.rank() != 2 && rhs.rank() != rank)
    return BadView(kName, "rhs", rhs, "must have rank 2 or the rank of lhs ",
                   lhs.ToString());
  bool sharedRhs = rhs.rank() == 2 && rank != 2;
  if (!sharedRhs)
    for (int64_t d = 0; d < rank - 2; ++d)
      if (rhs.dim(d) != lhs.dim(d))
        return BadView(kName, "rhs", rhs, "must have the batch dimensions of ",
                       "lhs ", lhs.ToString());

  int64_t m = transposeLhs ? lhs.dim(rank - 1) : lhs.dim(rank - 2);
  int64_t k = transposeLhs ? lhs.dim(rank - 2) : lhs.dim(rank - 1);
  int64_t rr = rhs.rank();
  int64_t rhsK = transposeRhs ? rhs.dim(rr - 1) : rhs.dim(rr - 2);
  int64_t n = transposeRhs ? rhs.dim(rr - 2) : rhs.dim(rr - 1);
  if (rhsK != k)
    return BadView(kName, "rhs", rhs, "must have contracting dimension ", k,
                   " of lhs ", lhs.ToString());
  Shape expected(lhs.shape.begin(), lhs.shape.end() - 2);
  expected.push_back(m);
  expected.push_back(n);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, expected));

  int64_t batch = Product(absl::MakeSpan(lhs.shape).subspan(0, rank - 2));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t lhsBase = b * m * k;
    int64_t rhsBase = sharedRhs ? 0 : b * k * n;
    int64_t outBase = b * m * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          int64_t li = transposeLhs ? p * m + i : i * k + p;
          int64_t ri = transposeRhs ? j * k + p : p * n + j;
          sum += static_cast<double>(LoadF(lhs, lhsBase + li)) *
                 LoadF(rhs, rhsBase + ri);
        }
        StoreF(out, outBase + i * n + j, static_cast<float>(sum));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GroupedMatmul(const TensorView &input, const TensorView &weight,
                           const TensorView &groupSizes, const TensorView &out,
                           bool transposeWeight) {
  const char *kName = "GroupedMatmul";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "groupSizes", groupSizes, 1));
  int64_t rows = input.dim(0), k = input.dim(1);
  int64_t experts = weight.dim(0);
  int64_t weightK = transposeWeight ? weight.dim(2) : weight.dim(1);
  int64_t m = transposeWeight ? weight.dim(1) : weight.dim(2);
  if (weightK != k)
    return BadView(kName, "weight", weight, "must have contracting dimension ",
                   k, " of input ", input.ToString());
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "groupSizes", groupSizes, {experts}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {rows, m}));

  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t size = LoadI(groupSizes, e);
    if (size < 0)
      return BadView(kName, "groupSizes", groupSizes, "has size ", size,
                     " for group ", e);
    total += size;
    if (total > rows)
      return BadView(kName, "groupSizes", groupSizes, "sums to more than the ",
                     rows, " rows of input ", input.ToString());
  }
  if (total != rows)
    return BadView(kName, "groupSizes", groupSizes, "sums to ", total,
                   ", not the ", rows, " rows of input ", input.ToString());

  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t end = row + LoadI(groupSizes, e);
    for (; row < end; ++row) {
      for (int64_t j = 0; j < m; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          int64_t wi =
              transposeWeight ? (e * m + j) * k + p : (e * k + p) * m + j;
          sum += static_cast<double>(LoadF(input, row * k + p)) *
                 LoadF(weight, wi);
        }
        StoreF(out, row * m + j, static_cast<float>(sum));
      }
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

absl::Status GroupedMatmulWeightGrad(const TensorView &input,
                                     const TensorView &groupSizes,
                                     const TensorView &dout,
                                     const TensorView &dweight,
                                     bool transposeWeight) {
  const char *kName = "GroupedMatmulWeightGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "dout", dout, 2));
  int64_t rows = input.dim(0), k = input.dim(1), m = dout.dim(1);
  int64_t experts = groupSizes.dim(0);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dout", dout, {rows, m}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight,
                                    transposeWeight ? Shape{experts, m, k}
                                                    : Shape{experts, k, m}));
  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t g = LoadI(groupSizes, e);
    if (g < 0)
      return BadView(kName, "groupSizes", groupSizes, "entry ", e, " = ", g,
                     " is negative");
    total += g;
    if (total > rows)
      return BadView(kName, "groupSizes", groupSizes, "overruns the ", rows,
                     " rows of input ", input.ToString());
  }
  if (total != rows)
    return BadView(kName, "groupSizes", groupSizes, "sums to ", total,
                   " but input ", input.ToString(), " has ", rows, " rows");

  int64_t first = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t end = first + LoadI(groupSizes, e);
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < m; ++b) {
        double sum = 0; // dW_e[a, b] = sum over the group's rows x[a] g[b]
        for (int64_t r = first; r < end; ++r)
          sum += static_cast<double>(LoadF(input, r * k + a)) *
                 LoadF(dout, r * m + b);
        int64_t at =
            transposeWeight ? (e * m + b) * k + a : (e * k + a) * m + b;
        StoreF(dweight, at, static_cast<float>(sum));
      }
    first = end;
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
