//===- Transformer.cpp - softmax, norms, rope, attention, loss ------------===//
//
// Row kernels: each row is brought to f32 (in place for f32 tensors, through
// a row buffer otherwise), computed with the vector loops of VecMath, and
// rounded once on the way out.
//
// Attention runs (batch, head) pairs on parallel threads, each blocked over
// query rows: S = Q K^T and P V through vec::Gemm (single-threaded, so the
// threads do not fight over OpenBLAS's pool, which slows concurrent callers
// several-fold), softmax in between, and key ranges that causality or
// segments hide are never computed.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Common checks of the last-dimension norms.
absl::Status CheckNorm(absl::string_view k, const TensorView &in,
                       const TensorView &weight, const TensorView *bias,
                       const TensorView &out) {
  VEOMNI_RETURN_IF_ERROR(CheckView(k, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(k, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "in", in));
  if (in.rank() < 1)
    return BadView(k, "in", in, "must have rank >= 1");
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(k, "out", out, in.shape));
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckRank(k, "weight", weight, 1));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckShape(k, "weight", weight, {d}));
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckRank(k, "bias", *bias, 1));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(k, "bias", *bias, {d}));
  }
  return absl::OkStatus();
}

/// Rounds x[0, n) to `t`'s precision in place (the HF cast back to the
/// input dtype between two f32 steps).
void RoundTo(DType t, float *x, int64_t n) {
  if (t == DType::F32)
    return;
  uint16_t tmp[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    if (t == DType::BF16) {
      vec::F32ToBf16(x + i, tmp, len);
      vec::Bf16ToF32(tmp, x + i, len);
    } else {
      vec::F32ToF16(x + i, tmp, len);
      vec::F16ToF32(tmp, x + i, len);
    }
  }
}

} // namespace

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

absl::Status RmsNorm(const TensorView &in, const TensorView &weight,
                     const TensorView &out, double epsilon) {
  constexpr absl::string_view K = "RmsNorm";
  VEOMNI_RETURN_IF_ERROR(CheckNorm(K, in, weight, nullptr, out));
  int64_t d = in.dim(in.rank() - 1);
  if (in.numel() == 0)
    return absl::OkStatus();
  int64_t rows = in.numel() / d;
  F32Input w(weight);
  const float eps = static_cast<float>(epsilon);
  // Memory-bound: a second core adds bandwidth on large inputs.
  ParallelFor(rows, kMemoryBoundWork * in.numel(), [&](int64_t r0, int64_t r1) {
    RowReader reader(in, d);
    RowWriter writer(out, d);
    for (int64_t r = r0; r < r1; ++r) {
      const float *x = reader.Row(r);
      float *y = writer.Row(r);
      // Sum of squares in f64, the mean rounded to f32 as HF keeps it, and
      // rsqrt rounded once from f64.
      float mean =
          static_cast<float>(vec::SumSquares(x, d) / static_cast<double>(d));
      float scale =
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(mean + eps)));
      vec::Scale(x, scale, y, d);
      RoundTo(in.dtype, y, d); // HF: hidden_states.to(input_dtype)
      vec::Binary(BinaryKind::Mul, y, w.data(), y, d);
      writer.Done();
    }
  });
  return absl::OkStatus();
}

absl::Status LayerNorm(const TensorView &in, const TensorView &weight,
                       const TensorView *bias, const TensorView &out,
                       double epsilon) {
  constexpr absl::string_view K = "LayerNorm";
  VEOMNI_RETURN_IF_ERROR(CheckNorm(K, in, weight, bias, out));
  int64_t d = in.dim(in.rank() - 1);
  if (in.numel() == 0)
    return absl::OkStatus();
  int64_t rows = in.numel() / d;
  F32Input w(weight);
  std::unique_ptr<F32Input> b =
      bias ? std::make_unique<F32Input>(*bias) : nullptr;
  ParallelFor(rows, kMemoryBoundWork * in.numel(), [&](int64_t r0, int64_t r1) {
    RowReader reader(in, d);
    RowWriter writer(out, d);
    for (int64_t r = r0; r < r1; ++r) {
      const float *x = reader.Row(r);
      float *y = writer.Row(r);
      // Two passes (mean, then squared deviations) avoid the cancellation
      // of E[x^2] - E[x]^2 when the mean is large.
      float mean = static_cast<float>(vec::Sum(x, d) / static_cast<double>(d));
      for (int64_t i = 0; i < d; ++i)
        y[i] = x[i] - mean;
      double var = vec::SumSquares(y, d) / static_cast<double>(d);
      float rstd = static_cast<float>(1.0 / std::sqrt(var + epsilon));
      const float *wp = w.data();
      if (b) {
        const float *bp = b->data();
        for (int64_t i = 0; i < d; ++i)
          y[i] = y[i] * rstd * wp[i] + bp[i];
      } else {
        for (int64_t i = 0; i < d; ++i)
          y[i] = y[i] * rstd * wp[i];
      }
      writer.Done();
    }
  });
  return absl::OkStatus();
}

absl::Status Rope(const TensorView &in, const TensorView &positions,
                  const TensorView &out, const RopeConfig &attrs) {
  return RopeRotate</*kInverse=*/false>("Rope", "in", in, positions, "out", out,
                                        attrs);
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
        vec::Gemm(rows, nk, d, static_cast<float>(scale), qh + i0 * ldq, ldq,
                  kt.get() + jlo, skvPad, p.get(), nk);
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
        vec::Gemm(rows, dvPad, nk, 1.0f, p.get(), nk, vp.get() + jlo * dvPad,
                  dvPad, ob.get(), dvPad);
        for (int64_t r = 0; r < rows; ++r)
          vec::Scale(ob.get() + r * dvPad, rowScale[r], oh + (i0 + r) * ldo,
                     dv);
      }
    }
  };
  double flops = 2.0 * batch * hq * s * std::max<int64_t>(skv, 1) * (d + dv);
  ParallelFor(batch * hq, causal ? flops / 2 : flops, run);
  of.Commit();
  return absl::OkStatus();
}

absl::Status CrossEntropy(const TensorView &logits, const TensorView &labels,
                          const TensorView &out, int64_t ignoreIndex,
                          LossReduction reduction) {
  constexpr absl::string_view K = "CrossEntropy";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "labels", labels));
  if (logits.rank() < 1)
    return BadView(K, "logits", logits, "needs a vocabulary dimension");
  Shape rowsShape(logits.shape.begin(), logits.shape.end() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "labels", labels, rowsShape));
  if (out.dtype != DType::F32)
    return BadView(K, "out", out, "must be f32");
  if (reduction == LossReduction::None)
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, rowsShape));
  else if (reduction == LossReduction::Mean || reduction == LossReduction::Sum)
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {}));
  else
    return Invalid(K, "unknown reduction ", static_cast<int>(reduction));
  int64_t vocab = logits.dim(logits.rank() - 1), rows = labels.numel();
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = IndexAt(labels, r);
    if (label != ignoreIndex && (label < 0 || label >= vocab))
      return BadView(K, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
  }
  // Rows in parallel into per-row losses (0 where ignored), then one sum in
  // row order, so the result does not depend on the thread count.
  std::vector<float> loss(rows, 0.0f);
  ParallelFor(rows, 2 * kMemoryBoundWork * logits.numel(),
              [&](int64_t r0, int64_t r1) {
                RowReader reader(logits, vocab);
                for (int64_t r = r0; r < r1; ++r) {
                  int64_t label = IndexAt(labels, r);
                  if (label == ignoreIndex)
                    continue;
                  const float *x = reader.Row(r);
                  float mx = vec::Max(x, vocab);
                  float lse = mx + std::log(vec::SumExpShift(x, mx, vocab));
                  loss[r] = lse - x[label];
                }
              });
  float *o = static_cast<float *>(out.data);
  if (reduction == LossReduction::None) {
    std::copy(loss.begin(), loss.end(), o);
    return absl::OkStatus();
  }
  double total = 0;
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (IndexAt(labels, r) == ignoreIndex)
      continue;
    total += loss[r];
    ++counted;
  }
  if (reduction == LossReduction::Sum)
    o[0] = static_cast<float>(total);
  else
    o[0] = counted ? static_cast<float>(total / static_cast<double>(counted))
                   : 0.0f;
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
