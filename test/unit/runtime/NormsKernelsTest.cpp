//===- NormsKernelsTest.cpp - rms norm and layer norm kernels -------------===//
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

TEST(RmsNormTest, Known) {
  // x = [3 4]: mean(x^2) = 12.5; w = [1 2].
  Buffer x = Floats(DType::F32, {1, 2}, {3, 4});
  Buffer w = Floats(DType::F32, {2}, {1, 2});
  // bf16, as HF: n = 1 * rsqrt(1 + eps) = 0.99766 (0.4 ulp above
  // 0.99609375) rounds to 0.99609375 first; times 1.5 = 1.494140625 rounds
  // to 1.4921875. Rounding only once (1.4965) would give 1.5.
  Buffer xb = Floats(DType::BF16, {1, 1}, {1});
  Buffer wb = Floats(DType::BF16, {1}, {1.5});
  for (const auto &impl : BOTH(RmsNorm)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 2});
    ASSERT_OK(impl.fn(x.view(), w.view(), out.view(), 1e-6));
    EXPECT_TRUE(Values(out, {0.8485281034827336, 2.2627416092872896}));
    Buffer outb = Garbage(DType::BF16, {1, 1});
    ASSERT_OK(impl.fn(xb.view(), wb.view(), outb.view(), 0.0046875));
    EXPECT_TRUE(Values(outb, {1.4921875}, 0));
  }
}

TEST(RmsNormTest, FastMatchesReference) {
  Rng rng(9);
  const Shape shapes[] = {{1, 1},  {7},      {3, 17},  {2, 5, 64},
                          {9, 65}, {4, 129}, {2, 1024}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      int64_t d = s.back();
      SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s)));
      Buffer in = Uniform(t, s, rng, -3, 3);
      Buffer w = Uniform(t, {d}, rng, 0.5f, 1.5f);
      Buffer want = Garbage(t, s), got = Garbage(t, s);
      ASSERT_OK(ref::RmsNorm(in.view(), w.view(), want.view(), 1e-6));
      ASSERT_OK(fast::RmsNorm(in.view(), w.view(), got.view(), 1e-6));
      EXPECT_TRUE(AllClose(got, want, TolFor(t, d)));
    }
  }
}

TEST(RmsNormTest, Errors) {
  Buffer x(DType::F32, {2, 4}), w(DType::F32, {3}), out(DType::F32, {2, 4});
  Buffer goodW(DType::F32, {4}), wrongOut(DType::F32, {4, 2});
  for (const auto &impl : BOTH(RmsNorm)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), w.view(), out.view(), 1e-6),
                   RmsNorm);
    EXPECT_INVALID(impl, impl.fn(x.view(), goodW.view(), wrongOut.view(), 1e-6),
                   RmsNorm);
  }
}

TEST(LayerNormTest, Known) {
  // x = [1 2 3]: mean 2, biased var 2/3; (x - 2) / sqrt(2/3 + eps).
  Buffer x = Floats(DType::F32, {1, 3}, {1, 2, 3});
  Buffer w = Floats(DType::F32, {3}, {1, 1, 2});
  Buffer b = Floats(DType::F32, {3}, {0, 1, 0});
  const double y = 1.2247356859083902;
  for (const auto &impl : BOTH(LayerNorm)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 3});
    ASSERT_OK(impl.fn(x.view(), w.view(), nullptr, out.view(), 1e-5));
    EXPECT_TRUE(Values(out, {-y, 0, 2 * y}));
    TensorView bv = b.view();
    ASSERT_OK(impl.fn(x.view(), w.view(), &bv, out.view(), 1e-5));
    EXPECT_TRUE(Values(out, {-y, 1, 2 * y}));
  }
}

TEST(LayerNormTest, FastMatchesReference) {
  Rng rng(10);
  const Shape shapes[] = {{1, 1},  {7},      {3, 17},  {2, 5, 64},
                          {9, 65}, {4, 129}, {2, 1280}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      for (int withBias = 0; withBias < 2; ++withBias) {
        int64_t d = s.back();
        SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " bias ", withBias));
        Buffer in = Uniform(t, s, rng, -2, 3);
        Buffer w = Uniform(t, {d}, rng, 0.5f, 1.5f);
        Buffer b = Uniform(t, {d}, rng);
        TensorView bv = b.view();
        const TensorView *bp = withBias ? &bv : nullptr;
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::LayerNorm(in.view(), w.view(), bp, want.view(), 1e-5));
        ASSERT_OK(fast::LayerNorm(in.view(), w.view(), bp, got.view(), 1e-5));
        EXPECT_TRUE(AllClose(got, want, TolFor(t, d)));
      }
    }
  }
}

TEST(LayerNormTest, Errors) {
  Buffer x(DType::F32, {2, 4}), w(DType::F32, {4}), out(DType::F32, {2, 4});
  Buffer badW(DType::F32, {2}), badBias(DType::F32, {5});
  for (const auto &impl : BOTH(LayerNorm)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(x.view(), badW.view(), nullptr, out.view(), 1e-5),
                   LayerNorm);
    TensorView bv = badBias.view();
    EXPECT_INVALID(impl, impl.fn(x.view(), w.view(), &bv, out.view(), 1e-5),
                   LayerNorm);
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

} // namespace
} // namespace veomni::rt
