//===- RopeKernelsTest.cpp - rotary embeddings kernels --------------------===//
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
// Rope
//===----------------------------------------------------------------------===//

TEST(RopeTest, Known) {
  // D = 4, inv_freq [1, 0.5], position 1: angles 1 and 0.5.
  //   out[0] = x0 cos 1 - x2 sin 1      out[2] = x2 cos 1 + x0 sin 1
  //   out[1] = x1 cos .5 - x3 sin .5    out[3] = x3 cos .5 + x1 sin .5
  Buffer x = Floats(DType::F32, {1, 1, 1, 4}, {1, 2, 3, 4});
  Buffer pos = Ints(DType::I32, {1, 1}, {1});
  const float invFreq[] = {1, 0.5f};
  const std::vector<double> want = {-1.9841106485555495, -0.1625370306360665,
                                    2.4623779024123156, 4.469181324769897};
  for (const auto &impl : BOTH(Rope)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.invFreq = invFreq;
    Buffer out = Garbage(DType::F32, {1, 1, 1, 4});
    ASSERT_OK(impl.fn(x.view(), pos.view(), out.view(), attrs));
    EXPECT_TRUE(Values(out, want));
    // Scaled by attention_scaling.
    attrs.attentionScaling = 2;
    ASSERT_OK(impl.fn(x.view(), pos.view(), out.view(), attrs));
    std::vector<double> doubled;
    for (double w : want)
      doubled.push_back(2 * w);
    EXPECT_TRUE(Values(out, doubled));
    // Default frequencies with theta = 1: every frequency is 1; at
    // position 0 the rotation is the identity.
    RopeConfig plain;
    plain.theta = 1;
    ASSERT_OK(impl.fn(x.view(), pos.view(), out.view(), plain));
    EXPECT_TRUE(Values(out, {1 * std::cos(1.0) - 3 * std::sin(1.0),
                             2 * std::cos(1.0) - 4 * std::sin(1.0),
                             3 * std::cos(1.0) + 1 * std::sin(1.0),
                             4 * std::cos(1.0) + 2 * std::sin(1.0)}));
    Buffer zero = Ints(DType::I64, {1, 1}, {0});
    plain.theta = 10000;
    ASSERT_OK(impl.fn(x.view(), zero.view(), out.view(), plain));
    EXPECT_TRUE(Values(out, {1, 2, 3, 4}));
    // mrope sections [1, 1]: frequency 0 reads position row 0 (= 1),
    // frequency 1 row 1 (= 0, so no rotation).
    const int64_t sections[] = {1, 1};
    RopeConfig mrope;
    mrope.invFreq = invFreq;
    mrope.mropeSection = sections;
    Buffer pos3 = Ints(DType::I32, {2, 1, 1}, {1, 0});
    ASSERT_OK(impl.fn(x.view(), pos3.view(), out.view(), mrope));
    EXPECT_TRUE(Values(out, {want[0], 2, want[2], 4}));
  }
}

TEST(RopeTest, InterleavedSections) {
  // D = 8 (4 frequencies), sections [2, 1, 1] interleaved as Qwen3-VL's
  // MRoPE: frequency 1 reads row 1 (1 % 3 == 1, 1 < 3 * 1), frequency 2
  // row 2, frequencies 0 and 3 row 0. Rows (7, 0, 0): only frequencies 0
  // and 3 turn; in runs ([0, 0, 1, 2]) frequency 1 would turn too.
  const int64_t sections[] = {2, 1, 1};
  const float invFreq[] = {1, 0.5f, 0.25f, 0.125f};
  Buffer pos = Ints(DType::I32, {3, 1, 1}, {7, 0, 0});
  for (const auto &impl : BOTH(Rope)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.invFreq = invFreq;
    attrs.mropeSection = sections;
    attrs.mropeInterleaved = true;
    for (int j = 0; j < 4; ++j) {
      Buffer x = Garbage(DType::F32, {1, 1, 1, 8});
      for (int i = 0; i < 8; ++i)
        x.setF(i, i == j ? 1.0f : 0.0f);
      Buffer out = Garbage(DType::F32, {1, 1, 1, 8});
      ASSERT_OK(impl.fn(x.view(), pos.view(), out.view(), attrs));
      double angle = (j == 0 || j == 3) ? 7.0 * invFreq[j] : 0.0;
      EXPECT_NEAR(out.f(j), std::cos(angle), 1e-6) << j;
      EXPECT_NEAR(out.f(j + 4), std::sin(angle), 1e-6) << j;
    }
  }
}

TEST(RopeTest, DefaultFrequencies) {
  // D = 8, theta 100: frequencies 1, 100^-1/4, 100^-1/2, 100^-3/4; x has
  // only the j-th pair set, so out[j] = cos(p f_j), out[j+4] = sin(p f_j).
  for (const auto &impl : BOTH(Rope)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.theta = 100;
    Buffer pos = Ints(DType::I32, {1, 1}, {3});
    for (int j = 0; j < 4; ++j) {
      Buffer x = Garbage(DType::F32, {1, 1, 1, 8});
      for (int i = 0; i < 8; ++i)
        x.setF(i, i == j ? 1.0f : 0.0f);
      Buffer out = Garbage(DType::F32, {1, 1, 1, 8});
      ASSERT_OK(impl.fn(x.view(), pos.view(), out.view(), attrs));
      double angle = 3 * std::pow(100.0, -j / 4.0);
      EXPECT_NEAR(out.f(j), std::cos(angle), 1e-6) << j;
      EXPECT_NEAR(out.f(j + 4), std::sin(angle), 1e-6) << j;
    }
  }
}

TEST(RopeTest, FastMatchesReference) {
  Rng rng(17);
  struct Case {
    int64_t b, s, h, d;
    std::vector<int64_t> sections;
    bool invFreq;
    bool interleaved = false;
  };
  const Case cases[] = {
      {1, 1, 1, 2, {}, false},
      {2, 7, 3, 8, {}, false},
      {1, 17, 2, 64, {}, false},
      {2, 5, 4, 128, {}, true},
      {1, 33, 1, 130, {}, false},
      {2, 7, 3, 16, {2, 3, 3}, false},
      {1, 9, 2, 128, {16, 24, 24}, true},
      {2, 3, 1, 4, {1, 1}, false},
      {1, 9, 2, 128, {24, 20, 20}, true, true}, // Qwen3-VL's
      {2, 7, 3, 16, {4, 2, 2}, false, true},
  };
  for (DType t : kFloatTypes) {
    for (DType pt : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        for (double scaling : {1.0, 1.25}) {
          RopeConfig attrs;
          attrs.theta = c.d == 128 ? 1000000.0 : 10000.0;
          attrs.mropeSection = c.sections;
          attrs.mropeInterleaved = c.interleaved;
          attrs.attentionScaling = scaling;
          std::vector<float> freq;
          for (int64_t j = 0; j < c.d / 2; ++j)
            freq.push_back(0.5f * std::pow(500.0f, -2.0f * j / c.d));
          if (c.invFreq)
            attrs.invFreq = freq;
          int64_t n = static_cast<int64_t>(c.sections.size());
          Shape posShape = n ? Shape{n, c.b, c.s} : Shape{c.b, c.s};
          SCOPED_TRACE(absl::StrCat(
              Name(t), " ", Name(pt), " B ", c.b, " S ", c.s, " H ", c.h, " D ",
              c.d, " sections ", Str(c.sections), " invFreq ", c.invFreq,
              " interleaved ", c.interleaved, " scaling ", scaling));
          Shape s = {c.b, c.s, c.h, c.d};
          Buffer x = Uniform(t, s, rng, -2, 2);
          Buffer pos = RandomInts(pt, posShape, rng, 0, 4095);
          Buffer want = Garbage(t, s), got = Garbage(t, s);
          ASSERT_OK(ref::Rope(x.view(), pos.view(), want.view(), attrs));
          ASSERT_OK(fast::Rope(x.view(), pos.view(), got.view(), attrs));
          EXPECT_TRUE(AllClose(got, want, TolFor(t, 2)));
        }
      }
    }
  }
}

TEST(RopeTest, Errors) {
  Buffer odd(DType::F32, {1, 2, 1, 5}), x(DType::F32, {1, 2, 1, 4});
  Buffer pos = Ints(DType::I32, {1, 2}, {0, 1});
  Buffer badPos = Ints(DType::I32, {2, 1}, {0, 1});
  Buffer pos3 = Ints(DType::I32, {2, 1, 2}, {0, 1, 0, 1});
  Buffer floatPos = Floats(DType::F32, {1, 2}, {0, 1});
  Buffer outOdd(DType::F32, {1, 2, 1, 5}), out(DType::F32, {1, 2, 1, 4});
  const float threeFreqs[] = {1, 1, 1};
  const int64_t badSections[] = {1, 2};
  for (const auto &impl : BOTH(Rope)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    EXPECT_INVALID(impl, impl.fn(odd.view(), pos.view(), outOdd.view(), attrs),
                   Rope);
    EXPECT_INVALID(impl, impl.fn(x.view(), badPos.view(), out.view(), attrs),
                   Rope);
    EXPECT_INVALID(impl, impl.fn(x.view(), floatPos.view(), out.view(), attrs),
                   Rope);
    EXPECT_INVALID(impl, impl.fn(x.view(), pos3.view(), out.view(), attrs),
                   Rope); // [N, B, S] positions without sections
    RopeConfig freqs;
    freqs.invFreq = threeFreqs;
    EXPECT_INVALID(impl, impl.fn(x.view(), pos.view(), out.view(), freqs),
                   Rope);
    RopeConfig sections;
    sections.mropeSection = badSections; // sums to 3, D/2 = 2
    EXPECT_INVALID(impl, impl.fn(x.view(), pos3.view(), out.view(), sections),
                   Rope);
    RopeConfig lone;
    lone.mropeInterleaved = true; // interleaved without sections
    EXPECT_INVALID(impl, impl.fn(x.view(), pos.view(), out.view(), lone), Rope);
    // D = 8: section 1 of [1, 3] would take frequencies 1, 3, 5 of 4.
    const int64_t farSections[] = {1, 3};
    Buffer x8(DType::F32, {1, 2, 1, 8}), out8(DType::F32, {1, 2, 1, 8});
    RopeConfig far;
    far.mropeSection = farSections;
    far.mropeInterleaved = true;
    EXPECT_INVALID(impl, impl.fn(x8.view(), pos3.view(), out8.view(), far),
                   Rope);
  }
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
  const int64_t sections[] = {2, 1, 1};
  for (const auto &impl : BOTH(RopeInverse)) {
    SCOPED_TRACE(impl.name);
    RopeConfig attrs;
    attrs.mropeSection = sections;
    attrs.attentionScaling = 1.5;
    Buffer x = Uniform(DType::F32, {2, 3, 2, 8}, rng);
    Buffer pos = RandomInts(DType::I32, {3, 2, 3}, rng, 0, 100);
    Buffer y = Garbage(DType::F32, x.shape),
           back = Garbage(DType::F32, x.shape);
    Buffer want(DType::F32, x.shape);
    for (int64_t i = 0; i < x.numel(); ++i)
      want.setF(i, 2.25f * x.f(i));
    for (bool interleaved : {false, true}) {
      attrs.mropeInterleaved = interleaved;
      ASSERT_OK(ref::Rope(x.view(), pos.view(), y.view(), attrs));
      ASSERT_OK(impl.fn(y.view(), pos.view(), back.view(), attrs));
      EXPECT_TRUE(AllClose(back, want, {1e-5, 1e-5})) << interleaved;
    }
  }
}

TEST(RopeInverseTest, FastMatchesReference) {
  Rng rng(42);
  struct Case {
    int64_t b, s, h, d;
    std::vector<int64_t> sections;
    bool invFreq;
    bool interleaved = false;
  };
  const Case cases[] = {
      {1, 1, 1, 2, {}, false},
      {2, 7, 3, 8, {}, false},
      {2, 5, 4, 128, {}, true},
      {1, 33, 1, 130, {}, false},
      {2, 7, 3, 16, {2, 3, 3}, false},
      {1, 9, 2, 128, {16, 24, 24}, true},
      {2, 3, 1, 4, {1, 1}, false},
      {0, 3, 2, 4, {}, false},
      {1, 1024, 8, 128, {}, false}, // enough work for several threads
      {1, 9, 2, 128, {24, 20, 20}, true, true},
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
          attrs.mropeInterleaved = c.interleaved;
          attrs.attentionScaling = scaling;
          std::vector<float> freq = TestFrequencies(c.d);
          if (c.invFreq)
            attrs.invFreq = freq;
          int64_t n = static_cast<int64_t>(c.sections.size());
          Shape posShape = n ? Shape{n, c.b, c.s} : Shape{c.b, c.s};
          std::string what = absl::StrCat(
              "RopeInverse fast/ref ", Name(t), " ", Name(pt), " ",
              Str({c.b, c.s, c.h, c.d}), " sections ", Str(c.sections),
              " invFreq ", c.invFreq, " interleaved ", c.interleaved,
              " scaling ", scaling);
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

} // namespace
} // namespace veomni::rt
