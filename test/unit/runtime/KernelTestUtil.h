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
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt::kerneltest {

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

} // namespace veomni::rt::kerneltest

#endif // VEOMNI_TEST_UNIT_RUNTIME_KERNELTESTUTIL_H
