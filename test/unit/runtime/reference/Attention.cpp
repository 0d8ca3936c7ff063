//===- Attention.cpp - reference softmax and attention --------------------===//
//
// Whole score matrices, no blocking, for the tests.
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

absl::Status Softmax(const TensorView &in, const TensorView &out, int64_t dim) {
  const char *kName = "Softmax";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (dim < 0 || dim >= in.rank())
    return BadView(kName, "in", in, "has no dimension ", dim);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  // View the tensor as [outer, size, inner] around `dim`.
  int64_t size = in.dim(dim);
  int64_t outer = Product(absl::MakeSpan(in.shape).subspan(0, dim));
  int64_t inner = Product(absl::MakeSpan(in.shape).subspan(dim + 1));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t n = 0; n < inner; ++n) {
      auto at = [&](int64_t i) { return (o * size + i) * inner + n; };
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < size; ++i)
        max = std::max<double>(max, LoadF(in, at(i)));
      double sum = 0;
      for (int64_t i = 0; i < size; ++i)
        sum += std::exp(LoadF(in, at(i)) - max);
      for (int64_t i = 0; i < size; ++i)
        StoreF(out, at(i),
               static_cast<float>(std::exp(LoadF(in, at(i)) - max) / sum));
    }
  }
  return absl::OkStatus();
}

absl::Status Attention(const TensorView &q, const TensorView &k,
                       const TensorView &v, const TensorView *segments,
                       const TensorView &out, bool causal, double scale,
                       int64_t window, const TensorView *sinks) {
  const char *kName = "Attention";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(
      CheckAttention(kName, q, k, v, segments, causal, window, sinks));
  int64_t batch = q.dim(0), seq = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t seqKv = k.dim(1), hkv = k.dim(2), dv = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {batch, seq, hq, dv}));

  int64_t group = hq / hkv;
  std::vector<double> score(seqKv);
  std::vector<bool> visible(seqKv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < seq; ++i) {
      for (int64_t h = 0; h < hq; ++h) {
        int64_t kvh = h / group;
        double max = -std::numeric_limits<double>::infinity();
        bool any = false;
        for (int64_t j = 0; j < seqKv; ++j) {
          visible[j] = AttentionVisible(segments, b, seq, i, j, causal, window);
          if (!visible[j])
            continue;
          double dot = 0;
          for (int64_t x = 0; x < d; ++x)
            dot += static_cast<double>(
                       LoadF(q, ((b * seq + i) * hq + h) * d + x)) *
                   LoadF(k, ((b * seqKv + j) * hkv + kvh) * d + x);
          score[j] = dot * scale;
          max = any ? std::max(max, score[j]) : score[j];
          any = true;
        }
        // A sink is one more logit, of a value of zero.
        double sink = sinks ? LoadF(*sinks, h) : 0.0;
        if (sinks && any)
          max = std::max(max, sink);
        double denominator = sinks && any ? std::exp(sink - max) : 0.0;
        for (int64_t j = 0; j < seqKv; ++j)
          if (visible[j])
            denominator += std::exp(score[j] - max);
        int64_t outBase = ((b * seq + i) * hq + h) * dv;
        for (int64_t y = 0; y < dv; ++y) {
          double sum = 0;
          for (int64_t j = 0; j < seqKv; ++j)
            if (visible[j])
              sum += std::exp(score[j] - max) *
                     LoadF(v, ((b * seqKv + j) * hkv + kvh) * dv + y);
          // A query that sees no key reads nothing: zero.
          StoreF(out, outBase + y,
                 any ? static_cast<float>(sum / denominator) : 0.0f);
        }
      }
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// AttentionGrad
//===----------------------------------------------------------------------===//

absl::Status AttentionGrad(const TensorView &q, const TensorView &k,
                           const TensorView &v, const TensorView *segments,
                           const TensorView &dout, const TensorView &dq,
                           const TensorView &dk, const TensorView &dv,
                           bool causal, double scale, int64_t window,
                           const TensorView *sinks, const TensorView *dsinks) {
  const char *kName = "AttentionGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dq", dq));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dk", dk));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dv", dv));
  VEOMNI_RETURN_IF_ERROR(
      CheckAttention(kName, q, k, v, segments, causal, window, sinks));
  if ((sinks != nullptr) != (dsinks != nullptr))
    return BadView(kName, "q", q, "needs sinks and their cotangent together");
  if (dsinks)
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dsinks", *dsinks, sinks->shape));
  int64_t batch = q.dim(0), seq = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t seqKv = k.dim(1), hkv = k.dim(2), dvh = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "dout", dout, {batch, seq, hq, dvh}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dq", dq, q.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dk", dk, k.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dv", dv, v.shape));

  auto qAt = [&](int64_t b, int64_t i, int64_t h, int64_t x) {
    return ((b * seq + i) * hq + h) * d + x;
  };
  auto kAt = [&](int64_t b, int64_t j, int64_t g, int64_t x) {
    return ((b * seqKv + j) * hkv + g) * d + x;
  };
  auto vAt = [&](int64_t b, int64_t j, int64_t g, int64_t y) {
    return ((b * seqKv + j) * hkv + g) * dvh + y;
  };
  auto oAt = [&](int64_t b, int64_t i, int64_t h, int64_t y) {
    return ((b * seq + i) * hq + h) * dvh + y;
  };

  std::vector<double> gq(q.numel(), 0.0), gk(k.numel(), 0.0),
      gv(v.numel(), 0.0), gs(hq, 0.0);
  int64_t group = hq / hkv;
  std::vector<double> score(seqKv), prob(seqKv), dprob(seqKv);
  std::vector<bool> visible(seqKv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < seq; ++i) {
      for (int64_t h = 0; h < hq; ++h) {
        int64_t g = h / group;
        // The forward's probabilities, as ref::Attention computes them.
        double max = -std::numeric_limits<double>::infinity();
        bool any = false;
        for (int64_t j = 0; j < seqKv; ++j) {
          visible[j] = AttentionVisible(segments, b, seq, i, j, causal, window);
          if (!visible[j])
            continue;
          double dot = 0;
          for (int64_t x = 0; x < d; ++x)
            dot += static_cast<double>(LoadF(q, qAt(b, i, h, x))) *
                   LoadF(k, kAt(b, j, g, x));
          score[j] = dot * scale;
          max = any ? std::max(max, score[j]) : score[j];
          any = true;
        }
        if (!any) // the output row is the constant 0: no gradient
          continue;
        double sink = sinks ? LoadF(*sinks, h) : 0.0;
        if (sinks)
          max = std::max(max, sink);
        double denominator = sinks ? std::exp(sink - max) : 0.0;
        for (int64_t j = 0; j < seqKv; ++j)
          if (visible[j])
            denominator += std::exp(score[j] - max);
        for (int64_t j = 0; j < seqKv; ++j)
          prob[j] = visible[j] ? std::exp(score[j] - max) / denominator : 0.0;

        // dV_j += P_ij dO_i; dP_ij = dO_i . V_j; delta = sum_j P_ij dP_ij.
        double delta = 0;
        for (int64_t j = 0; j < seqKv; ++j) {
          if (!visible[j])
            continue;
          double dp = 0;
          for (int64_t y = 0; y < dvh; ++y) {
            double go = LoadF(dout, oAt(b, i, h, y));
            gv[vAt(b, j, g, y)] += prob[j] * go;
            dp += go * LoadF(v, vAt(b, j, g, y));
          }
          dprob[j] = dp;
          delta += prob[j] * dp;
        }
        // The sink's probability times (0 - delta): its value is zero.
        if (sinks)
          gs[h] -= std::exp(sink - max) / denominator * delta;
        // dS_ij = P_ij (dP_ij - delta); dQ_i += scale dS_ij K_j;
        // dK_j += scale dS_ij Q_i.
        for (int64_t j = 0; j < seqKv; ++j) {
          if (!visible[j])
            continue;
          double dscore = prob[j] * (dprob[j] - delta) * scale;
          for (int64_t x = 0; x < d; ++x) {
            gq[qAt(b, i, h, x)] += dscore * LoadF(k, kAt(b, j, g, x));
            gk[kAt(b, j, g, x)] += dscore * LoadF(q, qAt(b, i, h, x));
          }
        }
      }
    }
  }
  for (int64_t i = 0; i < dq.numel(); ++i)
    StoreF(dq, i, static_cast<float>(gq[i]));
  for (int64_t i = 0; i < dk.numel(); ++i)
    StoreF(dk, i, static_cast<float>(gk[i]));
  for (int64_t i = 0; i < dv.numel(); ++i)
    StoreF(dv, i, static_cast<float>(gv[i]));
  if (dsinks)
    for (int64_t h = 0; h < hq; ++h)
      StoreF(*dsinks, h, static_cast<float>(gs[h]));
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
