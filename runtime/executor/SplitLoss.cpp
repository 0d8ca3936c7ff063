//===- SplitLoss.cpp - cross entropies split across ranks -----------------===//
//
// A partitioned program's loss may hold part of the tokens (data and
// sequence parallelism: `token_group`) or part of the vocabulary (tensor
// parallelism: `vocab_group`, with a column-parallel lm_head). The executor
// runs these on host views of the device's buffers, with the
// communicator's all-reduces in between, exactly as the plan report counts
// them: one i32 label count over the token group for a mean (also for the
// fused LM head and loss, linear_cross_entropy); per row, the
// max, the sum of exponentials and (forward) the target logit, in f32,
// over the vocab group.
//
//===----------------------------------------------------------------------===//

#include "runtime/executor/Executor.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

#include <cmath>
#include <limits>

namespace veomni::rt {

namespace {
int64_t AttrOf(const KernelDesc &k, const char *name) {
  return k.attrs[kernel_table::AttrIndex(k.kind, name)].ints[0];
}
} // namespace

absl::StatusOr<int64_t> Executor::CountLabels(uint32_t buffer,
                                              const TensorView &labels,
                                              int64_t ignoreIndex,
                                              int64_t group) {
  if (group >= 0)
    for (const LabelCount &c : labelCounts_)
      if (c.buffer == buffer && c.ignoreIndex == ignoreIndex &&
          c.group == group)
        return c.count;
  int64_t local = 0;
  for (int64_t j = 0, n = labels.numel(); j < n; ++j)
    local += LoadI(labels, j) != ignoreIndex;
  if (group < 0)
    return local;
  // An i32 count, as the plan report counts its bytes.
  if (local > (int64_t{1} << 31) / std::max(int(program_.worldSize), 1))
    return absl::OutOfRangeError("too many tokens to count in an i32");
  int32_t count = static_cast<int32_t>(local);
  TensorView view{&count, DType::I32, {1}};
  VEOMNI_RETURN_IF_ERROR(
      comm_->AllReduce(groupHandle_[group], view, view, ReduceOp::Sum));
  labelCounts_.push_back({buffer, ignoreIndex, group, count});
  return count;
}

absl::Status Executor::RunTokenSplitLoss(size_t i, const KernelDesc &k,
                                         KernelIns in, KernelOuts out) {
  if (!comm_)
    return absl::FailedPreconditionError("a split loss, and no communicator");
  if (AttrOf(k, "reduction") != 0) // sums and per-row losses need no count
    return fns_[i](k, in, out);
  // The fused LM head and loss (linear_cross_entropy) reads hidden, weight,
  // labels and the loss cotangent; the others logits, labels (and it).
  const bool fused = k.kind == KernelKind::LinearCrossEntropy;
  const size_t labels = fused ? 2 : 1, g = fused ? 3 : 2;
  VEOMNI_ASSIGN_OR_RETURN(int64_t count, CountLabels(k.ins[labels], in[labels],
                                                     AttrOf(k, "ignore_index"),
                                                     AttrOf(k, "token_group")));
  // This rank's sum, scaled by the group's count: partial sums of the mean.
  const double scale = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;
  KernelDesc sum = k;
  sum.attrs[kernel_table::AttrIndex(k.kind, "reduction")].ints = {1};
  if (k.kind == KernelKind::CrossEntropy) {
    VEOMNI_RETURN_IF_ERROR(fns_[i](sum, in, out));
    StoreF(out[0], 0, static_cast<float>(LoadF(out[0], 0) * scale));
    return absl::OkStatus();
  }
  float dloss = static_cast<float>(LoadF(in[g], 0) * scale);
  std::vector<TensorView> scaled(in.begin(), in.end());
  scaled[g] = TensorView{&dloss, DType::F32, {}};
  VEOMNI_RETURN_IF_ERROR(fns_[i](sum, scaled, out));
  if (fused) // it gives the loss too
    StoreF(out[0], 0, static_cast<float>(LoadF(out[0], 0) * scale));
  return absl::OkStatus();
}

absl::Status Executor::RunVocabSplitLoss(const KernelDesc &k, KernelIns in,
                                         KernelOuts out) {
  if (!comm_)
    return absl::FailedPreconditionError("a split loss, and no communicator");
  const bool forward = k.kind == KernelKind::CrossEntropy;
  const TensorView &logits = in[0], &labels = in[1];
  const int64_t ignore = AttrOf(k, "ignore_index");
  const int64_t reduction = AttrOf(k, "reduction"); // 0 mean, 1 sum, 2 none
  const int64_t vocabGroup = AttrOf(k, "vocab_group");
  const uint32_t group = groupHandle_[vocabGroup];
  if (logits.rank() < 1 ||
      labels.numel() * logits.shape.back() != logits.numel())
    return absl::InvalidArgumentError(
        absl::StrCat("a vocab-split loss of logits ", logits.ToString(),
                     " and labels ", labels.ToString()));
  const int64_t classes = logits.shape.back(), rows = labels.numel();
  const int64_t first = groupIndex_[vocabGroup] * classes;
  const int64_t total =
      classes * int64_t(program_.GroupRanks(vocabGroup, Rank()).size());

  // The rows' max and sum of exponentials over the whole vocabulary.
  std::vector<float> max(rows, -std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < classes; ++c)
      max[r] =
          std::max(max[r], static_cast<float>(LoadF(logits, r * classes + c)));
  TensorView rowView{max.data(), DType::F32, {rows}};
  VEOMNI_RETURN_IF_ERROR(
      comm_->AllReduce(group, rowView, rowView, ReduceOp::Max));
  std::vector<float> sum(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t c = 0; c < classes; ++c)
      s += std::exp(LoadF(logits, r * classes + c) - max[r]);
    sum[r] = static_cast<float>(s);
  }
  rowView.data = sum.data();
  VEOMNI_RETURN_IF_ERROR(
      comm_->AllReduce(group, rowView, rowView, ReduceOp::Sum));
  // Each label once over the whole vocabulary; on this rank, or not.
  auto local = [&](int64_t r) -> int64_t {
    int64_t y = LoadI(labels, r);
    return y >= first && y < first + classes ? y - first : -1;
  };
  for (int64_t r = 0; r < rows; ++r)
    if (int64_t y = LoadI(labels, r); y != ignore && (y < 0 || y >= total))
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " lies outside the vocabulary of ", total));
  // A mean divides by the labels that count, over the token group too.
  double scale = 1;
  if (reduction == 0) {
    VEOMNI_ASSIGN_OR_RETURN(
        int64_t count,
        CountLabels(k.ins[1], labels, ignore, AttrOf(k, "token_group")));
    scale = count > 0 ? 1.0 / double(count) : 0.0;
  }

  if (forward) {
    std::vector<float> target(rows, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      if (int64_t c = local(r); c >= 0)
        target[r] = static_cast<float>(LoadF(logits, r * classes + c));
    rowView.data = target.data();
    VEOMNI_RETURN_IF_ERROR(
        comm_->AllReduce(group, rowView, rowView, ReduceOp::Sum));
    double total = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double loss = LoadI(labels, r) == ignore
                        ? 0.0
                        : std::log(double(sum[r])) + max[r] - target[r];
      if (reduction == 2)
        StoreF(out[0], r, static_cast<float>(loss));
      total += loss;
    }
    if (reduction != 2)
      StoreF(out[0], 0, static_cast<float>(total * scale));
    return absl::OkStatus();
  }
  // dlogits = (softmax - one-hot) x dloss, on this rank's classes.
  const TensorView &dloss = in[2];
  for (int64_t r = 0; r < rows; ++r) {
    const bool ignored = LoadI(labels, r) == ignore;
    const double g =
        ignored ? 0.0
                : (reduction == 2 ? LoadF(dloss, r) : LoadF(dloss, 0)) * scale;
    const int64_t y = local(r);
    for (int64_t c = 0; c < classes; ++c) {
      double p = std::exp(LoadF(logits, r * classes + c) - max[r]) / sum[r];
      StoreF(out[0], r * classes + c,
             static_cast<float>((p - (c == y ? 1.0 : 0.0)) * g));
    }
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
