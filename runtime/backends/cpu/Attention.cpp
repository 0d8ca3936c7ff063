//===- Attention.cpp - softmax and attention, forward and backward --------===//
//
// Attention runs (batch, head) pairs one after another, each blocked over
// query rows: S = Q K^T and P V through OpenBLAS GEMMs on its own threads,
// softmax in between, and key ranges that causality or segments hide are
// never computed. (Heads on threads of our own, with a single-threaded
// GEMM each, competed with OpenBLAS's threads, which keep spinning after
// the projections just before: on the 155.7M Llama the forward took
// 159 ms a step that way, 104-126 ms this way, and the step's matmuls
// ran 10% faster.)
// AttentionGrad recomputes the probabilities block by block and does its
// five products per block with OpenBLAS GEMMs.
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
#include <cstdlib>
#include <limits>
#include <numeric>
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

absl::Status Attention(const TensorView &q, const TensorView &k,
                       const TensorView &v, const TensorView *segments,
                       const TensorView &out, bool causal, double scale) {
  constexpr absl::string_view K = "Attention";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "q", q, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "k", k, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "v", v, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  int64_t batch = q.dim(0), s = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t skv = k.dim(1), hkv = k.dim(2), dv = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "k", k, {batch, skv, hkv, d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "v", v, {batch, skv, hkv, dv}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {batch, s, hq, dv}));
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
  if (out.numel() == 0)
    return absl::OkStatus();

  F32Input qf(q), kf(k), vf(v);
  F32Output of(out);
  const int64_t group = hq / hkv;
  const int64_t ldq = hq * d, ldk = hkv * d, ldv = hkv * dv, ldo = hq * dv;
  // Key and value panels are padded to the GEMM's column granularity with
  // zeros, so padded score columns and value rows contribute nothing.
  auto pad = [](int64_t x) {
    return (x + vec::kGemmColumns - 1) / vec::kGemmColumns * vec::kGemmColumns;
  };
  const int64_t skvPad = pad(skv), dvPad = pad(dv);
  // Query rows per block: enough to amortise streaming the K and V panels,
  // few enough that the score block stays near L2 size.
  const int64_t bq = std::clamp<int64_t>(
      (int64_t{256} << 10) / std::max<int64_t>(skvPad, 1), 8, 256);

  // With segments, each query's keys lie within [first, last] of its
  // segment's positions; a block needs only the union of those ranges.
  std::vector<int64_t> seg, segFirst, segLast;
  if (segments) {
    seg.resize(batch * s);
    segFirst.resize(batch * s);
    segLast.resize(batch * s);
    std::vector<int64_t> order(s);
    for (int64_t b = 0; b < batch; ++b) {
      int64_t *sb = seg.data() + b * s;
      for (int64_t i = 0; i < s; ++i)
        sb[i] = IndexAt(*segments, b * s + i);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t x, int64_t y) { return sb[x] < sb[y]; });
      for (int64_t lo = 0; lo < s;) {
        int64_t hi = lo;
        while (hi < s && sb[order[hi]] == sb[order[lo]])
          ++hi;
        for (int64_t t = lo; t < hi; ++t) {
          segFirst[b * s + order[t]] = order[lo];
          segLast[b * s + order[t]] = order[hi - 1];
        }
        lo = hi;
      }
    }
  }

  // (batch, query head) pairs are independent; consecutive heads share a kv
  // head, so a thread packs each K^T and V panel once for its run of heads.
  auto run = [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> kt = Scratch(d * skvPad),
                             vp = Scratch(skvPad * dvPad),
                             p = Scratch(bq * skvPad), ob = Scratch(bq * dvPad);
    std::vector<float> rowScale(bq);
    int64_t packed = -1;
    for (int64_t task = begin; task < end; ++task) {
      int64_t b = task / hq, h = task % hq, g = h / group;
      if (packed != b * hkv + g) {
        packed = b * hkv + g;
        const float *kg = kf.data() + b * skv * ldk + g * d;
        const float *vg = vf.data() + b * skv * ldv + g * dv;
        std::fill_n(kt.get(), d * skvPad, 0.0f);
        for (int64_t j = 0; j < skv; ++j)
          for (int64_t x = 0; x < d; ++x)
            kt[x * skvPad + j] = kg[j * ldk + x];
        std::fill_n(vp.get(), skvPad * dvPad, 0.0f);
        for (int64_t j = 0; j < skv; ++j)
          std::copy_n(vg + j * ldv, dv, vp.get() + j * dvPad);
      }
      const float *qh = qf.data() + b * s * ldq + h * d;
      float *oh = of.data() + b * s * ldo + h * dv;
      const int64_t *sb = segments ? seg.data() + b * s : nullptr;
      for (int64_t i0 = 0; i0 < s; i0 += bq) {
        int64_t i1 = std::min(s, i0 + bq), rows = i1 - i0;
        int64_t jlo = 0, jhi = causal ? std::min(skv, i1) : skv;
        if (segments) {
          int64_t lo = s, hi = 0;
          for (int64_t i = i0; i < i1; ++i) {
            lo = std::min(lo, segFirst[b * s + i]);
            hi = std::max(hi, segLast[b * s + i] + 1);
          }
          // Aligned down so the padded panel stays inside kt; the extra
          // keys belong to other segments and are masked below.
          jlo =
              std::max<int64_t>(0, lo) / vec::kGemmColumns * vec::kGemmColumns;
          jhi = std::min(jhi, hi);
        }
        if (jhi <= jlo) {
          for (int64_t i = i0; i < i1; ++i)
            std::fill_n(oh + i * ldo, dv, 0.0f);
          continue;
        }
        int64_t nk = pad(jhi - jlo);
        BlasGemm(false, false, rows, nk, d, static_cast<float>(scale),
                 qh + i0 * ldq, ldq, kt.get() + jlo, skvPad, 0.0f, p.get(), nk);
        for (int64_t r = 0; r < rows; ++r) {
          int64_t i = i0 + r;
          float *pr = p.get() + r * nk;
          // Keys past the causal limit (and the padding) are cut off;
          // within the rest, other segments are masked to -inf so that exp
          // makes them 0.
          int64_t end = std::clamp<int64_t>(causal ? i + 1 - jlo : jhi - jlo, 0,
                                            jhi - jlo);
          int64_t visible = end;
          if (sb)
            for (int64_t j = 0; j < end; ++j)
              if (sb[jlo + j] != sb[i]) {
                pr[j] = kNegInf;
                --visible;
              }
          std::fill(pr + end, pr + nk, 0.0f);
          if (visible == 0) {
            std::fill(pr, pr + end, 0.0f);
            rowScale[r] = 0.0f;
            continue;
          }
          float mx = vec::Max(pr, end);
          rowScale[r] = 1.0f / vec::ExpShift(pr, mx, pr, end);
        }
        BlasGemm(false, false, rows, dvPad, nk, 1.0f, p.get(), nk,
                 vp.get() + jlo * dvPad, dvPad, 0.0f, ob.get(), dvPad);
        for (int64_t r = 0; r < rows; ++r)
          vec::Scale(ob.get() + r * dvPad, rowScale[r], oh + (i0 + r) * ldo,
                     dv);
      }
    }
  };
  run(0, batch * hq);
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

} // namespace veomni::rt::cpu
