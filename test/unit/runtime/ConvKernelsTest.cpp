//===- ConvKernelsTest.cpp - conv1d kernels -------------------------------===//
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
// Conv1D
//===----------------------------------------------------------------------===//

TEST(Conv1DTest, Known) {
  // x = [1 2 3 4 5], w = [1 0 -1], padding 1, stride 2: windows centred at
  // 0, 2, 4 over [0 1 2 3 4 5 0] give 0-2, 2-4, 4-0 = -2 -2 4; bias +10.
  Buffer x = Floats(DType::F32, {1, 1, 5}, {1, 2, 3, 4, 5});
  Buffer w = Floats(DType::F32, {1, 1, 3}, {1, 0, -1});
  Buffer bias = Floats(DType::F32, {1}, {10});
  // Two channels in, two out: out[o] = sum_c w[o,c] * x[c], kernel 1.
  Buffer x2 = Floats(DType::F32, {1, 2, 2}, {1, 2, 3, 4});
  Buffer w2 = Floats(DType::F32, {2, 2, 1}, {1, 1, 1, -1});
  for (const auto &impl : BOTH(Conv1D)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 1, 3});
    ASSERT_OK(impl.fn(x.view(), w.view(), nullptr, out.view(), 2, 1));
    EXPECT_TRUE(Values(out, {-2, -2, 4}));
    TensorView b = bias.view();
    ASSERT_OK(impl.fn(x.view(), w.view(), &b, out.view(), 2, 1));
    EXPECT_TRUE(Values(out, {8, 8, 14}));
    Buffer out2 = Garbage(DType::F32, {1, 2, 2});
    ASSERT_OK(impl.fn(x2.view(), w2.view(), nullptr, out2.view(), 1, 0));
    EXPECT_TRUE(Values(out2, {4, 6, -2, -2}));
  }
}

TEST(Conv1DTest, FastMatchesReference) {
  Rng rng(3);
  for (DType t : kFloatTypes) {
    for (int64_t cin : {1, 3, 16}) {
      for (int64_t cout : {1, 5}) {
        for (int64_t length : {1, 7, 33, 100}) {
          for (int64_t kernel : {1, 3, 4}) {
            for (int64_t stride : {1, 2, 3}) {
              for (int64_t padding : {0, 1, 2}) {
                if (length + 2 * padding < kernel)
                  continue;
                bool withBias = (length + kernel + stride) % 2 == 0;
                int64_t batch = length > 50 ? 1 : 2;
                int64_t outLength =
                    (length + 2 * padding - kernel) / stride + 1;
                SCOPED_TRACE(absl::StrCat(
                    Name(t), " B ", batch, " Cin ", cin, " Cout ", cout, " L ",
                    length, " K ", kernel, " stride ", stride, " padding ",
                    padding, " bias ", withBias));
                Buffer x = Uniform(t, {batch, cin, length}, rng);
                Buffer w = Uniform(t, {cout, cin, kernel}, rng);
                Buffer b = Uniform(t, {cout}, rng);
                TensorView bv = b.view();
                const TensorView *bp = withBias ? &bv : nullptr;
                Buffer want = Garbage(t, {batch, cout, outLength});
                Buffer got = Garbage(t, {batch, cout, outLength});
                ASSERT_OK(ref::Conv1D(x.view(), w.view(), bp, want.view(),
                                      stride, padding));
                ASSERT_OK(fast::Conv1D(x.view(), w.view(), bp, got.view(),
                                       stride, padding));
                EXPECT_TRUE(AllClose(got, want, TolFor(t, cin * kernel)));
              }
            }
          }
        }
      }
    }
  }
}

TEST(Conv1DTest, Errors) {
  Buffer x(DType::F32, {1, 2, 5}), w(DType::F32, {3, 2, 3});
  Buffer out(DType::F32, {1, 3, 3}), wrongLength(DType::F32, {1, 3, 4});
  Buffer wrongChannels(DType::F32, {3, 1, 3}), badBias(DType::F32, {2});
  Buffer longKernel(DType::F32, {3, 2, 8});
  for (const auto &impl : BOTH(Conv1D)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), w.view(), nullptr, wrongLength.view(), 1, 0),
        Conv1D);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), wrongChannels.view(), nullptr, out.view(), 1, 0),
        Conv1D);
    TensorView b = badBias.view();
    EXPECT_INVALID(impl, impl.fn(x.view(), w.view(), &b, out.view(), 1, 0),
                   Conv1D);
    EXPECT_INVALID(impl, impl.fn(x.view(), w.view(), nullptr, out.view(), 0, 0),
                   Conv1D);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), w.view(), nullptr, out.view(), 1, -1), Conv1D);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), longKernel.view(), nullptr, out.view(), 1, 0),
        Conv1D);
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

} // namespace
} // namespace veomni::rt
