//===- Elementwise.cpp - reference unary, binary, cast, gelu VJP ----------===//
//
// Element by element in double, for the tests.
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

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

absl::Status Unary(UnaryKind kind, const TensorView &in,
                   const TensorView &out) {
  const char *kName = "Unary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  // Element i is read before it is written: in-place safe.
  for (int64_t i = 0; i < in.numel(); ++i)
    StoreF(out, i, static_cast<float>(ApplyUnary(kind, LoadF(in, i))));
  return absl::OkStatus();
}

absl::Status Binary(BinaryKind kind, const TensorView &lhs,
                    const TensorView &rhs, const TensorView &out) {
  const char *kName = "Binary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "rhs", rhs, lhs.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, lhs.shape));
  for (int64_t i = 0; i < lhs.numel(); ++i) {
    // Inputs are exact in f32; one f32 operation is correctly rounded.
    float a = LoadF(lhs, i), b = LoadF(rhs, i), r = 0;
    switch (kind) {
    case BinaryKind::Add:
      r = a + b;
      break;
    case BinaryKind::Sub:
      r = a - b;
      break;
    case BinaryKind::Mul:
      r = a * b;
      break;
    case BinaryKind::Div:
      r = a / b;
      break;
    case BinaryKind::MulNoNan:
      r = b == 0 ? 0 : a * b;
      break;
    }
    StoreF(out, i, r);
  }
  return absl::OkStatus();
}

absl::Status Cast(const TensorView &in, const TensorView &out) {
  const char *kName = "Cast";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  if (IsFloat(in.dtype) && IsInt(out.dtype))
    return BadView(kName, "out", out, "cannot receive floats from in ",
                   in.ToString());
  for (int64_t i = 0; i < in.numel(); ++i) {
    if (IsInt(in.dtype) && IsInt(out.dtype))
      StoreI(out, i, LoadI(in, i));
    else if (IsInt(in.dtype))
      StoreF(out, i, static_cast<float>(LoadI(in, i)));
    else
      StoreF(out, i, LoadF(in, i));
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Clamp and ClampGrad
//===----------------------------------------------------------------------===//

absl::Status Clamp(const TensorView &in, const TensorView &out, double lo,
                   double hi) {
  const char *kName = "Clamp";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  const float l = static_cast<float>(lo), h = static_cast<float>(hi);
  for (int64_t i = 0; i < in.numel(); ++i) {
    float v = static_cast<float>(LoadF(in, i));
    StoreF(out, i, v < l ? l : v > h ? h : v);
  }
  return absl::OkStatus();
}

absl::Status ClampGrad(const TensorView &x, const TensorView &dy,
                       const TensorView &dx, double lo, double hi) {
  const char *kName = "ClampGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", dx, x.shape));
  const float l = static_cast<float>(lo), h = static_cast<float>(hi);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float v = static_cast<float>(LoadF(x, i));
    StoreF(dx, i, v >= l && v <= h ? static_cast<float>(LoadF(dy, i)) : 0.0f);
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// GeluGrad
//===----------------------------------------------------------------------===//

absl::Status GeluGrad(const TensorView &x, const TensorView &dy,
                      const TensorView &dx, bool tanhApproximation) {
  const char *kName = "GeluGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, x.shape));
  const double kPi = 3.14159265358979323846;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = LoadF(x, i), d;
    if (tanhApproximation) {
      // d/dx 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3).
      double c = std::sqrt(2.0 / kPi);
      double t = std::tanh(c * (v + 0.044715 * v * v * v));
      d = 0.5 * (1.0 + t) +
          0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v);
    } else {
      // d/dx x Phi(x) = Phi(x) + x phi(x).
      d = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) +
          v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * kPi);
    }
    StoreF(dx, i, static_cast<float>(LoadF(dy, i) * d));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
