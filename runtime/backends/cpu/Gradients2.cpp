//===- Gradients2.cpp - VJPs of gelu, norms, slice, conv1d and MoE ops ----===//
//
// The fast paths of the gradient kernels the vision, audio and MoE families
// need, in the manner of Gradients.cpp: f32 views are read and written in
// place and the others staged through f32 rows; row kernels split their
// rows over threads with ParallelFor, sums over rows go to fixed chunks of
// f64 partial sums (so results do not depend on the thread count), and the
// products of Conv1DGrad and GroupedMatmulWeightGrad are OpenBLAS GEMMs.
// MoETopKGrad and MoECombineGrad recompute the selection and the row order
// exactly as their forward kernels in MoE.cpp do.
//
//===----------------------------------------------------------------------===//

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

namespace {

/// Fixed chunks of rows whose sums go to f64 partials, added in order
/// afterwards: the sums do not depend on how many threads ran.
constexpr int64_t kRowChunks = 32;

} // namespace

//===----------------------------------------------------------------------===//
// GeluGrad
//===----------------------------------------------------------------------===//

absl::Status GeluGrad(const TensorView &x, const TensorView &dy,
                      const TensorView &dx, bool tanhApproximation) {
  constexpr absl::string_view K = "GeluGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, x.shape));
  const int64_t n = x.numel();
  if (n == 0)
    return absl::OkStatus();
  // Chunks are read whole before they are written: in place is safe.
  auto run = [&](int64_t c0, int64_t c1) {
    float xs[kChunk], gs[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      int64_t at = c * kChunk, len = std::min(kChunk, n - at);
      LoadF32(x, at, len, xs);
      LoadF32(dy, at, len, gs);
      if (tanhApproximation) {
        // y = x s with s = sigmoid(2u), u = c (x + a x^3), which is
        // 0.5 x (1 + tanh u): y' = s + 2 x s (1 - s) c (1 + 3 a x^2).
        const float c = 0.7978845608028654f, a = 0.044715f;
        for (int64_t i = 0; i < len; ++i) {
          float v = xs[i], v2 = v * v;
          float u = c * (v + a * v2 * v);
          float s = 1.0f / (1.0f + std::exp(-2.0f * u));
          float d = s + 2.0f * v * s * (1.0f - s) * c * (1.0f + 3.0f * a * v2);
          gs[i] *= d;
        }
      } else {
        // y = x Phi(x): y' = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi).
        for (int64_t i = 0; i < len; ++i) {
          float v = xs[i];
          float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
          float pdf = 0.3989422804014327f * std::exp(-0.5f * v * v);
          gs[i] *= cdf + v * pdf;
        }
      }
      StoreF32(gs, dx, at, len);
    }
  };
  ParallelFor((n + kChunk - 1) / kChunk, 40.0 * static_cast<double>(n), run);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// LayerNormGrad
//===----------------------------------------------------------------------===//

absl::Status LayerNormGrad(const TensorView &x, const TensorView &weight,
                           const TensorView &dy, const TensorView &dx,
                           const TensorView &dweight, const TensorView *dbias,
                           double epsilon) {
  constexpr absl::string_view K = "LayerNormGrad";
  int64_t d = 0;
  VEOMNI_RETURN_IF_ERROR(CheckNormGrad(K, x, weight, dy, dx, dweight, d));
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dbias", *dbias, 1));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dbias", *dbias, {d}));
  }
  if (!(epsilon >= 0))
    return Invalid(K, "epsilon must be >= 0, got ", epsilon);
  if (d == 0)
    return absl::OkStatus();
  int64_t rows = x.numel() / d;

  F32Input w(weight);
  const float *wp = w.data();
  const int64_t chunks = std::min<int64_t>(rows, kRowChunks);
  // Per chunk: d partial sums of dweight, then d of dbias.
  std::vector<double> partial(chunks * 2 * d, 0.0);
  auto run = [&](int64_t c0, int64_t c1) {
    RowReader xs(x, d), dys(dy, d);
    RowWriter writer(dx, d);
    std::unique_ptr<float[]> n = Scratch(d), dn = Scratch(d), t = Scratch(d);
    for (int64_t c = c0; c < c1; ++c) {
      double *dwSum = partial.data() + c * 2 * d, *dbSum = dwSum + d;
      for (int64_t r = rows * c / chunks; r < rows * (c + 1) / chunks; ++r) {
        const float *xr = xs.Row(r);
        const float *g = dys.Row(r);
        float *out = writer.Row(r);
        // The statistics exactly as LayerNorm computes them.
        float mean =
            static_cast<float>(vec::Sum(xr, d) / static_cast<double>(d));
        for (int64_t i = 0; i < d; ++i)
          n[i] = xr[i] - mean;
        double var = vec::SumSquares(n.get(), d) / static_cast<double>(d);
        float rstd = static_cast<float>(1.0 / std::sqrt(var + epsilon));
        vec::Scale(n.get(), rstd, n.get(), d);
        for (int64_t i = 0; i < d; ++i) {
          dwSum[i] += static_cast<double>(g[i]) * n[i];
          dbSum[i] += g[i];
        }
        vec::Binary(BinaryKind::Mul, g, wp, dn.get(), d);
        float meanDn =
            static_cast<float>(vec::Sum(dn.get(), d) / static_cast<double>(d));
        vec::Binary(BinaryKind::Mul, dn.get(), n.get(), t.get(), d);
        float meanDnN =
            static_cast<float>(vec::Sum(t.get(), d) / static_cast<double>(d));
        for (int64_t i = 0; i < d; ++i)
          out[i] = rstd * (dn[i] - meanDn - n[i] * meanDnN);
        writer.Done();
      }
    }
  };
  ParallelFor(chunks, 14.0 * static_cast<double>(rows) * d, run);
  std::unique_ptr<float[]> sums = Scratch(2 * d);
  for (int64_t i = 0; i < 2 * d; ++i) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; ++c)
      sum += partial[c * 2 * d + i];
    sums[i] = static_cast<float>(sum);
  }
  StoreF32(sums.get(), dweight, 0, d);
  if (dbias)
    StoreF32(sums.get() + d, *dbias, 0, d);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// SliceGrad
//===----------------------------------------------------------------------===//

absl::Status SliceGrad(const TensorView &dy, const TensorView &dx,
                       absl::Span<const int64_t> start,
                       absl::Span<const int64_t> limit,
                       absl::Span<const int64_t> step) {
  constexpr absl::string_view K = "SliceGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "dx", dx, "dy", dy));
  const int64_t rank = dx.rank();
  if (static_cast<int64_t>(start.size()) != rank ||
      static_cast<int64_t>(limit.size()) != rank ||
      static_cast<int64_t>(step.size()) != rank)
    return BadView(K, "dx", dx, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (int64_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return BadView(K, "dx", dx, "step[", d, "] = ", step[d], " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > dx.dim(d))
      return BadView(K, "dx", dx, "dimension ", d, " slice [", start[d], ", ",
                     limit[d], ") is outside it");
    expected.push_back((limit[d] - start[d] + step[d] - 1) / step[d]);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, expected));
  if (dx.numel() == 0)
    return absl::OkStatus();
  std::memset(dx.data, 0, dx.bytes());
  if (dy.numel() == 0)
    return absl::OkStatus();

  const size_t elem = SizeOf(dx.dtype);
  const char *src = static_cast<const char *>(dy.data);
  char *dst = static_cast<char *>(dx.data);
  if (rank == 0) {
    std::memcpy(dst, src, elem);
    return absl::OkStatus();
  }
  std::vector<int64_t> strides(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * dx.dim(d + 1);
  const int64_t inner = dy.dim(rank - 1), innerStep = step[rank - 1];
  const int64_t rows = dy.numel() / inner;
  // One dy row at a time: its dx base from an odometer over the outer dims.
  std::vector<int64_t> coord(rank, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = start[rank - 1];
    for (int64_t d = 0; d < rank - 1; ++d)
      base += (start[d] + coord[d] * step[d]) * strides[d];
    const char *s = src + r * inner * elem;
    if (innerStep == 1) {
      std::memcpy(dst + base * elem, s, inner * elem);
    } else {
      for (int64_t i = 0; i < inner; ++i)
        std::memcpy(dst + (base + i * innerStep) * elem, s + i * elem, elem);
    }
    for (int64_t d = rank - 2; d >= 0; --d) {
      if (++coord[d] < dy.dim(d))
        break;
      coord[d] = 0;
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Conv1DGrad
//===----------------------------------------------------------------------===//

absl::Status Conv1DGrad(const TensorView &input, const TensorView &weight,
                        const TensorView &dout, const TensorView &dinput,
                        const TensorView &dweight, const TensorView *dbias,
                        int64_t stride, int64_t padding) {
  constexpr absl::string_view K = "Conv1DGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 3));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dweight", dweight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", dweight));
  int64_t batch = input.dim(0), cin = input.dim(1), len = input.dim(2);
  int64_t cout = weight.dim(0), kw = weight.dim(2);
  if (weight.dim(1) != cin)
    return BadView(K, "weight", weight, "input channels differ from input ",
                   input.ToString());
  if (stride < 1 || padding < 0 || padding > (int64_t{1} << 40))
    return Invalid(K, "stride ", stride, " must be >= 1 and padding ", padding,
                   " >= 0");
  int64_t span = len + 2 * padding - kw;
  if (span < 0)
    return BadView(K, "weight", weight,
                   "kernel is longer than the padded input ", input.ToString());
  int64_t lout = span / stride + 1;
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dout", dout, {batch, cout, lout}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dinput", dinput, input.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", dweight, weight.shape));
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dbias", *dbias, 1));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dbias", *dbias, {cout}));
  }
  int64_t ck = cin * kw; // GEMM contraction: (input channel, tap)
  if (!FitsBlas(ck) || !FitsBlas(cout) || !FitsBlas(lout) || !FitsBlas(len))
    return BadView(K, "weight", weight, "exceeds the 32-bit BLAS interface");

  F32Input x(input), w(weight), g(dout);
  F32Output dx(dinput), dw(dweight);
  std::fill_n(dx.data(), dinput.numel(), 0.0f);
  std::fill_n(dw.data(), dweight.numel(), 0.0f);
  std::vector<double> db(cout, 0.0);
  // The GEMMs tile the output positions as Conv1D does, bounding the two
  // column buffers to ~8 MiB each.
  int64_t tile = std::min(
      std::max<int64_t>((int64_t{2} << 20) / std::max<int64_t>(ck, 1), 64),
      std::max<int64_t>(lout, 1));
  bool pointwise = kw == 1 && stride == 1 && padding == 0;
  std::unique_ptr<float[]> col = pointwise ? nullptr : Scratch(ck * tile);
  std::unique_ptr<float[]> dcol = pointwise ? nullptr : Scratch(ck * tile);
  for (int64_t b = 0; b < batch; ++b) {
    const float *xb = x.data() + b * cin * len;
    const float *gb = g.data() + b * cout * lout;
    float *dxb = dx.data() + b * cin * len;
    if (dbias)
      for (int64_t o = 0; o < cout; ++o)
        db[o] += vec::Sum(gb + o * lout, lout);
    if (pointwise) { // len == lout: the input is the column matrix
      BlasGemm(false, true, cout, cin, lout, 1.0f, gb, lout, xb, len, 1.0f,
               dw.data(), cin);
      BlasGemm(true, false, cin, lout, cout, 1.0f, w.data(), cin, gb, lout,
               0.0f, dxb, len);
      continue;
    }
    for (int64_t t0 = 0; t0 < lout; t0 += tile) {
      int64_t nt = std::min(tile, lout - t0);
      Im2ColTile(xb, cin, len, kw, stride, padding, t0, nt, col.get());
      // dW += G col^T; dcol = W^T G, scattered back (col2im) into dx.
      BlasGemm(false, true, cout, ck, nt, 1.0f, gb + t0, lout, col.get(), nt,
               1.0f, dw.data(), ck);
      BlasGemm(true, false, ck, nt, cout, 1.0f, w.data(), ck, gb + t0, lout,
               0.0f, dcol.get(), nt);
      for (int64_t c = 0; c < cin; ++c) {
        float *dxc = dxb + c * len;
        for (int64_t tap = 0; tap < kw; ++tap) {
          const float *srcRow = dcol.get() + (c * kw + tap) * nt;
          int64_t shift = tap - padding;
          int64_t lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
          int64_t hi =
              len - shift <= 0 ? 0 : (len - shift + stride - 1) / stride;
          lo = std::clamp<int64_t>(lo - t0, 0, nt);
          hi = std::clamp<int64_t>(hi - t0, lo, nt);
          for (int64_t t = lo; t < hi; ++t)
            dxc[(t0 + t) * stride + shift] += srcRow[t];
        }
      }
    }
  }
  dx.Commit();
  dw.Commit();
  if (dbias) {
    std::unique_ptr<float[]> sums = Scratch(cout);
    for (int64_t o = 0; o < cout; ++o)
      sums[o] = static_cast<float>(db[o]);
    StoreF32(sums.get(), *dbias, 0, cout);
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

absl::Status GroupedMatmulWeightGrad(const TensorView &input,
                                     const TensorView &groupSizes,
                                     const TensorView &dout,
                                     const TensorView &dweight,
                                     bool transposeWeight) {
  constexpr absl::string_view K = "GroupedMatmulWeightGrad";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dout", dout, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dweight", dweight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", dweight));
  int64_t rows = input.dim(0), k = input.dim(1), m = dout.dim(1);
  int64_t experts = groupSizes.dim(0);
  if (dout.dim(0) != rows)
    return BadView(K, "dout", dout, "must have the rows of input ",
                   input.ToString());
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", dweight,
                                    transposeWeight ? Shape{experts, m, k}
                                                    : Shape{experts, k, m}));
  if (!FitsBlas(rows) || !FitsBlas(m) || !FitsBlas(k))
    return BadView(K, "input", input,
                   "exceeds the 32-bit BLAS interface with dout ",
                   dout.ToString());
  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t g = IndexAt(groupSizes, e);
    if (g < 0 || g > rows - total)
      return BadView(K, "groupSizes", groupSizes, "entry ", e, " = ", g,
                     " is negative or overruns the ", rows, " rows of input ",
                     input.ToString());
    total += g;
  }
  if (total != rows)
    return BadView(K, "groupSizes", groupSizes, "sums to ", total,
                   " but input ", input.ToString(), " has ", rows, " rows");
  if (dweight.numel() == 0)
    return absl::OkStatus();

  F32Input a(input), g(dout);
  F32Output dw(dweight);
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t n = IndexAt(groupSizes, e);
    float *dwe = dw.data() + e * k * m;
    const float *ae = a.data() + row * k, *ge = g.data() + row * m;
    // k == 0 (no rows) leaves zeros: Gemm's beta = 0 path.
    if (transposeWeight)
      BlasGemm(true, false, m, k, n, 1.0f, ge, m, ae, k, 0.0f, dwe, k);
    else
      BlasGemm(true, false, k, m, n, 1.0f, ae, k, ge, m, 0.0f, dwe, m);
    row += n;
  }
  dw.Commit();
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoETopKGrad
//===----------------------------------------------------------------------===//

absl::Status MoETopKGrad(const TensorView &logits, const TensorView &dweights,
                         const TensorView &dlogits, int64_t k, bool normalize) {
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

absl::Status MoECombineGrad(const TensorView &input, const TensorView &weights,
                            const TensorView &indices, const TensorView &dout,
                            const TensorView &dinput,
                            const TensorView &dweights) {
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
// ReduceMaxGrad
//===----------------------------------------------------------------------===//

absl::Status ReduceMaxGrad(const TensorView &in, const TensorView &dy,
                           const TensorView &dx,
                           absl::Span<const int64_t> dims) {
  constexpr absl::string_view K = "ReduceMaxGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, in.shape));
  const int64_t rank = in.rank();
  std::vector<bool> reduced(rank, false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= rank)
      return BadView(K, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return BadView(K, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    reduced[dims[i]] = true;
  }
  // As Reduce: the rank of dy tells whether reduced dimensions are kept.
  bool keepDims = dy.rank() == rank;
  Shape expected;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d])
      expected.push_back(in.dim(d));
    else if (keepDims)
      expected.push_back(1);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, expected));
  if (in.numel() == 0)
    return absl::OkStatus();

  // outStride[d]: how far the dy element moves with input dimension d.
  std::vector<int64_t> outStride(rank, 0);
  for (int64_t d = rank - 1, s = 1; d >= 0; --d)
    if (!reduced[d]) {
      outStride[d] = s;
      s *= in.dim(d);
    }
  const int64_t outs = dy.numel(), n = in.numel();
  std::vector<int64_t> best(outs, -1);
  std::vector<float> bestValue(outs);
  F32Input xf(in);
  const float *x = xf.data();
  std::vector<int64_t> coord(rank, 0);
  int64_t o = 0;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    int64_t &b = best[o];
    // The first maximum wins; a NaN, once taken, stays (as in Reduce).
    if (b < 0 ||
        (!std::isnan(bestValue[o]) && (std::isnan(v) || v > bestValue[o]))) {
      b = i;
      bestValue[o] = v;
    }
    for (int64_t d = rank - 1; d >= 0; --d) {
      o += outStride[d];
      if (++coord[d] < in.dim(d))
        break;
      o -= outStride[d] * in.dim(d);
      coord[d] = 0;
    }
  }
  F32Input gf(dy);
  F32Output out(dx);
  std::fill_n(out.data(), n, 0.0f);
  for (int64_t j = 0; j < outs; ++j)
    if (best[j] >= 0)
      out.data()[best[j]] = gf.data()[j];
  out.Commit();
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
