//===- ReferenceGradients.cpp - naive reference gradient kernels ----------===//
//
// The oracle for the gradient kernels of Gradients.cpp, in the style of
// Reference.cpp: each kernel is an obvious loop nest over its definition
// (see Kernels.h), every element goes through LoadF/StoreF/LoadI, and sums
// are accumulated in double. Every kernel checks everything it relies on
// before it writes: an invalid call returns InvalidArgument and leaves its
// outputs untouched.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/ReferenceUtil.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace veomni::rt::cpu::ref {
using namespace detail;

//===----------------------------------------------------------------------===//
// RopeInverse
//===----------------------------------------------------------------------===//

absl::Status RopeInverse(const TensorView &dy, const TensorView &positions,
                         const TensorView &dx, const RopeConfig &attrs) {
  const char *kName = "RopeInverse";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "dy", dy, 4));
  if (dy.dim(3) % 2 != 0)
    return Invalid(kName, "dy", dy, "must have an even head dimension");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, dy.shape));
  std::vector<int64_t> section;
  std::vector<float> freq;
  VEOMNI_RETURN_IF_ERROR(
      RopeTables(kName, "dy", dy, positions, attrs, section, freq));

  // Frequencies and angles as ref::Rope computes them.
  ForEachRopePair(dy, positions, attrs, section, freq,
                  [&](int64_t i1, int64_t i2, double c, double sn) {
                    // Rope maps (x1, x2) to (x1 c - x2 sn, x2 c + x1 sn); this
                    // is the transpose of that 2x2 matrix.
                    double g1 = LoadF(dy, i1), g2 = LoadF(dy, i2);
                    StoreF(dx, i1, static_cast<float>(g1 * c + g2 * sn));
                    StoreF(dx, i2, static_cast<float>(g2 * c - g1 * sn));
                  });
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// RmsNormGrad
//===----------------------------------------------------------------------===//

absl::Status RmsNormGrad(const TensorView &x, const TensorView &weight,
                         const TensorView &dy, const TensorView &dx,
                         const TensorView &dweight, double epsilon) {
  const char *kName = "RmsNormGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  if (x.rank() < 1)
    return Invalid(kName, "x", x, "must have rank >= 1");
  int64_t d = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight, {d}));

  int64_t rows = d == 0 ? 0 : x.numel() / d;
  std::vector<double> dw(d, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    // r exactly as ref::RmsNorm computes it: f32 mean, f32 rsqrt.
    double sumSquares = 0;
    for (int64_t i = 0; i < d; ++i) {
      double xi = LoadF(x, r * d + i);
      sumSquares += xi * xi;
    }
    float variance = static_cast<float>(sumSquares / static_cast<double>(d));
    float scale = static_cast<float>(
        1.0 /
        std::sqrt(static_cast<double>(variance + static_cast<float>(epsilon))));
    double dot = 0; // sum of dn * x
    for (int64_t i = 0; i < d; ++i) {
      float xi = LoadF(x, r * d + i);
      double g = LoadF(dy, r * d + i);
      // dweight sees the normalised value as RmsNorm computes it in f32,
      // before the rounding to x's type (treated as the identity).
      float normalized = xi * scale;
      dw[i] += g * normalized;
      dot += g * LoadF(weight, i) * xi;
    }
    double s = scale;
    double coef = s * s * s * dot / static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) {
      double dn = static_cast<double>(LoadF(dy, r * d + i)) * LoadF(weight, i);
      double xi = LoadF(x, r * d + i);
      StoreF(dx, r * d + i, static_cast<float>(s * dn - xi * coef));
    }
  }
  for (int64_t i = 0; i < d; ++i)
    StoreF(dweight, i, static_cast<float>(dw[i]));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// AttentionGrad
//===----------------------------------------------------------------------===//

absl::Status AttentionGrad(const TensorView &q, const TensorView &k,
                           const TensorView &v, const TensorView *segments,
                           const TensorView &dout, const TensorView &dq,
                           const TensorView &dk, const TensorView &dv,
                           bool causal, double scale) {
  const char *kName = "AttentionGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dq", dq));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dk", dk));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dv", dv));
  VEOMNI_RETURN_IF_ERROR(CheckAttention(kName, q, k, v, segments, causal));
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
      gv(v.numel(), 0.0);
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
          visible[j] = !(causal && j > i) &&
                       !(segments && LoadI(*segments, b * seq + i) !=
                                         LoadI(*segments, b * seq + j));
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
        double denominator = 0;
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
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// CrossEntropyGrad
//===----------------------------------------------------------------------===//

absl::Status CrossEntropyGrad(const TensorView &logits,
                              const TensorView &labels, const TensorView &dloss,
                              const TensorView &dlogits, int64_t ignoreIndex,
                              LossReduction reduction) {
  const char *kName = "CrossEntropyGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "dloss", dloss));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dlogits", dlogits));
  if (dloss.dtype != DType::F32)
    return Invalid(kName, "dloss", dloss, "must be f32");
  if (logits.rank() < 1)
    return Invalid(kName, "logits", logits, "must have rank >= 1");
  int64_t vocab = logits.dim(logits.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "labels", labels,
                 absl::MakeSpan(logits.shape).subspan(0, logits.rank() - 1)));
  switch (reduction) {
  case LossReduction::None:
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dloss", dloss, labels.shape));
    break;
  case LossReduction::Mean:
  case LossReduction::Sum:
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dloss", dloss, {}));
    break;
  default:
    return Invalid(kName, "dloss", dloss, "has an unknown reduction ",
                   static_cast<int>(reduction));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dlogits", dlogits, logits.shape));
  int64_t rows = labels.numel();
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= vocab)
      return Invalid(kName, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
    ++counted;
  }

  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label == ignoreIndex) {
      for (int64_t i = 0; i < vocab; ++i)
        StoreF(dlogits, r * vocab + i, 0.0f);
      continue;
    }
    // The upstream gradient of this row's loss.
    double g = reduction == LossReduction::None ? LoadF(dloss, r)
               : reduction == LossReduction::Sum
                   ? LoadF(dloss, 0)
                   : LoadF(dloss, 0) / static_cast<double>(counted);
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < vocab; ++i)
      max = std::max<double>(max, LoadF(logits, r * vocab + i));
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i)
      sum += std::exp(LoadF(logits, r * vocab + i) - max);
    for (int64_t i = 0; i < vocab; ++i) {
      double p = std::exp(LoadF(logits, r * vocab + i) - max) / sum;
      StoreF(dlogits, r * vocab + i,
             static_cast<float>((p - (i == label ? 1.0 : 0.0)) * g));
    }
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
