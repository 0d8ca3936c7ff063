//===- Conv.cpp - conv1d, forward and backward ----------------------------===//
//
// Im2col tiles and OpenBLAS GEMMs; the backward products are GEMMs too.
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

absl::Status Conv1D(const TensorView &input, const TensorView &weight,
                    const TensorView *bias, const TensorView &out,
                    int64_t stride, int64_t padding) {
  constexpr absl::string_view K = "Conv1D";
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "out", out, 3));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  int64_t batch = input.dim(0), cin = input.dim(1), len = input.dim(2);
  int64_t cout = weight.dim(0), kw = weight.dim(2);
  if (weight.dim(1) != cin)
    return BadView(K, "weight", weight, "input channels differ from input ",
                   input.ToString());
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckRank(K, "bias", *bias, 1));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "bias", *bias, {cout}));
  }
  if (stride < 1 || padding < 0 || padding > (int64_t{1} << 40))
    return Invalid(K, "stride ", stride, " must be >= 1 and padding ", padding,
                   " >= 0");
  int64_t span = len + 2 * padding - kw;
  if (span < 0)
    return BadView(K, "weight", weight,
                   "kernel is longer than the padded input ", input.ToString());
  int64_t lout = span / stride + 1;
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, {batch, cout, lout}));
  int64_t ck = cin * kw; // GEMM contraction: (input channel, tap)
  if (!FitsBlas(ck) || !FitsBlas(cout) || !FitsBlas(lout))
    return BadView(K, "weight", weight, "exceeds the 32-bit BLAS interface");
  if (out.numel() == 0)
    return absl::OkStatus();

  F32Input x(input), w(weight);
  F32Output y(out);
  std::unique_ptr<float[]> bvals;
  if (bias) {
    bvals = Scratch(cout);
    LoadF32(*bias, 0, cout, bvals.get());
  }
  // im2col a tile of output positions at a time, bounding the scratch to
  // ~8 MiB however long the sequence is.
  int64_t tile = std::min(
      std::max<int64_t>((int64_t{2} << 20) / std::max<int64_t>(ck, 1), 64),
      lout);
  bool pointwise = kw == 1 && stride == 1 && padding == 0;
  std::unique_ptr<float[]> col = pointwise ? nullptr : Scratch(ck * tile);
  for (int64_t b = 0; b < batch; ++b) {
    const float *xb = x.data() + b * cin * len;
    float *yb = y.data() + b * cout * lout;
    if (bias)
      for (int64_t o = 0; o < cout; ++o)
        std::fill_n(yb + o * lout, lout, bvals[o]);
    float beta = bias ? 1.0f : 0.0f;
    if (pointwise) { // the input already is the column matrix
      BlasGemm(false, false, cout, lout, cin, 1.0f, w.data(), cin, xb, len,
               beta, yb, lout);
      continue;
    }
    for (int64_t t0 = 0; t0 < lout; t0 += tile) {
      int64_t nt = std::min(tile, lout - t0);
      Im2ColTile(xb, cin, len, kw, stride, padding, t0, nt, col.get());
      BlasGemm(false, false, cout, nt, ck, 1.0f, w.data(), ck, col.get(), nt,
               beta, yb + t0, lout);
    }
  }
  y.Commit();
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

} // namespace veomni::rt::cpu
