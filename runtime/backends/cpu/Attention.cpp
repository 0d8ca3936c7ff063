//===- Attention.cpp - softmax and attention, forward and backward --------===//
//
// Attention runs (batch, head) pairs one after another, each blocked over
// query rows, with OpenBLAS (or oneDNN) GEMMs on the library's own threads.
// A query block sees only the keys that causality and segments leave it,
// in tiles (SetAttentionKeyTile): S = scale Q K^T, a running maximum and
// sum per row (flash-style), and acc = acc * rescale + P V, so a block
// holds rows x tile scores whatever the sequence length. Up to
// kAttentionOneTileKeys keys a block is one tile: plain softmax, then P V.
// (Heads on threads of our own, with a single-threaded GEMM each, competed
// with OpenBLAS's threads, which keep spinning after the projections just
// before: on the 155.7M Llama the forward took 159 ms a step that way,
// 104-126 ms this way.)
// AttentionGrad recomputes the probabilities tile by tile: with one tile
// as the forward does; with several, a first pass gathers each row's
// maximum, sum and delta = sum_j P dP, and a second does the five products.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Checks.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

absl::Status Softmax(const TensorView &in, const TensorView &out, int64_t dim) {
  constexpr absl::string_view K = "Softmax";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, in.shape));
  if (dim < 0 || dim >= in.rank())
    return BadView(K, "in", in, "has no dimension ", dim);
  int64_t outer = Product(in.shape, 0, dim), n = in.dim(dim);
  int64_t inner = Product(in.shape, dim + 1, in.rank());
  if (in.numel() == 0)
    return absl::OkStatus();
  // A block is one outer index: n x inner, softmaxed down its columns. With
  // inner == 1 (the usual last-dimension softmax) it is a single row.
  int64_t block = n * inner;
  ParallelFor(
      outer, 2 * kMemoryBoundWork * in.numel(), [&](int64_t o0, int64_t o1) {
        RowReader reader(in, block);
        RowWriter writer(out, block);
        std::vector<float> m(inner), s(inner);
        for (int64_t o = o0; o < o1; ++o) {
          const float *x = reader.Row(o);
          float *y = writer.Row(o);
          if (inner == 1) {
            float mx = vec::Max(x, n);
            float sum = vec::ExpShift(x, mx, y, n);
            vec::Scale(y, 1.0f / sum, y, n);
          } else {
            std::fill(m.begin(), m.end(), kNegInf);
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < inner; ++c)
                m[c] = x[r * inner + c] > m[c] ? x[r * inner + c] : m[c];
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < inner; ++c)
                y[r * inner + c] = x[r * inner + c] - m[c];
            vec::Unary(UnaryKind::Exp, y, y, block);
            std::fill(s.begin(), s.end(), 0.0f);
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < inner; ++c)
                s[c] += y[r * inner + c];
            for (int64_t c = 0; c < inner; ++c)
              s[c] = 1.0f / s[c];
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < inner; ++c)
                y[r * inner + c] *= s[c];
          }
          writer.Done();
        }
      });
  return absl::OkStatus();
}

namespace {

std::atomic<int64_t> keyTileOverride{0};

/// Keys per tile for `keys` visible keys at most.
int64_t KeyTile(int64_t keys) {
  int64_t asked = keyTileOverride.load(std::memory_order_relaxed);
  if (asked > 0)
    return asked;
  return keys <= kAttentionOneTileKeys ? std::max<int64_t>(keys, 1)
                                       : kAttentionKeyTile;
}

/// The keys a block of queries can see. With segments, each query's keys
/// lie within [first, last] of its segment's positions, so a block needs
/// only the union of those ranges; with causality, none past its last
/// row's limit (the row itself, or the end of its bidirectional block);
/// with a window, none before its first row's window.
class KeyRanges {
public:
  KeyRanges(const TensorView *segments, int64_t s, int64_t skv, bool causal,
            int64_t window)
      : segments_(segments), s_(s), skv_(skv), causal_(causal), window_(window),
        blocks_(segments && segments->rank() == 3) {
    if (segments) {
      seg_.resize(s);
      first_.resize(s);
      last_.resize(s);
      order_.resize(s);
    }
    limit_.resize(s);
    std::iota(limit_.begin(), limit_.end(), 0);
  }
  /// Reads batch row b's segment ids (before Range for that row).
  void Load(int64_t b) {
    if (!segments_)
      return;
    for (int64_t i = 0; i < s_; ++i)
      seg_[i] = IndexAt(*segments_, b * s_ + i);
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int64_t x, int64_t y) { return seg_[x] < seg_[y]; });
    for (int64_t lo = 0; lo < s_;) {
      int64_t hi = lo;
      while (hi < s_ && seg_[order_[hi]] == seg_[order_[lo]])
        ++hi;
      for (int64_t t = lo; t < hi; ++t) {
        first_[order_[t]] = order_[lo];
        last_[order_[t]] = order_[hi - 1];
      }
      lo = hi;
    }
    // Plane 1: a run of equal non-zero block ids within a segment sees
    // itself whole, so a row's causal limit is its run's last position.
    if (blocks_) {
      const int64_t plane = segments_->numel() / 2;
      int64_t next = 0;
      for (int64_t i = s_ - 1; i >= 0; --i) {
        int64_t id = IndexAt(*segments_, plane + b * s_ + i);
        bool joins =
            id != 0 && i + 1 < s_ && id == next && seg_[i + 1] == seg_[i];
        limit_[i] = joins ? limit_[i + 1] : i;
        next = id;
      }
    }
  }
  /// [lo, hi) of the keys that queries [i0, i1) may see.
  std::pair<int64_t, int64_t> Range(int64_t i0, int64_t i1) const {
    int64_t lo = window_ > 0 ? std::max<int64_t>(0, i0 - window_ + 1) : 0;
    int64_t hi = skv_;
    if (causal_) {
      hi = i1;
      for (int64_t i = i0; blocks_ && i < i1; ++i)
        hi = std::max(hi, limit_[i] + 1);
      hi = std::min(skv_, hi);
    }
    if (segments_) {
      int64_t a = s_, z = 0;
      for (int64_t i = i0; i < i1; ++i) {
        a = std::min(a, first_[i]);
        z = std::max(z, last_[i] + 1);
      }
      lo = std::max(lo, a);
      hi = std::min(hi, z);
    }
    return {lo, hi};
  }
  /// Query i's scores for keys [j0, j0 + nk): those past its causal limit
  /// are cut off (the returned end; the caller zeroes them), those of other
  /// segments or before its window set to -inf so that exp makes them 0.
  /// `visible` counts the rest.
  int64_t Mask(float *scores, int64_t i, int64_t j0, int64_t nk,
               int64_t &visible) const {
    int64_t end = causal_ ? std::clamp<int64_t>(limit_[i] + 1 - j0, 0, nk) : nk;
    int64_t start =
        window_ > 0 ? std::clamp<int64_t>(i - window_ + 1 - j0, 0, end) : 0;
    std::fill(scores, scores + start, kNegInf);
    visible = end - start;
    if (segments_)
      for (int64_t j = start; j < end; ++j)
        if (seg_[j0 + j] != seg_[i]) {
          scores[j] = kNegInf;
          --visible;
        }
    return end;
  }

private:
  const TensorView *segments_;
  int64_t s_, skv_;
  bool causal_;
  int64_t window_;
  bool blocks_;
  std::vector<int64_t> seg_, first_, last_, order_, limit_;
};

/// Per query row of a block, the running softmax statistics over the key
/// tiles seen so far: the maximum score and the sum of exp(score - max).
/// A sink starts them as a first logit that has no value.
struct RunningSoftmax {
  std::vector<float> max, sum, rescale;
  explicit RunningSoftmax(int64_t rows) : max(rows), sum(rows), rescale(rows) {}
  void Reset(int64_t rows, const float *sink = nullptr) {
    std::fill_n(max.begin(), rows, sink ? *sink : kNegInf);
    std::fill_n(sum.begin(), rows, sink ? 1.0f : 0.0f);
  }
  /// Exponentiates row r's first `end` scores against the new running
  /// maximum in place; rescale[r] is what earlier sums and accumulators
  /// must be multiplied by. Returns false (and leaves the row) when none
  /// of them is visible.
  bool Add(int64_t r, float *scores, int64_t end, int64_t visible) {
    rescale[r] = 1.0f;
    if (visible == 0)
      return false;
    float mx = std::max(max[r], vec::Max(scores, end));
    float s = vec::ExpShift(scores, mx, scores, end);
    rescale[r] = std::exp(max[r] - mx); // 0 on the first visible tile
    sum[r] = sum[r] * rescale[r] + s;
    max[r] = mx;
    return true;
  }
};

/// The sinks as f32 (empty without them).
std::vector<float> SinkLogits(const TensorView *sinks, int64_t hq) {
  std::vector<float> out;
  if (!sinks)
    return out;
  F32Input in(*sinks);
  out.assign(in.data(), in.data() + hq);
  return out;
}

/// Writes the sinks' cotangents (zeros where `grads` is shorter).
absl::Status StoreSinkGrads(const std::vector<double> &grads,
                            const TensorView &dsinks) {
  F32Output out(dsinks);
  for (int64_t h = 0; h < dsinks.numel(); ++h)
    out.data()[h] = h < static_cast<int64_t>(grads.size())
                        ? static_cast<float>(grads[h])
                        : 0.0f;
  out.Commit();
  return absl::OkStatus();
}

} // namespace

void SetAttentionKeyTile(int64_t keys) {
  keyTileOverride.store(std::max<int64_t>(keys, 0), std::memory_order_relaxed);
}

absl::StatusOr<AttentionDims>
CheckAttention(absl::string_view K, const TensorView &q, const TensorView &k,
               const TensorView &v, const TensorView *segments, bool causal,
               int64_t window, const TensorView *sinks) {
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "q", q, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "k", k, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "v", v, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "v", v));
  AttentionDims a{q.dim(0), q.dim(1), k.dim(1), q.dim(2),
                  k.dim(2), q.dim(3), v.dim(3)};
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "k", k, {a.batch, a.skv, a.hkv, a.d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "v", v, {a.batch, a.skv, a.hkv, a.dv}));
  if (a.hkv < 1 || a.hq % a.hkv != 0)
    return BadView(K, "k", k, "head count must divide that of q ",
                   q.ToString());
  if (causal && a.s != a.skv)
    return BadView(K, "k", k,
                   "causal attention needs the sequence length of q ",
                   q.ToString());
  if (segments) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, "segments", *segments));
    VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "segments", *segments));
    // [2, batch, s]: the segment ids, then the bidirectional blocks.
    if (segments->rank() == 3) {
      VEOMNI_RETURN_IF_ERROR(
          CheckShape(K, "segments", *segments, {2, a.batch, a.s}));
      if (!causal)
        return BadView(K, "segments", *segments,
                       "bidirectional blocks need causal attention");
    } else {
      VEOMNI_RETURN_IF_ERROR(
          CheckShape(K, "segments", *segments, {a.batch, a.s}));
    }
    if (a.s != a.skv)
      return BadView(K, "k", k, "segments need the sequence length of q ",
                     q.ToString());
  }
  if (window < 0 || (window > 0 && !causal))
    return BadView(K, "q", q, "window ", window,
                   " must be 0, or positive with causal attention");
  if (sinks) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, "sinks", *sinks));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "sinks", *sinks));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "sinks", *sinks, {a.hq}));
  }
  return a;
}

absl::Status Attention(const TensorView &q, const TensorView &k,
                       const TensorView &v, const TensorView *segments,
                       const TensorView &out, bool causal, double scale,
                       int64_t window, const TensorView *sinks) {
  constexpr absl::string_view K = "Attention";
  VEOMNI_ASSIGN_OR_RETURN(
      const AttentionDims a,
      CheckAttention(K, q, k, v, segments, causal, window, sinks));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {a.batch, a.s, a.hq, a.dv}));
  const int64_t batch = a.batch, s = a.s, hq = a.hq, d = a.d, skv = a.skv,
                hkv = a.hkv, dv = a.dv;
  if (out.numel() == 0)
    return absl::OkStatus();
  if (!FitsBlas(hq * std::max(d, dv)) || !FitsBlas(hkv * std::max(d, dv)) ||
      !FitsBlas(s) || !FitsBlas(skv))
    return BadView(K, "q", q, "exceeds the 32-bit BLAS interface");

  F32Input qf(q), kf(k), vf(v);
  F32Output of(out);
  const int64_t group = hq / hkv;
  const int64_t ldq = hq * d, ldk = hkv * d, ldv = hkv * dv, ldo = hq * dv;
  const int64_t tile = KeyTile(skv);
  // Query rows per block: enough to amortise streaming a key tile, few
  // enough that the scores stay near L2 size.
  const int64_t bq = std::clamp<int64_t>(
      (int64_t{256} << 10) / std::min(std::max<int64_t>(skv, 1), tile), 8, 256);
  std::unique_ptr<float[]> p = Scratch(bq * std::min(skv, tile)),
                           acc = Scratch(bq * dv);
  RunningSoftmax stats(bq);
  KeyRanges keys(segments, s, skv, causal, window);
  std::vector<float> sinkLogits = SinkLogits(sinks, hq);

  // (batch, query head) pairs one after another; within a query block, key
  // tiles in order: S = scale Q K^T, the running softmax, and acc = acc *
  // rescale + P V; at the end out = acc / sum. With one tile this is
  // exactly softmax, then P V.
  for (int64_t task = 0; task < batch * hq; ++task) {
    int64_t b = task / hq, h = task % hq, g = h / group;
    if (h == 0)
      keys.Load(b);
    const float *qh = qf.data() + b * s * ldq + h * d;
    const float *kg = kf.data() + b * skv * ldk + g * d;
    const float *vg = vf.data() + b * skv * ldv + g * dv;
    float *oh = of.data() + b * s * ldo + h * dv;
    for (int64_t i0 = 0; i0 < s; i0 += bq) {
      int64_t i1 = std::min(s, i0 + bq), rows = i1 - i0;
      auto [jlo, jhi] = keys.Range(i0, i1);
      stats.Reset(rows, sinks ? &sinkLogits[h] : nullptr);
      for (int64_t j0 = jlo; j0 < jhi; j0 += tile) {
        int64_t nk = std::min(tile, jhi - j0);
        BlasGemm(false, true, rows, nk, d, static_cast<float>(scale),
                 qh + i0 * ldq, ldq, kg + j0 * ldk, ldk, 0.0f, p.get(), nk);
        bool rescaled = false;
        for (int64_t r = 0; r < rows; ++r) {
          float *pr = p.get() + r * nk;
          int64_t visible, end = keys.Mask(pr, i0 + r, j0, nk, visible);
          std::fill(pr + end, pr + nk, 0.0f);
          if (!stats.Add(r, pr, end, visible))
            std::fill(pr, pr + end, 0.0f);
          rescaled |= j0 > jlo && stats.rescale[r] != 1.0f;
        }
        if (rescaled)
          for (int64_t r = 0; r < rows; ++r)
            vec::Scale(acc.get() + r * dv, stats.rescale[r], acc.get() + r * dv,
                       dv);
        BlasGemm(false, false, rows, dv, nk, 1.0f, p.get(), nk, vg + j0 * ldv,
                 ldv, j0 > jlo ? 1.0f : 0.0f, acc.get(), dv);
      }
      // A row that saw no key (or a block with none) is zero.
      for (int64_t r = 0; r < rows; ++r) {
        float *o = oh + (i0 + r) * ldo;
        if (jhi > jlo && stats.sum[r] > 0.0f)
          vec::Scale(acc.get() + r * dv, 1.0f / stats.sum[r], o, dv);
        else
          std::fill_n(o, dv, 0.0f);
      }
    }
  }
  of.Commit();
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
  constexpr absl::string_view K = "AttentionGrad";
  VEOMNI_ASSIGN_OR_RETURN(
      const AttentionDims a,
      CheckAttention(K, q, k, v, segments, causal, window, sinks));
  if ((sinks != nullptr) != (dsinks != nullptr))
    return BadView(K, "q", q, "needs sinks and their cotangent together");
  if (dsinks) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, "dsinks", *dsinks));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dsinks", *dsinks));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dsinks", *dsinks, {a.hq}));
  }
  const int64_t batch = a.batch, s = a.s, hq = a.hq, d = a.d, skv = a.skv,
                hkv = a.hkv, dvh = a.dv;
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dout", dout, {batch, s, hq, dvh}));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dq", dq));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dk", dk));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dv", dv));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dq", dq, q.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dk", dk, k.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dv", dv, v.shape));
  if (!FitsBlas(hq * std::max(d, dvh)) || !FitsBlas(hkv * std::max(d, dvh)) ||
      !FitsBlas(s) || !FitsBlas(skv))
    return BadView(K, "q", q, "exceeds the 32-bit BLAS interface");
  if (dq.numel() == 0 && dk.numel() == 0 && dv.numel() == 0) {
    if (dsinks)
      VEOMNI_RETURN_IF_ERROR(StoreSinkGrads({}, *dsinks));
    return absl::OkStatus();
  }

  F32Input qf(q), kf(k), vf(v), dof(dout);
  F32Output dqf(dq), dkf(dk), dvf(dv);
  // dk and dv accumulate over query blocks and the heads of a group; keys
  // that no query sees keep 0.
  std::fill_n(dkf.data(), dk.numel(), 0.0f);
  std::fill_n(dvf.data(), dv.numel(), 0.0f);
  const int64_t group = hq / hkv;
  const int64_t ldq = hq * d, ldk = hkv * d, ldv = hkv * dvh, ldo = hq * dvh;
  const int64_t tile = KeyTile(skv),
                width = std::min(std::max<int64_t>(skv, 1), tile);
  // Query rows per block: the two score-sized blocks (P and dS) stay
  // within about what L2 holds next to the K and V panels.
  const int64_t bq = std::clamp<int64_t>((int64_t{64} << 10) / width, 16, 256);
  std::unique_ptr<float[]> probs = Scratch(bq * width),
                           dscores = Scratch(bq * width);
  std::vector<int64_t> ends(bq);
  std::vector<float> delta(bq);
  std::vector<double> dot(bq);
  RunningSoftmax stats(bq);
  KeyRanges keys(segments, s, skv, causal, window);
  std::vector<float> sinkLogits = SinkLogits(sinks, hq);
  std::vector<double> sinkGrads(sinks ? hq : 0, 0.0);

  // No queries: nothing reaches the keys (and q's data may be null, which
  // no offset may be applied to).
  for (int64_t b = 0; s > 0 && b < batch; ++b) {
    keys.Load(b);
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
        auto [jlo, jhi] = keys.Range(i0, i1);
        if (jhi <= jlo) { // no query of the block sees a key
          for (int64_t i = i0; i < i1; ++i)
            std::fill_n(dqh + i * ldq, d, 0.0f);
          continue;
        }
        const float *qb = qh + i0 * ldq, *dob = doh + i0 * ldo;
        float *p = probs.get(), *ds = dscores.get();
        // S = scale Q K^T and dP = dO V^T for keys [j0, j0 + nk), masked.
        auto scores = [&](int64_t j0, int64_t nk) {
          BlasGemm(false, true, rows, nk, d, static_cast<float>(scale), qb, ldq,
                   kg + j0 * ldk, ldk, 0.0f, p, nk);
          BlasGemm(false, true, rows, nk, dvh, 1.0f, dob, ldo, vg + j0 * ldv,
                   ldv, 0.0f, ds, nk);
        };
        // The softmax statistics and delta_r = sum_j P_rj dP_rj, which
        // dS = P * (dP - delta) needs whole: with one tile from the tile
        // itself, with several from a first pass over them.
        bool oneTile = jhi - jlo <= tile;
        stats.Reset(rows, sinks ? &sinkLogits[h] : nullptr);
        std::fill_n(dot.begin(), rows, 0.0);
        for (int64_t j0 = jlo; j0 < jhi && !oneTile; j0 += tile) {
          int64_t nk = std::min(tile, jhi - j0);
          scores(j0, nk);
          for (int64_t r = 0; r < rows; ++r) {
            float *pr = p + r * nk;
            const float *dr = ds + r * nk;
            int64_t visible, end = keys.Mask(pr, i0 + r, j0, nk, visible);
            if (!stats.Add(r, pr, end, visible))
              continue;
            double t = 0;
            for (int64_t j = 0; j < end; ++j)
              t += static_cast<double>(pr[j]) * dr[j];
            dot[r] = dot[r] * stats.rescale[r] + t;
          }
        }
        for (int64_t j0 = jlo; j0 < jhi; j0 += tile) {
          int64_t nk = std::min(tile, jhi - j0);
          scores(j0, nk);
          // P: the forward's probabilities, normalised. Keys past a row's
          // causal limit and other segments are 0.
          for (int64_t r = 0; r < rows; ++r) {
            float *pr = p + r * nk;
            int64_t visible, end = keys.Mask(pr, i0 + r, j0, nk, visible);
            ends[r] = end;
            std::fill(pr + end, pr + nk, 0.0f);
            if (oneTile) {
              if (!stats.Add(r, pr, end, visible)) {
                std::fill(pr, pr + end, 0.0f);
                continue;
              }
            } else if (visible == 0 || stats.sum[r] == 0.0f) {
              std::fill(pr, pr + end, 0.0f);
              continue;
            } else {
              vec::ExpShift(pr, stats.max[r], pr, end);
            }
            vec::Scale(pr, 1.0f / stats.sum[r], pr, end);
          }
          // dS = P * (dP - delta) in place.
          for (int64_t r = 0; r < rows; ++r) {
            const float *pr = p + r * nk;
            float *dr = ds + r * nk;
            int64_t end = ends[r];
            if (oneTile) {
              double t = 0;
              for (int64_t j = 0; j < end; ++j)
                t += static_cast<double>(pr[j]) * dr[j];
              delta[r] = static_cast<float>(t);
            } else if (j0 == jlo) {
              delta[r] = stats.sum[r] > 0.0f
                             ? static_cast<float>(dot[r] / stats.sum[r])
                             : 0.0f;
            }
            float dl = delta[r];
            // The sink's probability times (0 - delta): its value is 0.
            if (sinks && j0 == jlo)
              sinkGrads[h] -= static_cast<double>(dl) *
                              std::exp(sinkLogits[h] - stats.max[r]) /
                              stats.sum[r];
            for (int64_t j = 0; j < end; ++j)
              dr[j] = pr[j] * (dr[j] - dl);
            std::fill(dr + end, dr + nk, 0.0f);
          }
          // dV += P^T dO; dQ (+)= scale dS K; dK += scale dS^T Q.
          BlasGemm(true, false, nk, dvh, rows, 1.0f, p, nk, dob, ldo, 1.0f,
                   dvg + j0 * ldv, ldv);
          BlasGemm(false, false, rows, d, nk, static_cast<float>(scale), ds, nk,
                   kg + j0 * ldk, ldk, j0 > jlo ? 1.0f : 0.0f, dqh + i0 * ldq,
                   ldq);
          BlasGemm(true, false, nk, d, rows, static_cast<float>(scale), ds, nk,
                   qb, ldq, 1.0f, dkg + j0 * ldk, ldk);
        }
      }
    }
  }
  dqf.Commit();
  dkf.Commit();
  dvf.Commit();
  if (dsinks)
    VEOMNI_RETURN_IF_ERROR(StoreSinkGrads(sinkGrads, *dsinks));
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
