//===- Norms.cpp - rms norm and layer norm, forward and backward ----------===//
//
// Row kernels: each row is brought to f32 (in place for f32 tensors,
// through a row buffer otherwise), computed with the vector loops of
// VecMath, and rounded once on the way out. Weight gradients sum rows in
// fixed chunks of f64 partials, so they do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/MoEUtil.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

namespace {

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

namespace {

/// Fixed chunks of rows whose sums go to f64 partials, added in order
/// afterwards: the sums do not depend on how many threads ran.
constexpr int64_t kRowChunks = 32;

} // namespace

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

} // namespace veomni::rt::cpu
