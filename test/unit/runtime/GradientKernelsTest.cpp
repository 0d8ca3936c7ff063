//===- GradientKernelsTest.cpp - CPU gradient kernels ---------------------===//
//
// For each of RopeInverse, RmsNormGrad, AttentionGrad and CrossEntropyGrad:
//  - Known: small cases with hand-computed values, on both implementations.
//  - FastMatchesReference: random inputs of several shapes (odd sizes
//    included), f32 and bf16, fast path against reference within a stated
//    tolerance.
//  - FiniteDifferences: the reference gradient against central differences
//    of the reference FORWARD kernel, in f32 on small shapes. For a random
//    cotangent dy and every input element i,
//        fd_i = <dy, f(x + h e_i) - f(x - h e_i)> / ((x_i + h) - (x_i - h))
//    (the denominator as actually represented in f32) must match the
//    kernel's dx_i within kFdTol. Inputs lie in [-1, 1], h = 1e-2.
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
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

namespace fast = veomni::rt::cpu;
namespace ref = veomni::rt::cpu::ref;
using cpu::LossReduction;
using cpu::RopeConfig;
using namespace kerneltest;

/// Packed segments [0 0 0 1 1 2 ...], or random ids in [0, 2] (not
/// contiguous) for `scattered`.
Buffer Segments(Rng &rng, int64_t b, int64_t s, bool scattered) {
  Buffer seg(DType::I32, {b, s});
  for (int64_t i = 0; i < b; ++i) {
    int64_t id = 0;
    for (int64_t j = 0; j < s; ++j) {
      if (scattered)
        id = Pick(rng, 0, 2);
      else if (j > 0 && Pick(rng, 0, 4) == 0)
        ++id;
      seg.setI(i * s + j, id);
    }
  }
  return seg;
}

// Comparisons: test/unit/runtime/GradientTestUtil.h.

//===----------------------------------------------------------------------===//
// RopeInverse
//===----------------------------------------------------------------------===//

std::vector<float> TestFrequencies(int64_t d) {
  std::vector<float> freq;
  for (int64_t j = 0; j < d / 2; ++j)
    freq.push_back(0.5f * std::pow(500.0f, -2.0f * j / d));
  return freq;
}

TEST(RopeInverseTest, Known) {
  // D = 2, inv_freq [1], position 1: Rope maps (x0, x1) to
  // (x0 c - x1 s, x1 c + x0 s) with c = cos 1, s = sin 1; the transpose maps
  // (g0, g1) to (g0 c + g1 s, g1 c - g0 s). Scaling 2 doubles both.
  const float invFreq[] = {1};
  Buffer g = Floats(DType::F32, {1, 1, 1, 2}, {1, 2});
  Buffer pos = Ints(DType::I64, {1, 1}, {1});
  const double c = std::cos(1.0), s = std::sin(1.0);
  for (const auto &impl : BOTH(RopeInverse)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.invFreq = invFreq;
    attrs.attentionScaling = 2;
    Buffer out = Garbage(DType::F32, {1, 1, 1, 2});
    ASSERT_OK(impl.fn(g.view(), pos.view(), out.view(), attrs));
    EXPECT_TRUE(Values(out, {2 * (c + 2 * s), 2 * (2 * c - s)}));
  }
}

TEST(RopeInverseTest, UndoesRope) {
  // The rotation is orthogonal: RopeInverse(Rope(x)) = scaling^2 x.
  Rng rng(41);
  const int64_t sections[] = {1, 2, 1};
  for (const auto &impl : BOTH(RopeInverse)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.mropeSection = sections;
    attrs.attentionScaling = 1.5;
    Buffer x = Uniform(DType::F32, {2, 3, 2, 8}, rng);
    Buffer pos = RandomInts(DType::I32, {3, 2, 3}, rng, 0, 100);
    Buffer y = Garbage(DType::F32, x.shape),
           back = Garbage(DType::F32, x.shape);
    ASSERT_OK(ref::Rope(x.view(), pos.view(), y.view(), attrs));
    ASSERT_OK(impl.fn(y.view(), pos.view(), back.view(), attrs));
    Buffer want(DType::F32, x.shape);
    for (int64_t i = 0; i < x.numel(); ++i)
      want.setF(i, 2.25f * x.f(i));
    EXPECT_TRUE(AllClose(back, want, {1e-5, 1e-5}));
  }
}

TEST(RopeInverseTest, FastMatchesReference) {
  Rng rng(42);
  struct Case {
    int64_t b, s, h, d;
    std::vector<int64_t> sections;
    bool invFreq;
  };
  const Case cases[] = {
      {1, 1, 1, 2, {}, false},         {2, 7, 3, 8, {}, false},
      {2, 5, 4, 128, {}, true},        {1, 33, 1, 130, {}, false},
      {2, 7, 3, 16, {2, 3, 3}, false}, {1, 9, 2, 128, {16, 24, 24}, true},
      {2, 3, 1, 4, {1, 1}, false},     {0, 3, 2, 4, {}, false},
      {1, 1024, 8, 128, {}, false}, // enough work for several threads
  };
  for (DType t : kFloatTypes) {
    for (DType pt : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        for (double scaling : {1.0, 1.25}) {
          if (c.s == 1024 && (pt != DType::I32 || scaling == 1.0))
            continue; // the large case once per element type
          RopeConfig attrs;
          attrs.theta = c.d == 128 ? 1000000.0 : 10000.0;
          attrs.mropeSection = c.sections;
          attrs.attentionScaling = scaling;
          std::vector<float> freq = TestFrequencies(c.d);
          if (c.invFreq)
            attrs.invFreq = freq;
          int64_t n = static_cast<int64_t>(c.sections.size());
          Shape posShape = n ? Shape{n, c.b, c.s} : Shape{c.b, c.s};
          std::string what = absl::StrCat(
              "RopeInverse fast/ref ", Name(t), " ", Name(pt), " ",
              Str({c.b, c.s, c.h, c.d}), " sections ", Str(c.sections),
              " invFreq ", c.invFreq, " scaling ", scaling);
          SCOPED_TRACE(what);
          Shape s = {c.b, c.s, c.h, c.d};
          Buffer dy = Uniform(t, s, rng, -2, 2);
          Buffer pos = RandomInts(pt, posShape, rng, 0, 4095);
          Buffer want = Garbage(t, s), got = Garbage(t, s);
          ASSERT_OK(
              ref::RopeInverse(dy.view(), pos.view(), want.view(), attrs));
          ASSERT_OK(
              fast::RopeInverse(dy.view(), pos.view(), got.view(), attrs));
          EXPECT_TRUE(AllClose(got, want, FastTol(t, 2), what));
        }
      }
    }
  }
}

TEST(RopeInverseTest, FiniteDifferences) {
  Rng rng(43);
  struct Case {
    int64_t b, s, h, d;
    std::vector<int64_t> sections;
    bool invFreq;
    double scaling;
  };
  const Case cases[] = {
      {2, 3, 2, 8, {}, false, 1.0},
      {1, 4, 3, 6, {}, true, 1.3},
      {2, 3, 1, 8, {1, 2, 1}, false, 0.8},
  };
  for (const Case &c : cases) {
    std::string what = absl::StrCat(
        "RopeInverse vs FD ", Str({c.b, c.s, c.h, c.d}), " sections ",
        Str(c.sections), " invFreq ", c.invFreq, " scaling ", c.scaling);
    SCOPED_TRACE(what);
    RopeConfig attrs;
    attrs.theta = 100.0;
    attrs.mropeSection = c.sections;
    attrs.attentionScaling = c.scaling;
    std::vector<float> freq = TestFrequencies(c.d);
    if (c.invFreq)
      attrs.invFreq = freq;
    int64_t n = static_cast<int64_t>(c.sections.size());
    Shape s = {c.b, c.s, c.h, c.d};
    Buffer x = Uniform(DType::F32, s, rng);
    Buffer pos = RandomInts(
        DType::I64, n ? Shape{n, c.b, c.s} : Shape{c.b, c.s}, rng, 0, 50);
    Buffer dy = Uniform(DType::F32, s, rng);
    Buffer dx = Garbage(DType::F32, s);
    ASSERT_OK(ref::RopeInverse(dy.view(), pos.view(), dx.view(), attrs));
    auto forward = [&] {
      Buffer y(DType::F32, s);
      EXPECT_TRUE(ref::Rope(x.view(), pos.view(), y.view(), attrs).ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, what + " dx"));
  }
}

TEST(RopeInverseTest, Errors) {
  Buffer odd(DType::F32, {1, 2, 1, 5}), g(DType::F32, {1, 2, 1, 4});
  Buffer pos = Ints(DType::I32, {1, 2}, {0, 1});
  Buffer badPos = Ints(DType::I32, {2, 1}, {0, 1});
  Buffer floatPos = Floats(DType::F32, {1, 2}, {0, 1});
  Buffer pos3 = Ints(DType::I32, {2, 1, 2}, {0, 1, 0, 1});
  Buffer outOdd(DType::F32, {1, 2, 1, 5}), out(DType::F32, {1, 2, 1, 4});
  Buffer outShort(DType::F32, {1, 2, 1, 2}), intOut(DType::I32, {1, 2, 1, 4});
  Buffer rank3(DType::F32, {2, 1, 4});
  const float threeFreqs[] = {1, 1, 1};
  const int64_t badSections[] = {1, 2};
  for (const auto &impl : BOTH(RopeInverse)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    EXPECT_INVALID(impl, impl.fn(odd.view(), pos.view(), outOdd.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(g.view(), badPos.view(), out.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(g.view(), floatPos.view(), out.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(g.view(), pos3.view(), out.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(g.view(), pos.view(), outShort.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(g.view(), pos.view(), intOut.view(), attrs),
                   RopeInverse);
    EXPECT_INVALID(impl, impl.fn(rank3.view(), pos.view(), rank3.view(), attrs),
                   RopeInverse);
    RopeConfig freqs;
    freqs.invFreq = threeFreqs;
    EXPECT_INVALID(impl, impl.fn(g.view(), pos.view(), out.view(), freqs),
                   RopeInverse);
    RopeConfig sections;
    sections.mropeSection = badSections; // sums to 3, D/2 = 2
    EXPECT_INVALID(impl, impl.fn(g.view(), pos3.view(), out.view(), sections),
                   RopeInverse);
    RopeConfig theta;
    theta.theta = 0;
    EXPECT_INVALID(impl, impl.fn(g.view(), pos.view(), out.view(), theta),
                   RopeInverse);
  }
}

//===----------------------------------------------------------------------===//
// RmsNormGrad
//===----------------------------------------------------------------------===//

TEST(RmsNormGradTest, Known) {
  // x = [1 1], eps 0: r = 1, n = x. dy = [1 0], weight [2 3]:
  // dweight = dy * n = [1 0]; dn = [2 0]; mean(dn * x) = 1;
  // dx = r dn - x r^3 mean(dn x) = [2 0] - [1 1] = [1 -1].
  Buffer x = Floats(DType::F32, {1, 2}, {1, 1});
  Buffer w = Floats(DType::F32, {2}, {2, 3});
  Buffer dy = Floats(DType::F32, {1, 2}, {1, 0});
  for (const auto &impl : BOTH(RmsNormGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {1, 2}), dw = Garbage(DType::F32, {2});
    ASSERT_OK(impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw.view(), 0));
    EXPECT_TRUE(Values(dx, {1, -1}));
    EXPECT_TRUE(Values(dw, {1, 0}));
    // No rows: dweight is all zeros.
    Buffer x0(DType::F32, {0, 2}), dx0(DType::F32, {0, 2});
    ASSERT_OK(
        impl.fn(x0.view(), w.view(), x0.view(), dx0.view(), dw.view(), 1e-6));
    EXPECT_TRUE(Values(dw, {0, 0}, 0));
  }
}

TEST(RmsNormGradTest, FastMatchesReference) {
  Rng rng(44);
  // {1024, 1024} has enough work for several threads.
  const Shape shapes[] = {{1, 1},    {3, 7}, {2, 5, 64}, {4, 129},    {37, 256},
                          {1000, 3}, {0, 5}, {8},        {1024, 1024}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      for (double eps : {1e-6, 1e-2}) {
        std::string what = absl::StrCat("RmsNormGrad fast/ref ", Name(t), " ",
                                        Str(s), " eps ", eps);
        SCOPED_TRACE(what);
        int64_t d = s.back(), rows = d ? Buffer(t, s).numel() / d : 0;
        Buffer x = Uniform(t, s, rng, -2, 2);
        Buffer w = Uniform(t, {d}, rng, 0.5, 1.5);
        Buffer dy = Uniform(t, s, rng);
        Buffer wantDx = Garbage(t, s), gotDx = Garbage(t, s);
        Buffer wantDw = Garbage(t, {d}), gotDw = Garbage(t, {d});
        ASSERT_OK(ref::RmsNormGrad(x.view(), w.view(), dy.view(), wantDx.view(),
                                   wantDw.view(), eps));
        ASSERT_OK(fast::RmsNormGrad(x.view(), w.view(), dy.view(), gotDx.view(),
                                    gotDw.view(), eps));
        // dx: r dn (|r| up to ~1/rms) minus a mean over d; dweight: a sum of
        // `rows` terms of size up to ~1/rms.
        EXPECT_TRUE(AllClose(gotDx, wantDx, FastTol(t, d, 4), what + " dx"));
        EXPECT_TRUE(
            AllClose(gotDw, wantDw, FastTol(t, rows, 4), what + " dweight"));
      }
    }
  }
  // Mixed element types: bf16 activations, f32 weight and gradients.
  Shape s = {5, 33};
  Buffer x = Uniform(DType::BF16, s, rng), w = Uniform(DType::F32, {33}, rng);
  Buffer dy = Uniform(DType::F32, s, rng);
  Buffer wantDx = Garbage(DType::F32, s), gotDx = Garbage(DType::F32, s);
  Buffer wantDw = Garbage(DType::BF16, {33}),
         gotDw = Garbage(DType::BF16, {33});
  ASSERT_OK(ref::RmsNormGrad(x.view(), w.view(), dy.view(), wantDx.view(),
                             wantDw.view(), 1e-6));
  ASSERT_OK(fast::RmsNormGrad(x.view(), w.view(), dy.view(), gotDx.view(),
                              gotDw.view(), 1e-6));
  EXPECT_TRUE(AllClose(gotDx, wantDx, FastTol(DType::F32, 33, 4)));
  EXPECT_TRUE(AllClose(gotDw, wantDw, FastTol(DType::BF16, 5, 4)));
}

TEST(RmsNormGradTest, FiniteDifferences) {
  Rng rng(45);
  const Shape shapes[] = {{3, 8}, {2, 2, 13}, {1, 32}};
  for (const Shape &s : shapes) {
    for (double eps : {1e-6, 1e-1}) {
      std::string what =
          absl::StrCat("RmsNormGrad vs FD ", Str(s), " eps ", eps);
      SCOPED_TRACE(what);
      int64_t d = s.back();
      Buffer x = Uniform(DType::F32, s, rng);
      Buffer w = Uniform(DType::F32, {d}, rng);
      Buffer dy = Uniform(DType::F32, s, rng);
      Buffer dx = Garbage(DType::F32, s), dw = Garbage(DType::F32, {d});
      ASSERT_OK(ref::RmsNormGrad(x.view(), w.view(), dy.view(), dx.view(),
                                 dw.view(), eps));
      auto forward = [&] {
        Buffer y(DType::F32, s);
        EXPECT_TRUE(ref::RmsNorm(x.view(), w.view(), y.view(), eps).ok());
        return y;
      };
      EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, what + " dx"));
      EXPECT_TRUE(
          MatchesFiniteDifferences(w, dw, dy, forward, what + " dweight"));
    }
  }
}

TEST(RmsNormGradTest, Errors) {
  Buffer x(DType::F32, {2, 4}), w(DType::F32, {4}), dy(DType::F32, {2, 4});
  Buffer dx(DType::F32, {2, 4}), dw(DType::F32, {4});
  Buffer w5(DType::F32, {5}), dy3(DType::F32, {3, 4}), dx3(DType::F32, {2, 3});
  Buffer dw2(DType::F32, {2, 2}), intDx(DType::I32, {2, 4});
  Buffer scalar(DType::F32, {});
  TensorView null{nullptr, DType::F32, {2, 4}};
  for (const auto &impl : BOTH(RmsNormGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), w5.view(), dy.view(), dx.view(), dw.view(), 1e-6),
        RmsNormGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), w.view(), dy3.view(), dx.view(), dw.view(), 1e-6),
        RmsNormGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), w.view(), dy.view(), dx3.view(), dw.view(), 1e-6),
        RmsNormGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), w.view(), dy.view(), dx.view(), dw2.view(), 1e-6),
        RmsNormGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), w.view(), dy.view(), intDx.view(), dw.view(), 1e-6),
        RmsNormGrad);
    EXPECT_INVALID(impl,
                   impl.fn(scalar.view(), w.view(), scalar.view(),
                           scalar.view(), dw.view(), 1e-6),
                   RmsNormGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), w.view(), null, dx.view(), dw.view(), 1e-6),
        RmsNormGrad);
  }
}

//===----------------------------------------------------------------------===//
// AttentionGrad
//===----------------------------------------------------------------------===//

struct AttentionGrads {
  Buffer dq, dk, dv;
};

AttentionGrads GarbageGrads(DType t, const Buffer &q, const Buffer &k,
                            const Buffer &v) {
  return {Garbage(t, q.shape), Garbage(t, k.shape), Garbage(t, v.shape)};
}

TEST(AttentionGradTest, Known) {
  // One key per kv head: P = 1 for every query, so dq = dk = 0 and dv sums
  // dout over the query heads of its group (Hq = 4, Hkv = 2).
  Buffer q = Filled(DType::F32, {1, 1, 4, 2}, 0.5f);
  Buffer k = Filled(DType::F32, {1, 1, 2, 2}, 1);
  Buffer v = Floats(DType::F32, {1, 1, 2, 1}, {10, 20});
  Buffer dout = Floats(DType::F32, {1, 1, 4, 1}, {1, 2, 3, 4});
  for (const auto &impl : BOTH(AttentionGrad)) {
    SCOPED_TRACE(impl.name);
    AttentionGrads g = GarbageGrads(DType::F32, q, k, v);
    ASSERT_OK(impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                      g.dq.view(), g.dk.view(), g.dv.view(), true, 0.7));
    EXPECT_TRUE(Values(g.dq, {0, 0, 0, 0, 0, 0, 0, 0}));
    EXPECT_TRUE(Values(g.dk, {0, 0, 0, 0}));
    EXPECT_TRUE(Values(g.dv, {3, 7}));
  }
  // Two keys, D = 1, q = 1, k = [0, ln 3], scale 1: P = [1/4, 3/4].
  // dout = 1, v = [4, 0]: dP = [4, 0], delta = 1, dS = [3/4, -3/4];
  // dq = dS . k = -3/4 ln 3; dk = dS q = [3/4, -3/4]; dv = P.
  const float ln3 = 1.0986122886681098f;
  Buffer q1 = Floats(DType::F32, {1, 1, 1, 1}, {1});
  Buffer k2 = Floats(DType::F32, {1, 2, 1, 1}, {0, ln3});
  Buffer v2 = Floats(DType::F32, {1, 2, 1, 1}, {4, 0});
  Buffer d1 = Floats(DType::F32, {1, 1, 1, 1}, {1});
  for (const auto &impl : BOTH(AttentionGrad)) {
    SCOPED_TRACE(impl.name);
    AttentionGrads g = GarbageGrads(DType::F32, q1, k2, v2);
    ASSERT_OK(impl.fn(q1.view(), k2.view(), v2.view(), nullptr, d1.view(),
                      g.dq.view(), g.dk.view(), g.dv.view(), false, 1.0));
    EXPECT_TRUE(Values(g.dq, {-0.75 * ln3}));
    EXPECT_TRUE(Values(g.dk, {0.75, -0.75}));
    EXPECT_TRUE(Values(g.dv, {0.25, 0.75}));
    // No keys: every output row is 0, so dq is 0 (dk, dv are empty).
    Buffer k0(DType::F32, {1, 0, 1, 1}), v0(DType::F32, {1, 0, 1, 1});
    AttentionGrads g0 = GarbageGrads(DType::F32, q1, k0, v0);
    ASSERT_OK(impl.fn(q1.view(), k0.view(), v0.view(), nullptr, d1.view(),
                      g0.dq.view(), g0.dk.view(), g0.dv.view(), false, 1.0));
    EXPECT_TRUE(Values(g0.dq, {0}, 0));
  }
}

TEST(AttentionGradTest, NoQueriesGiveZeroKeyGradients) {
  // S = 0 with Skv = 3 (cross attention): dk and dv must still be written.
  Buffer q(DType::F32, {1, 0, 2, 4}), dout(DType::F32, {1, 0, 2, 3});
  Buffer k = Filled(DType::F32, {1, 3, 1, 4}, 1);
  Buffer v = Filled(DType::F32, {1, 3, 1, 3}, 1);
  for (const auto &impl : BOTH(AttentionGrad)) {
    SCOPED_TRACE(impl.name);
    AttentionGrads g = GarbageGrads(DType::BF16, q, k, v);
    ASSERT_OK(impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                      g.dq.view(), g.dk.view(), g.dv.view(), false, 1.0));
    EXPECT_TRUE(Values(g.dk, std::vector<double>(12, 0.0), 0));
    EXPECT_TRUE(Values(g.dv, std::vector<double>(9, 0.0), 0));
  }
}

TEST(AttentionGradTest, FastMatchesReference) {
  Rng rng(46);
  struct Case {
    int64_t b, s, skv, hq, hkv, d, dv;
  };
  const Case cases[] = {
      {1, 1, 1, 1, 1, 8, 8},
      {2, 7, 7, 4, 2, 16, 16},
      {1, 17, 17, 3, 1, 64, 64},
      {2, 33, 33, 6, 3, 32, 17},
      {1, 65, 65, 2, 2, 24, 24},
      {1, 300, 300, 2, 1, 16, 8},
      {2, 5, 9, 2, 1, 8, 8}, // cross attention: Skv != S
      {1, 17, 3, 4, 4, 16, 7},
      {1, 5, 5, 2, 1, 0, 3}, // D = 0: uniform probabilities
      {1, 5, 5, 2, 1, 4, 0}, // Dv = 0: nothing flows back
  };
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int causal = 0; causal < 2; ++causal) {
        for (int segMode = 0; segMode < 3; ++segMode) { // none, packed, random
          if (c.s != c.skv && (causal || segMode))
            continue;
          std::string what = absl::StrCat(
              "AttentionGrad fast/ref ", Name(t), " B ", c.b, " S ", c.s,
              " Skv ", c.skv, " Hq ", c.hq, " Hkv ", c.hkv, " D ", c.d, " Dv ",
              c.dv, " causal ", causal, " segments ", segMode);
          SCOPED_TRACE(what);
          Buffer q = Uniform(t, {c.b, c.s, c.hq, c.d}, rng, -2, 2);
          Buffer k = Uniform(t, {c.b, c.skv, c.hkv, c.d}, rng, -2, 2);
          Buffer v = Uniform(t, {c.b, c.skv, c.hkv, c.dv}, rng);
          Buffer dout = Uniform(t, {c.b, c.s, c.hq, c.dv}, rng);
          Buffer seg = Segments(rng, c.b, c.s, segMode == 2);
          TensorView sv = seg.view();
          const TensorView *sp = segMode ? &sv : nullptr;
          double scale = c.d ? 1.0 / std::sqrt(static_cast<double>(c.d)) : 1.0;
          AttentionGrads want = GarbageGrads(t, q, k, v);
          AttentionGrads got = GarbageGrads(t, q, k, v);
          ASSERT_OK(ref::AttentionGrad(
              q.view(), k.view(), v.view(), sp, dout.view(), want.dq.view(),
              want.dk.view(), want.dv.view(), causal, scale));
          ASSERT_OK(fast::AttentionGrad(
              q.view(), k.view(), v.view(), sp, dout.view(), got.dq.view(),
              got.dk.view(), got.dv.view(), causal, scale));
          // dq sums over keys (Skv) products of length Dv and D; dk and dv
          // over the queries of a group (S * Hq / Hkv).
          int64_t queries = c.s * (c.hq / c.hkv);
          EXPECT_TRUE(AllClose(got.dq, want.dq,
                               FastTol(t, c.skv * std::max(c.d, c.dv)),
                               what + " dq"));
          EXPECT_TRUE(AllClose(got.dk, want.dk,
                               FastTol(t, queries * std::max(c.d, c.dv)),
                               what + " dk"));
          EXPECT_TRUE(
              AllClose(got.dv, want.dv, FastTol(t, queries), what + " dv"));
        }
      }
    }
  }
}

TEST(AttentionGradTest, FiniteDifferences) {
  Rng rng(47);
  struct Case {
    int64_t b, s, skv, hq, hkv, d, dv;
    bool causal;
    int segMode; // none, packed, random
  };
  const Case cases[] = {
      {1, 5, 5, 2, 2, 4, 4, false, 0}, {2, 5, 5, 4, 2, 4, 3, true, 0},
      {1, 6, 6, 3, 1, 3, 5, false, 1}, {2, 6, 6, 4, 2, 4, 4, true, 2},
      {1, 3, 7, 2, 1, 4, 2, false, 0}, // cross attention
  };
  for (const Case &c : cases) {
    std::string what =
        absl::StrCat("AttentionGrad vs FD B ", c.b, " S ", c.s, " Skv ", c.skv,
                     " Hq ", c.hq, " Hkv ", c.hkv, " D ", c.d, " Dv ", c.dv,
                     " causal ", c.causal, " segments ", c.segMode);
    SCOPED_TRACE(what);
    Buffer q = Uniform(DType::F32, {c.b, c.s, c.hq, c.d}, rng);
    Buffer k = Uniform(DType::F32, {c.b, c.skv, c.hkv, c.d}, rng);
    Buffer v = Uniform(DType::F32, {c.b, c.skv, c.hkv, c.dv}, rng);
    Shape outShape = {c.b, c.s, c.hq, c.dv};
    Buffer dout = Uniform(DType::F32, outShape, rng);
    Buffer seg = Segments(rng, c.b, c.s, c.segMode == 2);
    TensorView sv = seg.view();
    const TensorView *sp = c.segMode ? &sv : nullptr;
    const double scale = 0.9;
    AttentionGrads g = GarbageGrads(DType::F32, q, k, v);
    ASSERT_OK(ref::AttentionGrad(q.view(), k.view(), v.view(), sp, dout.view(),
                                 g.dq.view(), g.dk.view(), g.dv.view(),
                                 c.causal, scale));
    auto forward = [&] {
      Buffer out(DType::F32, outShape);
      EXPECT_TRUE(ref::Attention(q.view(), k.view(), v.view(), sp, out.view(),
                                 c.causal, scale)
                      .ok());
      return out;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(q, g.dq, dout, forward, what + " dq"));
    EXPECT_TRUE(MatchesFiniteDifferences(k, g.dk, dout, forward, what + " dk"));
    EXPECT_TRUE(MatchesFiniteDifferences(v, g.dv, dout, forward, what + " dv"));
  }
}

TEST(AttentionGradTest, Errors) {
  Buffer q(DType::F32, {1, 4, 4, 8}), k(DType::F32, {1, 4, 2, 8});
  Buffer v(DType::F32, {1, 4, 2, 6}), dout(DType::F32, {1, 4, 4, 6});
  Buffer dq(DType::F32, {1, 4, 4, 8}), dk(DType::F32, {1, 4, 2, 8});
  Buffer dv(DType::F32, {1, 4, 2, 6});
  Buffer q3(DType::F32, {1, 4, 3, 8}), dq3(DType::F32, {1, 4, 3, 8});
  Buffer dout3(DType::F32, {1, 4, 3, 6}), doutBad(DType::F32, {1, 4, 4, 8});
  Buffer dkBad(DType::F32, {1, 4, 1, 8}), dvInt(DType::I32, {1, 4, 2, 6});
  Buffer kLong(DType::F32, {1, 6, 2, 8}), vLong(DType::F32, {1, 6, 2, 6});
  Buffer dkLong(DType::F32, {1, 6, 2, 8}), dvLong(DType::F32, {1, 6, 2, 6});
  Buffer segShort = Ints(DType::I32, {1, 3}, {0, 0, 0});
  Buffer segFloat(DType::F32, {1, 4});
  TensorView nullDout{nullptr, DType::F32, {1, 4, 4, 6}};
  for (const auto &impl : BOTH(AttentionGrad)) {
    SCOPED_TRACE(impl.name);
    // 2 kv heads do not divide 3 query heads.
    EXPECT_INVALID(impl,
                   impl.fn(q3.view(), k.view(), v.view(), nullptr, dout3.view(),
                           dq3.view(), dk.view(), dv.view(), false, 1.0),
                   AttentionGrad);
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), nullptr,
                           doutBad.view(), dq.view(), dk.view(), dv.view(),
                           false, 1.0),
                   AttentionGrad); // dout has D, not Dv
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                           dq.view(), dkBad.view(), dv.view(), false, 1.0),
                   AttentionGrad);
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                           dq.view(), dk.view(), dvInt.view(), false, 1.0),
                   AttentionGrad);
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                           dq3.view(), dk.view(), dv.view(), false, 1.0),
                   AttentionGrad); // dq has 3 heads
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), kLong.view(), vLong.view(), nullptr,
                           dout.view(), dq.view(), dkLong.view(), dvLong.view(),
                           true, 1.0),
                   AttentionGrad); // causal needs S == Skv
    TensorView ss = segShort.view(), sf = segFloat.view();
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), &ss, dout.view(),
                           dq.view(), dk.view(), dv.view(), false, 1.0),
                   AttentionGrad);
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), &sf, dout.view(),
                           dq.view(), dk.view(), dv.view(), false, 1.0),
                   AttentionGrad);
    EXPECT_INVALID(impl,
                   impl.fn(q.view(), k.view(), v.view(), nullptr, nullDout,
                           dq.view(), dk.view(), dv.view(), false, 1.0),
                   AttentionGrad);
  }
}

//===----------------------------------------------------------------------===//
// CrossEntropyGrad
//===----------------------------------------------------------------------===//

TEST(CrossEntropyGradTest, Known) {
  // Row 0: uniform over 3, label 2: softmax - onehot = [1/3 1/3 -2/3].
  // Row 1: [0 ln 3 0], label 0: [1/5 3/5 1/5] - [1 0 0]. Row 2 ignored.
  const float ln3 = 1.0986122886681098f;
  Buffer logits = Floats(DType::F32, {3, 3}, {0, 0, 0, 0, ln3, 0, 5, 5, 5});
  Buffer labels = Ints(DType::I64, {3}, {2, 0, -100});
  const double third = 1.0 / 3;
  const std::vector<double> base = {third, third, -2 * third, -0.8, 0.6,
                                    0.2,   0,     0,          0};
  auto scaled = [&](std::vector<double> rowScale) {
    std::vector<double> out(9);
    for (int i = 0; i < 9; ++i)
      out[i] = base[i] * rowScale[i / 3];
    return out;
  };
  for (const auto &impl : BOTH(CrossEntropyGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 3});
    Buffer two = Floats(DType::F32, {}, {2});
    ASSERT_OK(impl.fn(logits.view(), labels.view(), two.view(), out.view(),
                      -100, LossReduction::Sum));
    EXPECT_TRUE(Values(out, scaled({2, 2, 0})));
    ASSERT_OK(impl.fn(logits.view(), labels.view(), two.view(), out.view(),
                      -100, LossReduction::Mean)); // 2 counted rows
    EXPECT_TRUE(Values(out, scaled({1, 1, 0})));
    Buffer perRow = Floats(DType::F32, {3}, {3, -1, 7});
    ASSERT_OK(impl.fn(logits.view(), labels.view(), perRow.view(), out.view(),
                      -100, LossReduction::None));
    EXPECT_TRUE(Values(out, scaled({3, -1, 0})));
    // Every row ignored: all zeros, for Mean too.
    Buffer allIgnored = Ints(DType::I32, {3}, {-100, -100, -100});
    ASSERT_OK(impl.fn(logits.view(), allIgnored.view(), two.view(), out.view(),
                      -100, LossReduction::Mean));
    EXPECT_TRUE(Values(out, std::vector<double>(9, 0.0), 0));
  }
}

TEST(CrossEntropyGradTest, FastMatchesReference) {
  Rng rng(48);
  const Shape labelShapes[] = {{1}, {7}, {2, 17}};
  const int64_t vocabs[] = {1, 3, 65, 1000};
  const LossReduction reductions[] = {LossReduction::Mean, LossReduction::Sum,
                                      LossReduction::None};
  // Enough work for several threads.
  for (DType t : kFloatTypes) {
    for (LossReduction r : reductions) {
      std::string what = absl::StrCat("CrossEntropyGrad fast/ref ", Name(t),
                                      " labels i64[4x24] V 5000 reduction ",
                                      static_cast<int>(r));
      SCOPED_TRACE(what);
      Buffer logits = Uniform(t, {4, 24, 5000}, rng, -6, 6);
      Buffer labels = RandomInts(DType::I64, {4, 24}, rng, 0, 4999);
      labels.setI(5, -100);
      Buffer dloss =
          Uniform(DType::F32, r == LossReduction::None ? Shape{4, 24} : Shape{},
                  rng, -2, 2);
      Buffer want = Garbage(t, logits.shape), got = Garbage(t, logits.shape);
      ASSERT_OK(ref::CrossEntropyGrad(logits.view(), labels.view(),
                                      dloss.view(), want.view(), -100, r));
      ASSERT_OK(fast::CrossEntropyGrad(logits.view(), labels.view(),
                                       dloss.view(), got.view(), -100, r));
      EXPECT_TRUE(AllClose(got, want, FastTol(t, 5000, 2), what));
    }
  }
  for (DType t : kFloatTypes) {
    for (DType lt : {DType::I32, DType::I64}) {
      for (const Shape &ls : labelShapes) {
        for (int64_t vocab : vocabs) {
          for (int64_t ignore : {int64_t{-100}, int64_t{0}}) {
            for (LossReduction r : reductions) {
              std::string what = absl::StrCat(
                  "CrossEntropyGrad fast/ref ", Name(t), " labels ", Name(lt),
                  Str(ls), " V ", vocab, " ignore ", ignore, " reduction ",
                  static_cast<int>(r));
              SCOPED_TRACE(what);
              Buffer logits = Uniform(t, Cat(ls, {vocab}), rng, -6, 6);
              Buffer labels = RandomInts(lt, ls, rng, 0, vocab - 1);
              for (int64_t i = 0; i < labels.numel(); ++i)
                if (Pick(rng, 0, 3) == 0)
                  labels.setI(i, ignore);
              Buffer dloss =
                  Uniform(DType::F32, r == LossReduction::None ? ls : Shape{},
                          rng, -2, 2);
              Buffer want = Garbage(t, logits.shape);
              Buffer got = Garbage(t, logits.shape);
              ASSERT_OK(ref::CrossEntropyGrad(logits.view(), labels.view(),
                                              dloss.view(), want.view(), ignore,
                                              r));
              ASSERT_OK(fast::CrossEntropyGrad(logits.view(), labels.view(),
                                               dloss.view(), got.view(), ignore,
                                               r));
              // Each element is a softmax (a sum over V) times |g| <= 2.
              EXPECT_TRUE(AllClose(got, want, FastTol(t, vocab, 2), what));
            }
          }
        }
      }
    }
  }
}

TEST(CrossEntropyGradTest, FiniteDifferences) {
  Rng rng(49);
  const LossReduction reductions[] = {LossReduction::Mean, LossReduction::Sum,
                                      LossReduction::None};
  const Shape labelShapes[] = {{5}, {2, 3}};
  for (const Shape &ls : labelShapes) {
    for (int64_t vocab : {int64_t{1}, int64_t{7}}) {
      for (LossReduction r : reductions) {
        std::string what =
            absl::StrCat("CrossEntropyGrad vs FD labels ", Str(ls), " V ",
                         vocab, " reduction ", static_cast<int>(r));
        SCOPED_TRACE(what);
        const int64_t ignore = -100;
        Buffer logits = Uniform(DType::F32, Cat(ls, {vocab}), rng);
        Buffer labels = RandomInts(DType::I32, ls, rng, 0, vocab - 1);
        labels.setI(1, ignore); // at least one ignored row
        Shape lossShape = r == LossReduction::None ? ls : Shape{};
        Buffer dloss = Uniform(DType::F32, lossShape, rng);
        Buffer dlogits = Garbage(DType::F32, logits.shape);
        ASSERT_OK(ref::CrossEntropyGrad(logits.view(), labels.view(),
                                        dloss.view(), dlogits.view(), ignore,
                                        r));
        auto forward = [&] {
          Buffer loss(DType::F32, lossShape);
          EXPECT_TRUE(ref::CrossEntropy(logits.view(), labels.view(),
                                        loss.view(), ignore, r)
                          .ok());
          return loss;
        };
        EXPECT_TRUE(MatchesFiniteDifferences(logits, dlogits, dloss, forward,
                                             what + " dlogits"));
      }
    }
  }
}

TEST(CrossEntropyGradTest, Errors) {
  Buffer logits(DType::F32, {2, 3}), dlogits(DType::F32, {2, 3});
  Buffer scalar(DType::F32, {}), rows(DType::F32, {2});
  Buffer bf16Scalar(DType::BF16, {}), dlogitsBad(DType::F32, {2, 4});
  Buffer intOut(DType::I32, {2, 3}), rank0(DType::F32, {});
  Buffer tooBig = Ints(DType::I32, {2}, {0, 3});
  Buffer negative = Ints(DType::I64, {2}, {-1, 0});
  Buffer good = Ints(DType::I32, {2}, {0, 2});
  Buffer badLabels = Ints(DType::I32, {3}, {0, 1, 2});
  Buffer floatLabels = Floats(DType::F32, {2}, {0, 1});
  Buffer noLabels(DType::I32, {});
  for (const auto &impl : BOTH(CrossEntropyGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), tooBig.view(), scalar.view(),
                           dlogits.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), negative.view(), scalar.view(),
                           dlogits.view(), -100, LossReduction::Sum),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), badLabels.view(), scalar.view(),
                           dlogits.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), floatLabels.view(), scalar.view(),
                           dlogits.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), scalar.view(),
                           dlogits.view(), -100, LossReduction::None),
                   CrossEntropyGrad); // None wants dloss [2]
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), rows.view(),
                           dlogits.view(), -100, LossReduction::Sum),
                   CrossEntropyGrad); // Sum wants dloss []
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), bf16Scalar.view(),
                           dlogits.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), scalar.view(),
                           dlogitsBad.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), scalar.view(),
                           intOut.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(rank0.view(), noLabels.view(), scalar.view(),
                           rank0.view(), -100, LossReduction::Mean),
                   CrossEntropyGrad);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), scalar.view(),
                           dlogits.view(), -100, static_cast<LossReduction>(7)),
                   CrossEntropyGrad);
  }
}

} // namespace
} // namespace veomni::rt
