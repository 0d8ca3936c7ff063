//===- Norms.cpp - reference rms norm and layer norm ----------------------===//
//
// Row by row, as Hugging Face computes them, for the tests.
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

absl::Status RmsNorm(const TensorView &in, const TensorView &weight,
                     const TensorView &out, double epsilon) {
  const char *kName = "RmsNorm";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (in.rank() < 1)
    return BadView(kName, "in", in, "must have rank >= 1");
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  int64_t rows = d == 0 ? 0 : in.numel() / d;
  for (int64_t r = 0; r < rows; ++r) {
    double sumSquares = 0;
    for (int64_t i = 0; i < d; ++i) {
      double x = LoadF(in, r * d + i);
      sumSquares += x * x;
    }
    // As HF: the statistics and the scaling in f32...
    float variance = static_cast<float>(sumSquares / static_cast<double>(d));
    float scale = static_cast<float>(
        1.0 /
        std::sqrt(static_cast<double>(variance + static_cast<float>(epsilon))));
    for (int64_t i = 0; i < d; ++i) {
      // ...rounded to the input's type, then multiplied by the weight.
      float normalized = RoundTo(in.dtype, LoadF(in, r * d + i) * scale);
      StoreF(out, r * d + i, LoadF(weight, i) * normalized);
    }
  }
  return absl::OkStatus();
}

absl::Status LayerNorm(const TensorView &in, const TensorView &weight,
                       const TensorView *bias, const TensorView &out,
                       double epsilon) {
  const char *kName = "LayerNorm";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (in.rank() < 1)
    return BadView(kName, "in", in, "must have rank >= 1");
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", *bias, {d}));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  int64_t rows = d == 0 ? 0 : in.numel() / d;
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t i = 0; i < d; ++i)
      mean += LoadF(in, r * d + i);
    mean /= static_cast<double>(d);
    double variance = 0; // biased: divided by d
    for (int64_t i = 0; i < d; ++i) {
      double centered = LoadF(in, r * d + i) - mean;
      variance += centered * centered;
    }
    variance /= static_cast<double>(d);
    double inverse = 1.0 / std::sqrt(variance + epsilon);
    for (int64_t i = 0; i < d; ++i) {
      double y = (LoadF(in, r * d + i) - mean) * inverse * LoadF(weight, i);
      if (bias)
        y += LoadF(*bias, i);
      StoreF(out, r * d + i, static_cast<float>(y));
    }
  }
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
    return BadView(kName, "x", x, "must have rank >= 1");
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
// LayerNormGrad
//===----------------------------------------------------------------------===//

absl::Status LayerNormGrad(const TensorView &x, const TensorView &weight,
                           const TensorView &dy, const TensorView &dx,
                           const TensorView &dweight, const TensorView *dbias,
                           double epsilon) {
  const char *kName = "LayerNormGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  if (x.rank() < 1)
    return BadView(kName, "x", x, "must have rank >= 1");
  int64_t d = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight, {d}));
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dbias", *dbias, {d}));
  }
  if (!(epsilon >= 0))
    return BadView(kName, "x", x, "epsilon must be >= 0, got ", epsilon);
  if (d == 0)
    return absl::OkStatus();
  int64_t rows = x.numel() / d;

  std::vector<double> dw(d, 0.0), db(d, 0.0), n(d), dn(d);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t i = 0; i < d; ++i)
      mean += LoadF(x, r * d + i);
    mean /= static_cast<double>(d);
    double var = 0;
    for (int64_t i = 0; i < d; ++i) {
      double c = LoadF(x, r * d + i) - mean;
      var += c * c;
    }
    var /= static_cast<double>(d);
    double rstd = 1.0 / std::sqrt(var + epsilon);
    double meanDn = 0, meanDnN = 0;
    for (int64_t i = 0; i < d; ++i) {
      double g = LoadF(dy, r * d + i);
      n[i] = (LoadF(x, r * d + i) - mean) * rstd;
      dn[i] = g * LoadF(weight, i);
      dw[i] += g * n[i];
      db[i] += g;
      meanDn += dn[i];
      meanDnN += dn[i] * n[i];
    }
    meanDn /= static_cast<double>(d);
    meanDnN /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i)
      StoreF(dx, r * d + i,
             static_cast<float>(rstd * (dn[i] - meanDn - n[i] * meanDnN)));
  }
  for (int64_t i = 0; i < d; ++i) {
    StoreF(dweight, i, static_cast<float>(dw[i]));
    if (dbias)
      StoreF(*dbias, i, static_cast<float>(db[i]));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
