//===- MoE.cpp - router top-k, dispatch and combine, forward and backward -===//
//
// MoETopKGrad and MoECombineGrad recompute the selection and the row
// order exactly as their forward kernels do (MoEUtil.h).
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

absl::Status CheckMoETopK(const TensorView &logits, const TensorView &weights,
                          const TensorView &indices, int64_t k) {
  constexpr absl::string_view K = "MoETopK";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "logits", logits, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weights", weights, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "indices", indices, 2));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", indices));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return BadView(K, "logits", logits, "cannot give the top ", k,
                   " of its experts");
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weights", weights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "indices", indices, {tokens, k}));
  return absl::OkStatus();
}

absl::Status MoETopK(const TensorView &logits, const TensorView &weights,
                     const TensorView &indices, int64_t k, bool normalize) {
  VEOMNI_RETURN_IF_ERROR(CheckMoETopK(logits, weights, indices, k));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);

  std::vector<float> x(experts), p(experts), w(k);
  std::vector<double> e(experts);
  std::vector<int64_t> order(experts);
  // NaN sorts last; otherwise larger first, lower expert first on ties.
  auto key = [&](int64_t i) {
    return std::isnan(p[i]) ? -std::numeric_limits<float>::infinity() : p[i];
  };
  auto before = [&](int64_t a, int64_t b) {
    float ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  };
  for (int64_t t = 0; t < tokens; ++t) {
    LoadF32(logits, t * experts, experts, x.data());
    // The ranking, ties included, is decided on these f32 probabilities, so
    // they are computed in f64 and rounded once: correctly rounded in all
    // but pathological cases, hence the same in any careful implementation.
    double mx = -std::numeric_limits<double>::infinity();
    for (float v : x)
      mx = std::max<double>(mx, v);
    double sum = 0;
    for (int64_t i = 0; i < experts; ++i) {
      e[i] = std::exp(static_cast<double>(x[i]) - mx);
      sum += e[i];
    }
    for (int64_t i = 0; i < experts; ++i)
      p[i] = static_cast<float>(e[i] / sum);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
    double chosen = 0;
    for (int64_t j = 0; j < k; ++j)
      chosen += p[order[j]];
    for (int64_t j = 0; j < k; ++j)
      w[j] = normalize ? static_cast<float>(p[order[j]] / chosen) : p[order[j]];
    StoreF32(w.data(), weights, t * k, k);
    for (int64_t j = 0; j < k; ++j)
      StoreI(indices, t * k + j, order[j]);
  }
  return absl::OkStatus();
}

absl::Status CheckMoEDispatch(const TensorView &input,
                              const TensorView &indices, const TensorView &out,
                              const TensorView &groupSizes,
                              int64_t numExperts) {
  constexpr absl::string_view K = "MoEDispatch";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "indices", indices, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "groupSizes", groupSizes));
  int64_t tokens = input.dim(0), hidden = input.dim(1), k = indices.dim(1);
  if (indices.dim(0) != tokens)
    return BadView(K, "indices", indices,
                   "must have one row per token of input ", input.ToString());
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {tokens * k, hidden}));
  if (numExperts < 1)
    return Invalid(K, "numExperts must be >= 1, got ", numExperts);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "groupSizes", groupSizes, {numExperts}));
  return absl::OkStatus();
}

absl::Status MoEDispatch(const TensorView &input, const TensorView &indices,
                         const TensorView &out, const TensorView &groupSizes,
                         int64_t numExperts) {
  constexpr absl::string_view K = "MoEDispatch";
  VEOMNI_RETURN_IF_ERROR(
      CheckMoEDispatch(input, indices, out, groupSizes, numExperts));
  int64_t tokens = input.dim(0), hidden = input.dim(1), k = indices.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckIndices(K, "indices", indices, numExperts));

  std::vector<int64_t> counts;
  std::vector<int64_t> row = ExpertOrder(indices, numExperts, &counts);
  if (input.dtype == out.dtype) {
    size_t bytes = hidden * SizeOf(input.dtype);
    const char *src = static_cast<const char *>(input.data);
    char *dst = static_cast<char *>(out.data);
    for (int64_t i = 0; i < tokens * k; ++i)
      std::memcpy(dst + row[i] * bytes, src + (i / k) * bytes, bytes);
  } else {
    std::unique_ptr<float[]> buf = Scratch(hidden);
    for (int64_t i = 0; i < tokens * k; ++i) {
      LoadF32(input, (i / k) * hidden, hidden, buf.get());
      StoreF32(buf.get(), out, row[i] * hidden, hidden);
    }
  }
  for (int64_t e = 0; e < numExperts; ++e)
    StoreI(groupSizes, e, counts[e]);
  return absl::OkStatus();
}

absl::Status CheckMoECombine(const TensorView &input, const TensorView &weights,
                             const TensorView &indices, const TensorView &out) {
  constexpr absl::string_view K = "MoECombine";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weights", weights, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "indices", indices, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 2));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", indices));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {tokens, hidden}));
  return absl::OkStatus();
}

absl::Status MoECombine(const TensorView &input, const TensorView &weights,
                        const TensorView &indices, const TensorView &out) {
  constexpr absl::string_view K = "MoECombine";
  VEOMNI_RETURN_IF_ERROR(CheckMoECombine(input, weights, indices, out));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(
      CheckIndices(K, "indices", indices, std::numeric_limits<int64_t>::max()));
  std::vector<int64_t> row = CombineOrder(indices);

  std::vector<float> acc(hidden), x(hidden), w(k);
  for (int64_t t = 0; t < tokens; ++t) {
    LoadF32(weights, t * k, k, w.data());
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      LoadF32(input, row[t * k + j] * hidden, hidden, x.data());
      for (int64_t i = 0; i < hidden; ++i)
        acc[i] += w[j] * x[i];
    }
    StoreF32(acc.data(), out, t * hidden, hidden);
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoETopKGrad
//===----------------------------------------------------------------------===//

absl::Status CheckMoETopKGrad(const TensorView &logits,
                              const TensorView &dweights,
                              const TensorView &dlogits, int64_t k) {
  constexpr absl::string_view K = "MoETopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "logits", logits, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dweights", dweights, 2));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dlogits", dlogits));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return BadView(K, "logits", logits, "cannot give the top ", k,
                   " of its experts");
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweights", dweights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dlogits", dlogits, logits.shape));
  return absl::OkStatus();
}

absl::Status MoETopKGrad(const TensorView &logits, const TensorView &dweights,
                         const TensorView &dlogits, int64_t k, bool normalize) {
  constexpr absl::string_view K = "MoETopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckMoETopKGrad(logits, dweights, dlogits, k));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (tokens == 0)
    return absl::OkStatus();

  auto run = [&](int64_t t0, int64_t t1) {
    std::vector<float> p(experts), g(k);
    std::vector<double> e(experts);
    std::vector<int64_t> order(experts);
    RowReader xs(logits, experts);
    RowWriter writer(dlogits, experts);
    // The ranking of MoETopK: NaN last, larger first, lower expert on ties.
    auto key = [&](int64_t i) {
      return std::isnan(p[i]) ? -std::numeric_limits<float>::infinity() : p[i];
    };
    auto before = [&](int64_t a, int64_t b) {
      float ka = key(a), kb = key(b);
      return ka > kb || (ka == kb && a < b);
    };
    for (int64_t t = t0; t < t1; ++t) {
      const float *x = xs.Row(t);
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < experts; ++i)
        mx = std::max<double>(mx, x[i]);
      double sum = 0;
      for (int64_t i = 0; i < experts; ++i) {
        e[i] = std::exp(static_cast<double>(x[i]) - mx);
        sum += e[i];
      }
      for (int64_t i = 0; i < experts; ++i)
        p[i] = static_cast<float>(e[i] / sum);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      LoadF32(dweights, t * k, k, g.data());
      float *out = writer.Row(t);
      std::fill_n(out, experts, 0.0f);
      if (normalize) {
        // w = softmax over the chosen logits: dx_S = w (g - <g, w>).
        double chosen = 0;
        for (int64_t j = 0; j < k; ++j)
          chosen += p[order[j]];
        double dot = 0;
        for (int64_t j = 0; j < k; ++j)
          dot += static_cast<double>(g[j]) * (p[order[j]] / chosen);
        for (int64_t j = 0; j < k; ++j)
          out[order[j]] =
              static_cast<float>(p[order[j]] / chosen * (g[j] - dot));
      } else {
        // dx = p (c - <c, p>), c = g at the chosen experts, 0 elsewhere.
        double dot = 0;
        for (int64_t j = 0; j < k; ++j)
          dot += static_cast<double>(g[j]) * p[order[j]];
        for (int64_t i = 0; i < experts; ++i)
          out[i] = static_cast<float>(-p[i] * dot);
        for (int64_t j = 0; j < k; ++j)
          out[order[j]] = static_cast<float>(p[order[j]] * (g[j] - dot));
      }
      writer.Done();
    }
  };
  ParallelFor(tokens, 30.0 * static_cast<double>(tokens) * experts, run);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoECombineGrad
//===----------------------------------------------------------------------===//

absl::Status
CheckMoECombineGrad(const TensorView &input, const TensorView &weights,
                    const TensorView &indices, const TensorView &dout,
                    const TensorView &dinput, const TensorView &dweights) {
  constexpr absl::string_view K = "MoECombineGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weights", weights, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "indices", indices, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 2));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweights", dweights));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dout", dout, {tokens, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dinput", dinput, input.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweights", dweights, weights.shape));
  return absl::OkStatus();
}

absl::Status MoECombineGrad(const TensorView &input, const TensorView &weights,
                            const TensorView &indices, const TensorView &dout,
                            const TensorView &dinput,
                            const TensorView &dweights) {
  constexpr absl::string_view K = "MoECombineGrad";
  VEOMNI_RETURN_IF_ERROR(
      CheckMoECombineGrad(input, weights, indices, dout, dinput, dweights));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(
      CheckIndices(K, "indices", indices, std::numeric_limits<int64_t>::max()));
  if (tokens * k == 0)
    return absl::OkStatus();
  const std::vector<int64_t> row = CombineOrder(indices);

  auto run = [&](int64_t t0, int64_t t1) {
    RowReader gs(dout, hidden), xs(input, hidden);
    std::unique_ptr<float[]> g = Scratch(hidden), prod = Scratch(hidden);
    std::vector<float> w(k), dw(k);
    for (int64_t t = t0; t < t1; ++t) {
      std::copy_n(gs.Row(t), hidden, g.get());
      LoadF32(weights, t * k, k, w.data());
      for (int64_t j = 0; j < k; ++j) {
        int64_t r = row[t * k + j];
        // Rows are distinct over (t, j): threads write disjoint rows.
        vec::Scale(g.get(), w[j], prod.get(), hidden);
        StoreF32(prod.get(), dinput, r * hidden, hidden);
        vec::Binary(BinaryKind::Mul, g.get(), xs.Row(r), prod.get(), hidden);
        dw[j] = static_cast<float>(vec::Sum(prod.get(), hidden));
      }
      StoreF32(dw.data(), dweights, t * k, k);
    }
  };
  ParallelFor(tokens, 4.0 * static_cast<double>(tokens) * k * hidden, run);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoEGroupTopK and its VJP (DeepSeek-V3's router)
//===----------------------------------------------------------------------===//

absl::Status CheckMoEGroupTopK(absl::string_view K, const TensorView &scores,
                               const TensorView &bias,
                               const TensorView *weights,
                               const TensorView *indices,
                               const TensorView *dweights,
                               const TensorView *dscores, int64_t k,
                               int64_t groups, int64_t topkGroups) {
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "scores", scores, 2));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "scores", scores));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "bias", bias));
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "bias", bias, {experts}));
  if (groups < 1 || experts % groups != 0 || topkGroups < 1 ||
      topkGroups > groups)
    return BadView(K, "scores", scores, "cannot form ", groups,
                   " groups and keep ", topkGroups, " of them");
  if (k < 1 || k > topkGroups * (experts / groups))
    return BadView(K, "scores", scores, "cannot give the top ", k, " of the ",
                   topkGroups * (experts / groups), " experts of ", topkGroups,
                   " groups");
  if (weights) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weights", *weights));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weights", *weights, {tokens, k}));
  }
  if (indices) {
    VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", *indices));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "indices", *indices, {tokens, k}));
  }
  if (dweights) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweights", *dweights));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweights", *dweights, {tokens, k}));
  }
  if (dscores) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dscores", *dscores));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dscores", *dscores, scores.shape));
  }
  return absl::OkStatus();
}

void MoEGroupChoice(const float *s, const float *bias, int64_t experts,
                    int64_t k, int64_t groups, int64_t topkGroups,
                    std::vector<int64_t> &chosen) {
  const float kWorst = -std::numeric_limits<float>::infinity();
  std::vector<float> c(experts);
  for (int64_t i = 0; i < experts; ++i) {
    c[i] = s[i] + bias[i];
    if (std::isnan(c[i]))
      c[i] = kWorst; // NaN ranks last
  }
  // Larger first, the lower index on ties.
  auto better = [](float a, int64_t ia, float b, int64_t ib) {
    return a > b || (a == b && ia < ib);
  };
  const int64_t per = experts / groups;
  std::vector<char> eligible(experts, 1);
  if (groups > 1) {
    // A group's score: its two best choices (one, for groups of one).
    std::vector<float> score(groups);
    for (int64_t g = 0; g < groups; ++g) {
      float best = kWorst, second = kWorst;
      for (int64_t i = g * per; i < (g + 1) * per; ++i) {
        if (c[i] > best) {
          second = best;
          best = c[i];
        } else if (c[i] > second) {
          second = c[i];
        }
      }
      score[g] = per > 1 ? best + second : best;
    }
    std::vector<int64_t> order(groups);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(
        order.begin(), order.begin() + topkGroups, order.end(),
        [&](int64_t a, int64_t b) { return better(score[a], a, score[b], b); });
    std::fill(eligible.begin(), eligible.end(), 0);
    for (int64_t j = 0; j < topkGroups; ++j)
      std::fill_n(eligible.begin() + order[j] * per, per, 1);
  }
  std::vector<int64_t> order;
  for (int64_t i = 0; i < experts; ++i)
    if (eligible[i])
      order.push_back(i);
  std::partial_sort(
      order.begin(), order.begin() + k, order.end(),
      [&](int64_t a, int64_t b) { return better(c[a], a, c[b], b); });
  chosen.assign(order.begin(), order.begin() + k);
}

absl::Status MoEGroupTopK(const TensorView &scores, const TensorView &bias,
                          const TensorView &weights, const TensorView &indices,
                          int64_t k, int64_t groups, int64_t topkGroups,
                          bool normalize, double scale) {
  constexpr absl::string_view K = "MoEGroupTopK";
  VEOMNI_RETURN_IF_ERROR(CheckMoEGroupTopK(K, scores, bias, &weights, &indices,
                                           nullptr, nullptr, k, groups,
                                           topkGroups));
  const int64_t tokens = scores.dim(0), experts = scores.dim(1);
  std::vector<float> s(experts), b(experts), w(k);
  std::vector<int64_t> chosen;
  LoadF32(bias, 0, experts, b.data());
  for (int64_t t = 0; t < tokens; ++t) {
    LoadF32(scores, t * experts, experts, s.data());
    MoEGroupChoice(s.data(), b.data(), experts, k, groups, topkGroups, chosen);
    double sum = 1e-20;
    for (int64_t j = 0; j < k; ++j)
      sum += s[chosen[j]];
    for (int64_t j = 0; j < k; ++j)
      w[j] = static_cast<float>(
          (normalize ? s[chosen[j]] / sum : s[chosen[j]]) * scale);
    StoreF32(w.data(), weights, t * k, k);
    for (int64_t j = 0; j < k; ++j)
      StoreI(indices, t * k + j, chosen[j]);
  }
  return absl::OkStatus();
}

absl::Status MoEGroupTopKGrad(const TensorView &scores, const TensorView &bias,
                              const TensorView &dweights,
                              const TensorView &dscores, int64_t k,
                              int64_t groups, int64_t topkGroups,
                              bool normalize, double scale) {
  constexpr absl::string_view K = "MoEGroupTopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckMoEGroupTopK(K, scores, bias, nullptr, nullptr,
                                           &dweights, &dscores, k, groups,
                                           topkGroups));
  const int64_t tokens = scores.dim(0), experts = scores.dim(1);
  std::vector<float> s(experts), b(experts), g(k), d(experts);
  std::vector<int64_t> chosen;
  LoadF32(bias, 0, experts, b.data());
  for (int64_t t = 0; t < tokens; ++t) {
    LoadF32(scores, t * experts, experts, s.data());
    LoadF32(dweights, t * k, k, g.data());
    MoEGroupChoice(s.data(), b.data(), experts, k, groups, topkGroups, chosen);
    std::fill(d.begin(), d.end(), 0.0f);
    if (normalize) {
      // w_j = scale s_j / D, D = sum s + 1e-20: ds_j = scale (g_j / D -
      // <g, s> / D^2).
      double sum = 1e-20, dot = 0;
      for (int64_t j = 0; j < k; ++j) {
        sum += s[chosen[j]];
        dot += static_cast<double>(g[j]) * s[chosen[j]];
      }
      for (int64_t j = 0; j < k; ++j)
        d[chosen[j]] =
            static_cast<float>(scale * (g[j] / sum - dot / (sum * sum)));
    } else {
      for (int64_t j = 0; j < k; ++j)
        d[chosen[j]] = static_cast<float>(scale * g[j]);
    }
    StoreF32(d.data(), dscores, t * experts, experts);
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
