//===- ElementwiseKernelsTest.cpp - unary, binary, cast, gelu VJP kernels -===//
//
// For every kernel of the topic, forward and backward: Known (hand-computed
// values, on the reference and the fast path), FastMatchesReference (random
// shapes and element types, within TolFor), FiniteDifferences for the VJPs,
// and Errors (InvalidArgument from both).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "test/unit/runtime/GradientTestUtil.h"
#include "test/unit/runtime/KernelTestUtil.h"
#include "test/unit/runtime/reference/Reference.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

using namespace kerneltest;

//===----------------------------------------------------------------------===//
// Unary, Binary, Cast
//===----------------------------------------------------------------------===//

const UnaryKind kUnaryKinds[] = {
    UnaryKind::Neg,     UnaryKind::Exp,  UnaryKind::Log,  UnaryKind::Sqrt,
    UnaryKind::Rsqrt,   UnaryKind::Sin,  UnaryKind::Cos,  UnaryKind::Tanh,
    UnaryKind::Sigmoid, UnaryKind::Silu, UnaryKind::Gelu, UnaryKind::GeluTanh,
    UnaryKind::IsFinite};

bool PositiveDomain(UnaryKind k) {
  return k == UnaryKind::Log || k == UnaryKind::Sqrt || k == UnaryKind::Rsqrt;
}

TEST(UnaryTest, Known) {
  struct Case {
    UnaryKind kind;
    float x;
    double want;
  };
  const Case cases[] = {
      {UnaryKind::Neg, 2, -2},
      {UnaryKind::Exp, 1, 2.718281828459045},
      {UnaryKind::Log, 2, 0.6931471805599453},
      {UnaryKind::Sqrt, 4, 2},
      {UnaryKind::Rsqrt, 4, 0.5},
      {UnaryKind::Sin, 1, 0.8414709848078965},
      {UnaryKind::Cos, 1, 0.5403023058681398},
      {UnaryKind::Tanh, 1, 0.7615941559557649},
      {UnaryKind::Sigmoid, 2, 0.8807970779778823},
      {UnaryKind::Silu, 1, 0.7310585786300049},
      {UnaryKind::Gelu, 1, 0.8413447460685429},
      {UnaryKind::GeluTanh, 1, 0.8411919906082768},
      {UnaryKind::Gelu, 0, 0},
      {UnaryKind::Sigmoid, 0, 0.5},
  };
  for (const auto &impl : BOTH(Unary)) {
    SCOPED_TRACE(impl.name);
    for (const Case &c : cases) {
      SCOPED_TRACE(static_cast<int>(c.kind));
      Buffer in = Floats(DType::F32, {1}, {c.x});
      Buffer out = Garbage(DType::F32, {1});
      ASSERT_OK(impl.fn(c.kind, in.view(), out.view()));
      EXPECT_TRUE(Values(out, {c.want}, 1e-6));
    }
    // bf16 rounds once: exp(1) = 2.71828 -> 2.71875.
    Buffer in = Floats(DType::BF16, {1}, {1});
    Buffer out = Garbage(DType::BF16, {1});
    ASSERT_OK(impl.fn(UnaryKind::Exp, in.view(), out.view()));
    EXPECT_TRUE(Values(out, {2.71875}, 0));
  }
}

TEST(UnaryTest, FastMatchesReference) {
  Rng rng(4);
  const Shape shapes[] = {{1}, {3}, {7, 1}, {17}, {33, 3}, {65}, {1000}};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (UnaryKind kind : kUnaryKinds) {
      for (const Shape &s : shapes) {
        SCOPED_TRACE(absl::StrCat(Name(t), " kind ", static_cast<int>(kind),
                                  " ", Str(s)));
        Buffer in = PositiveDomain(kind) ? Uniform(t, s, rng, 0.05f, 4)
                                         : Uniform(t, s, rng, -4, 4);
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::Unary(kind, in.view(), want.view()));
        ASSERT_OK(fast::Unary(kind, in.view(), got.view()));
        EXPECT_TRUE(AllClose(got, want, TolFor(t)));
        // In place.
        Buffer inPlace = in;
        ASSERT_OK(fast::Unary(kind, inPlace.view(), inPlace.view()));
        EXPECT_TRUE(AllClose(inPlace, want, TolFor(t))) << "in place";
      }
    }
  }
}

TEST(UnaryTest, Errors) {
  Buffer in(DType::F32, {4}), out(DType::F32, {5}), ints(DType::I32, {4});
  for (const auto &impl : BOTH(Unary)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(UnaryKind::Exp, in.view(), out.view()), Unary);
    EXPECT_INVALID(impl, impl.fn(UnaryKind::Exp, ints.view(), ints.view()),
                   Unary);
  }
}

TEST(BinaryTest, Known) {
  Buffer a = Floats(DType::F32, {3}, {1, 2, 3});
  Buffer b = Floats(DType::F32, {3}, {4, 5, 8});
  for (const auto &impl : BOTH(Binary)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3});
    ASSERT_OK(impl.fn(BinaryKind::Add, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {5, 7, 11}));
    ASSERT_OK(impl.fn(BinaryKind::Sub, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {-3, -3, -5}));
    ASSERT_OK(impl.fn(BinaryKind::Mul, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {4, 10, 24}));
    ASSERT_OK(impl.fn(BinaryKind::Div, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {0.25, 0.4, 0.375}));
    // bf16: 1 + 2^-9 rounds back to 1 (to nearest even).
    Buffer x = Floats(DType::BF16, {1}, {1});
    Buffer y = Floats(DType::BF16, {1}, {1.0f / 512});
    Buffer z = Garbage(DType::BF16, {1});
    ASSERT_OK(impl.fn(BinaryKind::Add, x.view(), y.view(), z.view()));
    EXPECT_TRUE(Values(z, {1}, 0));
  }
}

// The optimizer's guard against a step that is not finite: is_finite tells
// NaN and both infinities from every finite value (the largest, the
// smallest subnormal, -0), and mul_no_nan(x, 0) is 0 even for x NaN or
// infinite, where x * 0 is NaN. 37 elements: whole vectors and a tail.
TEST(BinaryTest, NonFiniteValuesAreToldAndZeroedAway) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float cycle[] = {1.5f, -0.0f, inf, -inf, nan, 3.4e38f, 1e-45f};
  const int n = 37;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = cycle[i % 7];
    y[i] = i % 3 == 0 ? 0.0f : (i % 3 == 1 ? 2.0f : -0.0f);
  }
  for (const auto &impl : BOTH(Unary)) {
    SCOPED_TRACE(impl.name);
    Buffer in = Floats(DType::F32, {n}, x), out = Garbage(DType::F32, {n});
    ASSERT_OK(impl.fn(UnaryKind::IsFinite, in.view(), out.view()));
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(out.f(i), std::isfinite(x[i]) ? 1.0f : 0.0f) << "at " << i;
  }
  for (const auto &impl : BOTH(Binary)) {
    SCOPED_TRACE(impl.name);
    Buffer a = Floats(DType::F32, {n}, x), b = Floats(DType::F32, {n}, y);
    Buffer out = Garbage(DType::F32, {n});
    ASSERT_OK(impl.fn(BinaryKind::MulNoNan, a.view(), b.view(), out.view()));
    for (int i = 0; i < n; ++i) {
      SCOPED_TRACE(absl::StrCat(x[i], " * ", y[i]));
      if (y[i] == 0)
        EXPECT_EQ(out.f(i), 0.0f);
      else if (std::isnan(x[i]))
        EXPECT_TRUE(std::isnan(out.f(i)));
      else
        EXPECT_EQ(out.f(i), x[i] * y[i]);
    }
  }
}

TEST(BinaryTest, FastMatchesReference) {
  Rng rng(5);
  const Shape shapes[] = {{1}, {3}, {7}, {17, 3}, {33}, {2, 65}, {4097}};
  const BinaryKind kinds[] = {BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul,
                              BinaryKind::Div, BinaryKind::MulNoNan};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (BinaryKind kind : kinds) {
      for (const Shape &s : shapes) {
        SCOPED_TRACE(absl::StrCat(Name(t), " kind ", static_cast<int>(kind),
                                  " ", Str(s)));
        Buffer a = Uniform(t, s, rng, -4, 4);
        Buffer b = Uniform(t, s, rng, 0.25f, 4); // away from 0 for Div
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::Binary(kind, a.view(), b.view(), want.view()));
        ASSERT_OK(fast::Binary(kind, a.view(), b.view(), got.view()));
        EXPECT_TRUE(AllClose(got, want, TolFor(t)));
        Buffer lhsInPlace = a, rhsInPlace = b;
        ASSERT_OK(
            fast::Binary(kind, lhsInPlace.view(), b.view(), lhsInPlace.view()));
        EXPECT_TRUE(AllClose(lhsInPlace, want, TolFor(t))) << "out = lhs";
        ASSERT_OK(
            fast::Binary(kind, a.view(), rhsInPlace.view(), rhsInPlace.view()));
        EXPECT_TRUE(AllClose(rhsInPlace, want, TolFor(t))) << "out = rhs";
      }
    }
  }
}

TEST(BinaryTest, Errors) {
  Buffer a(DType::F32, {4}), b(DType::F32, {2, 2}), out(DType::F32, {4});
  Buffer shortOut(DType::F32, {3});
  for (const auto &impl : BOTH(Binary)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl, impl.fn(BinaryKind::Add, a.view(), b.view(), out.view()), Binary);
    EXPECT_INVALID(
        impl, impl.fn(BinaryKind::Mul, a.view(), a.view(), shortOut.view()),
        Binary);
  }
}

TEST(CastTest, Known) {
  // f32 -> bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and
  // 1 + 2^-7 and goes to 1; 1 + 3 * 2^-8 goes to 1 + 2^-6.
  Buffer f = Floats(DType::F32, {3}, {1.00390625f, 1.01171875f, -2.5f});
  Buffer ints = Ints(DType::I64, {3}, {-7, 0, 1 << 20});
  for (const auto &impl : BOTH(Cast)) {
    SCOPED_TRACE(impl.name);
    Buffer bf = Garbage(DType::BF16, {3});
    ASSERT_OK(impl.fn(f.view(), bf.view()));
    EXPECT_TRUE(Values(bf, {1, 1.015625, -2.5}, 0));
    Buffer h = Garbage(DType::F16, {3});
    ASSERT_OK(impl.fn(bf.view(), h.view()));
    EXPECT_TRUE(Values(h, {1, 1.015625, -2.5}, 0));
    Buffer fi = Garbage(DType::F32, {3});
    ASSERT_OK(impl.fn(ints.view(), fi.view()));
    EXPECT_TRUE(Values(fi, {-7, 0, 1 << 20}, 0));
    Buffer i32 = Ints(DType::I32, {3}, {9, 9, 9});
    ASSERT_OK(impl.fn(ints.view(), i32.view()));
    EXPECT_TRUE(Values(i32, {-7, 0, 1 << 20}, 0));
  }
}

TEST(CastTest, FastMatchesReference) {
  Rng rng(6);
  const DType all[] = {DType::F32, DType::BF16, DType::F16, DType::I32,
                       DType::I64};
  for (DType from : all) {
    for (DType to : all) {
      if (IsFloat(from) && !IsFloat(to))
        continue;
      for (int64_t n : {1, 7, 65, 1025}) {
        SCOPED_TRACE(absl::StrCat(Name(from), " -> ", Name(to), " n ", n));
        Buffer in = IsFloat(from) ? Uniform(from, {n}, rng, -100, 100)
                                  : RandomInts(from, {n}, rng, -70000, 70000);
        if (from == DType::F32) // exercise rounding ties and specials
          for (int64_t i = 0; i + 2 < n; i += 5) {
            in.setF(i, 1.00390625f + static_cast<float>(i));
            in.setF(i + 1, INFINITY);
            in.setF(i + 2, 1e-30f);
          }
        Buffer want = Garbage(to, {n}), got = Garbage(to, {n});
        ASSERT_OK(ref::Cast(in.view(), want.view()));
        ASSERT_OK(fast::Cast(in.view(), got.view()));
        EXPECT_TRUE(Identical(got, want));
        if (SizeOf(from) == SizeOf(to)) {
          Buffer inPlace = in;
          TensorView v = inPlace.view();
          TensorView o = v;
          o.dtype = to;
          ASSERT_OK(fast::Cast(v, o));
          inPlace.dtype = to;
          EXPECT_TRUE(Identical(inPlace, want)) << "in place";
        }
      }
    }
  }
}

TEST(CastTest, Errors) {
  Buffer f(DType::F32, {4}), i(DType::I32, {4}), wrong(DType::BF16, {5});
  for (const auto &impl : BOTH(Cast)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(f.view(), i.view()), Cast); // float -> int
    EXPECT_INVALID(impl, impl.fn(f.view(), wrong.view()), Cast);
  }
}

// Comparisons: test/unit/runtime/GradientTestUtil.h.

const double kPi = 3.14159265358979323846;

//===----------------------------------------------------------------------===//
// Clamp and ClampGrad
//===----------------------------------------------------------------------===//

TEST(ClampTest, Known) {
  // [-7, 7], and one-sided bounds (the other +-1e308: none).
  Buffer x = Floats(DType::F32, {5}, {-9, -7, 0.5, 7, 8});
  Buffer dy = Floats(DType::F32, {5}, {1, 2, 3, 4, 5});
  for (const auto &impl : BOTH(Clamp)) {
    SCOPED_TRACE(impl.name);
    Buffer y = Garbage(DType::F32, {5});
    ASSERT_OK(impl.fn(x.view(), y.view(), -7, 7));
    EXPECT_TRUE(Values(y, {-7, -7, 0.5, 7, 7}, 0));
    ASSERT_OK(impl.fn(x.view(), y.view(), -1e308, 7));
    EXPECT_TRUE(Values(y, {-9, -7, 0.5, 7, 7}, 0));
    Buffer inPlace = x;
    ASSERT_OK(impl.fn(inPlace.view(), inPlace.view(), 0, 1e308));
    EXPECT_TRUE(Values(inPlace, {0, 0, 0.5, 7, 8}, 0));
  }
  // The cotangent passes where lo <= x <= hi, bounds included (torch).
  for (const auto &impl : BOTH(ClampGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {5});
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), -7, 7));
    EXPECT_TRUE(Values(dx, {0, 2, 3, 4, 0}, 0));
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), -1e308, 7));
    EXPECT_TRUE(Values(dx, {1, 2, 3, 4, 0}, 0));
  }
}

TEST(ClampTest, FastMatchesReference) {
  Rng rng(53);
  const Shape shapes[] = {{}, {7}, {3, 1000}, {1 << 18}, {0, 4}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s)));
      Buffer x = Uniform(t, s, rng, -9, 9);
      Buffer dy = Uniform(t, s, rng, -2, 2);
      Buffer want = Garbage(t, s), got = Garbage(t, s);
      ASSERT_OK(ref::Clamp(x.view(), want.view(), -3, 5));
      ASSERT_OK(fast::Clamp(x.view(), got.view(), -3, 5));
      EXPECT_TRUE(AllClose(got, want, Tol{0, 0}));
      ASSERT_OK(ref::ClampGrad(x.view(), dy.view(), want.view(), -3, 5));
      ASSERT_OK(fast::ClampGrad(x.view(), dy.view(), got.view(), -3, 5));
      EXPECT_TRUE(AllClose(got, want, Tol{0, 0}));
    }
  }
}

TEST(ClampTest, Errors) {
  Buffer x(DType::F32, {2, 3}), dy(DType::F32, {2, 3}), dx(DType::F32, {2, 3});
  Buffer shortDx(DType::F32, {3, 2}), intX(DType::I32, {2, 3});
  for (const auto &impl : BOTH(Clamp)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), shortDx.view(), 0, 1), Clamp);
    EXPECT_INVALID(impl, impl.fn(intX.view(), dx.view(), 0, 1), Clamp);
  }
  for (const auto &impl : BOTH(ClampGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), shortDx.view(), 0, 1),
                   ClampGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), shortDx.view(), dx.view(), 0, 1),
                   ClampGrad);
  }
}

//===----------------------------------------------------------------------===//
// GeluGrad
//===----------------------------------------------------------------------===//

TEST(GeluGradTest, Known) {
  // Exact: gelu'(0) = 1/2, gelu'(1) = Phi(1) + phi(1), gelu'(-1) =
  // Phi(-1) - phi(-1); far out 1 and 0. Tanh: 1/2 at 0, and at 1
  // 0.5 (1 + t) + 0.5 (1 - t^2) c (1 + 3a), t = tanh(c (1 + a)).
  Buffer x = Floats(DType::F32, {5}, {0, 1, -1, 12, -12});
  Buffer dy = Floats(DType::F32, {5}, {2, 2, 2, 2, 2});
  const double phi1 = std::exp(-0.5) / std::sqrt(2 * kPi);
  const double cdf1 = 0.5 * (1 + std::erf(1 / std::sqrt(2.0)));
  const double c = std::sqrt(2 / kPi), a = 0.044715;
  const double t1 = std::tanh(c * (1 + a));
  const double tanh1 = 0.5 * (1 + t1) + 0.5 * (1 - t1 * t1) * c * (1 + 3 * a);
  const double tanhm1 = 0.5 * (1 - t1) - 0.5 * (1 - t1 * t1) * c * (1 + 3 * a);
  for (const auto &impl : BOTH(GeluGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {5});
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), false));
    EXPECT_TRUE(
        Values(dx, {1, 2 * (cdf1 + phi1), 2 * (1 - cdf1 - phi1), 2, 0}, 1e-6));
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), true));
    EXPECT_TRUE(Values(dx, {1, 2 * tanh1, 2 * tanhm1, 2, 0}, 1e-6));
    // In place, over dy.
    Buffer g = dy;
    ASSERT_OK(impl.fn(x.view(), g.view(), g.view(), false));
    EXPECT_TRUE(
        Values(g, {1, 2 * (cdf1 + phi1), 2 * (1 - cdf1 - phi1), 2, 0}, 1e-6));
  }
}

TEST(GeluGradTest, FastMatchesReference) {
  Rng rng(51);
  const Shape shapes[] = {{}, {1}, {7}, {3, 1000}, {5000}, {1 << 20}, {0, 4}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      for (bool tanhApprox : {false, true}) {
        std::string what = absl::StrCat("GeluGrad fast/ref ", Name(t), " ",
                                        Str(s), " tanh ", tanhApprox);
        SCOPED_TRACE(what);
        Buffer x = Uniform(t, s, rng, -6, 6);
        Buffer dy = Uniform(t, s, rng, -2, 2);
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::GeluGrad(x.view(), dy.view(), want.view(), tanhApprox));
        ASSERT_OK(fast::GeluGrad(x.view(), dy.view(), got.view(), tanhApprox));
        // One product of libm functions in f32: a few ulp.
        EXPECT_TRUE(AllClose(
            got, want, t == DType::F32 ? Tol{1e-5, 1e-6} : Tol{1e-2, 1e-3},
            what));
      }
    }
  }
}

TEST(GeluGradTest, FiniteDifferences) {
  Rng rng(52);
  for (bool tanhApprox : {false, true}) {
    std::string what = absl::StrCat("GeluGrad vs FD tanh ", tanhApprox);
    SCOPED_TRACE(what);
    // Scaled to [-3, 3], where the curvature is.
    Buffer x = Uniform(DType::F32, {4, 9}, rng, -3, 3);
    Buffer dy = Uniform(DType::F32, {4, 9}, rng);
    Buffer dx = Garbage(DType::F32, {4, 9});
    ASSERT_OK(ref::GeluGrad(x.view(), dy.view(), dx.view(), tanhApprox));
    auto forward = [&] {
      Buffer y(DType::F32, x.shape);
      EXPECT_TRUE(ref::Unary(tanhApprox ? UnaryKind::GeluTanh : UnaryKind::Gelu,
                             x.view(), y.view())
                      .ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, what + " dx"));
  }
}

TEST(GeluGradTest, Errors) {
  Buffer x(DType::F32, {2, 3}), dy(DType::F32, {2, 3}), dx(DType::F32, {2, 3});
  Buffer shortDy(DType::F32, {2, 2}), shortDx(DType::F32, {3, 2});
  Buffer intX(DType::I32, {2, 3}), intDx(DType::I64, {2, 3});
  TensorView nullX{nullptr, DType::F32, {2, 3}};
  for (const auto &impl : BOTH(GeluGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), shortDy.view(), dx.view(), false),
                   GeluGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), shortDx.view(), true),
                   GeluGrad);
    EXPECT_INVALID(impl, impl.fn(intX.view(), dy.view(), dx.view(), false),
                   GeluGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), intDx.view(), false),
                   GeluGrad);
    EXPECT_INVALID(impl, impl.fn(nullX, dy.view(), dx.view(), false), GeluGrad);
  }
}

} // namespace
} // namespace veomni::rt
