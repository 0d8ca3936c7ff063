//===- ExpertSplit.cpp - grouped matmuls over experts across ranks --------===//
//
// Expert parallelism. A rank holds the weights of experts [p E_l, (p+1)
// E_l) of its expert group (p its place, E_l = E / G), and rows of its own
// tokens for every expert, in expert order with group sizes [E]. A grouped
// matmul then:
//  1. all-gathers the group sizes over the group, so every rank knows how
//     many rows each rank has for each expert;
//  2. sends each rank the rows for its experts (the blocks are contiguous,
//     as rows are in expert order), receiving every rank's rows for its
//     own experts;
//  3. multiplies them, expert-major, with the backend's grouped matmul;
//  4. returns each product row to the rank the row came from, in its
//     order (the weight VJP instead keeps its experts' gradients).
// The exchanges are counted as the plan report models them: an all-to-all
// of the rows a rank holds.
//
//===----------------------------------------------------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

#include <cstring>

namespace veomni::rt {

namespace {

/// Who sends whom which rows, from every rank's group sizes.
struct Routing {
  int64_t ranks = 1, experts = 0, local = 0; ///< G, E, E_l
  std::vector<int32_t> sizes; ///< [G][E]: rank s's rows for expert e
  int64_t Rows(int64_t s, int64_t e) const { return sizes[s * experts + e]; }
  /// Rows rank `s` has for the experts of rank `q`.
  int64_t RowsFor(int64_t s, int64_t q) const {
    int64_t n = 0;
    for (int64_t e = q * local; e < (q + 1) * local; ++e)
      n += Rows(s, e);
    return n;
  }
};

/// Reorders rows received source-major (for each source s, its rows for
/// each local expert e in turn) into expert-major order (for each e, each
/// s), or back with `toSource` false.
void Reorder(const Routing &r, int64_t me, const uint8_t *from, uint8_t *to,
             int64_t rowBytes, bool toExpert) {
  std::vector<int64_t> sourceAt(r.ranks * r.local), expertAt(r.ranks * r.local);
  int64_t at = 0;
  for (int64_t s = 0; s < r.ranks; ++s)
    for (int64_t e = 0; e < r.local; ++e) {
      sourceAt[s * r.local + e] = at;
      at += r.Rows(s, me * r.local + e);
    }
  at = 0;
  for (int64_t e = 0; e < r.local; ++e)
    for (int64_t s = 0; s < r.ranks; ++s) {
      expertAt[s * r.local + e] = at;
      at += r.Rows(s, me * r.local + e);
    }
  for (int64_t s = 0; s < r.ranks; ++s)
    for (int64_t e = 0; e < r.local; ++e) {
      int64_t n = r.Rows(s, me * r.local + e) * rowBytes;
      int64_t a = sourceAt[s * r.local + e] * rowBytes;
      int64_t b = expertAt[s * r.local + e] * rowBytes;
      if (toExpert)
        std::memcpy(to + b, from + a, n);
      else
        std::memcpy(to + a, from + b, n);
    }
}

} // namespace

absl::Status Executor::RunExpertSplit(size_t i, const KernelDesc &k,
                                      KernelIns in, KernelOuts out) {
  if (!comm_)
    return absl::FailedPreconditionError(
        "experts split across ranks, and no communicator");
  const bool weightGrad = k.kind == KernelKind::GroupedMatmulWeightGrad;
  const int64_t g = CommGroupOf(k, "expert_group");
  const uint32_t group = groupHandle_[g];
  const TensorView &rows = in[0], &weight = in[1], &sizes = in[2];
  if (rows.rank() != 2 || sizes.rank() != 1 || sizes.dtype != DType::I32 ||
      weight.rank() != 3)
    return absl::InvalidArgumentError(absl::StrCat(
        "expert-split ", KernelName(k.kind), " of rows ", rows.ToString(),
        ", weight ", weight.ToString(), " and group sizes ", sizes.ToString()));
  Routing r;
  r.ranks = int64_t(program_.GroupRanks(g, Rank()).size());
  r.experts = sizes.numel();
  r.local = weight.dim(0);
  const int64_t me = groupIndex_[g];
  if (r.local * r.ranks != r.experts)
    return absl::InvalidArgumentError(
        absl::StrCat(r.experts, " experts are not ", r.ranks, " ranks of ",
                     r.local, " (", KernelName(k.kind), ")"));

  // 1. Every rank's group sizes.
  r.sizes.resize(r.ranks * r.experts);
  VEOMNI_RETURN_IF_ERROR(comm_->AllGather(
      group, sizes,
      TensorView{r.sizes.data(), DType::I32, {r.ranks * r.experts}}, 0));
  int64_t total = 0;
  for (int64_t e = 0; e < r.experts; ++e)
    total += r.Rows(me, e);
  if (total != rows.dim(0))
    return absl::InvalidArgumentError(
        absl::StrCat("group sizes of ", total, " rows for ", rows.ToString()));
  std::vector<int64_t> sendRows(r.ranks), recvRows(r.ranks);
  int64_t received = 0;
  for (int64_t q = 0; q < r.ranks; ++q) {
    sendRows[q] = r.RowsFor(me, q);
    recvRows[q] = r.RowsFor(q, me);
    received += recvRows[q];
  }
  // Group sizes of the received rows, expert-major, for the kernel.
  std::vector<int32_t> localSizes(r.local, 0);
  for (int64_t e = 0; e < r.local; ++e)
    for (int64_t s = 0; s < r.ranks; ++s)
      localSizes[e] += r.Rows(s, me * r.local + e);
  TensorView localSizeView{localSizes.data(), DType::I32, {r.local}};

  // 2. Rows (and, for the weight VJP, their cotangents) to their experts.
  std::vector<uint8_t> got, xs, dys;
  auto exchange =
      [&](const TensorView &mine,
          std::vector<uint8_t> &into) -> absl::StatusOr<TensorView> {
    const int64_t width = mine.dim(1), rowBytes = width * SizeOf(mine.dtype);
    got.resize(received * rowBytes);
    into.resize(received * rowBytes);
    VEOMNI_RETURN_IF_ERROR(comm_->ExchangeRows(group, mine.data, sendRows,
                                               got.data(), recvRows, rowBytes,
                                               double(mine.bytes())));
    Reorder(r, me, got.data(), into.data(), rowBytes, /*toExpert=*/true);
    return TensorView{into.data(), mine.dtype, {received, width}};
  };
  VEOMNI_ASSIGN_OR_RETURN(TensorView x, exchange(rows, xs));
  if (weightGrad) {
    // 3. This rank's experts' gradients, from every rank's rows.
    VEOMNI_ASSIGN_OR_RETURN(TensorView dy, exchange(in[3], dys));
    std::vector<TensorView> args = {x, weight, localSizeView, dy};
    return fns_[i](k, args, out);
  }
  // 3. The products, expert-major.
  const TensorView &y = out[0];
  const int64_t width = y.dim(1), rowBytes = width * SizeOf(y.dtype);
  std::vector<uint8_t> products(received * rowBytes), back(received * rowBytes);
  std::vector<TensorView> args = {x, weight, localSizeView};
  std::vector<TensorView> results = {
      TensorView{products.data(), y.dtype, {received, width}}};
  VEOMNI_RETURN_IF_ERROR(fns_[i](k, args, results));
  // 4. Each row's product to the rank it came from, in its order.
  Reorder(r, me, products.data(), back.data(), rowBytes, /*toExpert=*/false);
  return comm_->ExchangeRows(group, back.data(), recvRows, y.data, sendRows,
                             rowBytes, double(y.bytes()));
}

} // namespace veomni::rt
