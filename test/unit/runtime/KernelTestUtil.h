//===- KernelTestUtil.h - shared utilities of the CPU kernel tests -*- C++
//-*-===//
//
// Used by KernelsTest.cpp, GradientKernelsTest.cpp and
// GradientKernels2Test.cpp: owned buffers behind TensorViews, random and
// hand-written fills, tolerances, and the macros that run one check on both
// implementations of a kernel (BOTH expects the including file to define the
// namespace aliases `ref` and `fast`).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_TEST_UNIT_RUNTIME_KERNELTESTUTIL_H
#define VEOMNI_TEST_UNIT_RUNTIME_KERNELTESTUTIL_H

#include "runtime/backends/cpu/Kernels.h"
#include "test/unit/runtime/reference/Reference.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt::kerneltest {

// What every kernel test names: the fast kernels, the references, and the
// kernels' enums.
namespace fast = veomni::rt::cpu;
namespace ref = veomni::rt::cpu::ref;
using cpu::BinaryKind;
using cpu::LossReduction;
using cpu::ReduceKind;
using cpu::RopeConfig;
using cpu::UnaryKind;

using Rng = std::mt19937;

//===----------------------------------------------------------------------===//
// Buffers: owned memory behind a TensorView.
//===----------------------------------------------------------------------===//

struct Buffer {
  DType dtype = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;

  Buffer() = default;
  Buffer(DType t, Shape s) : dtype(t), shape(std::move(s)) {
    bytes.assign(numel() * SizeOf(t), 0);
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  TensorView view() const {
    return TensorView{const_cast<uint8_t *>(bytes.data()), dtype, shape};
  }
  float f(int64_t i) const { return LoadF(view(), i); }
  int64_t i(int64_t i) const { return LoadI(view(), i); }
  void setF(int64_t i, float v) { StoreF(view(), i, v); }
  void setI(int64_t i, int64_t v) { StoreI(view(), i, v); }
};

inline std::string Str(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, "x"), "]");
}

inline Shape Cat(const Shape &a, const Shape &b) {
  Shape s = a;
  s.insert(s.end(), b.begin(), b.end());
  return s;
}

inline Buffer Filled(DType t, Shape s, float v) {
  Buffer b(t, std::move(s));
  for (int64_t i = 0; i < b.numel(); ++i)
    b.setF(i, v);
  return b;
}

/// Output buffers start as garbage, different for the two sides, so that an
/// element a kernel forgets to write shows as a mismatch.
inline Buffer Garbage(DType t, Shape s) {
  return Filled(t, std::move(s), 12345.0f);
}

inline Buffer Floats(DType t, Shape s, std::vector<float> v) {
  Buffer b(t, std::move(s));
  EXPECT_EQ(static_cast<int64_t>(v.size()), b.numel());
  for (int64_t i = 0; i < b.numel() && i < static_cast<int64_t>(v.size()); ++i)
    b.setF(i, v[i]);
  return b;
}

inline Buffer Ints(DType t, Shape s, std::vector<int64_t> v) {
  Buffer b(t, std::move(s));
  EXPECT_EQ(static_cast<int64_t>(v.size()), b.numel());
  for (int64_t i = 0; i < b.numel() && i < static_cast<int64_t>(v.size()); ++i)
    b.setI(i, v[i]);
  return b;
}

/// Uniform in [lo, hi), rounded to t.
inline Buffer Uniform(DType t, Shape s, Rng &rng, float lo = -1, float hi = 1) {
  Buffer b(t, std::move(s));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < b.numel(); ++i)
    b.setF(i, dist(rng));
  return b;
}

/// Uniform integers in [lo, hi].
inline Buffer RandomInts(DType t, Shape s, Rng &rng, int64_t lo, int64_t hi) {
  Buffer b(t, std::move(s));
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  for (int64_t i = 0; i < b.numel(); ++i)
    b.setI(i, dist(rng));
  return b;
}

inline int64_t Pick(Rng &rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

//===----------------------------------------------------------------------===//
// Comparisons.
//===----------------------------------------------------------------------===//

/// |got - want| <= atol + rtol * |want|, elementwise.
struct Tol {
  double rtol;
  double atol;
};

inline std::string Coords(int64_t flat, const Shape &shape) {
  std::vector<int64_t> c(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    c[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return absl::StrCat("(", absl::StrJoin(c, ","), ")");
}

inline std::string Describe(const absl::Status &s) { return s.ToString(); }

/// Both implementations of one kernel, to run the same checks on each.
template <typename Fn> struct Impl {
  Fn fn;
  const char *name;
};
#define BOTH(Kernel)                                                           \
  std::initializer_list<Impl<decltype(&ref::Kernel)>> {                        \
    {&ref::Kernel, "ref"}, { &fast::Kernel, "fast" }                           \
  }

#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    absl::Status status_ = (expr);                                             \
    ASSERT_TRUE(status_.ok()) << Describe(status_);                            \
  } while (0)

inline constexpr DType kFloatTypes[] = {DType::F32, DType::BF16};

/// Fast against reference: f32 results differ by summation order (the fast
/// path sums in f32, the reference in f64), so relative 1e-5 plus an
/// absolute term that grows with the reduction length n and the scale of
/// the terms summed; bf16 results are each rounded once from f32 or wider,
/// so they differ by at most about one bf16 ulp (2^-8 relative), plus the
/// absolute term where cancellation leaves a result far below its terms.
inline Tol FastTol(DType t, int64_t n, double magnitude = 1.0) {
  double s = std::sqrt(static_cast<double>(std::max<int64_t>(n, 1)));
  if (t == DType::F32)
    return {1e-5, 1e-5 * s * magnitude};
  return {1e-2, 1e-3 * s * magnitude};
}

//===----------------------------------------------------------------------===//
// Comparisons and inputs every kernel test uses.
//===----------------------------------------------------------------------===//

inline bool StatsEnabled() {
  return std::getenv("VEOMNI_GRAD_STATS") != nullptr;
}

inline void PrintStats(const std::string &what, double worstAbs,
                       double worstRatio) {
  if (StatsEnabled())
    std::printf("[ stats    ] %s: max |diff| %.3g, max |diff| / tol %.3g\n",
                what.c_str(), worstAbs, worstRatio);
}

//===----------------------------------------------------------------------===//
// Comparisons.
//===----------------------------------------------------------------------===//

/// The tolerance for results of type t computed from reductions of length n
/// (1 for elementwise work): f32 1e-5 relative, 1e-5 * sqrt(n) absolute
/// (the fast path sums in f32, in another order); bf16 and f16 about one ulp
/// of the result (both sides compute in f32 or wider and round once, so they
/// differ at most where the exact value lies near a rounding boundary).
inline Tol TolFor(DType t, int64_t n = 1) {
  double s = std::sqrt(static_cast<double>(std::max<int64_t>(n, 1)));
  switch (t) {
  case DType::F32:
    return {1e-5, 1e-5 * s};
  case DType::BF16:
    return {1e-2, 1e-3 * s};
  case DType::F16:
    return {2e-3, 1e-4 * s};
  default:
    return {0, 0};
  }
}

inline ::testing::AssertionResult SameLayout(const Buffer &got,
                                             const Buffer &want) {
  if (got.dtype != want.dtype || got.shape != want.shape)
    return ::testing::AssertionFailure()
           << "got " << got.view().ToString() << " but want "
           << want.view().ToString();
  return ::testing::AssertionSuccess();
}

/// Floats within `tol` (NaN matches NaN); integers exactly. A non-empty
/// `what` names the comparison in failures and, with VEOMNI_GRAD_STATS set,
/// prints its worst error.
inline ::testing::AssertionResult AllClose(const Buffer &got,
                                           const Buffer &want, Tol tol,
                                           const std::string &what = "") {
  if (auto r = SameLayout(got, want); !r)
    return r;
  bool ints = !IsFloat(want.dtype);
  int64_t bad = 0;
  double worst = 0, worstRatio = 0;
  std::string report;
  for (int64_t i = 0; i < want.numel(); ++i) {
    bool ok;
    double g, w;
    if (ints) {
      g = static_cast<double>(got.i(i));
      w = static_cast<double>(want.i(i));
      ok = got.i(i) == want.i(i);
    } else {
      g = got.f(i);
      w = want.f(i);
      ok = (std::isnan(g) && std::isnan(w)) || g == w ||
           std::fabs(g - w) <= tol.atol + tol.rtol * std::fabs(w);
    }
    double diff = std::fabs(g - w);
    if (!std::isnan(diff)) {
      worst = std::max(worst, diff);
      double scale = tol.atol + tol.rtol * std::fabs(w);
      if (scale > 0)
        worstRatio = std::max(worstRatio, diff / scale);
    }
    if (ok)
      continue;
    if (bad++ < 6)
      absl::StrAppend(&report, "\n  at ", Coords(i, want.shape), ": got ", g,
                      ", want ", w);
  }
  if (!what.empty())
    PrintStats(what, worst, worstRatio);
  if (bad == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << (what.empty() ? "" : what + ": ") << bad << " of " << want.numel()
         << " elements of " << want.view().ToString() << " differ (rtol "
         << tol.rtol << ", atol " << tol.atol << ", worst |diff| " << worst
         << "):" << report;
}

/// Bit-identical (data movement, integer results).
inline ::testing::AssertionResult Identical(const Buffer &got,
                                            const Buffer &want) {
  if (auto r = SameLayout(got, want); !r)
    return r;
  size_t size = SizeOf(want.dtype);
  for (int64_t i = 0; i < want.numel(); ++i)
    if (std::memcmp(got.bytes.data() + i * size, want.bytes.data() + i * size,
                    size) != 0)
      return ::testing::AssertionFailure()
             << want.view().ToString() << " differs first at "
             << Coords(i, want.shape) << ": got " << got.f(i) << ", want "
             << want.f(i);
  return ::testing::AssertionSuccess();
}

/// Elementwise against hand-computed values.
inline ::testing::AssertionResult
Values(const Buffer &got, std::vector<double> want, double tol = 1e-5) {
  if (got.numel() != static_cast<int64_t>(want.size()))
    return ::testing::AssertionFailure()
           << got.view().ToString() << " has " << got.numel()
           << " elements, want " << want.size();
  for (int64_t i = 0; i < got.numel(); ++i) {
    double g = IsFloat(got.dtype) ? got.f(i) : static_cast<double>(got.i(i));
    if (!(std::fabs(g - want[i]) <= tol * std::max(1.0, std::fabs(want[i]))))
      return ::testing::AssertionFailure()
             << got.view().ToString() << " at " << Coords(i, got.shape)
             << ": got " << g << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

/// Packed segments [0 0 0 1 1 2 ...], or random ids for `scattered`.
inline Buffer Segments(Rng &rng, int64_t b, int64_t s, bool scattered) {
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

/// Rope frequencies for tests: 0.5 * 500^(-2j/d).
inline std::vector<float> TestFrequencies(int64_t d) {
  std::vector<float> freq;
  for (int64_t j = 0; j < d / 2; ++j)
    freq.push_back(0.5f * std::pow(500.0f, -2.0f * j / d));
  return freq;
}

/// `groups` random sizes >= 0 summing to `rows`, some of them zero.
inline Buffer RandomGroups(DType t, int64_t groups, int64_t rows, Rng &rng) {
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
inline Buffer Spread(Shape shape, int64_t group, float spacing, Rng &rng) {
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

} // namespace veomni::rt::kerneltest

#endif // VEOMNI_TEST_UNIT_RUNTIME_KERNELTESTUTIL_H
