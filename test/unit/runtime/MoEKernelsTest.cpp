//===- MoEKernelsTest.cpp - MoE router, dispatch, combine kernels ---------===//
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
// MoE: top-k, dispatch, combine
//===----------------------------------------------------------------------===//

TEST(MoETopKTest, Known) {
  // softmax([1 3 2 3]) = [0.0541 0.3995 0.1470 0.3995]: experts 1 and 3 tie
  // and the lower comes first.
  const double p1 = 0.3994863046503028, p2 = 0.14696279851039795;
  Buffer logits = Floats(DType::F32, {1, 4}, {1, 3, 2, 3});
  for (const auto &impl : BOTH(MoETopK)) {
    SCOPED_TRACE(impl.name);
    Buffer w = Garbage(DType::F32, {1, 3});
    Buffer idx = Ints(DType::I32, {1, 3}, {-1, -1, -1});
    ASSERT_OK(impl.fn(logits.view(), w.view(), idx.view(), 3, false));
    EXPECT_TRUE(Values(idx, {1, 3, 2}, 0));
    EXPECT_TRUE(Values(w, {p1, p1, p2}));
    ASSERT_OK(impl.fn(logits.view(), w.view(), idx.view(), 3, true));
    EXPECT_TRUE(Values(idx, {1, 3, 2}, 0));
    double s = 2 * p1 + p2;
    EXPECT_TRUE(Values(w, {p1 / s, p1 / s, p2 / s}));
    Buffer w1 = Garbage(DType::F32, {1, 1});
    Buffer idx1 = Ints(DType::I32, {1, 1}, {-1});
    ASSERT_OK(impl.fn(logits.view(), w1.view(), idx1.view(), 1, true));
    EXPECT_TRUE(Values(idx1, {1}, 0));
    EXPECT_TRUE(Values(w1, {1}));
  }
}

TEST(MoETopKTest, FastMatchesReference) {
  Rng rng(20);
  for (DType t : kFloatTypes) {
    for (int64_t tokens : {1, 7, 33}) {
      for (int64_t experts : {1, 4, 8, 60, 64}) {
        for (int64_t k : {1, 2, 4, 8}) {
          if (k > experts)
            continue;
          for (int normalize = 0; normalize < 2; ++normalize) {
            SCOPED_TRACE(absl::StrCat(Name(t), " T ", tokens, " E ", experts,
                                      " k ", k, " normalize ", normalize));
            // Multiples of 1/16 in [-4, 4]: exact in bf16, with exact ties
            // (the tie rule) but no near-ties (which f32 may order either
            // way).
            Buffer logits(t, {tokens, experts});
            for (int64_t i = 0; i < logits.numel(); ++i)
              logits.setF(i, static_cast<float>(Pick(rng, -64, 64)) / 16);
            Buffer wantW = Garbage(t, {tokens, k}),
                   gotW = Garbage(t, {tokens, k});
            Buffer wantI = Ints(DType::I32, {tokens, k},
                                std::vector<int64_t>(tokens * k, -1));
            Buffer gotI = wantI;
            ASSERT_OK(ref::MoETopK(logits.view(), wantW.view(), wantI.view(), k,
                                   normalize));
            ASSERT_OK(fast::MoETopK(logits.view(), gotW.view(), gotI.view(), k,
                                    normalize));
            EXPECT_TRUE(Identical(gotI, wantI));
            EXPECT_TRUE(AllClose(gotW, wantW, TolFor(t, experts)));
          }
        }
      }
    }
  }
}

TEST(MoETopKTest, Errors) {
  Buffer logits(DType::F32, {2, 4}), w(DType::F32, {2, 2});
  Buffer idx(DType::I32, {2, 2}), wideW(DType::F32, {2, 5});
  Buffer wideI(DType::I32, {2, 5}), badW(DType::F32, {2, 3});
  Buffer floatIdx(DType::F32, {2, 2});
  for (const auto &impl : BOTH(MoETopK)) {
    SCOPED_TRACE(impl.name);
    Buffer w0(DType::F32, {2, 0}), i0(DType::I32, {2, 0});
    EXPECT_INVALID(impl, impl.fn(logits.view(), w0.view(), i0.view(), 0, false),
                   MoETopK);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), wideW.view(), wideI.view(), 5, false),
                   MoETopK);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), badW.view(), idx.view(), 2, false),
                   MoETopK);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), w.view(), floatIdx.view(), 2, false),
                   MoETopK);
  }
}

TEST(MoEDispatchTest, Known) {
  // Pairs (t, j) -> expert: (0,0)->1 (0,1)->0 (1,0)->0 (1,1)->2 (2,0)->1
  // (2,1)->1. Sorted stably by expert: e0: t0 t1 | e1: t0 t2 t2 | e2: t1 |
  // e3: none.
  Buffer input = Floats(DType::F32, {3, 2}, {0, 0.5, 1, 1.5, 2, 2.5});
  Buffer idx = Ints(DType::I32, {3, 2}, {1, 0, 0, 2, 1, 1});
  for (const auto &impl : BOTH(MoEDispatch)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {6, 2});
    Buffer groups = Ints(DType::I32, {4}, {-1, -1, -1, -1});
    ASSERT_OK(impl.fn(input.view(), idx.view(), out.view(), groups.view(), 4));
    EXPECT_TRUE(Values(groups, {2, 3, 1, 0}, 0));
    EXPECT_TRUE(
        Values(out, {0, 0.5, 1, 1.5, 0, 0.5, 2, 2.5, 2, 2.5, 1, 1.5}, 0));
  }
}

TEST(MoEDispatchTest, FastMatchesReference) {
  Rng rng(21);
  for (DType t : kFloatTypes) {
    for (DType it : {DType::I32, DType::I64}) {
      for (int64_t tokens : {1, 7, 33, 200}) {
        for (int64_t k : {1, 2, 4}) {
          for (int64_t experts : {4, 8, 60}) {
            for (int64_t hidden : {1, 17, 64}) {
              SCOPED_TRACE(absl::StrCat(Name(t), " ", Name(it), " T ", tokens,
                                        " k ", k, " E ", experts, " H ",
                                        hidden));
              Buffer input = Uniform(t, {tokens, hidden}, rng);
              Buffer idx = RandomInts(it, {tokens, k}, rng, 0, experts - 1);
              Shape outShape = {tokens * k, hidden};
              Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
              Buffer wantG = Ints(DType::I32, {experts},
                                  std::vector<int64_t>(experts, -1));
              Buffer gotG = wantG;
              ASSERT_OK(ref::MoEDispatch(input.view(), idx.view(), want.view(),
                                         wantG.view(), experts));
              ASSERT_OK(fast::MoEDispatch(input.view(), idx.view(), got.view(),
                                          gotG.view(), experts));
              EXPECT_TRUE(Identical(got, want));
              EXPECT_TRUE(Identical(gotG, wantG));
            }
          }
        }
      }
    }
  }
}

TEST(MoEDispatchTest, Errors) {
  Buffer input(DType::F32, {2, 3}), out(DType::F32, {4, 3});
  Buffer groups(DType::I32, {3});
  Buffer tooBig = Ints(DType::I32, {2, 2}, {0, 3, 1, 2});
  Buffer negative = Ints(DType::I64, {2, 2}, {0, 1, -1, 2});
  Buffer good = Ints(DType::I32, {2, 2}, {0, 1, 1, 2});
  Buffer wrongTokens = Ints(DType::I32, {3, 2}, {0, 1, 1, 2, 0, 0});
  Buffer badOut(DType::F32, {3, 3}), badGroups(DType::I32, {4});
  for (const auto &impl : BOTH(MoEDispatch)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl,
        impl.fn(input.view(), tooBig.view(), out.view(), groups.view(), 3),
        MoEDispatch);
    EXPECT_INVALID(
        impl,
        impl.fn(input.view(), negative.view(), out.view(), groups.view(), 3),
        MoEDispatch);
    EXPECT_INVALID(
        impl,
        impl.fn(input.view(), wrongTokens.view(), out.view(), groups.view(), 3),
        MoEDispatch);
    EXPECT_INVALID(
        impl,
        impl.fn(input.view(), good.view(), badOut.view(), groups.view(), 3),
        MoEDispatch);
    EXPECT_INVALID(
        impl,
        impl.fn(input.view(), good.view(), out.view(), badGroups.view(), 3),
        MoEDispatch);
  }
}

TEST(MoECombineTest, Known) {
  // The routing of MoEDispatchTest.Known: rows in expert order hold
  // (t, j) = (0,1) (1,0) (0,0) (2,0) (2,1) (1,1).
  Buffer idx = Ints(DType::I32, {3, 2}, {1, 0, 0, 2, 1, 1});
  Buffer rows = Floats(DType::F32, {6, 1}, {1, 10, 100, 1000, 10000, 100000});
  Buffer w = Floats(DType::F32, {3, 2}, {0.5, 0.25, 1, 2, 1, -1});
  for (const auto &impl : BOTH(MoECombine)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 1});
    ASSERT_OK(impl.fn(rows.view(), w.view(), idx.view(), out.view()));
    // t0: 0.5 * row 2 + 0.25 * row 0; t1: 1 * row 1 + 2 * row 5;
    // t2: row 3 - row 4.
    EXPECT_TRUE(Values(out, {50.25, 200010, -9000}));
  }
}

TEST(MoECombineTest, FastMatchesReference) {
  Rng rng(22);
  for (DType t : kFloatTypes) {
    for (int64_t tokens : {1, 7, 33, 200}) {
      for (int64_t k : {1, 2, 4}) {
        for (int64_t experts : {4, 60}) {
          for (int64_t hidden : {1, 17, 64}) {
            SCOPED_TRACE(absl::StrCat(Name(t), " T ", tokens, " k ", k, " E ",
                                      experts, " H ", hidden));
            Buffer input = Uniform(t, {tokens * k, hidden}, rng);
            Buffer w = Uniform(t, {tokens, k}, rng, 0, 1);
            Buffer idx =
                RandomInts(DType::I64, {tokens, k}, rng, 0, experts - 1);
            Buffer want = Garbage(t, {tokens, hidden});
            Buffer got = Garbage(t, {tokens, hidden});
            ASSERT_OK(ref::MoECombine(input.view(), w.view(), idx.view(),
                                      want.view()));
            ASSERT_OK(fast::MoECombine(input.view(), w.view(), idx.view(),
                                       got.view()));
            EXPECT_TRUE(AllClose(got, want, TolFor(t, k)));
          }
        }
      }
    }
  }
}

TEST(MoECombineTest, UndoesDispatch) {
  // Dispatch, then combine with weights 1/k: every token comes back.
  Rng rng(23);
  const int64_t tokens = 9, k = 3, experts = 5, hidden = 6;
  Buffer input = Uniform(DType::F32, {tokens, hidden}, rng);
  Buffer idx = RandomInts(DType::I32, {tokens, k}, rng, 0, experts - 1);
  Buffer w = Filled(DType::F32, {tokens, k}, 1.0f / k);
  for (const auto &impl : BOTH(MoECombine)) {
    SCOPED_TRACE(impl.name);
    Buffer rows = Garbage(DType::F32, {tokens * k, hidden});
    Buffer groups = Garbage(DType::I32, {experts});
    ASSERT_OK(ref::MoEDispatch(input.view(), idx.view(), rows.view(),
                               groups.view(), experts));
    Buffer out = Garbage(DType::F32, {tokens, hidden});
    ASSERT_OK(impl.fn(rows.view(), w.view(), idx.view(), out.view()));
    EXPECT_TRUE(AllClose(out, input, TolFor(DType::F32, k)));
  }
}

TEST(MoECombineTest, Errors) {
  Buffer input(DType::F32, {4, 3}), w(DType::F32, {2, 2});
  Buffer idx = Ints(DType::I32, {2, 2}, {0, 1, 1, 2});
  Buffer out(DType::F32, {2, 3});
  Buffer shortInput(DType::F32, {3, 3}),
      badIdx = Ints(DType::I32, {2, 1}, {0, 1});
  Buffer badOut(DType::F32, {2, 4}), floatIdx(DType::F32, {2, 2});
  Buffer negative = Ints(DType::I64, {2, 2}, {0, -1, 1, 2});
  for (const auto &impl : BOTH(MoECombine)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(shortInput.view(), w.view(), idx.view(), out.view()),
                   MoECombine);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), w.view(), badIdx.view(), out.view()),
                   MoECombine);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), w.view(), idx.view(), badOut.view()),
                   MoECombine);
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), w.view(), floatIdx.view(), out.view()),
                   MoECombine);
    // No expert count bounds the ids, but a negative one cannot come from
    // a dispatch.
    EXPECT_INVALID(impl,
                   impl.fn(input.view(), w.view(), negative.view(), out.view()),
                   MoECombine);
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

} // namespace
//===----------------------------------------------------------------------===//
// MoEGroupTopK (DeepSeek-V3's router) and its VJP
//===----------------------------------------------------------------------===//

TEST(MoEGroupTopKTest, Known) {
  // 6 experts in 3 groups of 2. Choices = scores + bias:
  // [0.9 0.1 | 0.5 0.45 | 0.8 0.2] -> group scores 1.0, 0.95, 1.0: groups 0
  // and 2 stay (a tie: the lower first, both kept). Top 2 of experts
  // {0, 1, 4, 5}: 0 (0.9) and 4 (0.8), although expert 2 (0.5) beats 1, 5.
  Buffer scores = Floats(DType::F32, {1, 6}, {0.9, 0.1, 0.5, 0.45, 0.6, 0.2});
  Buffer bias = Floats(DType::F32, {6}, {0, 0, 0, 0, 0.2, 0});
  for (const auto &impl : BOTH(MoEGroupTopK)) {
    SCOPED_TRACE(impl.name);
    Buffer w = Garbage(DType::F32, {1, 2});
    Buffer idx = Ints(DType::I32, {1, 2}, {-1, -1});
    ASSERT_OK(impl.fn(scores.view(), bias.view(), w.view(), idx.view(), 2, 3, 2,
                      false, 2.5));
    EXPECT_TRUE(Values(idx, {0, 4}, 0));
    // The weights are the scores without the bias, scaled.
    EXPECT_TRUE(Values(w, {0.9 * 2.5, 0.6 * 2.5}, 1e-6));
    ASSERT_OK(impl.fn(scores.view(), bias.view(), w.view(), idx.view(), 2, 3, 2,
                      true, 1.0));
    EXPECT_TRUE(Values(w, {0.9 / 1.5, 0.6 / 1.5}, 1e-6));
    // One group: plain top-k on the choices (2 = 0.5 beats 3 = 0.45).
    ASSERT_OK(impl.fn(scores.view(), bias.view(), w.view(), idx.view(), 2, 1, 1,
                      false, 1.0));
    EXPECT_TRUE(Values(idx, {0, 4}, 0));
    Buffer w3 = Garbage(DType::F32, {1, 3}), idx3(DType::I32, {1, 3});
    ASSERT_OK(impl.fn(scores.view(), bias.view(), w3.view(), idx3.view(), 3, 1,
                      1, false, 1.0));
    EXPECT_TRUE(Values(idx3, {0, 4, 2}, 0));
  }
}

TEST(MoEGroupTopKTest, FastMatchesReference) {
  Rng rng(64);
  struct Case {
    int64_t tokens, experts, k, groups, keep;
  };
  for (const Case &c :
       {Case{9, 8, 2, 4, 2}, Case{5, 16, 4, 8, 3}, Case{7, 6, 3, 1, 1},
        Case{3, 12, 6, 6, 6}, Case{4, 6, 2, 6, 2}}) { // groups of one expert
    for (bool normalize : {false, true}) {
      std::string what =
          absl::StrCat("T ", c.tokens, " E ", c.experts, " k ", c.k, " groups ",
                       c.groups, "/", c.keep, " normalize ", normalize);
      SCOPED_TRACE(what);
      Buffer scores = Uniform(DType::F32, {c.tokens, c.experts}, rng, 0, 1);
      Buffer bias = Uniform(DType::F32, {c.experts}, rng, -0.1, 0.1);
      Buffer g = Uniform(DType::F32, {c.tokens, c.k}, rng);
      Buffer wr = Garbage(DType::F32, {c.tokens, c.k}),
             wf = Garbage(DType::F32, {c.tokens, c.k});
      Buffer ir(DType::I32, {c.tokens, c.k}),
          ifast(DType::I32, {c.tokens, c.k});
      ASSERT_OK(ref::MoEGroupTopK(scores.view(), bias.view(), wr.view(),
                                  ir.view(), c.k, c.groups, c.keep, normalize,
                                  2.5));
      ASSERT_OK(fast::MoEGroupTopK(scores.view(), bias.view(), wf.view(),
                                   ifast.view(), c.k, c.groups, c.keep,
                                   normalize, 2.5));
      EXPECT_TRUE(AllClose(ifast, ir, Tol{0, 0}, what + " indices"));
      EXPECT_TRUE(AllClose(wf, wr, Tol{1e-6, 1e-7}, what + " weights"));
      Buffer dr = Garbage(DType::F32, scores.shape),
             df = Garbage(DType::F32, scores.shape);
      ASSERT_OK(ref::MoEGroupTopKGrad(scores.view(), bias.view(), g.view(),
                                      dr.view(), c.k, c.groups, c.keep,
                                      normalize, 2.5));
      ASSERT_OK(fast::MoEGroupTopKGrad(scores.view(), bias.view(), g.view(),
                                       df.view(), c.k, c.groups, c.keep,
                                       normalize, 2.5));
      EXPECT_TRUE(AllClose(df, dr, Tol{1e-5, 1e-6}, what + " dscores"));
    }
  }
}

TEST(MoEGroupTopKTest, FiniteDifferences) {
  Rng rng(65);
  const int64_t tokens = 4, experts = 8;
  for (bool normalize : {false, true}) {
    std::string what =
        absl::StrCat("MoEGroupTopKGrad vs FD normalize ", normalize);
    SCOPED_TRACE(what);
    // Scores 0.7 apart (plus noise): the choice never changes.
    Buffer scores = Spread({tokens, experts}, experts, 0.7f, rng);
    Buffer bias = Floats(DType::F32, {experts}, {0, 0, 0, 0, 0, 0, 0, 0});
    Buffer g = Uniform(DType::F32, {tokens, 3}, rng);
    Buffer ds = Garbage(DType::F32, scores.shape);
    ASSERT_OK(fast::MoEGroupTopKGrad(scores.view(), bias.view(), g.view(),
                                     ds.view(), 3, 4, 2, normalize, 2.5));
    auto forward = [&] {
      Buffer w(DType::F32, {tokens, 3}), idx(DType::I32, {tokens, 3});
      EXPECT_TRUE(ref::MoEGroupTopK(scores.view(), bias.view(), w.view(),
                                    idx.view(), 3, 4, 2, normalize, 2.5)
                      .ok());
      return w;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(scores, ds, g, forward, what));
  }
}

TEST(MoEGroupTopKTest, Errors) {
  Buffer scores(DType::F32, {2, 6}), bias(DType::F32, {6}),
      shortBias(DType::F32, {5});
  Buffer w(DType::F32, {2, 2}), idx(DType::I32, {2, 2}),
      wBad(DType::F32, {2, 3});
  for (const auto &impl : BOTH(MoEGroupTopK)) {
    SCOPED_TRACE(impl.name);
    // 4 groups do not divide 6 experts; 2 groups of 3 cannot give 4 from 1.
    EXPECT_INVALID(impl,
                   impl.fn(scores.view(), bias.view(), w.view(), idx.view(), 2,
                           4, 1, false, 1.0),
                   MoEGroupTopK);
    Buffer w4(DType::F32, {2, 4}), idx4(DType::I32, {2, 4});
    EXPECT_INVALID(impl,
                   impl.fn(scores.view(), bias.view(), w4.view(), idx4.view(),
                           4, 2, 1, false, 1.0),
                   MoEGroupTopK);
    EXPECT_INVALID(impl,
                   impl.fn(scores.view(), shortBias.view(), w.view(),
                           idx.view(), 2, 1, 1, false, 1.0),
                   MoEGroupTopK);
    EXPECT_INVALID(impl,
                   impl.fn(scores.view(), bias.view(), wBad.view(), idx.view(),
                           2, 1, 1, false, 1.0),
                   MoEGroupTopK);
  }
}

} // namespace veomni::rt
