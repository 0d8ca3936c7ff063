//===- GradientKernels2Test.cpp - CPU gradient kernels, second set --------===//
//
// GeluGrad, LayerNormGrad, SliceGrad, Conv1DGrad, GroupedMatmulWeightGrad,
// MoETopKGrad, MoECombineGrad and ReduceMaxGrad, checked as
// GradientKernelsTest.cpp checks the first set:
//  - Known: small cases with hand-computed values, on both implementations.
//  - FastMatchesReference: random inputs of several shapes (odd sizes and
//    sizes large enough for several threads included), f32 and bf16, fast
//    path against reference within a stated tolerance.
//  - FiniteDifferences: the reference gradient against central differences
//    of the reference FORWARD kernel, in f32 on small shapes: for a random
//    cotangent dy and every input element i,
//        fd_i = <dy, f(x + h e_i) - f(x - h e_i)> / ((x_i + h) - (x_i - h))
//    must match the kernel's gradient within kFdTol (inputs in [-1, 1],
//    h = 1e-2). Where the forward is piecewise (top-k, max), inputs are
//    spread so that no step of h changes the selection.
//  - Errors: invalid shapes, types and indices return InvalidArgument from
//    both implementations, with messages starting "<Kernel>: ".
//
// With VEOMNI_GRAD_STATS set in the environment, every comparison prints
// its worst absolute error and its worst error relative to the tolerance.
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
#include <functional>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

namespace fast = veomni::rt::cpu;
namespace ref = veomni::rt::cpu::ref;
using cpu::ReduceKind;
using cpu::UnaryKind;
using namespace kerneltest;

/// `groups` random sizes >= 0 summing to `rows`, some of them zero.
Buffer RandomGroups(DType t, int64_t groups, int64_t rows, Rng &rng) {
  Buffer b(t, {groups});
  std::vector<int64_t> cuts = {0, rows};
  for (int64_t g = 1; g < groups; ++g)
    cuts.push_back(Pick(rng, 0, rows));
  std::sort(cuts.begin(), cuts.end());
  for (int64_t g = 0; g < groups; ++g)
    b.setI(g, cuts[g + 1] - cuts[g]);
  return b;
}

/// Values of `shape` with every `group` consecutive elements a shuffle of
/// {0, spacing, 2 spacing, ...} plus noise below spacing / 4: far enough
/// apart that a finite-difference step never reorders them.
Buffer Spread(Shape shape, int64_t group, float spacing, Rng &rng) {
  Buffer b(DType::F32, std::move(shape));
  std::uniform_real_distribution<float> noise(-spacing / 4, spacing / 4);
  std::vector<int64_t> rank(group);
  for (int64_t at = 0; at < b.numel(); at += group) {
    std::iota(rank.begin(), rank.end(), 0);
    std::shuffle(rank.begin(), rank.end(), rng);
    for (int64_t i = 0; i < group && at + i < b.numel(); ++i)
      b.setF(at + i, rank[i] * spacing + noise(rng));
  }
  return b;
}

// Comparisons: test/unit/runtime/GradientTestUtil.h.

const double kPi = 3.14159265358979323846;

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

//===----------------------------------------------------------------------===//
// LayerNormGrad
//===----------------------------------------------------------------------===//

TEST(LayerNormGradTest, Known) {
  // x = [-1 0 1 0], eps 0: mean 0, var 1/2, r = sqrt 2, n = r x. weight 1,
  // dy = [1 0 0 0]: dn = dy, mean(dn) = 1/4, mean(dn n) = -sqrt(2) / 4;
  // dx = r (dn - 1/4 + n sqrt(2) / 4) = sqrt(2) [1/4 -1/4 1/4 -1/4].
  // dweight = dy n = [-sqrt 2, 0, 0, 0]; dbias = dy.
  const double r2 = std::sqrt(2.0);
  Buffer x = Floats(DType::F32, {1, 4}, {-1, 0, 1, 0});
  Buffer w = Floats(DType::F32, {4}, {1, 1, 1, 1});
  Buffer dy = Floats(DType::F32, {1, 4}, {1, 0, 0, 0});
  for (const auto &impl : BOTH(LayerNormGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {1, 4}), dw = Garbage(DType::F32, {4});
    Buffer db = Garbage(DType::F32, {4});
    TensorView dbv = db.view();
    ASSERT_OK(impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw.view(), &dbv,
                      0.0));
    EXPECT_TRUE(Values(dx, {r2 / 4, -r2 / 4, r2 / 4, -r2 / 4}));
    EXPECT_TRUE(Values(dw, {-r2, 0, 0, 0}));
    EXPECT_TRUE(Values(db, {1, 0, 0, 0}));
    // No bias: the same dx and dweight.
    dw = Garbage(DType::F32, {4});
    ASSERT_OK(impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw.view(),
                      nullptr, 0.0));
    EXPECT_TRUE(Values(dw, {-r2, 0, 0, 0}));
    // No rows: zero weight and bias gradients.
    Buffer x0(DType::F32, {0, 4}), dx0(DType::F32, {0, 4});
    ASSERT_OK(impl.fn(x0.view(), w.view(), x0.view(), dx0.view(), dw.view(),
                      &dbv, 1e-5));
    EXPECT_TRUE(Values(dw, {0, 0, 0, 0}, 0));
    EXPECT_TRUE(Values(db, {0, 0, 0, 0}, 0));
  }
}

TEST(LayerNormGradTest, FastMatchesReference) {
  Rng rng(53);
  // {512, 1024} has enough work for several threads.
  const Shape shapes[] = {{1, 1},    {3, 7}, {2, 5, 64}, {4, 129},   {37, 256},
                          {1000, 3}, {0, 5}, {8},        {512, 1024}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      for (bool bias : {false, true}) {
        double eps = bias ? 1e-5 : 1e-2;
        std::string what = absl::StrCat("LayerNormGrad fast/ref ", Name(t), " ",
                                        Str(s), " bias ", bias, " eps ", eps);
        SCOPED_TRACE(what);
        int64_t d = s.back(), rows = d ? Buffer(t, s).numel() / d : 0;
        Buffer x = Uniform(t, s, rng, -2, 2);
        Buffer w = Uniform(t, {d}, rng, 0.5, 1.5);
        Buffer dy = Uniform(t, s, rng);
        Buffer wantDx = Garbage(t, s), gotDx = Garbage(t, s);
        Buffer wantDw = Garbage(t, {d}), gotDw = Garbage(t, {d});
        Buffer wantDb = Garbage(t, {d}), gotDb = Garbage(t, {d});
        TensorView wantDbv = wantDb.view(), gotDbv = gotDb.view();
        ASSERT_OK(ref::LayerNormGrad(x.view(), w.view(), dy.view(),
                                     wantDx.view(), wantDw.view(),
                                     bias ? &wantDbv : nullptr, eps));
        ASSERT_OK(fast::LayerNormGrad(x.view(), w.view(), dy.view(),
                                      gotDx.view(), gotDw.view(),
                                      bias ? &gotDbv : nullptr, eps));
        // dx: r (|r| up to ~1/std) times terms with means over d; dweight
        // and dbias: sums of `rows` terms.
        EXPECT_TRUE(AllClose(gotDx, wantDx, FastTol(t, d, 4), what + " dx"));
        EXPECT_TRUE(
            AllClose(gotDw, wantDw, FastTol(t, rows, 2), what + " dweight"));
        if (bias)
          EXPECT_TRUE(
              AllClose(gotDb, wantDb, FastTol(t, rows), what + " dbias"));
      }
    }
  }
}

TEST(LayerNormGradTest, FiniteDifferences) {
  Rng rng(54);
  const Shape shapes[] = {{3, 8}, {2, 2, 5}, {1, 1}};
  for (const Shape &s : shapes) {
    int64_t d = s.back();
    std::string what = absl::StrCat("LayerNormGrad vs FD ", Str(s));
    SCOPED_TRACE(what);
    const double eps = 1e-3;
    Buffer x = Uniform(DType::F32, s, rng);
    Buffer w = Uniform(DType::F32, {d}, rng, 0.5, 1.5);
    Buffer b = Uniform(DType::F32, {d}, rng);
    Buffer dy = Uniform(DType::F32, s, rng);
    Buffer dx = Garbage(DType::F32, s), dw = Garbage(DType::F32, {d});
    Buffer db = Garbage(DType::F32, {d});
    TensorView dbv = db.view(), bv = b.view();
    ASSERT_OK(ref::LayerNormGrad(x.view(), w.view(), dy.view(), dx.view(),
                                 dw.view(), &dbv, eps));
    auto forward = [&] {
      Buffer y(DType::F32, s);
      EXPECT_TRUE(ref::LayerNorm(x.view(), w.view(), &bv, y.view(), eps).ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, what + " dx"));
    EXPECT_TRUE(
        MatchesFiniteDifferences(w, dw, dy, forward, what + " dweight"));
    EXPECT_TRUE(MatchesFiniteDifferences(b, db, dy, forward, what + " dbias"));
  }
}

TEST(LayerNormGradTest, Errors) {
  Buffer x(DType::F32, {2, 4}), w(DType::F32, {4}), dy(DType::F32, {2, 4});
  Buffer dx(DType::F32, {2, 4}), dw(DType::F32, {4}), db(DType::F32, {4});
  Buffer w3(DType::F32, {3}), dy3(DType::F32, {2, 3}), db3(DType::F32, {3});
  Buffer dxInt(DType::I32, {2, 4}), scalar(DType::F32, {});
  TensorView db3v = db3.view();
  for (const auto &impl : BOTH(LayerNormGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w3.view(), dy.view(), dx.view(), dw.view(),
                           nullptr, 1e-5),
                   LayerNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dy3.view(), dx.view(), dw.view(),
                           nullptr, 1e-5),
                   LayerNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dy.view(), dxInt.view(),
                           dw.view(), nullptr, 1e-5),
                   LayerNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw.view(),
                           &db3v, 1e-5),
                   LayerNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(scalar.view(), w.view(), scalar.view(),
                           scalar.view(), dw.view(), nullptr, 1e-5),
                   LayerNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw.view(),
                           nullptr, -1.0),
                   LayerNormGrad);
  }
}

//===----------------------------------------------------------------------===//
// SliceGrad
//===----------------------------------------------------------------------===//

TEST(SliceGradTest, Known) {
  // dx [2, 5], rows 0..1, columns 1 and 3: dy lands there, zeros elsewhere.
  Buffer dy = Floats(DType::F32, {2, 2}, {1, 2, 3, 4});
  const std::vector<int64_t> start = {0, 1}, limit = {2, 5}, step = {1, 2};
  for (const auto &impl : BOTH(SliceGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {2, 5});
    ASSERT_OK(impl.fn(dy.view(), dx.view(), start, limit, step));
    EXPECT_TRUE(Values(dx, {0, 1, 0, 2, 0, 0, 3, 0, 4, 0}, 0));
    // A scalar is its own slice.
    Buffer s = Floats(DType::F32, {}, {7}), ds = Garbage(DType::F32, {});
    ASSERT_OK(impl.fn(s.view(), ds.view(), {}, {}, {}));
    EXPECT_TRUE(Values(ds, {7}, 0));
  }
}

TEST(SliceGradTest, FastMatchesReference) {
  Rng rng(55);
  const DType types[] = {DType::F32, DType::BF16, DType::F16, DType::I32,
                         DType::I64};
  for (DType t : types) {
    for (int trial = 0; trial < 40; ++trial) {
      int64_t rank = Pick(rng, 1, 4);
      Shape shape;
      std::vector<int64_t> start, limit, step;
      Shape out;
      for (int64_t d = 0; d < rank; ++d) {
        int64_t n = Pick(rng, 1, trial == 0 ? 300 : 7);
        int64_t lo = Pick(rng, 0, n - 1), hi = Pick(rng, lo + 1, n);
        int64_t st = Pick(rng, 1, 3);
        shape.push_back(n);
        start.push_back(lo);
        limit.push_back(hi);
        step.push_back(st);
        out.push_back((hi - lo + st - 1) / st);
      }
      std::string what = absl::StrCat(
          "SliceGrad fast/ref ", Name(t), " ", Str(shape), " start ",
          Str(start), " limit ", Str(limit), " step ", Str(step));
      SCOPED_TRACE(what);
      Buffer dy = IsFloat(t) ? Uniform(t, out, rng)
                             : RandomInts(t, out, rng, -1000, 1000);
      Buffer want = Garbage(t, shape), got = Garbage(t, shape);
      ASSERT_OK(ref::SliceGrad(dy.view(), want.view(), start, limit, step));
      ASSERT_OK(fast::SliceGrad(dy.view(), got.view(), start, limit, step));
      EXPECT_TRUE(AllClose(got, want, {0, 0}, what)); // a copy: exact
    }
  }
}

TEST(SliceGradTest, FiniteDifferences) {
  // Slice is linear: its VJP must be its transpose.
  Rng rng(56);
  Buffer x = Uniform(DType::F32, {4, 3, 7}, rng);
  const std::vector<int64_t> start = {1, 0, 2}, limit = {4, 3, 7},
                             step = {2, 1, 3};
  Shape out = {2, 3, 2};
  Buffer dy = Uniform(DType::F32, out, rng);
  Buffer dx = Garbage(DType::F32, x.shape);
  ASSERT_OK(ref::SliceGrad(dy.view(), dx.view(), start, limit, step));
  auto forward = [&] {
    Buffer y(DType::F32, out);
    EXPECT_TRUE(ref::Slice(x.view(), y.view(), start, limit, step).ok());
    return y;
  };
  EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, "SliceGrad vs FD"));
}

TEST(SliceGradTest, Errors) {
  Buffer dy(DType::F32, {2, 2}), dx(DType::F32, {2, 5});
  Buffer dyBf16(DType::BF16, {2, 2}), dy3(DType::F32, {2, 3});
  const std::vector<int64_t> start = {0, 1}, limit = {2, 5}, step = {1, 2};
  const std::vector<int64_t> zeroStep = {1, 0}, farLimit = {2, 6},
                             backwards = {2, 0};
  const std::vector<int64_t> one = {0};
  for (const auto &impl : BOTH(SliceGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(dyBf16.view(), dx.view(), start, limit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy3.view(), dx.view(), start, limit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, limit, zeroStep),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, farLimit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, backwards, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), one, limit, step),
                   SliceGrad);
  }
}

//===----------------------------------------------------------------------===//
// Conv1DGrad
//===----------------------------------------------------------------------===//

struct ConvGrads {
  Buffer dx, dw, db;
};

ConvGrads GarbageConvGrads(DType t, const Buffer &x, const Buffer &w) {
  return {Garbage(t, x.shape), Garbage(t, w.shape), Garbage(t, {w.shape[0]})};
}

TEST(Conv1DGradTest, Known) {
  // x = [1 2 3], w = [1 -1], stride 1, no padding: out[t] = x[t] - x[t+1].
  // dout = [1 1]: dw[k] = sum_t x[t+k] = [3 5]; dx = [1 0 -1]; db = 2.
  // With stride 2 and padding 1: out[t] = x[2t-1] - x[2t] for t = 0, 1,
  // x[-1] = 0. dout = [1 2]: dw = [1*0 + 2*2, 1*1 + 2*3] = [4 7];
  // dx = [-1, 2, -2]; db = 3.
  Buffer x = Floats(DType::F32, {1, 1, 3}, {1, 2, 3});
  Buffer w = Floats(DType::F32, {1, 1, 2}, {1, -1});
  for (const auto &impl : BOTH(Conv1DGrad)) {
    SCOPED_TRACE(impl.name);
    ConvGrads g = GarbageConvGrads(DType::F32, x, w);
    TensorView dbv = g.db.view();
    Buffer dout = Floats(DType::F32, {1, 1, 2}, {1, 1});
    ASSERT_OK(impl.fn(x.view(), w.view(), dout.view(), g.dx.view(), g.dw.view(),
                      &dbv, 1, 0));
    EXPECT_TRUE(Values(g.dx, {1, 0, -1}));
    EXPECT_TRUE(Values(g.dw, {3, 5}));
    EXPECT_TRUE(Values(g.db, {2}));
    Buffer dout2 = Floats(DType::F32, {1, 1, 2}, {1, 2});
    ASSERT_OK(impl.fn(x.view(), w.view(), dout2.view(), g.dx.view(),
                      g.dw.view(), &dbv, 2, 1));
    EXPECT_TRUE(Values(g.dx, {-1, 2, -2}));
    EXPECT_TRUE(Values(g.dw, {4, 7}));
    EXPECT_TRUE(Values(g.db, {3}));
  }
}

struct ConvCase {
  int64_t b, cin, len, cout, k, stride, padding;
};

TEST(Conv1DGradTest, FastMatchesReference) {
  Rng rng(57);
  const ConvCase cases[] = {
      {1, 1, 1, 1, 1, 1, 0},      {2, 3, 9, 4, 3, 2, 1},
      {1, 4, 16, 8, 1, 1, 0},     {2, 5, 33, 7, 5, 3, 2},
      {2, 3, 4, 2, 6, 1, 1},      {0, 3, 8, 2, 3, 1, 1},
      {1, 80, 300, 16, 3, 1, 1},  {2, 16, 3000, 8, 3, 2, 1},
      {1, 512, 2100, 4, 4, 1, 0}, // 3 tiles of output positions
  };
  for (DType t : kFloatTypes) {
    for (const ConvCase &c : cases) {
      for (bool bias : {false, true}) {
        std::string what = absl::StrCat(
            "Conv1DGrad fast/ref ", Name(t), " B ", c.b, " Cin ", c.cin, " L ",
            c.len, " Cout ", c.cout, " K ", c.k, " stride ", c.stride,
            " padding ", c.padding, " bias ", bias);
        SCOPED_TRACE(what);
        int64_t lout = (c.len + 2 * c.padding - c.k) / c.stride + 1;
        Buffer x = Uniform(t, {c.b, c.cin, c.len}, rng);
        Buffer w = Uniform(t, {c.cout, c.cin, c.k}, rng);
        Buffer dout = Uniform(t, {c.b, c.cout, lout}, rng);
        ConvGrads want = GarbageConvGrads(t, x, w);
        ConvGrads got = GarbageConvGrads(t, x, w);
        TensorView wantDb = want.db.view(), gotDb = got.db.view();
        ASSERT_OK(ref::Conv1DGrad(
            x.view(), w.view(), dout.view(), want.dx.view(), want.dw.view(),
            bias ? &wantDb : nullptr, c.stride, c.padding));
        ASSERT_OK(fast::Conv1DGrad(
            x.view(), w.view(), dout.view(), got.dx.view(), got.dw.view(),
            bias ? &gotDb : nullptr, c.stride, c.padding));
        // dx sums Cout * K / stride terms, dw and db B * Lout.
        EXPECT_TRUE(
            AllClose(got.dx, want.dx, FastTol(t, c.cout * c.k), what + " dx"));
        EXPECT_TRUE(
            AllClose(got.dw, want.dw, FastTol(t, c.b * lout), what + " dw"));
        if (bias)
          EXPECT_TRUE(
              AllClose(got.db, want.db, FastTol(t, c.b * lout), what + " db"));
      }
    }
  }
}

TEST(Conv1DGradTest, FiniteDifferences) {
  Rng rng(58);
  const ConvCase cases[] = {
      {2, 3, 9, 4, 3, 2, 1}, {1, 2, 5, 3, 1, 1, 0}, {2, 2, 4, 2, 5, 1, 2}};
  for (const ConvCase &c : cases) {
    std::string what = absl::StrCat(
        "Conv1DGrad vs FD B ", c.b, " Cin ", c.cin, " L ", c.len, " Cout ",
        c.cout, " K ", c.k, " stride ", c.stride, " padding ", c.padding);
    SCOPED_TRACE(what);
    int64_t lout = (c.len + 2 * c.padding - c.k) / c.stride + 1;
    Buffer x = Uniform(DType::F32, {c.b, c.cin, c.len}, rng);
    Buffer w = Uniform(DType::F32, {c.cout, c.cin, c.k}, rng);
    Buffer b = Uniform(DType::F32, {c.cout}, rng);
    Buffer dout = Uniform(DType::F32, {c.b, c.cout, lout}, rng);
    ConvGrads g = GarbageConvGrads(DType::F32, x, w);
    TensorView dbv = g.db.view(), bv = b.view();
    ASSERT_OK(ref::Conv1DGrad(x.view(), w.view(), dout.view(), g.dx.view(),
                              g.dw.view(), &dbv, c.stride, c.padding));
    auto forward = [&] {
      Buffer y(DType::F32, dout.shape);
      EXPECT_TRUE(
          ref::Conv1D(x.view(), w.view(), &bv, y.view(), c.stride, c.padding)
              .ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(x, g.dx, dout, forward, what + " dx"));
    EXPECT_TRUE(MatchesFiniteDifferences(w, g.dw, dout, forward, what + " dw"));
    EXPECT_TRUE(MatchesFiniteDifferences(b, g.db, dout, forward, what + " db"));
  }
}

TEST(Conv1DGradTest, Errors) {
  Buffer x(DType::F32, {1, 2, 5}), w(DType::F32, {3, 2, 3});
  Buffer dout(DType::F32, {1, 3, 3}), dx(DType::F32, {1, 2, 5});
  Buffer dw(DType::F32, {3, 2, 3}), db(DType::F32, {3});
  Buffer wBad(DType::F32, {3, 1, 3}), doutBad(DType::F32, {1, 3, 4});
  Buffer dxBad(DType::F32, {1, 2, 4}), dwInt(DType::I32, {3, 2, 3});
  Buffer db2(DType::F32, {2}), wLong(DType::F32, {3, 2, 9});
  TensorView db2v = db2.view();
  for (const auto &impl : BOTH(Conv1DGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), wBad.view(), dout.view(), dx.view(),
                           dw.view(), nullptr, 1, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), doutBad.view(), dx.view(),
                           dw.view(), nullptr, 1, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dout.view(), dxBad.view(),
                           dw.view(), nullptr, 1, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dout.view(), dx.view(),
                           dwInt.view(), nullptr, 1, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dout.view(), dx.view(),
                           dw.view(), &db2v, 1, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dout.view(), dx.view(),
                           dw.view(), nullptr, 0, 0),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), w.view(), dout.view(), dx.view(),
                           dw.view(), nullptr, 1, -1),
                   Conv1DGrad);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), wLong.view(), dout.view(), dx.view(),
                           dw.view(), nullptr, 1, 0),
                   Conv1DGrad);
  }
}

//===----------------------------------------------------------------------===//
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

TEST(GroupedMatmulWeightGradTest, Known) {
  // Rows [1 2], [3 4] to expert 0, none to expert 1, [5 6] to expert 2;
  // dout rows [1], [-1], [2]: dW_0 = [1 2]^T [1] + [3 4]^T [-1] = [-2 -2]^T,
  // dW_1 = 0, dW_2 = [10 12]^T ([K, M] = [2, 1]; transposed [1, 2]).
  Buffer x = Floats(DType::F32, {3, 2}, {1, 2, 3, 4, 5, 6});
  Buffer groups = Ints(DType::I64, {3}, {2, 0, 1});
  Buffer dout = Floats(DType::F32, {3, 1}, {1, -1, 2});
  for (const auto &impl : BOTH(GroupedMatmulWeightGrad)) {
    SCOPED_TRACE(impl.name);
    for (bool tw : {false, true}) {
      Buffer dw = Garbage(DType::F32, tw ? Shape{3, 1, 2} : Shape{3, 2, 1});
      ASSERT_OK(impl.fn(x.view(), groups.view(), dout.view(), dw.view(), tw));
      EXPECT_TRUE(Values(dw, {-2, -2, 0, 0, 10, 12}));
    }
  }
}

TEST(GroupedMatmulWeightGradTest, FastMatchesReference) {
  Rng rng(59);
  struct Case {
    int64_t rows, k, m, experts;
  };
  const Case cases[] = {{1, 1, 1, 1},
                        {7, 3, 5, 4},
                        {0, 4, 3, 2},
                        {64, 32, 48, 8},
                        {300, 64, 96, 5}};
  for (DType t : kFloatTypes) {
    for (DType gt : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        for (bool tw : {false, true}) {
          std::string what =
              absl::StrCat("GroupedMatmulWeightGrad fast/ref ", Name(t),
                           " groups ", Name(gt), " rows ", c.rows, " K ", c.k,
                           " M ", c.m, " E ", c.experts, " transpose ", tw);
          SCOPED_TRACE(what);
          Buffer x = Uniform(t, {c.rows, c.k}, rng);
          Buffer dout = Uniform(t, {c.rows, c.m}, rng);
          Buffer groups = RandomGroups(gt, c.experts, c.rows, rng);
          Shape ws =
              tw ? Shape{c.experts, c.m, c.k} : Shape{c.experts, c.k, c.m};
          Buffer want = Garbage(t, ws), got = Garbage(t, ws);
          ASSERT_OK(ref::GroupedMatmulWeightGrad(x.view(), groups.view(),
                                                 dout.view(), want.view(), tw));
          ASSERT_OK(fast::GroupedMatmulWeightGrad(x.view(), groups.view(),
                                                  dout.view(), got.view(), tw));
          EXPECT_TRUE(AllClose(got, want, FastTol(t, c.rows), what));
        }
      }
    }
  }
}

TEST(GroupedMatmulWeightGradTest, FiniteDifferences) {
  Rng rng(60);
  for (bool tw : {false, true}) {
    std::string what =
        absl::StrCat("GroupedMatmulWeightGrad vs FD transpose ", tw);
    SCOPED_TRACE(what);
    const int64_t rows = 6, k = 3, m = 4, experts = 3;
    Buffer x = Uniform(DType::F32, {rows, k}, rng);
    Buffer w = Uniform(DType::F32,
                       tw ? Shape{experts, m, k} : Shape{experts, k, m}, rng);
    Buffer groups = Ints(DType::I32, {experts}, {3, 0, 3});
    Buffer dout = Uniform(DType::F32, {rows, m}, rng);
    Buffer dw = Garbage(DType::F32, w.shape);
    ASSERT_OK(ref::GroupedMatmulWeightGrad(x.view(), groups.view(), dout.view(),
                                           dw.view(), tw));
    auto forward = [&] {
      Buffer y(DType::F32, {rows, m});
      EXPECT_TRUE(
          ref::GroupedMatmul(x.view(), w.view(), groups.view(), y.view(), tw)
              .ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(w, dw, dout, forward, what + " dw"));
  }
}

TEST(GroupedMatmulWeightGradTest, Errors) {
  Buffer x(DType::F32, {4, 3}), dout(DType::F32, {4, 2});
  Buffer dw(DType::F32, {2, 3, 2}), dwT(DType::F32, {2, 2, 3});
  Buffer groups = Ints(DType::I32, {2}, {1, 3});
  Buffer short3 = Ints(DType::I32, {2}, {1, 2});
  Buffer negative = Ints(DType::I64, {2}, {-1, 5});
  Buffer floatGroups = Floats(DType::F32, {2}, {1, 3});
  Buffer doutRows(DType::F32, {3, 2}), dwInt(DType::I32, {2, 3, 2});
  for (const auto &impl : BOTH(GroupedMatmulWeightGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), short3.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), negative.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), floatGroups.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), groups.view(), dout.view(), dwT.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), groups.view(), dout.view(), dw.view(), true),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), groups.view(), doutRows.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), groups.view(), dout.view(), dwInt.view(), false),
        GroupedMatmulWeightGrad);
  }
}

//===----------------------------------------------------------------------===//
// MoETopKGrad
//===----------------------------------------------------------------------===//

TEST(MoETopKGradTest, Known) {
  // Two experts, logits [0 0]: p = [1/2 1/2], expert 0 chosen (ties go to
  // the lower). k = 1 without normalize, g = 1: dx = p (c - <c, p>) =
  // [1/4 -1/4]. With normalize the weight is 1 whatever the logits: 0.
  // Row 2: logits [0 ln 3 0], k 2, normalize: w = softmax([ln 3, 0]) over
  // experts 1, 0 = [3/4 1/4]; g = [1 0]: <g, w> = 3/4;
  // dx[1] = 3/4 (1 - 3/4) = 3/16, dx[0] = 1/4 (0 - 3/4) = -3/16, dx[2] = 0.
  const float ln3 = 1.0986122886681098f;
  Buffer l2 = Floats(DType::F32, {1, 2}, {0, 0});
  Buffer one = Floats(DType::F32, {1, 1}, {1});
  Buffer l3 = Floats(DType::F32, {1, 3}, {0, ln3, 0});
  Buffer g3 = Floats(DType::F32, {1, 2}, {1, 0});
  for (const auto &impl : BOTH(MoETopKGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {1, 2});
    ASSERT_OK(impl.fn(l2.view(), one.view(), dx.view(), 1, false));
    EXPECT_TRUE(Values(dx, {0.25, -0.25}));
    ASSERT_OK(impl.fn(l2.view(), one.view(), dx.view(), 1, true));
    EXPECT_TRUE(Values(dx, {0, 0}));
    Buffer dx3 = Garbage(DType::F32, {1, 3});
    ASSERT_OK(impl.fn(l3.view(), g3.view(), dx3.view(), 2, true));
    EXPECT_TRUE(Values(dx3, {-3.0 / 16, 3.0 / 16, 0}));
  }
}

TEST(MoETopKGradTest, FastMatchesReference) {
  Rng rng(61);
  struct Case {
    int64_t tokens, experts;
  };
  const Case cases[] = {{1, 1}, {5, 4}, {17, 8}, {64, 60}, {2048, 64}};
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int64_t k : {int64_t{1}, int64_t{2}, c.experts}) {
        if (k > c.experts || (c.tokens == 2048 && k == c.experts))
          continue;
        for (bool normalize : {false, true}) {
          std::string what = absl::StrCat("MoETopKGrad fast/ref ", Name(t),
                                          " T ", c.tokens, " E ", c.experts,
                                          " k ", k, " normalize ", normalize);
          SCOPED_TRACE(what);
          Buffer logits = Uniform(t, {c.tokens, c.experts}, rng, -4, 4);
          Buffer g = Uniform(t, {c.tokens, k}, rng, -2, 2);
          Buffer want = Garbage(t, logits.shape),
                 got = Garbage(t, logits.shape);
          ASSERT_OK(ref::MoETopKGrad(logits.view(), g.view(), want.view(), k,
                                     normalize));
          ASSERT_OK(fast::MoETopKGrad(logits.view(), g.view(), got.view(), k,
                                      normalize));
          EXPECT_TRUE(AllClose(got, want, FastTol(t, k, 2), what));
        }
      }
    }
  }
}

TEST(MoETopKGradTest, FiniteDifferences) {
  Rng rng(62);
  const int64_t tokens = 4, experts = 5;
  for (int64_t k : {1, 2, 5}) {
    for (bool normalize : {false, true}) {
      std::string what =
          absl::StrCat("MoETopKGrad vs FD k ", k, " normalize ", normalize);
      SCOPED_TRACE(what);
      // Logits 0.7 apart (plus noise): the ranking never changes.
      Buffer logits = Spread({tokens, experts}, experts, 0.7f, rng);
      Buffer g = Uniform(DType::F32, {tokens, k}, rng);
      Buffer dx = Garbage(DType::F32, logits.shape);
      ASSERT_OK(
          ref::MoETopKGrad(logits.view(), g.view(), dx.view(), k, normalize));
      auto forward = [&] {
        Buffer w(DType::F32, {tokens, k}), idx(DType::I32, {tokens, k});
        EXPECT_TRUE(
            ref::MoETopK(logits.view(), w.view(), idx.view(), k, normalize)
                .ok());
        return w;
      };
      EXPECT_TRUE(
          MatchesFiniteDifferences(logits, dx, g, forward, what + " dlogits"));
    }
  }
}

TEST(MoETopKGradTest, Errors) {
  Buffer logits(DType::F32, {3, 4}), g(DType::F32, {3, 2});
  Buffer dx(DType::F32, {3, 4}), gBad(DType::F32, {3, 3});
  Buffer dxBad(DType::F32, {3, 5}), dxInt(DType::I32, {3, 4});
  Buffer rank1(DType::F32, {4}), g5(DType::F32, {3, 5});
  for (const auto &impl : BOTH(MoETopKGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), gBad.view(), dx.view(), 2, false),
                   MoETopKGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), g.view(), dxBad.view(), 2, true),
                   MoETopKGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), g.view(), dxInt.view(), 2, true),
                   MoETopKGrad);
    EXPECT_INVALID(impl, impl.fn(logits.view(), g5.view(), dx.view(), 5, true),
                   MoETopKGrad);
    EXPECT_INVALID(impl, impl.fn(logits.view(), g.view(), dx.view(), 0, true),
                   MoETopKGrad);
    EXPECT_INVALID(impl, impl.fn(rank1.view(), g.view(), rank1.view(), 2, true),
                   MoETopKGrad);
  }
}

//===----------------------------------------------------------------------===//
// MoECombineGrad
//===----------------------------------------------------------------------===//

TEST(MoECombineGradTest, Known) {
  // Two tokens, k 2, experts [[1 0], [0 1]]: rows in expert order are
  // (0,1), (1,0) for expert 0, then (0,0), (1,1) for expert 1. H = 1.
  // input rows [10 20 30 40], weights [[1 2], [3 4]], dout [1, -1]:
  // dinput[row (t, j)] = w[t, j] dout[t]: row 0 <- (0,1): 2, row 1 <- (1,0):
  // -3, row 2 <- (0,0): 1, row 3 <- (1,1): -4. dweights[t, j] =
  // dout[t] input[row]: (0,0) 30, (0,1) 10, (1,0) -20, (1,1) -40.
  Buffer input = Floats(DType::F32, {4, 1}, {10, 20, 30, 40});
  Buffer weights = Floats(DType::F32, {2, 2}, {1, 2, 3, 4});
  Buffer indices = Ints(DType::I32, {2, 2}, {1, 0, 0, 1});
  Buffer dout = Floats(DType::F32, {2, 1}, {1, -1});
  for (const auto &impl : BOTH(MoECombineGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {4, 1}), dw = Garbage(DType::F32, {2, 2});
    ASSERT_OK(impl.fn(input.view(), weights.view(), indices.view(), dout.view(),
                      dx.view(), dw.view()));
    EXPECT_TRUE(Values(dx, {2, -3, 1, -4}));
    EXPECT_TRUE(Values(dw, {30, 10, -20, -40}));
  }
}

TEST(MoECombineGradTest, FastMatchesReference) {
  Rng rng(63);
  struct Case {
    int64_t tokens, k, hidden, maxId;
  };
  const Case cases[] = {{1, 1, 1, 0},      {5, 2, 3, 3}, {16, 4, 64, 7},
                        {33, 2, 17, 5000}, // ids far above their count
                        {512, 8, 256, 63}, {0, 2, 4, 3}};
  for (DType t : kFloatTypes) {
    for (DType it : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        std::string what = absl::StrCat(
            "MoECombineGrad fast/ref ", Name(t), " ", Name(it), " T ", c.tokens,
            " k ", c.k, " H ", c.hidden, " ids <= ", c.maxId);
        SCOPED_TRACE(what);
        Buffer input = Uniform(t, {c.tokens * c.k, c.hidden}, rng);
        Buffer weights = Uniform(t, {c.tokens, c.k}, rng);
        Buffer indices = RandomInts(it, {c.tokens, c.k}, rng, 0, c.maxId);
        Buffer dout = Uniform(t, {c.tokens, c.hidden}, rng);
        Buffer wantDx = Garbage(t, input.shape),
               gotDx = Garbage(t, input.shape);
        Buffer wantDw = Garbage(t, weights.shape);
        Buffer gotDw = Garbage(t, weights.shape);
        ASSERT_OK(ref::MoECombineGrad(input.view(), weights.view(),
                                      indices.view(), dout.view(),
                                      wantDx.view(), wantDw.view()));
        ASSERT_OK(fast::MoECombineGrad(input.view(), weights.view(),
                                       indices.view(), dout.view(),
                                       gotDx.view(), gotDw.view()));
        EXPECT_TRUE(AllClose(gotDx, wantDx, FastTol(t, 1), what + " dinput"));
        EXPECT_TRUE(
            AllClose(gotDw, wantDw, FastTol(t, c.hidden), what + " dweights"));
      }
    }
  }
}

TEST(MoECombineGradTest, FiniteDifferences) {
  Rng rng(64);
  const int64_t tokens = 4, k = 2, hidden = 3;
  Buffer input = Uniform(DType::F32, {tokens * k, hidden}, rng);
  Buffer weights = Uniform(DType::F32, {tokens, k}, rng);
  Buffer indices = Ints(DType::I64, {tokens, k}, {2, 0, 1, 2, 0, 1, 2, 1});
  Buffer dout = Uniform(DType::F32, {tokens, hidden}, rng);
  Buffer dx = Garbage(DType::F32, input.shape);
  Buffer dw = Garbage(DType::F32, weights.shape);
  ASSERT_OK(ref::MoECombineGrad(input.view(), weights.view(), indices.view(),
                                dout.view(), dx.view(), dw.view()));
  auto forward = [&] {
    Buffer y(DType::F32, {tokens, hidden});
    EXPECT_TRUE(
        ref::MoECombine(input.view(), weights.view(), indices.view(), y.view())
            .ok());
    return y;
  };
  EXPECT_TRUE(MatchesFiniteDifferences(input, dx, dout, forward,
                                       "MoECombineGrad vs FD dinput"));
  EXPECT_TRUE(MatchesFiniteDifferences(weights, dw, dout, forward,
                                       "MoECombineGrad vs FD dweights"));
}

TEST(MoECombineGradTest, Errors) {
  Buffer input(DType::F32, {4, 3}), weights(DType::F32, {2, 2});
  Buffer indices = Ints(DType::I32, {2, 2}, {0, 1, 1, 0});
  Buffer negative = Ints(DType::I32, {2, 2}, {0, -1, 1, 0});
  Buffer floatIdx(DType::F32, {2, 2}), idxBad = Ints(DType::I32, {2}, {0, 1});
  Buffer dout(DType::F32, {2, 3}), doutBad(DType::F32, {2, 4});
  Buffer dx(DType::F32, {4, 3}), dw(DType::F32, {2, 2});
  Buffer dxBad(DType::F32, {3, 3}), dwInt(DType::I32, {2, 2});
  for (const auto &impl : BOTH(MoECombineGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), negative.view(),
                           dout.view(), dx.view(), dw.view()),
                   MoECombineGrad);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), floatIdx.view(),
                           dout.view(), dx.view(), dw.view()),
                   MoECombineGrad);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), idxBad.view(),
                           dout.view(), dx.view(), dw.view()),
                   MoECombineGrad);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), indices.view(),
                           doutBad.view(), dx.view(), dw.view()),
                   MoECombineGrad);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), indices.view(),
                           dout.view(), dxBad.view(), dw.view()),
                   MoECombineGrad);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), weights.view(), indices.view(),
                           dout.view(), dx.view(), dwInt.view()),
                   MoECombineGrad);
  }
}

//===----------------------------------------------------------------------===//
// ReduceMaxGrad
//===----------------------------------------------------------------------===//

TEST(ReduceMaxGradTest, Known) {
  // [[1 5 5] [7 2 7]] over dim 1: the first maxima are (0,1) and (1,0).
  // Over dims [0, 1] with keep_dims: (1,0). A NaN takes the gradient.
  Buffer x = Floats(DType::F32, {2, 3}, {1, 5, 5, 7, 2, 7});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Buffer withNan = Floats(DType::F32, {1, 4}, {1, nan, 3, nan});
  const std::vector<int64_t> dim1 = {1}, both = {0, 1};
  for (const auto &impl : BOTH(ReduceMaxGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dy = Floats(DType::F32, {2}, {10, 20});
    Buffer dx = Garbage(DType::F32, {2, 3});
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), dim1));
    EXPECT_TRUE(Values(dx, {0, 10, 0, 20, 0, 0}, 0));
    Buffer dyKept = Floats(DType::F32, {1, 1}, {3});
    ASSERT_OK(impl.fn(x.view(), dyKept.view(), dx.view(), both));
    EXPECT_TRUE(Values(dx, {0, 0, 0, 3, 0, 0}, 0));
    Buffer dyNan = Floats(DType::F32, {1}, {4});
    Buffer dxNan = Garbage(DType::F32, {1, 4});
    ASSERT_OK(impl.fn(withNan.view(), dyNan.view(), dxNan.view(), dim1));
    EXPECT_TRUE(Values(dxNan, {0, 4, 0, 0}, 0));
  }
}

TEST(ReduceMaxGradTest, FastMatchesReference) {
  Rng rng(65);
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const Case cases[] = {
      {{7}, {0}},          {{3, 5}, {1}},    {{3, 5}, {0}},
      {{2, 3, 4}, {0, 2}}, {{2, 3, 4}, {1}}, {{4, 1, 6, 2}, {1, 2, 3}},
      {{300, 257}, {1}},   {{0, 3}, {1}},    {{5, 4}, {0, 1}}};
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (bool keep : {false, true}) {
        std::string what =
            absl::StrCat("ReduceMaxGrad fast/ref ", Name(t), " ", Str(c.shape),
                         " dims ", Str(c.dims), " keep ", keep);
        SCOPED_TRACE(what);
        Shape out;
        for (int64_t d = 0; d < static_cast<int64_t>(c.shape.size()); ++d) {
          bool reduced =
              std::find(c.dims.begin(), c.dims.end(), d) != c.dims.end();
          if (!reduced)
            out.push_back(c.shape[d]);
          else if (keep)
            out.push_back(1);
        }
        // Coarse values: ties (which the first maximum wins) are common.
        Buffer x(t, c.shape);
        for (int64_t i = 0; i < x.numel(); ++i)
          x.setF(i, static_cast<float>(Pick(rng, -20, 20)) / 4);
        Buffer dy = Uniform(t, out, rng);
        Buffer want = Garbage(t, c.shape), got = Garbage(t, c.shape);
        ASSERT_OK(ref::ReduceMaxGrad(x.view(), dy.view(), want.view(), c.dims));
        ASSERT_OK(fast::ReduceMaxGrad(x.view(), dy.view(), got.view(), c.dims));
        EXPECT_TRUE(AllClose(got, want, {0, 0}, what)); // a copy: exact
      }
    }
  }
}

TEST(ReduceMaxGradTest, FiniteDifferences) {
  Rng rng(66);
  // Values 0.1 apart within each reduced group: a step never changes the
  // maximum. Groups of dim 1 of [3, 6] are rows.
  Buffer x = Spread({3, 6}, 6, 0.1f, rng);
  const std::vector<int64_t> dims = {1};
  Buffer dy = Uniform(DType::F32, {3}, rng);
  Buffer dx = Garbage(DType::F32, {3, 6});
  ASSERT_OK(ref::ReduceMaxGrad(x.view(), dy.view(), dx.view(), dims));
  auto forward = [&] {
    Buffer y(DType::F32, {3});
    EXPECT_TRUE(ref::Reduce(ReduceKind::Max, x.view(), y.view(), dims).ok());
    return y;
  };
  EXPECT_TRUE(
      MatchesFiniteDifferences(x, dx, dy, forward, "ReduceMaxGrad vs FD"));
}

TEST(ReduceMaxGradTest, Errors) {
  Buffer x(DType::F32, {2, 3}), dy(DType::F32, {2}), dx(DType::F32, {2, 3});
  Buffer dyBad(DType::F32, {3}), dxBad(DType::F32, {3, 2});
  Buffer dxInt(DType::I32, {2, 3}), xInt(DType::I64, {2, 3});
  const std::vector<int64_t> dim1 = {1}, dim2 = {2}, unsorted = {1, 0};
  for (const auto &impl : BOTH(ReduceMaxGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), dyBad.view(), dx.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dxBad.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dxInt.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(xInt.view(), dy.view(), dx.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dx.view(), dim2),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dx.view(), unsorted),
                   ReduceMaxGrad);
  }
}

} // namespace
} // namespace veomni::rt
