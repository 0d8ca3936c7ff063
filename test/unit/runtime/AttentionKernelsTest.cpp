//===- AttentionKernelsTest.cpp - softmax and attention kernels -----------===//
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

// Attention and AttentionGrad without a window or sinks (their defaults),
// both implementations, for the tests that do not need those.
using PlainAttentionFn = std::function<absl::Status(
    const TensorView &, const TensorView &, const TensorView &,
    const TensorView *, const TensorView &, bool, double)>;
using PlainAttentionGradFn = std::function<absl::Status(
    const TensorView &, const TensorView &, const TensorView &,
    const TensorView *, const TensorView &, const TensorView &,
    const TensorView &, const TensorView &, bool, double)>;
std::vector<Impl<PlainAttentionFn>> PlainAttention() {
  return {{[](auto &q, auto &k, auto &v, auto *seg, auto &out, bool causal,
              double scale) {
             return ref::Attention(q, k, v, seg, out, causal, scale);
           },
           "ref"},
          {[](auto &q, auto &k, auto &v, auto *seg, auto &out, bool causal,
              double scale) {
             return fast::Attention(q, k, v, seg, out, causal, scale);
           },
           "fast"}};
}
std::vector<Impl<PlainAttentionGradFn>> PlainAttentionGrad() {
  return {{[](auto &q, auto &k, auto &v, auto *seg, auto &dout, auto &dq,
              auto &dk, auto &dv, bool causal, double scale) {
             return ref::AttentionGrad(q, k, v, seg, dout, dq, dk, dv, causal,
                                       scale);
           },
           "ref"},
          {[](auto &q, auto &k, auto &v, auto *seg, auto &dout, auto &dq,
              auto &dk, auto &dv, bool causal, double scale) {
             return fast::AttentionGrad(q, k, v, seg, dout, dq, dk, dv, causal,
                                        scale);
           },
           "fast"}};
}

TEST(SoftmaxTest, Known) {
  // exp([0, ln 3]) / 4 = [0.25, 0.75], along either dimension.
  const float ln3 = 1.0986122886681098f;
  Buffer row = Floats(DType::F32, {1, 2}, {0, ln3});
  Buffer col = Floats(DType::F32, {2, 1}, {100, 100 + ln3});
  for (const auto &impl : BOTH(Softmax)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 2});
    ASSERT_OK(impl.fn(row.view(), out.view(), 1));
    EXPECT_TRUE(Values(out, {0.25, 0.75}));
    ASSERT_OK(impl.fn(row.view(), out.view(), 0)); // one element: 1
    EXPECT_TRUE(Values(out, {1, 1}));
    Buffer out2 = Garbage(DType::F32, {2, 1});
    ASSERT_OK(impl.fn(col.view(), out2.view(), 0)); // large: max-subtracted
    EXPECT_TRUE(Values(out2, {0.25, 0.75}, 1e-4));
  }
}

TEST(SoftmaxTest, FastMatchesReference) {
  Rng rng(8);
  const Shape shapes[] = {{1}, {7}, {3, 17}, {2, 33, 5}, {65, 3}, {4, 1000}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) {
        SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " dim ", dim));
        Buffer in = Uniform(t, s, rng, -8, 8);
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::Softmax(in.view(), want.view(), dim));
        ASSERT_OK(fast::Softmax(in.view(), got.view(), dim));
        EXPECT_TRUE(AllClose(got, want, TolFor(t)));
      }
    }
  }
}

TEST(SoftmaxTest, Errors) {
  Buffer x(DType::F32, {2, 3}), wrong(DType::F32, {3, 2});
  for (const auto &impl : BOTH(Softmax)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), x.view(), 2), Softmax);
    EXPECT_INVALID(impl, impl.fn(x.view(), x.view(), -1), Softmax);
    EXPECT_INVALID(impl, impl.fn(x.view(), wrong.view(), 1), Softmax);
  }
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

TEST(AttentionTest, Known) {
  // One head, D = 1, q = 1, keys [0, ln 3]: causal row 0 sees key 0 only;
  // row 1 weighs the values [4 8] and [0 -4] 1 : 3, giving [1 -1].
  const float ln3 = 1.0986122886681098f;
  Buffer q = Floats(DType::F32, {1, 2, 1, 1}, {1, 1});
  Buffer k = Floats(DType::F32, {1, 2, 1, 1}, {0, ln3});
  Buffer v = Floats(DType::F32, {1, 2, 1, 2}, {4, 8, 0, -4});
  for (const auto &impl : PlainAttention()) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 2, 1, 2});
    ASSERT_OK(
        impl.fn(q.view(), k.view(), v.view(), nullptr, out.view(), true, 1.0));
    EXPECT_TRUE(Values(out, {4, 8, 1, -1}));
    ASSERT_OK(
        impl.fn(q.view(), k.view(), v.view(), nullptr, out.view(), false, 1.0));
    EXPECT_TRUE(Values(out, {1, -1, 1, -1}));
    // Scale 0.5 on scores [0, ln 9] gives weights 1 : 3 again.
    Buffer k9 = Floats(DType::F32, {1, 2, 1, 1}, {0, 2 * ln3});
    ASSERT_OK(impl.fn(q.view(), k9.view(), v.view(), nullptr, out.view(), false,
                      0.5));
    EXPECT_TRUE(Values(out, {1, -1, 1, -1}));
    // Different segments: each row sees only itself.
    Buffer seg = Ints(DType::I32, {1, 2}, {0, 1});
    TensorView sv = seg.view();
    ASSERT_OK(
        impl.fn(q.view(), k.view(), v.view(), &sv, out.view(), false, 1.0));
    EXPECT_TRUE(Values(out, {4, 8, 0, -4}));
    // No keys at all: zeros.
    Buffer k0(DType::F32, {1, 0, 1, 1}), v0(DType::F32, {1, 0, 1, 2});
    ASSERT_OK(impl.fn(q.view(), k0.view(), v0.view(), nullptr, out.view(),
                      false, 1.0));
    EXPECT_TRUE(Values(out, {0, 0, 0, 0}, 0));
  }
}

TEST(AttentionTest, GroupedQueryHeads) {
  // Hq = 4, Hkv = 2: query heads 0, 1 read kv head 0; 2, 3 read kv head 1.
  // One key, so each output is that key's value.
  Buffer q = Filled(DType::F32, {1, 1, 4, 2}, 1);
  Buffer k = Filled(DType::F32, {1, 1, 2, 2}, 1);
  Buffer v = Floats(DType::F32, {1, 1, 2, 1}, {10, 20});
  for (const auto &impl : PlainAttention()) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 1, 4, 1});
    ASSERT_OK(
        impl.fn(q.view(), k.view(), v.view(), nullptr, out.view(), true, 0.7));
    EXPECT_TRUE(Values(out, {10, 10, 20, 20}));
  }
}

// The fast path against the reference, with the default key tiles (one
// tile at these sizes) and with tiles of 1, 5 and 32 keys, which run the
// running-softmax path across tile edges, causal limits and segments.
class AttentionTiles : public ::testing::TestWithParam<int64_t> {
protected:
  void SetUp() override { fast::SetAttentionKeyTile(GetParam()); }
  void TearDown() override { fast::SetAttentionKeyTile(0); }
};
INSTANTIATE_TEST_SUITE_P(KeyTiles, AttentionTiles,
                         ::testing::Values(0, 1, 5, 32));

TEST_P(AttentionTiles, ForwardMatchesReference) {
  Rng rng(18);
  struct Case {
    int64_t b, s, skv, hq, hkv, d, dv;
  };
  const Case cases[] = {
      {1, 1, 1, 1, 1, 8, 8},     {2, 7, 7, 4, 2, 16, 16},
      {1, 17, 17, 3, 1, 64, 64}, {2, 33, 33, 6, 3, 32, 17},
      {1, 65, 65, 2, 2, 64, 64}, {1, 128, 128, 4, 1, 64, 64},
      {2, 5, 9, 2, 1, 8, 8}, // cross attention: Skv != S
      {1, 17, 3, 4, 4, 16, 7},   {1, 300, 300, 2, 1, 16, 8},
  };
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int causal = 0; causal < 2; ++causal) {
        for (int segMode = 0; segMode < 3; ++segMode) { // none, packed, random
          if (c.s != c.skv && (causal || segMode))
            continue;
          SCOPED_TRACE(absl::StrCat(Name(t), " B ", c.b, " S ", c.s, " Skv ",
                                    c.skv, " Hq ", c.hq, " Hkv ", c.hkv, " D ",
                                    c.d, " Dv ", c.dv, " causal ", causal,
                                    " segments ", segMode));
          Buffer q = Uniform(t, {c.b, c.s, c.hq, c.d}, rng, -2, 2);
          Buffer k = Uniform(t, {c.b, c.skv, c.hkv, c.d}, rng, -2, 2);
          Buffer v = Uniform(t, {c.b, c.skv, c.hkv, c.dv}, rng);
          Buffer seg = Segments(rng, c.b, c.s, segMode == 2);
          TensorView sv = seg.view();
          const TensorView *sp = segMode ? &sv : nullptr;
          Shape outShape = {c.b, c.s, c.hq, c.dv};
          Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
          double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
          ASSERT_OK(ref::Attention(q.view(), k.view(), v.view(), sp,
                                   want.view(), causal, scale));
          ASSERT_OK(fast::Attention(q.view(), k.view(), v.view(), sp,
                                    got.view(), causal, scale));
          EXPECT_TRUE(AllClose(got, want, TolFor(t, c.d)));
        }
      }
    }
  }
}

TEST(AttentionTest, Errors) {
  Buffer q(DType::F32, {1, 4, 3, 8}), k(DType::F32, {1, 4, 2, 8});
  Buffer v(DType::F32, {1, 4, 2, 8}), out(DType::F32, {1, 4, 3, 8});
  Buffer q4(DType::F32, {1, 4, 4, 8}), out4(DType::F32, {1, 4, 4, 8});
  Buffer kBadD(DType::F32, {1, 4, 2, 7}), vBadS(DType::F32, {1, 5, 2, 8});
  Buffer seg = Ints(DType::I32, {1, 3}, {0, 0, 0});
  Buffer kLong(DType::F32, {1, 6, 2, 8}), vLong(DType::F32, {1, 6, 2, 8});
  for (const auto &impl : PlainAttention()) {
    SCOPED_TRACE(impl.name);
    // 2 kv heads do not divide 3 query heads.
    EXPECT_INVALID(
        impl,
        impl.fn(q.view(), k.view(), v.view(), nullptr, out.view(), false, 1.0),
        Attention);
    EXPECT_INVALID(impl,
                   impl.fn(q4.view(), kBadD.view(), v.view(), nullptr,
                           out4.view(), false, 1.0),
                   Attention);
    EXPECT_INVALID(impl,
                   impl.fn(q4.view(), k.view(), vBadS.view(), nullptr,
                           out4.view(), false, 1.0),
                   Attention);
    TensorView sv = seg.view();
    EXPECT_INVALID(
        impl,
        impl.fn(q4.view(), k.view(), v.view(), &sv, out4.view(), false, 1.0),
        Attention);
    EXPECT_INVALID(
        impl,
        impl.fn(q4.view(), k.view(), v.view(), nullptr, out.view(), false, 1.0),
        Attention); // out has 3 heads
    EXPECT_INVALID(impl,
                   impl.fn(q4.view(), kLong.view(), vLong.view(), nullptr,
                           out4.view(), true, 1.0),
                   Attention); // causal needs S == Skv, as the op verifier
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
  for (const auto &impl : PlainAttentionGrad()) {
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
  for (const auto &impl : PlainAttentionGrad()) {
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
  for (const auto &impl : PlainAttentionGrad()) {
    SCOPED_TRACE(impl.name);
    AttentionGrads g = GarbageGrads(DType::BF16, q, k, v);
    ASSERT_OK(impl.fn(q.view(), k.view(), v.view(), nullptr, dout.view(),
                      g.dq.view(), g.dk.view(), g.dv.view(), false, 1.0));
    EXPECT_TRUE(Values(g.dk, std::vector<double>(12, 0.0), 0));
    EXPECT_TRUE(Values(g.dv, std::vector<double>(9, 0.0), 0));
  }
}

TEST_P(AttentionTiles, GradMatchesReference) {
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
  for (const auto &impl : PlainAttentionGrad()) {
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

} // namespace
//===----------------------------------------------------------------------===//
// Sliding windows and sinks (gpt-oss, Gemma 3)
//===----------------------------------------------------------------------===//

TEST(AttentionWindowTest, Known) {
  // One head, D = 1, all scores 0: each query averages the values of the
  // keys it sees. Window 2: query i sees keys i - 1 and i.
  Buffer q = Floats(DType::F32, {1, 4, 1, 1}, {0, 0, 0, 0});
  Buffer k = Floats(DType::F32, {1, 4, 1, 1}, {0, 0, 0, 0});
  Buffer v = Floats(DType::F32, {1, 4, 1, 1}, {1, 2, 4, 8});
  Buffer out = Garbage(DType::F32, {1, 4, 1, 1});
  ASSERT_OK(ref::Attention(q.view(), k.view(), v.view(), nullptr, out.view(),
                           true, 1.0, 2));
  EXPECT_TRUE(Values(out, {1, 1.5, 3, 6}));
  ASSERT_OK(fast::Attention(q.view(), k.view(), v.view(), nullptr, out.view(),
                            true, 1.0, 2));
  EXPECT_TRUE(Values(out, {1, 1.5, 3, 6}));
  // Sink ln 2 with window 1: each query's own key has weight 1 : 2 against
  // the sink, so out = v / 3; a second head with sink -inf-ish reads v.
  const float ln2 = 0.6931471805599453f;
  Buffer q2 = Filled(DType::F32, {1, 4, 2, 1}, 0);
  Buffer sinks = Floats(DType::F32, {2}, {ln2, -100});
  TensorView sv = sinks.view();
  Buffer out2 = Garbage(DType::F32, {1, 4, 2, 1});
  for (bool fastPath : {false, true}) {
    SCOPED_TRACE(fastPath ? "fast" : "ref");
    absl::Status st =
        fastPath ? fast::Attention(q2.view(), k.view(), v.view(), nullptr,
                                   out2.view(), true, 1.0, 1, &sv)
                 : ref::Attention(q2.view(), k.view(), v.view(), nullptr,
                                  out2.view(), true, 1.0, 1, &sv);
    ASSERT_OK(st);
    EXPECT_TRUE(
        Values(out2, {1 / 3.0, 1, 2 / 3.0, 2, 4 / 3.0, 4, 8 / 3.0, 8}, 1e-5));
  }
}

/// Causal attention and its VJP, fast path against the reference, on q
/// [b, s, hq, d] (k, v [b, s, hkv, d]) with optional segments and sinks.
void ExpectCausalFastMatchesReference(DType t, const Buffer &q, const Buffer &k,
                                      const Buffer &v, const Buffer &dout,
                                      const TensorView *segments,
                                      const Buffer *sinks, int64_t window,
                                      const std::string &what) {
  const int64_t b = q.shape[0], s = q.shape[1], hq = q.shape[2], d = q.shape[3],
                hkv = k.shape[2];
  TensorView kv = sinks ? sinks->view() : TensorView{};
  const TensorView *sk = sinks ? &kv : nullptr;
  double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Buffer want = Garbage(t, q.shape), got = Garbage(t, q.shape);
  ASSERT_OK(ref::Attention(q.view(), k.view(), v.view(), segments, want.view(),
                           true, scale, window, sk));
  ASSERT_OK(fast::Attention(q.view(), k.view(), v.view(), segments, got.view(),
                            true, scale, window, sk));
  EXPECT_TRUE(AllClose(got, want, TolFor(t, d), what + " out"));

  AttentionGrads gw = GarbageGrads(t, q, k, v);
  AttentionGrads gg = GarbageGrads(t, q, k, v);
  Buffer dsw = Garbage(DType::F32, {hq}), dsg = Garbage(DType::F32, {hq});
  TensorView dswv = dsw.view(), dsgv = dsg.view();
  ASSERT_OK(ref::AttentionGrad(q.view(), k.view(), v.view(), segments,
                               dout.view(), gw.dq.view(), gw.dk.view(),
                               gw.dv.view(), true, scale, window, sk,
                               sinks ? &dswv : nullptr));
  ASSERT_OK(fast::AttentionGrad(q.view(), k.view(), v.view(), segments,
                                dout.view(), gg.dq.view(), gg.dk.view(),
                                gg.dv.view(), true, scale, window, sk,
                                sinks ? &dsgv : nullptr));
  int64_t queries = s * (hq / hkv);
  EXPECT_TRUE(AllClose(gg.dq, gw.dq, FastTol(t, s * d), what + " dq"));
  EXPECT_TRUE(AllClose(gg.dk, gw.dk, FastTol(t, queries * d), what + " dk"));
  EXPECT_TRUE(AllClose(gg.dv, gw.dv, FastTol(t, queries), what + " dv"));
  if (sinks)
    EXPECT_TRUE(AllClose(dsg, dsw, FastTol(t, b * s * d), what + " dsinks"));
}

// The fast path against the reference with windows, sinks and both, across
// key tiles (AttentionTiles: 1, 5, 32 keys and the default).
TEST_P(AttentionTiles, WindowsAndSinksMatchReference) {
  Rng rng(91);
  struct Case {
    int64_t b, s, hq, hkv, d, window;
  };
  const Case cases[] = {{1, 7, 2, 1, 8, 1},    {2, 17, 4, 2, 16, 3},
                        {1, 65, 3, 1, 32, 16}, {1, 300, 2, 1, 16, 40},
                        {1, 9, 2, 2, 8, 100}, // window longer than S
                        {2, 33, 2, 1, 8, 0}};
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int withSinks = 0; withSinks < 2; ++withSinks) {
        for (int segMode = 0; segMode < 3; ++segMode) {
          std::string what =
              absl::StrCat(Name(t), " B ", c.b, " S ", c.s, " Hq ", c.hq,
                           " Hkv ", c.hkv, " window ", c.window, " sinks ",
                           withSinks, " segments ", segMode);
          SCOPED_TRACE(what);
          Buffer q = Uniform(t, {c.b, c.s, c.hq, c.d}, rng, -2, 2);
          Buffer k = Uniform(t, {c.b, c.s, c.hkv, c.d}, rng, -2, 2);
          Buffer v = Uniform(t, {c.b, c.s, c.hkv, c.d}, rng);
          Buffer dout = Uniform(t, {c.b, c.s, c.hq, c.d}, rng);
          Buffer sinks = Uniform(t, {c.hq}, rng, -2, 2);
          Buffer seg = Segments(rng, c.b, c.s, segMode == 2);
          TensorView sv = seg.view();
          ExpectCausalFastMatchesReference(
              t, q, k, v, dout, segMode ? &sv : nullptr,
              withSinks ? &sinks : nullptr, c.window, what);
        }
      }
    }
  }
}

TEST(AttentionWindowTest, FiniteDifferences) {
  Rng rng(92);
  struct Case {
    int64_t b, s, hq, hkv, d, window;
    bool sinks;
    int segMode;
  };
  const Case cases[] = {{1, 6, 2, 1, 4, 2, false, 0},
                        {2, 6, 4, 2, 3, 3, true, 0},
                        {1, 7, 2, 2, 4, 0, true, 2},
                        {1, 7, 2, 1, 4, 4, true, 1}};
  for (const Case &c : cases) {
    std::string what = absl::StrCat("window ", c.window, " sinks ", c.sinks,
                                    " segments ", c.segMode, " B ", c.b);
    SCOPED_TRACE(what);
    Buffer q = Uniform(DType::F32, {c.b, c.s, c.hq, c.d}, rng);
    Buffer k = Uniform(DType::F32, {c.b, c.s, c.hkv, c.d}, rng);
    Buffer v = Uniform(DType::F32, {c.b, c.s, c.hkv, c.d}, rng);
    Buffer sinks = Uniform(DType::F32, {c.hq}, rng);
    Shape outShape = {c.b, c.s, c.hq, c.d};
    Buffer dout = Uniform(DType::F32, outShape, rng);
    Buffer seg = Segments(rng, c.b, c.s, c.segMode == 2);
    TensorView sv = seg.view();
    const TensorView *sp = c.segMode ? &sv : nullptr;
    const double scale = 0.9;
    AttentionGrads g = GarbageGrads(DType::F32, q, k, v);
    Buffer ds = Garbage(DType::F32, {c.hq});
    TensorView dsv = ds.view();
    // The views of `sinks` read it at call time, so perturbing it in place
    // reaches the forward.
    TensorView kv = sinks.view();
    const TensorView *sk = c.sinks ? &kv : nullptr;
    ASSERT_OK(fast::AttentionGrad(
        q.view(), k.view(), v.view(), sp, dout.view(), g.dq.view(), g.dk.view(),
        g.dv.view(), true, scale, c.window, sk, c.sinks ? &dsv : nullptr));
    auto forward = [&] {
      Buffer out(DType::F32, outShape);
      EXPECT_TRUE(ref::Attention(q.view(), k.view(), v.view(), sp, out.view(),
                                 true, scale, c.window, sk)
                      .ok());
      return out;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(q, g.dq, dout, forward, what + " dq"));
    EXPECT_TRUE(MatchesFiniteDifferences(k, g.dk, dout, forward, what + " dk"));
    EXPECT_TRUE(MatchesFiniteDifferences(v, g.dv, dout, forward, what + " dv"));
    if (c.sinks)
      EXPECT_TRUE(
          MatchesFiniteDifferences(sinks, ds, dout, forward, what + " dsinks"));
  }
}

TEST(AttentionWindowTest, Errors) {
  Buffer q(DType::F32, {1, 4, 2, 8}), k(DType::F32, {1, 4, 1, 8});
  Buffer v(DType::F32, {1, 4, 1, 8}), out(DType::F32, {1, 4, 2, 8});
  Buffer sinks3(DType::F32, {3}), sinksInt(DType::I32, {2}),
      ok(DType::F32, {2});
  TensorView s3 = sinks3.view(), si = sinksInt.view(), sk = ok.view();
  Buffer dq(DType::F32, {1, 4, 2, 8}), dk(DType::F32, {1, 4, 1, 8}),
      dv(DType::F32, {1, 4, 1, 8}), ds1(DType::F32, {1});
  TensorView d1 = ds1.view();
  for (bool fastPath : {false, true}) {
    SCOPED_TRACE(fastPath ? "fast" : "ref");
    auto fwd = [&](bool causal, int64_t window, const TensorView *sinks) {
      return fastPath ? fast::Attention(q.view(), k.view(), v.view(), nullptr,
                                        out.view(), causal, 1.0, window, sinks)
                      : ref::Attention(q.view(), k.view(), v.view(), nullptr,
                                       out.view(), causal, 1.0, window, sinks);
    };
    EXPECT_EQ(fwd(false, 2, nullptr).code(),
              absl::StatusCode::kInvalidArgument); // window needs causal
    EXPECT_EQ(fwd(true, -1, nullptr).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(fwd(true, 0, &s3).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(fwd(true, 0, &si).code(), absl::StatusCode::kInvalidArgument);
    // Sinks without their cotangent, and a cotangent of the wrong size.
    auto grad = [&](const TensorView *sinks, const TensorView *dsinks) {
      return fastPath
                 ? fast::AttentionGrad(q.view(), k.view(), v.view(), nullptr,
                                       out.view(), dq.view(), dk.view(),
                                       dv.view(), true, 1.0, 0, sinks, dsinks)
                 : ref::AttentionGrad(q.view(), k.view(), v.view(), nullptr,
                                      out.view(), dq.view(), dk.view(),
                                      dv.view(), true, 1.0, 0, sinks, dsinks);
    };
    EXPECT_EQ(grad(&sk, nullptr).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(grad(&sk, &d1).code(), absl::StatusCode::kInvalidArgument);
  }
}

//===----------------------------------------------------------------------===//
// Bidirectional blocks (Gemma 3's image tokens): segments [2, B, S]
//===----------------------------------------------------------------------===//

/// Segments [2, b, s]: packed segment ids (as Segments), then blocks: runs
/// of a few equal non-zero ids (images), some adjacent, some across a
/// segment boundary, the rest 0.
Buffer SegmentsWithBlocks(Rng &rng, int64_t b, int64_t s, bool packed) {
  Buffer seg = Segments(rng, b, s, false);
  Buffer out(DType::I32, {2, b, s});
  for (int64_t i = 0; i < b * s; ++i) {
    out.setI(i, packed ? seg.i(i) : 0);
    out.setI(b * s + i, 0);
  }
  for (int64_t i = 0; i < b; ++i) {
    int64_t id = 0;
    for (int64_t j = 0; j < s;) {
      if (Pick(rng, 0, 2) == 0) {
        int64_t len = std::min<int64_t>(s - j, Pick(rng, 1, 9));
        ++id;
        for (int64_t t = 0; t < len; ++t)
          out.setI(b * s + i * s + j + t, id);
        j += len;
      } else {
        j += Pick(rng, 1, 4);
      }
    }
  }
  return out;
}

TEST(AttentionBlocksTest, Known) {
  // One head, D = 1, all scores 0: each query averages the values of the
  // keys it sees. Tokens 1-3 are one block (they see each other), 4 is
  // text; token 5 starts a second block with 6 but a new segment begins
  // at 6, so 5 and 6 are each alone in theirs.
  Buffer q = Filled(DType::F32, {1, 7, 1, 1}, 0);
  Buffer k = Filled(DType::F32, {1, 7, 1, 1}, 0);
  Buffer v = Floats(DType::F32, {1, 7, 1, 1}, {1, 2, 4, 8, 16, 32, 64});
  Buffer seg = Ints(DType::I32, {2, 1, 7},
                    {0, 0, 0, 0, 0, 0, 1, /*blocks*/ 0, 7, 7, 7, 0, 9, 9});
  TensorView sv = seg.view();
  Buffer out = Garbage(DType::F32, {1, 7, 1, 1});
  const std::vector<double> want = {1,         15 / 4.0f, 15 / 4.0f, 15 / 4.0f,
                                    31 / 5.0f, 63 / 6.0f, 64};
  // Window 2 (keys j > i - 2): token 1 still sees 0-3, token 2 sees 1-3,
  // token 3 sees 2-3, token 4 sees 3-4, token 5 sees 4-5.
  const std::vector<double> windowed = {1, 15 / 4.0f, 14 / 3.0f, 6, 12, 24, 64};
  for (bool fastPath : {false, true}) {
    SCOPED_TRACE(fastPath ? "fast" : "ref");
    for (int64_t window : {0, 2}) {
      absl::Status st = fastPath
                            ? fast::Attention(q.view(), k.view(), v.view(), &sv,
                                              out.view(), true, 1.0, window)
                            : ref::Attention(q.view(), k.view(), v.view(), &sv,
                                             out.view(), true, 1.0, window);
      ASSERT_OK(st);
      EXPECT_TRUE(Values(out, window ? windowed : want, 1e-6))
          << "window " << window;
    }
  }
}

// The fast path against the reference with blocks, across key tiles, with
// and without packing, windows and sinks; forward and VJP.
TEST_P(AttentionTiles, BlocksMatchReference) {
  Rng rng(93);
  struct Case {
    int64_t b, s, hq, hkv, d, window;
  };
  const Case cases[] = {{1, 7, 2, 1, 8, 0},
                        {2, 17, 4, 2, 16, 3},
                        {1, 65, 3, 1, 32, 0},
                        {1, 300, 2, 1, 16, 40},
                        {2, 40, 2, 2, 8, 5}};
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int packed = 0; packed < 2; ++packed) {
        bool withSinks = (c.s + packed) % 2 == 0;
        std::string what = absl::StrCat(Name(t), " B ", c.b, " S ", c.s, " Hq ",
                                        c.hq, " window ", c.window, " packed ",
                                        packed, " sinks ", withSinks);
        SCOPED_TRACE(what);
        Buffer q = Uniform(t, {c.b, c.s, c.hq, c.d}, rng, -2, 2);
        Buffer k = Uniform(t, {c.b, c.s, c.hkv, c.d}, rng, -2, 2);
        Buffer v = Uniform(t, {c.b, c.s, c.hkv, c.d}, rng);
        Buffer dout = Uniform(t, {c.b, c.s, c.hq, c.d}, rng);
        Buffer sinks = Uniform(t, {c.hq}, rng, -2, 2);
        Buffer seg = SegmentsWithBlocks(rng, c.b, c.s, packed);
        TensorView sv = seg.view();
        ExpectCausalFastMatchesReference(t, q, k, v, dout, &sv,
                                         withSinks ? &sinks : nullptr, c.window,
                                         what);
      }
    }
  }
}

TEST(AttentionBlocksTest, FiniteDifferences) {
  Rng rng(94);
  for (int64_t window : {0, 3}) {
    SCOPED_TRACE(absl::StrCat("window ", window));
    const int64_t b = 2, s = 9, hq = 2, hkv = 1, d = 4;
    Buffer q = Uniform(DType::F32, {b, s, hq, d}, rng);
    Buffer k = Uniform(DType::F32, {b, s, hkv, d}, rng);
    Buffer v = Uniform(DType::F32, {b, s, hkv, d}, rng);
    Buffer dout = Uniform(DType::F32, {b, s, hq, d}, rng);
    Buffer seg = SegmentsWithBlocks(rng, b, s, true);
    TensorView sv = seg.view();
    AttentionGrads g = GarbageGrads(DType::F32, q, k, v);
    ASSERT_OK(fast::AttentionGrad(q.view(), k.view(), v.view(), &sv,
                                  dout.view(), g.dq.view(), g.dk.view(),
                                  g.dv.view(), true, 0.9, window));
    auto forward = [&] {
      Buffer out(DType::F32, {b, s, hq, d});
      EXPECT_TRUE(ref::Attention(q.view(), k.view(), v.view(), &sv, out.view(),
                                 true, 0.9, window)
                      .ok());
      return out;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(q, g.dq, dout, forward, "dq"));
    EXPECT_TRUE(MatchesFiniteDifferences(k, g.dk, dout, forward, "dk"));
    EXPECT_TRUE(MatchesFiniteDifferences(v, g.dv, dout, forward, "dv"));
  }
}

TEST(AttentionBlocksTest, Errors) {
  Buffer q(DType::F32, {1, 4, 2, 8}), k(DType::F32, {1, 4, 1, 8});
  Buffer v(DType::F32, {1, 4, 1, 8}), out(DType::F32, {1, 4, 2, 8});
  Buffer blocks(DType::I32, {2, 1, 4}), three(DType::I32, {3, 1, 4}),
      shortBlocks(DType::I32, {2, 1, 3});
  TensorView bv = blocks.view(), tv = three.view(), sv = shortBlocks.view();
  for (bool fastPath : {false, true}) {
    SCOPED_TRACE(fastPath ? "fast" : "ref");
    auto fwd = [&](const TensorView *seg, bool causal) {
      return fastPath ? fast::Attention(q.view(), k.view(), v.view(), seg,
                                        out.view(), causal, 1.0)
                      : ref::Attention(q.view(), k.view(), v.view(), seg,
                                       out.view(), causal, 1.0);
    };
    absl::Status st = fwd(&bv, false); // blocks need causal attention
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(st.message(), "bidirectional")) << st;
    EXPECT_EQ(fwd(&tv, true).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(fwd(&sv, true).code(), absl::StatusCode::kInvalidArgument);
  }
}

} // namespace veomni::rt
