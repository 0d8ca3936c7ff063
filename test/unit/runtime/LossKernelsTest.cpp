//===- LossKernelsTest.cpp - cross entropy kernels ------------------------===//
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
// CrossEntropy
//===----------------------------------------------------------------------===//

TEST(CrossEntropyTest, Known) {
  // Row 0: uniform over 3, label 2: ln 3. Row 1: [1 2 3], label 0:
  // 3 + ln(1 + e^-1 + e^-2) - 1. Row 2 ignored.
  const double l0 = 1.0986122886681098, l1 = 2.4076059644443806;
  Buffer logits = Floats(DType::F32, {3, 3}, {0, 0, 0, 1, 2, 3, 5, 5, 5});
  Buffer labels = Ints(DType::I64, {3}, {2, 0, -100});
  Buffer allIgnored = Ints(DType::I32, {3}, {-100, -100, -100});
  for (const auto &impl : BOTH(CrossEntropy)) {
    SCOPED_TRACE(impl.name);
    Buffer scalar = Garbage(DType::F32, {});
    ASSERT_OK(impl.fn(logits.view(), labels.view(), scalar.view(), -100,
                      LossReduction::Mean));
    EXPECT_TRUE(Values(scalar, {(l0 + l1) / 2}));
    ASSERT_OK(impl.fn(logits.view(), labels.view(), scalar.view(), -100,
                      LossReduction::Sum));
    EXPECT_TRUE(Values(scalar, {l0 + l1}));
    Buffer rows = Garbage(DType::F32, {3});
    ASSERT_OK(impl.fn(logits.view(), labels.view(), rows.view(), -100,
                      LossReduction::None));
    EXPECT_TRUE(Values(rows, {l0, l1, 0}));
    ASSERT_OK(impl.fn(logits.view(), allIgnored.view(), scalar.view(), -100,
                      LossReduction::Mean));
    EXPECT_TRUE(Values(scalar, {0}, 0));
    // ignoreIndex 0 ignores row 1 and makes -100 an error.
    Buffer labels2 = Ints(DType::I32, {3}, {2, 0, 1});
    ASSERT_OK(impl.fn(logits.view(), labels2.view(), scalar.view(), 0,
                      LossReduction::Mean));
    EXPECT_TRUE(Values(scalar, {l0})); // row 2: uniform again, ln 3
  }
}

TEST(CrossEntropyTest, FastMatchesReference) {
  Rng rng(19);
  const Shape labelShapes[] = {{1}, {7}, {33}, {2, 17}};
  const int64_t vocabs[] = {1, 3, 65, 1000};
  const LossReduction reductions[] = {LossReduction::Mean, LossReduction::Sum,
                                      LossReduction::None};
  for (DType t : kFloatTypes) {
    for (DType lt : {DType::I32, DType::I64}) {
      for (const Shape &ls : labelShapes) {
        for (int64_t vocab : vocabs) {
          for (int64_t ignore : {int64_t{-100}, int64_t{0}}) {
            for (LossReduction r : reductions) {
              SCOPED_TRACE(absl::StrCat(Name(t), " labels ", Name(lt), Str(ls),
                                        " V ", vocab, " ignore ", ignore,
                                        " reduction ", static_cast<int>(r)));
              Buffer logits = Uniform(t, Cat(ls, {vocab}), rng, -6, 6);
              Buffer labels = RandomInts(lt, ls, rng, 0, vocab - 1);
              for (int64_t i = 0; i < labels.numel(); ++i)
                if (Pick(rng, 0, 3) == 0)
                  labels.setI(i, ignore);
              Shape outShape = r == LossReduction::None ? ls : Shape{};
              Buffer want = Garbage(DType::F32, outShape);
              Buffer got = Garbage(DType::F32, outShape);
              ASSERT_OK(ref::CrossEntropy(logits.view(), labels.view(),
                                          want.view(), ignore, r));
              ASSERT_OK(fast::CrossEntropy(logits.view(), labels.view(),
                                           got.view(), ignore, r));
              // Loss is f32 whatever the logits; sums over V and rows.
              EXPECT_TRUE(AllClose(got, want,
                                   TolFor(DType::F32, vocab * labels.numel())));
            }
          }
        }
      }
    }
  }
}

TEST(CrossEntropyTest, Errors) {
  Buffer logits(DType::F32, {2, 3}), scalar(DType::F32, {});
  Buffer tooBig = Ints(DType::I32, {2}, {0, 3});
  Buffer negative = Ints(DType::I64, {2}, {-1, 0});
  Buffer good = Ints(DType::I32, {2}, {0, 2});
  Buffer badLabels = Ints(DType::I32, {3}, {0, 1, 2});
  Buffer rows(DType::F32, {2}), bf16Out(DType::BF16, {});
  for (const auto &impl : BOTH(CrossEntropy)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), tooBig.view(), scalar.view(), -100,
                           LossReduction::Mean),
                   CrossEntropy);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), negative.view(), scalar.view(), -100,
                           LossReduction::Sum),
                   CrossEntropy);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), badLabels.view(), scalar.view(), -100,
                           LossReduction::Mean),
                   CrossEntropy);
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), scalar.view(), -100,
                           LossReduction::None),
                   CrossEntropy); // None wants out [2]
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), rows.view(), -100,
                           LossReduction::Mean),
                   CrossEntropy); // Mean wants out []
    EXPECT_INVALID(impl,
                   impl.fn(logits.view(), good.view(), bf16Out.view(), -100,
                           LossReduction::Mean),
                   CrossEntropy);
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

//===----------------------------------------------------------------------===//
// LinearCrossEntropy: the chain of unfused kernels it replaces is its
// reference.
//===----------------------------------------------------------------------===//

struct LossChain {
  Buffer loss, dhidden, dweight;
};

/// matmul (x W^T), cross_entropy, cross_entropy_grad, dlogits W and
/// dlogits^T x: the unfused step.
LossChain Unfused(const Buffer &hidden, const Buffer &weight,
                  const Buffer &labels, const Buffer &dloss, LossReduction r) {
  const DType t = hidden.dtype;
  int64_t tokens = labels.numel(), features = weight.shape[1],
          vocab = weight.shape[0];
  Buffer logits(t, Cat(labels.shape, {vocab}));
  Buffer dlogits(t, logits.shape);
  LossChain c{Garbage(DType::F32, {}), Garbage(t, hidden.shape),
              Garbage(t, weight.shape)};
  EXPECT_EQ(absl::OkStatus(), cpu::Matmul(hidden.view(), weight.view(),
                                          logits.view(), false, true));
  EXPECT_EQ(absl::OkStatus(), cpu::CrossEntropy(logits.view(), labels.view(),
                                                c.loss.view(), -100, r));
  EXPECT_EQ(absl::OkStatus(),
            cpu::CrossEntropyGrad(logits.view(), labels.view(), dloss.view(),
                                  dlogits.view(), -100, r));
  EXPECT_EQ(absl::OkStatus(), cpu::Matmul(dlogits.view(), weight.view(),
                                          c.dhidden.view(), false, false));
  TensorView flatDl{dlogits.view().data, t, {tokens, vocab}};
  TensorView flatH{hidden.view().data, t, {tokens, features}};
  EXPECT_EQ(absl::OkStatus(),
            cpu::Matmul(flatDl, flatH, c.dweight.view(), true, false));
  return c;
}

LossChain Fused(const Buffer &hidden, const Buffer &weight,
                const Buffer &labels, const Buffer &dloss, LossReduction r,
                int64_t chunk) {
  const DType t = hidden.dtype;
  LossChain c{Garbage(DType::F32, {}), Garbage(t, hidden.shape),
              Garbage(t, weight.shape)};
  // 16-bit: the weight gradient's f32 sum in H more rows.
  int64_t extra = t == DType::F32 ? 0 : weight.shape[1];
  Buffer workspace = Garbage(DType::F32, {chunk + extra, weight.shape[0]});
  EXPECT_EQ(absl::OkStatus(), cpu::LinearCrossEntropy(
                                  hidden.view(), weight.view(), labels.view(),
                                  dloss.view(), c.loss.view(), c.dhidden.view(),
                                  c.dweight.view(), workspace.view(), -100, r));
  return c;
}

bool SameBits(const Buffer &a, const Buffer &b) {
  return a.shape == b.shape && a.bytes == b.bytes;
}

TEST(LinearCrossEntropyTest, OneChunkIsTheUnfusedChainBitForBit) {
  Rng rng(61);
  for (LossReduction r : {LossReduction::Mean, LossReduction::Sum}) {
    Buffer hidden = Uniform(DType::F32, {2, 9, 24}, rng, -2, 2);
    Buffer weight = Uniform(DType::F32, {300, 24}, rng, -0.5, 0.5);
    Buffer labels = RandomInts(DType::I32, {2, 9}, rng, 0, 299);
    labels.setI(4, -100);
    Buffer dloss = Floats(DType::F32, {}, {0.75f});
    LossChain want = Unfused(hidden, weight, labels, dloss, r);
    for (int64_t chunk : {18, 40}) { // every token at once, or more room
      LossChain got = Fused(hidden, weight, labels, dloss, r, chunk);
      EXPECT_TRUE(SameBits(got.loss, want.loss)) << got.loss.f(0);
      EXPECT_TRUE(SameBits(got.dhidden, want.dhidden));
      EXPECT_TRUE(SameBits(got.dweight, want.dweight));
    }
  }
}

TEST(LinearCrossEntropyTest, ChunksMatchTheUnfusedChain) {
  Rng rng(62);
  // Tokens not a multiple of the chunk, a vocabulary over several threads'
  // worth, ignored rows in every chunk.
  Buffer hidden = Uniform(DType::F32, {3, 37, 64}, rng, -2, 2);
  Buffer weight = Uniform(DType::F32, {2048, 64}, rng, -0.3, 0.3);
  Buffer labels = RandomInts(DType::I64, {3, 37}, rng, 0, 2047);
  for (int64_t i = 0; i < labels.numel(); i += 7)
    labels.setI(i, -100);
  Buffer dloss = Floats(DType::F32, {}, {1.0f});
  for (LossReduction r : {LossReduction::Mean, LossReduction::Sum}) {
    LossChain want = Unfused(hidden, weight, labels, dloss, r);
    for (int64_t chunk : {1, 5, 16, 110}) {
      SCOPED_TRACE(absl::StrCat("chunk ", chunk, " reduction ", int(r)));
      LossChain got = Fused(hidden, weight, labels, dloss, r, chunk);
      EXPECT_TRUE(AllClose(got.loss, want.loss, Tol{1e-6, 1e-6}));
      EXPECT_TRUE(AllClose(got.dhidden, want.dhidden, Tol{1e-6, 1e-5}));
      // Each element sums 111 products over the chunks in order.
      EXPECT_TRUE(AllClose(got.dweight, want.dweight, Tol{1e-6, 1e-5}));
    }
  }
}

TEST(LinearCrossEntropyTest, Bf16AndF16MatchTheUnfusedChain) {
  Rng rng(64);
  for (DType t : {DType::BF16, DType::F16}) {
    // Vocabulary over several of the kernel's weight panels (4 MiB of f32
    // = 16384 rows of 64).
    Buffer hidden = Uniform(t, {2, 21, 64}, rng, -2, 2);
    Buffer weight = Uniform(t, {20000, 64}, rng, -0.3, 0.3);
    Buffer labels = RandomInts(DType::I32, {2, 21}, rng, 0, 19999);
    labels.setI(3, -100);
    Buffer dloss = Floats(DType::F32, {}, {1.0f});
    LossChain want =
        Unfused(hidden, weight, labels, dloss, LossReduction::Mean);
    for (int64_t chunk : {7, 42}) {
      SCOPED_TRACE(absl::StrCat(Name(t), " chunk ", chunk));
      LossChain got =
          Fused(hidden, weight, labels, dloss, LossReduction::Mean, chunk);
      // The logits are rounded as the unfused matmul stores them, so the
      // loss agrees to f32 summation; the cotangents to their own rounding.
      EXPECT_TRUE(AllClose(got.loss, want.loss, Tol{1e-6, 1e-6}));
      EXPECT_TRUE(AllClose(got.dhidden, want.dhidden, FastTol(t, 20000, 1)));
      EXPECT_TRUE(AllClose(got.dweight, want.dweight, FastTol(t, 42, 1)));
    }
  }
}

TEST(LinearCrossEntropyTest, EveryLabelIgnored) {
  Rng rng(63);
  Buffer hidden = Uniform(DType::F32, {5, 8}, rng);
  Buffer weight = Uniform(DType::F32, {11, 8}, rng);
  Buffer labels = Ints(DType::I32, {5}, {-100, -100, -100, -100, -100});
  Buffer dloss = Floats(DType::F32, {}, {1.0f});
  LossChain got = Fused(hidden, weight, labels, dloss, LossReduction::Mean, 2);
  EXPECT_TRUE(Values(got.loss, {0.0}));
  EXPECT_TRUE(Values(got.dhidden, std::vector<double>(40, 0.0)));
  EXPECT_TRUE(Values(got.dweight, std::vector<double>(88, 0.0)));
}

TEST(LinearCrossEntropyTest, Errors) {
  Buffer hidden(DType::F32, {4, 8}), weight(DType::F32, {10, 8});
  Buffer labels = Ints(DType::I32, {4}, {0, 1, 2, 3});
  Buffer scalar(DType::F32, {}), dh(DType::F32, {4, 8}),
      dw(DType::F32, {10, 8}), ws(DType::F32, {2, 10});
  Buffer bf16Hidden(DType::BF16, {4, 8}), badWeight(DType::F32, {10, 7});
  Buffer badWs(DType::F32, {2, 9}), badDh(DType::F32, {4, 7});
  Buffer outside = Ints(DType::I32, {4}, {0, 1, 10, 3});
  Buffer shortLabels = Ints(DType::I32, {3}, {0, 1, 2});
  auto run = [&](const Buffer &h, const Buffer &w, const Buffer &y,
                 const Buffer &dhid, const Buffer &work, LossReduction r) {
    return cpu::LinearCrossEntropy(h.view(), w.view(), y.view(), scalar.view(),
                                   scalar.view(), dhid.view(), dw.view(),
                                   work.view(), -100, r);
  };
  const LossReduction mean = LossReduction::Mean;
  struct Case {
    absl::Status status;
    const char *says;
  } cases[] = {
      {run(bf16Hidden, weight, labels, dh, ws, mean), "type of hidden"},
      {run(hidden, badWeight, labels, dh, ws, mean), "weight"},
      {run(hidden, weight, outside, dh, ws, mean), "outside [0, 10)"},
      {run(hidden, weight, shortLabels, dh, ws, mean), "labels"},
      {run(hidden, weight, labels, badDh, ws, mean), "dhidden"},
      {run(hidden, weight, labels, dh, badWs, mean), "workspace"},
      {run(hidden, weight, labels, dh, ws, LossReduction::None),
       "mean or a sum"},
  };
  for (const Case &c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_TRUE(absl::StrContains(c.status.message(), "LinearCrossEntropy"))
        << c.status;
    EXPECT_TRUE(absl::StrContains(c.status.message(), c.says)) << c.status;
  }
  EXPECT_EQ(absl::OkStatus(), run(hidden, weight, labels, dh, ws, mean));
  // bf16: the workspace needs H rows more than its chunk.
  Buffer bw(DType::BF16, {10, 8}), bdh(DType::BF16, {4, 8}),
      bdw(DType::BF16, {10, 8}), bigWs(DType::F32, {9, 10});
  absl::Status small = cpu::LinearCrossEntropy(
      bf16Hidden.view(), bw.view(), labels.view(), scalar.view(), scalar.view(),
      bdh.view(), bdw.view(), ws.view(), -100, mean);
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument) << small;
  EXPECT_TRUE(absl::StrContains(small.message(), "chunk >= 1 + features"))
      << small;
  EXPECT_EQ(absl::OkStatus(),
            cpu::LinearCrossEntropy(bf16Hidden.view(), bw.view(), labels.view(),
                                    scalar.view(), scalar.view(), bdh.view(),
                                    bdw.view(), bigWs.view(), -100, mean));
}

} // namespace
} // namespace veomni::rt
