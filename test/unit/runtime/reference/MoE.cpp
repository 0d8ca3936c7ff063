//===- MoE.cpp - reference MoE router, dispatch and combine ---------------===//
//
// Token by token, for the tests.
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
// Mixture of experts
//===----------------------------------------------------------------------===//

absl::Status MoETopK(const TensorView &logits, const TensorView &weights,
                     const TensorView &indices, int64_t k, bool normalize) {
  const char *kName = "MoETopK";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "logits", logits, 2));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return BadView(kName, "logits", logits, "k = ", k, " must be in [1, ",
                   experts, "]");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weights", weights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, {tokens, k}));

  std::vector<float> prob(experts);
  std::vector<bool> taken(experts);
  std::vector<int64_t> chosen(k);
  for (int64_t t = 0; t < tokens; ++t) {
    double chosenSum = MoETopKRow(logits, t, k, prob, taken, chosen);
    for (int64_t j = 0; j < k; ++j) {
      double w = prob[chosen[j]];
      if (normalize)
        w /= chosenSum;
      StoreF(weights, t * k + j, static_cast<float>(w));
      StoreI(indices, t * k + j, chosen[j]);
    }
  }
  return absl::OkStatus();
}

absl::Status MoEDispatch(const TensorView &input, const TensorView &indices,
                         const TensorView &out, const TensorView &groupSizes,
                         int64_t numExperts) {
  const char *kName = "MoEDispatch";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "indices", indices, 2));
  int64_t tokens = input.dim(0), hidden = input.dim(1), k = indices.dim(1);
  if (indices.dim(0) != tokens)
    return BadView(kName, "indices", indices, "must have the ", tokens,
                   " tokens of input ", input.ToString());
  if (numExperts < 1)
    return BadView(kName, "groupSizes", groupSizes,
                   "numExperts must be >= 1, got ", numExperts);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "groupSizes", groupSizes, {numExperts}));
  VEOMNI_RETURN_IF_ERROR(CheckIndices(kName, indices, numExperts));

  // Expert by expert, the (token, slot) pairs in order: a stable sort.
  int64_t row = 0;
  for (int64_t e = 0; e < numExperts; ++e) {
    int64_t count = 0;
    for (int64_t p = 0; p < tokens * k; ++p) {
      if (LoadI(indices, p) != e)
        continue;
      int64_t token = p / k;
      for (int64_t x = 0; x < hidden; ++x)
        StoreF(out, row * hidden + x, LoadF(input, token * hidden + x));
      ++row;
      ++count;
    }
    StoreI(groupSizes, e, count);
  }
  return absl::OkStatus();
}

absl::Status MoECombine(const TensorView &input, const TensorView &weights,
                        const TensorView &indices, const TensorView &out) {
  const char *kName = "MoECombine";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weights", weights, 2));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {tokens, hidden}));
  // No expert count here: ids only order the rows, but negative ones cannot
  // come from a dispatch.
  for (int64_t p = 0; p < tokens * k; ++p)
    if (LoadI(indices, p) < 0)
      return BadView(kName, "indices", indices, "element ", p, " = ",
                     LoadI(indices, p), " is negative");

  // rowOf[p]: where MoEDispatch put pair p = t*k+j (stable sort by expert).
  std::vector<int64_t> order(tokens * k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return LoadI(indices, a) < LoadI(indices, b);
  });
  std::vector<int64_t> rowOf(tokens * k);
  for (int64_t r = 0; r < tokens * k; ++r)
    rowOf[order[r]] = r;

  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t x = 0; x < hidden; ++x) {
      double sum = 0;
      for (int64_t j = 0; j < k; ++j)
        sum += static_cast<double>(LoadF(weights, t * k + j)) *
               LoadF(input, rowOf[t * k + j] * hidden + x);
      StoreF(out, t * hidden + x, static_cast<float>(sum));
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoETopKGrad
//===----------------------------------------------------------------------===//

absl::Status MoETopKGrad(const TensorView &logits, const TensorView &dweights,
                         const TensorView &dlogits, int64_t k, bool normalize) {
  const char *kName = "MoETopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "logits", logits, 2));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return BadView(kName, "logits", logits, "k = ", k, " must be in [1, ",
                   experts, "]");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweights", dweights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dlogits", dlogits, logits.shape));

  std::vector<float> prob(experts);
  std::vector<bool> taken(experts);
  std::vector<int64_t> chosen(k);
  std::vector<double> dp(experts);
  for (int64_t t = 0; t < tokens; ++t) {
    // Softmax and selection exactly as ref::MoETopK.
    double chosenSum = MoETopKRow(logits, t, k, prob, taken, chosen);

    // dL/dp_i = sum_j g_j dw_j/dp_i, with w_j = p_{c_j} (/ Z, Z = the sum
    // of the chosen p): dw_j/dp_i = [i = c_j] / Z - p_{c_j} [i chosen] / Z^2.
    std::fill(dp.begin(), dp.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      double g = LoadF(dweights, t * k + j);
      for (int64_t i = 0; i < experts; ++i) {
        double dw;
        if (normalize)
          dw = (i == chosen[j] ? 1.0 / chosenSum : 0.0) -
               (taken[i] ? prob[chosen[j]] / (chosenSum * chosenSum) : 0.0);
        else
          dw = i == chosen[j] ? 1.0 : 0.0;
        dp[i] += g * dw;
      }
    }
    // Through the softmax: dx_l = sum_i dp_i p_i ([i = l] - p_l).
    for (int64_t l = 0; l < experts; ++l) {
      double dx = 0;
      for (int64_t i = 0; i < experts; ++i)
        dx += dp[i] * prob[i] * ((i == l ? 1.0 : 0.0) - prob[l]);
      StoreF(dlogits, t * experts + l, static_cast<float>(dx));
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoECombineGrad
//===----------------------------------------------------------------------===//

absl::Status MoECombineGrad(const TensorView &input, const TensorView &weights,
                            const TensorView &indices, const TensorView &dout,
                            const TensorView &dinput,
                            const TensorView &dweights) {
  const char *kName = "MoECombineGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weights", weights, 2));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dout", dout, {tokens, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dinput", dinput, input.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "dweights", dweights, weights.shape));
  for (int64_t p = 0; p < tokens * k; ++p)
    if (LoadI(indices, p) < 0)
      return BadView(kName, "indices", indices, "element ", p, " = ",
                     LoadI(indices, p), " is negative");

  // rowOf[p]: where MoEDispatch put pair p = t*k+j (stable sort by expert).
  std::vector<int64_t> order(tokens * k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return LoadI(indices, a) < LoadI(indices, b);
  });
  std::vector<int64_t> rowOf(tokens * k);
  for (int64_t r = 0; r < tokens * k; ++r)
    rowOf[order[r]] = r;

  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = rowOf[t * k + j];
      double w = LoadF(weights, t * k + j), dot = 0;
      for (int64_t x = 0; x < hidden; ++x) {
        double g = LoadF(dout, t * hidden + x);
        StoreF(dinput, r * hidden + x, static_cast<float>(w * g));
        dot += g * LoadF(input, r * hidden + x);
      }
      StoreF(dweights, t * k + j, static_cast<float>(dot));
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoEGroupTopK and its VJP
//===----------------------------------------------------------------------===//

namespace {
/// Token t's chosen experts, best first: k rounds of "the best eligible
/// not yet taken" on scores + bias, after topkGroups rounds of "the best
/// group not yet taken" on each group's two best choices summed.
absl::StatusOr<std::vector<int64_t>>
GroupChoice(const char *kName, const TensorView &scores, const TensorView &bias,
            int64_t t, int64_t k, int64_t groups, int64_t topkGroups) {
  int64_t experts = scores.dim(1);
  if (groups < 1 || experts % groups || topkGroups < 1 || topkGroups > groups ||
      k < 1 || k > topkGroups * (experts / groups))
    return absl::InvalidArgumentError(
        absl::StrCat(kName, ": bad k, groups or topk_groups"));
  std::vector<float> c(experts);
  for (int64_t i = 0; i < experts; ++i) {
    c[i] = static_cast<float>(LoadF(scores, t * experts + i)) +
           static_cast<float>(LoadF(bias, i));
    if (std::isnan(c[i]))
      c[i] = -std::numeric_limits<float>::infinity();
  }
  int64_t per = experts / groups;
  std::vector<bool> eligible(experts, groups == 1);
  if (groups > 1) {
    std::vector<float> score(groups);
    for (int64_t g = 0; g < groups; ++g) {
      std::vector<float> members(c.begin() + g * per,
                                 c.begin() + (g + 1) * per);
      std::sort(members.begin(), members.end(), std::greater<float>());
      score[g] = per > 1 ? members[0] + members[1] : members[0];
    }
    std::vector<bool> kept(groups, false);
    for (int64_t round = 0; round < topkGroups; ++round) {
      int64_t best = -1;
      for (int64_t g = 0; g < groups; ++g)
        if (!kept[g] && (best < 0 || score[g] > score[best]))
          best = g;
      kept[best] = true;
      for (int64_t i = best * per; i < (best + 1) * per; ++i)
        eligible[i] = true;
    }
  }
  std::vector<int64_t> chosen;
  std::vector<bool> taken(experts, false);
  for (int64_t round = 0; round < k; ++round) {
    int64_t best = -1;
    for (int64_t i = 0; i < experts; ++i)
      if (eligible[i] && !taken[i] && (best < 0 || c[i] > c[best]))
        best = i;
    taken[best] = true;
    chosen.push_back(best);
  }
  return chosen;
}
} // namespace

absl::Status MoEGroupTopK(const TensorView &scores, const TensorView &bias,
                          const TensorView &weights, const TensorView &indices,
                          int64_t k, int64_t groups, int64_t topkGroups,
                          bool normalize, double scale) {
  const char *kName = "MoEGroupTopK";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "scores", scores));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", bias));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  if (scores.rank() != 2)
    return BadView(kName, "scores", scores, "must have rank 2");
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", bias, {experts}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weights", weights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, {tokens, k}));
  for (int64_t t = 0; t < tokens; ++t) {
    VEOMNI_ASSIGN_OR_RETURN(
        std::vector<int64_t> chosen,
        GroupChoice(kName, scores, bias, t, k, groups, topkGroups));
    double sum = 1e-20;
    for (int64_t e : chosen)
      sum += static_cast<float>(LoadF(scores, t * experts + e));
    for (int64_t j = 0; j < k; ++j) {
      double s = static_cast<float>(LoadF(scores, t * experts + chosen[j]));
      StoreF(weights, t * k + j,
             static_cast<float>((normalize ? s / sum : s) * scale));
      StoreI(indices, t * k + j, chosen[j]);
    }
  }
  return absl::OkStatus();
}

absl::Status MoEGroupTopKGrad(const TensorView &scores, const TensorView &bias,
                              const TensorView &dweights,
                              const TensorView &dscores, int64_t k,
                              int64_t groups, int64_t topkGroups,
                              bool normalize, double scale) {
  const char *kName = "MoEGroupTopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "scores", scores));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", bias));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dscores", dscores));
  if (scores.rank() != 2)
    return BadView(kName, "scores", scores, "must have rank 2");
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", bias, {experts}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweights", dweights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dscores", dscores, scores.shape));
  for (int64_t t = 0; t < tokens; ++t) {
    VEOMNI_ASSIGN_OR_RETURN(
        std::vector<int64_t> chosen,
        GroupChoice(kName, scores, bias, t, k, groups, topkGroups));
    std::vector<double> d(experts, 0.0);
    double sum = 1e-20, dot = 0;
    for (int64_t j = 0; j < k; ++j) {
      double s = static_cast<float>(LoadF(scores, t * experts + chosen[j]));
      sum += s;
      dot += LoadF(dweights, t * k + j) * s;
    }
    for (int64_t j = 0; j < k; ++j) {
      double g = LoadF(dweights, t * k + j);
      d[chosen[j]] =
          normalize ? scale * (g / sum - dot / (sum * sum)) : scale * g;
    }
    for (int64_t i = 0; i < experts; ++i)
      StoreF(dscores, t * experts + i, static_cast<float>(d[i]));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
