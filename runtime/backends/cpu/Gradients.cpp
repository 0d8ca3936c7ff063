//===- Gradients.cpp - VJPs of rope, rms norm, attention and loss ---------===//
//
// The fast paths of the gradient kernels. They follow their forward kernels
// in Transformer.cpp: rows are brought to f32 (in place for f32 tensors,
// through a row buffer otherwise), computed with the VecMath loops, and
// rounded once on the way out; the row kernels split their rows over
// threads with ParallelFor. AttentionGrad recomputes the probabilities block
// by block, as Attention does, and does its five products per block with
// OpenBLAS GEMMs (threaded by OpenBLAS itself, so not by ParallelFor).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

} // namespace

//===----------------------------------------------------------------------===//
// RopeInverse
//===----------------------------------------------------------------------===//

absl::Status RopeInverse(const TensorView &dy, const TensorView &positions,
                         const TensorView &dx, const RopeConfig &attrs) {
  return RopeRotate</*kInverse=*/true>("RopeInverse", "dy", dy, positions, "dx",
                                       dx, attrs);
}

//===----------------------------------------------------------------------===//
// RmsNormGrad
//===----------------------------------------------------------------------===//

absl::Status RmsNormGrad(const TensorView &x, const TensorView &weight,
                         const TensorView &dy, const TensorView &dx,
                         const TensorView &dweight, double epsilon) {
  constexpr absl::string_view K = "RmsNormGrad";
  int64_t d = 0;
  VEOMNI_RETURN_IF_ERROR(CheckNormGrad(K, x, weight, dy, dx, dweight, d));
  if (d == 0)
    return absl::OkStatus();
  int64_t rows = x.numel() / d;

  F32Input w(weight);
  const float eps = static_cast<float>(epsilon);
  const float *wp = w.data();
  // dweight sums over rows in f64: each of `chunks` fixed row ranges into
  // its own partial sum, added up in order afterwards, so that the result
  // does not depend on how many threads ran.
  const int64_t chunks = std::min<int64_t>(rows, 32);
  std::vector<double> partial(chunks * d, 0.0);
  auto run = [&](int64_t c0, int64_t c1) {
    RowReader xs(x, d), dys(dy, d);
    RowWriter writer(dx, d);
    std::unique_ptr<float[]> n = Scratch(d), dn = Scratch(d);
    for (int64_t c = c0; c < c1; ++c) {
      double *dwSum = partial.data() + c * d;
      for (int64_t r = rows * c / chunks; r < rows * (c + 1) / chunks; ++r) {
        const float *xr = xs.Row(r);
        const float *g = dys.Row(r);
        float *out = writer.Row(r);
        // r exactly as RmsNorm computes it.
        float mean =
            static_cast<float>(vec::SumSquares(xr, d) / static_cast<double>(d));
        float scale = static_cast<float>(
            1.0 / std::sqrt(static_cast<double>(mean + eps)));
        // dweight takes the f32 normalised value before RmsNorm rounds it
        // to x's type: that rounding is treated as the identity
        // (straight-through), as autograd does for a dtype cast.
        vec::Scale(xr, scale, n.get(), d);
        vec::Binary(BinaryKind::Mul, g, n.get(), n.get(), d);
        for (int64_t i = 0; i < d; ++i)
          dwSum[i] += n[i];
        vec::Binary(BinaryKind::Mul, g, wp, dn.get(), d);
        // sum(dn * x): the f32 products summed in f64 over vector lanes.
        vec::Binary(BinaryKind::Mul, dn.get(), xr, n.get(), d);
        double dot = vec::Sum(n.get(), d);
        double s = scale;
        float coef =
            static_cast<float>(s * s * s * dot / static_cast<double>(d));
        for (int64_t i = 0; i < d; ++i)
          out[i] = scale * dn[i] - xr[i] * coef;
        writer.Done();
      }
    }
  };
  ParallelFor(chunks, 10.0 * static_cast<double>(rows) * d, run);
  std::unique_ptr<float[]> dw = Scratch(d);
  for (int64_t i = 0; i < d; ++i) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; ++c)
      sum += partial[c * d + i];
    dw[i] = static_cast<float>(sum);
  }
  StoreF32(dw.get(), dweight, 0, d);
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
  constexpr absl::string_view K = "AttentionGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "q", q, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "k", k, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "v", v, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dq", dq, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dk", dk, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dv", dv, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dq", dq));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dk", dk));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dv", dv));
  int64_t batch = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t skv = k.dim(1), hkv = k.dim(2), dvh = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "k", k, {batch, skv, hkv, d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "v", v, {batch, skv, hkv, dvh}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dout", dout, {batch, s, hq, dvh}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dq", dq, q.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dk", dk, k.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dv", dv, v.shape));
  if (hkv < 1 || hq % hkv != 0)
    return BadView(K, "k", k, "head count must divide that of q ",
                   q.ToString());
  if (causal && s != skv)
    return BadView(K, "k", k,
                   "causal attention needs the sequence length of q ",
                   q.ToString());
  if (segments) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, "segments", *segments));
    VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "segments", *segments));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "segments", *segments, {batch, s}));
    if (s != skv)
      return BadView(K, "k", k, "segments need the sequence length of q ",
                     q.ToString());
  }
  if (!FitsBlas(hq * std::max(d, dvh)) || !FitsBlas(hkv * std::max(d, dvh)) ||
      !FitsBlas(s) || !FitsBlas(skv))
    return BadView(K, "q", q, "exceeds the 32-bit BLAS interface");
  if (dq.numel() == 0 && dk.numel() == 0 && dv.numel() == 0)
    return absl::OkStatus();

  F32Input qf(q), kf(k), vf(v), dof(dout);
  F32Output dqf(dq), dkf(dk), dvf(dv);
  // dk and dv accumulate over query blocks and the heads of a group; keys
  // that no query sees keep 0.
  std::fill_n(dkf.data(), dk.numel(), 0.0f);
  std::fill_n(dvf.data(), dv.numel(), 0.0f);
  const int64_t group = hq / hkv;
  const int64_t ldq = hq * d, ldk = hkv * d, ldv = hkv * dvh, ldo = hq * dvh;
  // Query rows per block: the two score-sized blocks (P and dS) stay
  // within about what L2 holds next to the K and V panels.
  const int64_t bq = std::clamp<int64_t>(
      (int64_t{64} << 10) / std::max<int64_t>(skv, 1), 16, 256);
  std::unique_ptr<float[]> probs = Scratch(bq * std::max<int64_t>(skv, 1));
  std::unique_ptr<float[]> dscores = Scratch(bq * std::max<int64_t>(skv, 1));
  std::vector<int64_t> ends(bq);

  std::vector<int64_t> segFirst, segLast, seg;
  if (segments) {
    segFirst.resize(s);
    segLast.resize(s);
    seg.resize(s);
  }
  std::vector<int64_t> order(s);
  for (int64_t b = 0; b < batch; ++b) {
    if (segments) {
      // Each query's keys lie within [first, last] of its segment's
      // positions; a block needs only the union of those ranges.
      for (int64_t i = 0; i < s; ++i)
        seg[i] = IndexAt(*segments, b * s + i);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t x, int64_t y) { return seg[x] < seg[y]; });
      for (int64_t lo = 0; lo < s;) {
        int64_t hi = lo;
        while (hi < s && seg[order[hi]] == seg[order[lo]])
          ++hi;
        for (int64_t t = lo; t < hi; ++t) {
          segFirst[order[t]] = order[lo];
          segLast[order[t]] = order[hi - 1];
        }
        lo = hi;
      }
    }
    for (int64_t h = 0; h < hq; ++h) {
      int64_t g = h / group;
      const float *qh = qf.data() + b * s * ldq + h * d;
      const float *kg = kf.data() + b * skv * ldk + g * d;
      const float *vg = vf.data() + b * skv * ldv + g * dvh;
      const float *doh = dof.data() + b * s * ldo + h * dvh;
      float *dqh = dqf.data() + b * s * ldq + h * d;
      float *dkg = dkf.data() + b * skv * ldk + g * d;
      float *dvg = dvf.data() + b * skv * ldv + g * dvh;
      for (int64_t i0 = 0; i0 < s; i0 += bq) {
        int64_t i1 = std::min(s, i0 + bq), rows = i1 - i0;
        int64_t jlo = 0, jhi = causal ? std::min(skv, i1) : skv;
        if (segments) {
          int64_t lo = s, hi = 0;
          for (int64_t i = i0; i < i1; ++i) {
            lo = std::min(lo, segFirst[i]);
            hi = std::max(hi, segLast[i] + 1);
          }
          jlo = std::max(jlo, lo);
          jhi = std::min(jhi, hi);
        }
        if (jhi <= jlo) { // no query of the block sees a key
          for (int64_t i = i0; i < i1; ++i)
            std::fill_n(dqh + i * ldq, d, 0.0f);
          continue;
        }
        int64_t nk = jhi - jlo;
        const float *qb = qh + i0 * ldq, *dob = doh + i0 * ldo;
        const float *kb = kg + jlo * ldk, *vb = vg + jlo * ldv;
        float *p = probs.get(), *ds = dscores.get();

        // P: the forward's probabilities, normalised. Keys past a row's
        // causal limit (from ends[r] on) and other segments are 0.
        BlasGemm(false, true, rows, nk, d, static_cast<float>(scale), qb, ldq,
                 kb, ldk, 0.0f, p, nk);
        for (int64_t r = 0; r < rows; ++r) {
          int64_t i = i0 + r;
          float *pr = p + r * nk;
          int64_t end = causal ? std::clamp<int64_t>(i + 1 - jlo, 0, nk) : nk;
          ends[r] = end;
          int64_t visible = end;
          if (segments)
            for (int64_t j = 0; j < end; ++j)
              if (seg[jlo + j] != seg[i]) {
                pr[j] = kNegInf;
                --visible;
              }
          std::fill(pr + end, pr + nk, 0.0f);
          if (visible == 0) {
            std::fill(pr, pr + end, 0.0f);
            continue;
          }
          float mx = vec::Max(pr, end);
          float sum = vec::ExpShift(pr, mx, pr, end);
          vec::Scale(pr, 1.0f / sum, pr, end);
        }

        // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) in place.
        BlasGemm(false, true, rows, nk, dvh, 1.0f, dob, ldo, vb, ldv, 0.0f, ds,
                 nk);
        for (int64_t r = 0; r < rows; ++r) {
          const float *pr = p + r * nk;
          float *dr = ds + r * nk;
          int64_t end = ends[r];
          double delta = 0;
          for (int64_t j = 0; j < end; ++j)
            delta += static_cast<double>(pr[j]) * dr[j];
          float dl = static_cast<float>(delta);
          for (int64_t j = 0; j < end; ++j)
            dr[j] = pr[j] * (dr[j] - dl);
          std::fill(dr + end, dr + nk, 0.0f);
        }

        // dV += P^T dO; dQ = scale dS K; dK += scale dS^T Q.
        BlasGemm(true, false, nk, dvh, rows, 1.0f, p, nk, dob, ldo, 1.0f,
                 dvg + jlo * ldv, ldv);
        BlasGemm(false, false, rows, d, nk, static_cast<float>(scale), ds, nk,
                 kb, ldk, 0.0f, dqh + i0 * ldq, ldq);
        BlasGemm(true, false, nk, d, rows, static_cast<float>(scale), ds, nk,
                 qb, ldq, 1.0f, dkg + jlo * ldk, ldk);
      }
    }
  }
  dqf.Commit();
  dkf.Commit();
  dvf.Commit();
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// CrossEntropyGrad
//===----------------------------------------------------------------------===//

absl::Status CrossEntropyGrad(const TensorView &logits,
                              const TensorView &labels, const TensorView &dloss,
                              const TensorView &dlogits, int64_t ignoreIndex,
                              LossReduction reduction) {
  constexpr absl::string_view K = "CrossEntropyGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dloss", dloss));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "labels", labels));
  if (logits.rank() < 1)
    return BadView(K, "logits", logits, "needs a vocabulary dimension");
  Shape rowsShape(logits.shape.begin(), logits.shape.end() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "labels", labels, rowsShape));
  if (dloss.dtype != DType::F32)
    return BadView(K, "dloss", dloss, "must be f32");
  if (reduction == LossReduction::None)
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dloss", dloss, rowsShape));
  else if (reduction == LossReduction::Mean || reduction == LossReduction::Sum)
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dloss", dloss, {}));
  else
    return Invalid(K, "unknown reduction ", static_cast<int>(reduction));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dlogits", dlogits, logits.shape));
  int64_t vocab = logits.dim(logits.rank() - 1), rows = labels.numel();
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = IndexAt(labels, r);
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= vocab)
      return BadView(K, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
    ++counted;
  }
  if (dlogits.numel() == 0)
    return absl::OkStatus();

  const float *dl = static_cast<const float *>(dloss.data);
  // The upstream gradient of every counted row but for None.
  float shared = 0.0f;
  if (reduction == LossReduction::Sum)
    shared = dl[0];
  else if (reduction == LossReduction::Mean && counted > 0)
    shared = static_cast<float>(static_cast<double>(dl[0]) /
                                static_cast<double>(counted));
  auto run = [&](int64_t begin, int64_t end) {
    RowReader reader(logits, vocab);
    RowWriter writer(dlogits, vocab);
    for (int64_t r = begin; r < end; ++r) {
      int64_t label = IndexAt(labels, r);
      float *y = writer.Row(r);
      if (label == ignoreIndex) {
        std::fill_n(y, vocab, 0.0f);
        writer.Done();
        continue;
      }
      float g = reduction == LossReduction::None ? dl[r] : shared;
      const float *x = reader.Row(r);
      float mx = vec::Max(x, vocab);
      float sum = vec::ExpShift(x, mx, y, vocab);
      vec::Scale(y, g / sum, y, vocab);
      y[label] -= g;
      writer.Done();
    }
  };
  // About 20 flops per element, the exp included.
  ParallelFor(rows, 20.0 * static_cast<double>(rows) * vocab, run);
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
