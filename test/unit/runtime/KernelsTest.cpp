//===- KernelsTest.cpp - CPU kernels: references and fast paths -----------===//
//
// For every kernel:
//  - Known: a small case with hand-computed values, run on the reference
//    (and on the fast path, which must agree).
//  - FastMatchesReference: random inputs of several shapes (odd sizes
//    included) and element types, fast path against reference, within a
//    stated tolerance (see TolFor).
//  - Errors: invalid shapes, indices or attributes return InvalidArgument
//    from both.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "test/unit/runtime/KernelTestUtil.h"
#include "test/unit/runtime/reference/Reference.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

namespace fast = veomni::rt::cpu;
namespace ref = veomni::rt::cpu::ref;
using cpu::BinaryKind;
using cpu::LossReduction;
using cpu::ReduceKind;
using cpu::RopeConfig;
using cpu::UnaryKind;
using namespace kerneltest;

//===----------------------------------------------------------------------===//
// Comparisons.
//===----------------------------------------------------------------------===//

/// The tolerance for results of type t computed from reductions of length n
/// (1 for elementwise work): f32 1e-5 relative, 1e-5 * sqrt(n) absolute
/// (the fast path sums in f32, in another order); bf16 and f16 about one ulp
/// of the result (both sides compute in f32 or wider and round once, so they
/// differ at most where the exact value lies near a rounding boundary).
Tol TolFor(DType t, int64_t n = 1) {
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

::testing::AssertionResult SameLayout(const Buffer &got, const Buffer &want) {
  if (got.dtype != want.dtype || got.shape != want.shape)
    return ::testing::AssertionFailure()
           << "got " << got.view().ToString() << " but want "
           << want.view().ToString();
  return ::testing::AssertionSuccess();
}

/// Floats within `tol` (NaN matches NaN); integers exactly.
::testing::AssertionResult AllClose(const Buffer &got, const Buffer &want,
                                    Tol tol) {
  if (auto r = SameLayout(got, want); !r)
    return r;
  bool ints = !IsFloat(want.dtype);
  int64_t bad = 0;
  double worst = 0;
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
    if (ok)
      continue;
    worst = std::max(worst, std::fabs(g - w));
    if (bad++ < 6)
      absl::StrAppend(&report, "\n  at ", Coords(i, want.shape), ": got ", g,
                      ", want ", w);
  }
  if (bad == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << want.numel() << " elements of "
         << want.view().ToString() << " differ (rtol " << tol.rtol << ", atol "
         << tol.atol << ", worst |diff| " << worst << "):" << report;
}

/// Bit-identical (data movement, integer results).
::testing::AssertionResult Identical(const Buffer &got, const Buffer &want) {
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
::testing::AssertionResult Values(const Buffer &got, std::vector<double> want,
                                  double tol = 1e-5) {
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

/// An InvalidArgument; the reference's message starts "<Kernel>: ".
#define EXPECT_INVALID(impl, expr, Kernel)                                     \
  do {                                                                         \
    absl::Status status_ = (expr);                                             \
    EXPECT_EQ(status_.code(), absl::StatusCode::kInvalidArgument)              \
        << (impl).name << ": " << Describe(status_);                           \
    if (std::string((impl).name) == "ref") {                                   \
      EXPECT_TRUE(absl::StartsWith(status_.message(), #Kernel ": "))           \
          << Describe(status_);                                                \
    }                                                                          \
  } while (0)

//===----------------------------------------------------------------------===//
// Matmul
//===----------------------------------------------------------------------===//

TEST(MatmulTest, Known) {
  // [[1 2 3] [4 5 6]] @ [[1 0] [0 1] [1 1]] = [[4 5] [10 11]]
  Buffer a = Floats(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Buffer at = Floats(DType::F32, {3, 2}, {1, 4, 2, 5, 3, 6});
  Buffer b = Floats(DType::F32, {3, 2}, {1, 0, 0, 1, 1, 1});
  Buffer bt = Floats(DType::F32, {2, 3}, {1, 0, 1, 0, 1, 1});
  for (const auto &impl : BOTH(Matmul)) {
    SCOPED_TRACE(impl.name);
    for (int tl = 0; tl < 2; ++tl) {
      for (int tr = 0; tr < 2; ++tr) {
        Buffer out = Garbage(DType::F32, {2, 2});
        ASSERT_OK(impl.fn((tl ? at : a).view(), (tr ? bt : b).view(),
                          out.view(), tl, tr));
        EXPECT_TRUE(Values(out, {4, 5, 10, 11})) << tl << tr;
      }
    }
    // Batched lhs, shared rank-2 rhs; and batched rhs.
    Buffer a2 = Floats(DType::F32, {2, 1, 2}, {1, 2, 3, 4});
    Buffer eye = Floats(DType::F32, {2, 2}, {0, 1, 1, 0});
    Buffer out = Garbage(DType::F32, {2, 1, 2});
    ASSERT_OK(impl.fn(a2.view(), eye.view(), out.view(), false, false));
    EXPECT_TRUE(Values(out, {2, 1, 4, 3}));
    Buffer b2 = Floats(DType::F32, {2, 2, 1}, {1, 1, 2, 0});
    Buffer out2 = Garbage(DType::F32, {2, 1, 1});
    ASSERT_OK(impl.fn(a2.view(), b2.view(), out2.view(), false, false));
    EXPECT_TRUE(Values(out2, {3, 6}));
    // bf16 in and out.
    Buffer ab = Floats(DType::BF16, {1, 2}, {1.5f, -2});
    Buffer bb = Floats(DType::BF16, {2, 1}, {2, 0.25f});
    Buffer ob = Garbage(DType::BF16, {1, 1});
    ASSERT_OK(impl.fn(ab.view(), bb.view(), ob.view(), false, false));
    EXPECT_TRUE(Values(ob, {2.5}));
  }
}

TEST(MatmulTest, FastMatchesReference) {
  Rng rng(1);
  struct Case {
    Shape batch;
    int64_t m, k, n;
    bool sharedRhs;
  };
  const Case cases[] = {
      {{}, 1, 1, 1, false},       {{}, 3, 7, 5, false},
      {{}, 17, 33, 1, false},     {{}, 65, 17, 33, false},
      {{}, 1, 65, 7, false},      {{}, 128, 64, 96, false},
      {{2}, 7, 17, 3, false},     {{2}, 7, 17, 3, true},
      {{2, 3}, 17, 33, 9, false}, {{3}, 33, 129, 65, true},
      {{1, 2}, 5, 3, 65, true},
  };
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (int tl = 0; tl < 2; ++tl) {
        for (int tr = 0; tr < 2; ++tr) {
          Shape lhsShape = Cat(c.batch, tl ? Shape{c.k, c.m} : Shape{c.m, c.k});
          Shape rhsShape = Cat(c.sharedRhs ? Shape{} : c.batch,
                               tr ? Shape{c.n, c.k} : Shape{c.k, c.n});
          Shape outShape = Cat(c.batch, {c.m, c.n});
          SCOPED_TRACE(absl::StrCat(Name(t), " lhs ", Str(lhsShape), " rhs ",
                                    Str(rhsShape), " tl ", tl, " tr ", tr));
          Buffer lhs = Uniform(t, lhsShape, rng);
          Buffer rhs = Uniform(t, rhsShape, rng);
          Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
          ASSERT_OK(ref::Matmul(lhs.view(), rhs.view(), want.view(), tl, tr));
          ASSERT_OK(fast::Matmul(lhs.view(), rhs.view(), got.view(), tl, tr));
          EXPECT_TRUE(AllClose(got, want, TolFor(t, c.k)));
        }
      }
    }
  }
}

TEST(MatmulTest, EmptyContractionIsZero) {
  Buffer lhs(DType::F32, {3, 0}), rhs(DType::F32, {0, 4});
  for (const auto &impl : BOTH(Matmul)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 4});
    ASSERT_OK(impl.fn(lhs.view(), rhs.view(), out.view(), false, false));
    EXPECT_TRUE(Values(out, std::vector<double>(12, 0.0)));
  }
}

TEST(MatmulTest, Errors) {
  Buffer a(DType::F32, {2, 3}), b(DType::F32, {4, 2}), v(DType::F32, {3});
  Buffer b3(DType::F32, {3, 3, 2}), a3(DType::F32, {2, 2, 3});
  Buffer out(DType::F32, {2, 2}), out3(DType::F32, {2, 2, 2});
  Buffer good(DType::F32, {3, 2}), bad(DType::F32, {2, 3});
  for (const auto &impl : BOTH(Matmul)) {
    SCOPED_TRACE(impl.name);
    // Contracting dims differ (3 vs 4).
    EXPECT_INVALID(impl, impl.fn(a.view(), b.view(), out.view(), false, false),
                   Matmul);
    // Rank-1 lhs.
    EXPECT_INVALID(
        impl, impl.fn(v.view(), good.view(), out.view(), false, false), Matmul);
    // Batch dims differ (2 vs 3).
    EXPECT_INVALID(
        impl, impl.fn(a3.view(), b3.view(), out3.view(), false, false), Matmul);
    // Wrong out shape.
    EXPECT_INVALID(
        impl, impl.fn(a.view(), good.view(), bad.view(), false, false), Matmul);
  }
}

//===----------------------------------------------------------------------===//
// GroupedMatmul
//===----------------------------------------------------------------------===//

TEST(GroupedMatmulTest, Known) {
  // Rows 0 | 1 2 use weight 0 = I | weight 1 = [[0 1] [2 0]].
  Buffer in = Floats(DType::F32, {3, 2}, {1, 2, 3, 4, 5, 6});
  Buffer w = Floats(DType::F32, {2, 2, 2}, {1, 0, 0, 1, 0, 1, 2, 0});
  Buffer wt = Floats(DType::F32, {2, 2, 2}, {1, 0, 0, 1, 0, 2, 1, 0});
  Buffer groups = Ints(DType::I32, {2}, {1, 2});
  for (const auto &impl : BOTH(GroupedMatmul)) {
    SCOPED_TRACE(impl.name);
    for (int tw = 0; tw < 2; ++tw) {
      Buffer out = Garbage(DType::F32, {3, 2});
      ASSERT_OK(impl.fn(in.view(), (tw ? wt : w).view(), groups.view(),
                        out.view(), tw));
      EXPECT_TRUE(Values(out, {1, 2, 8, 3, 12, 5})) << tw;
    }
    // An empty group in the middle; i64 sizes.
    Buffer groups3 = Ints(DType::I64, {3}, {2, 0, 1});
    Buffer w3 = Floats(DType::F32, {3, 2, 1}, {1, 1, 9, 9, 1, -1});
    Buffer out = Garbage(DType::F32, {3, 1});
    ASSERT_OK(impl.fn(in.view(), w3.view(), groups3.view(), out.view(), false));
    EXPECT_TRUE(Values(out, {3, 7, -1}));
  }
}

TEST(GroupedMatmulTest, FastMatchesReference) {
  Rng rng(2);
  const int64_t expertCounts[] = {1, 3, 8};
  const std::pair<int64_t, int64_t> dims[] = {
      {1, 1}, {7, 17}, {33, 65}, {64, 32}};
  for (DType t : kFloatTypes) {
    for (int64_t e : expertCounts) {
      for (auto [k, m] : dims) {
        for (int tw = 0; tw < 2; ++tw) {
          DType gt = tw ? DType::I64 : DType::I32;
          std::vector<int64_t> sizes(e);
          int64_t n = 0;
          for (int64_t &s : sizes) {
            s = Pick(rng, 0, 3) == 0 ? 0 : Pick(rng, 1, 9);
            n += s;
          }
          SCOPED_TRACE(absl::StrCat(Name(t), " E ", e, " K ", k, " M ", m,
                                    " tw ", tw, " sizes ",
                                    absl::StrJoin(sizes, ",")));
          Buffer in = Uniform(t, {n, k}, rng);
          Buffer w = Uniform(t, tw ? Shape{e, m, k} : Shape{e, k, m}, rng);
          Buffer groups = Ints(gt, {e}, sizes);
          Buffer want = Garbage(t, {n, m}), got = Garbage(t, {n, m});
          ASSERT_OK(ref::GroupedMatmul(in.view(), w.view(), groups.view(),
                                       want.view(), tw));
          ASSERT_OK(fast::GroupedMatmul(in.view(), w.view(), groups.view(),
                                        got.view(), tw));
          EXPECT_TRUE(AllClose(got, want, TolFor(t, k)));
        }
      }
    }
  }
}

TEST(GroupedMatmulTest, Errors) {
  Buffer in(DType::F32, {3, 2}), w(DType::F32, {2, 2, 4});
  Buffer out(DType::F32, {3, 4});
  Buffer sumTooSmall = Ints(DType::I32, {2}, {1, 1});
  Buffer sumTooLarge = Ints(DType::I32, {2}, {2, 2});
  Buffer negative = Ints(DType::I64, {2}, {-1, 4});
  Buffer wrongCount = Ints(DType::I32, {3}, {1, 1, 1});
  Buffer floatSizes = Floats(DType::F32, {2}, {1, 2});
  Buffer wBadK(DType::F32, {2, 3, 4});
  Buffer good = Ints(DType::I32, {2}, {1, 2});
  for (const auto &impl : BOTH(GroupedMatmul)) {
    SCOPED_TRACE(impl.name);
    for (const Buffer *g :
         {&sumTooSmall, &sumTooLarge, &negative, &wrongCount, &floatSizes})
      EXPECT_INVALID(impl,
                     impl.fn(in.view(), w.view(), g->view(), out.view(), false),
                     GroupedMatmul);
    EXPECT_INVALID(
        impl, impl.fn(in.view(), wBadK.view(), good.view(), out.view(), false),
        GroupedMatmul);
    // transposeWeight reads w as [E, M=2, K=4]: K differs from input's 2.
    EXPECT_INVALID(impl,
                   impl.fn(in.view(), w.view(), good.view(), out.view(), true),
                   GroupedMatmul);
  }
}

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
// Unary, Binary, Cast
//===----------------------------------------------------------------------===//

const UnaryKind kUnaryKinds[] = {
    UnaryKind::Neg,     UnaryKind::Exp,  UnaryKind::Log,  UnaryKind::Sqrt,
    UnaryKind::Rsqrt,   UnaryKind::Sin,  UnaryKind::Cos,  UnaryKind::Tanh,
    UnaryKind::Sigmoid, UnaryKind::Silu, UnaryKind::Gelu, UnaryKind::GeluTanh};

bool PositiveDomain(UnaryKind k) {
  return k == UnaryKind::Log || k == UnaryKind::Sqrt || k == UnaryKind::Rsqrt;
}

TEST(UnaryTest, Known) {
  struct Case {
    UnaryKind kind;
    float x;
    double want;
  };
  const Case cases[] = {
      {UnaryKind::Neg, 2, -2},
      {UnaryKind::Exp, 1, 2.718281828459045},
      {UnaryKind::Log, 2, 0.6931471805599453},
      {UnaryKind::Sqrt, 4, 2},
      {UnaryKind::Rsqrt, 4, 0.5},
      {UnaryKind::Sin, 1, 0.8414709848078965},
      {UnaryKind::Cos, 1, 0.5403023058681398},
      {UnaryKind::Tanh, 1, 0.7615941559557649},
      {UnaryKind::Sigmoid, 2, 0.8807970779778823},
      {UnaryKind::Silu, 1, 0.7310585786300049},
      {UnaryKind::Gelu, 1, 0.8413447460685429},
      {UnaryKind::GeluTanh, 1, 0.8411919906082768},
      {UnaryKind::Gelu, 0, 0},
      {UnaryKind::Sigmoid, 0, 0.5},
  };
  for (const auto &impl : BOTH(Unary)) {
    SCOPED_TRACE(impl.name);
    for (const Case &c : cases) {
      SCOPED_TRACE(static_cast<int>(c.kind));
      Buffer in = Floats(DType::F32, {1}, {c.x});
      Buffer out = Garbage(DType::F32, {1});
      ASSERT_OK(impl.fn(c.kind, in.view(), out.view()));
      EXPECT_TRUE(Values(out, {c.want}, 1e-6));
    }
    // bf16 rounds once: exp(1) = 2.71828 -> 2.71875.
    Buffer in = Floats(DType::BF16, {1}, {1});
    Buffer out = Garbage(DType::BF16, {1});
    ASSERT_OK(impl.fn(UnaryKind::Exp, in.view(), out.view()));
    EXPECT_TRUE(Values(out, {2.71875}, 0));
  }
}

TEST(UnaryTest, FastMatchesReference) {
  Rng rng(4);
  const Shape shapes[] = {{1}, {3}, {7, 1}, {17}, {33, 3}, {65}, {1000}};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (UnaryKind kind : kUnaryKinds) {
      for (const Shape &s : shapes) {
        SCOPED_TRACE(absl::StrCat(Name(t), " kind ", static_cast<int>(kind),
                                  " ", Str(s)));
        Buffer in = PositiveDomain(kind) ? Uniform(t, s, rng, 0.05f, 4)
                                         : Uniform(t, s, rng, -4, 4);
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::Unary(kind, in.view(), want.view()));
        ASSERT_OK(fast::Unary(kind, in.view(), got.view()));
        EXPECT_TRUE(AllClose(got, want, TolFor(t)));
        // In place.
        Buffer inPlace = in;
        ASSERT_OK(fast::Unary(kind, inPlace.view(), inPlace.view()));
        EXPECT_TRUE(AllClose(inPlace, want, TolFor(t))) << "in place";
      }
    }
  }
}

TEST(UnaryTest, Errors) {
  Buffer in(DType::F32, {4}), out(DType::F32, {5}), ints(DType::I32, {4});
  for (const auto &impl : BOTH(Unary)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(UnaryKind::Exp, in.view(), out.view()), Unary);
    EXPECT_INVALID(impl, impl.fn(UnaryKind::Exp, ints.view(), ints.view()),
                   Unary);
  }
}

TEST(BinaryTest, Known) {
  Buffer a = Floats(DType::F32, {3}, {1, 2, 3});
  Buffer b = Floats(DType::F32, {3}, {4, 5, 8});
  for (const auto &impl : BOTH(Binary)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3});
    ASSERT_OK(impl.fn(BinaryKind::Add, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {5, 7, 11}));
    ASSERT_OK(impl.fn(BinaryKind::Sub, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {-3, -3, -5}));
    ASSERT_OK(impl.fn(BinaryKind::Mul, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {4, 10, 24}));
    ASSERT_OK(impl.fn(BinaryKind::Div, a.view(), b.view(), out.view()));
    EXPECT_TRUE(Values(out, {0.25, 0.4, 0.375}));
    // bf16: 1 + 2^-9 rounds back to 1 (to nearest even).
    Buffer x = Floats(DType::BF16, {1}, {1});
    Buffer y = Floats(DType::BF16, {1}, {1.0f / 512});
    Buffer z = Garbage(DType::BF16, {1});
    ASSERT_OK(impl.fn(BinaryKind::Add, x.view(), y.view(), z.view()));
    EXPECT_TRUE(Values(z, {1}, 0));
  }
}

TEST(BinaryTest, FastMatchesReference) {
  Rng rng(5);
  const Shape shapes[] = {{1}, {3}, {7}, {17, 3}, {33}, {2, 65}, {4097}};
  const BinaryKind kinds[] = {BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul,
                              BinaryKind::Div};
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    for (BinaryKind kind : kinds) {
      for (const Shape &s : shapes) {
        SCOPED_TRACE(absl::StrCat(Name(t), " kind ", static_cast<int>(kind),
                                  " ", Str(s)));
        Buffer a = Uniform(t, s, rng, -4, 4);
        Buffer b = Uniform(t, s, rng, 0.25f, 4); // away from 0 for Div
        Buffer want = Garbage(t, s), got = Garbage(t, s);
        ASSERT_OK(ref::Binary(kind, a.view(), b.view(), want.view()));
        ASSERT_OK(fast::Binary(kind, a.view(), b.view(), got.view()));
        EXPECT_TRUE(AllClose(got, want, TolFor(t)));
        Buffer lhsInPlace = a, rhsInPlace = b;
        ASSERT_OK(
            fast::Binary(kind, lhsInPlace.view(), b.view(), lhsInPlace.view()));
        EXPECT_TRUE(AllClose(lhsInPlace, want, TolFor(t))) << "out = lhs";
        ASSERT_OK(
            fast::Binary(kind, a.view(), rhsInPlace.view(), rhsInPlace.view()));
        EXPECT_TRUE(AllClose(rhsInPlace, want, TolFor(t))) << "out = rhs";
      }
    }
  }
}

TEST(BinaryTest, Errors) {
  Buffer a(DType::F32, {4}), b(DType::F32, {2, 2}), out(DType::F32, {4});
  Buffer shortOut(DType::F32, {3});
  for (const auto &impl : BOTH(Binary)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl, impl.fn(BinaryKind::Add, a.view(), b.view(), out.view()), Binary);
    EXPECT_INVALID(
        impl, impl.fn(BinaryKind::Mul, a.view(), a.view(), shortOut.view()),
        Binary);
  }
}

TEST(CastTest, Known) {
  // f32 -> bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and
  // 1 + 2^-7 and goes to 1; 1 + 3 * 2^-8 goes to 1 + 2^-6.
  Buffer f = Floats(DType::F32, {3}, {1.00390625f, 1.01171875f, -2.5f});
  Buffer ints = Ints(DType::I64, {3}, {-7, 0, 1 << 20});
  for (const auto &impl : BOTH(Cast)) {
    SCOPED_TRACE(impl.name);
    Buffer bf = Garbage(DType::BF16, {3});
    ASSERT_OK(impl.fn(f.view(), bf.view()));
    EXPECT_TRUE(Values(bf, {1, 1.015625, -2.5}, 0));
    Buffer h = Garbage(DType::F16, {3});
    ASSERT_OK(impl.fn(bf.view(), h.view()));
    EXPECT_TRUE(Values(h, {1, 1.015625, -2.5}, 0));
    Buffer fi = Garbage(DType::F32, {3});
    ASSERT_OK(impl.fn(ints.view(), fi.view()));
    EXPECT_TRUE(Values(fi, {-7, 0, 1 << 20}, 0));
    Buffer i32 = Ints(DType::I32, {3}, {9, 9, 9});
    ASSERT_OK(impl.fn(ints.view(), i32.view()));
    EXPECT_TRUE(Values(i32, {-7, 0, 1 << 20}, 0));
  }
}

TEST(CastTest, FastMatchesReference) {
  Rng rng(6);
  const DType all[] = {DType::F32, DType::BF16, DType::F16, DType::I32,
                       DType::I64};
  for (DType from : all) {
    for (DType to : all) {
      if (IsFloat(from) && !IsFloat(to))
        continue;
      for (int64_t n : {1, 7, 65, 1025}) {
        SCOPED_TRACE(absl::StrCat(Name(from), " -> ", Name(to), " n ", n));
        Buffer in = IsFloat(from) ? Uniform(from, {n}, rng, -100, 100)
                                  : RandomInts(from, {n}, rng, -70000, 70000);
        if (from == DType::F32) // exercise rounding ties and specials
          for (int64_t i = 0; i + 2 < n; i += 5) {
            in.setF(i, 1.00390625f + static_cast<float>(i));
            in.setF(i + 1, INFINITY);
            in.setF(i + 2, 1e-30f);
          }
        Buffer want = Garbage(to, {n}), got = Garbage(to, {n});
        ASSERT_OK(ref::Cast(in.view(), want.view()));
        ASSERT_OK(fast::Cast(in.view(), got.view()));
        EXPECT_TRUE(Identical(got, want));
        if (SizeOf(from) == SizeOf(to)) {
          Buffer inPlace = in;
          TensorView v = inPlace.view();
          TensorView o = v;
          o.dtype = to;
          ASSERT_OK(fast::Cast(v, o));
          inPlace.dtype = to;
          EXPECT_TRUE(Identical(inPlace, want)) << "in place";
        }
      }
    }
  }
}

TEST(CastTest, Errors) {
  Buffer f(DType::F32, {4}), i(DType::I32, {4}), wrong(DType::BF16, {5});
  for (const auto &impl : BOTH(Cast)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(f.view(), i.view()), Cast); // float -> int
    EXPECT_INVALID(impl, impl.fn(f.view(), wrong.view()), Cast);
  }
}

//===----------------------------------------------------------------------===//
// Reduce, Softmax, RmsNorm, LayerNorm
//===----------------------------------------------------------------------===//

TEST(ReduceTest, Known) {
  Buffer x = Floats(DType::F32, {2, 3}, {1, 5, 3, -4, 2, 0});
  for (const auto &impl : BOTH(Reduce)) {
    SCOPED_TRACE(impl.name);
    Buffer rows = Garbage(DType::F32, {2});
    ASSERT_OK(impl.fn(ReduceKind::Sum, x.view(), rows.view(), {1}));
    EXPECT_TRUE(Values(rows, {9, -2}));
    Buffer kept = Garbage(DType::F32, {2, 1});
    ASSERT_OK(impl.fn(ReduceKind::Max, x.view(), kept.view(), {1}));
    EXPECT_TRUE(Values(kept, {5, 2}));
    Buffer cols = Garbage(DType::F32, {1, 3});
    ASSERT_OK(impl.fn(ReduceKind::Mean, x.view(), cols.view(), {0}));
    EXPECT_TRUE(Values(cols, {-1.5, 3.5, 1.5}));
    Buffer all = Garbage(DType::F32, {});
    ASSERT_OK(impl.fn(ReduceKind::Mean, x.view(), all.view(), {0, 1}));
    EXPECT_TRUE(Values(all, {7.0 / 6}));
    Buffer allKept = Garbage(DType::F32, {1, 1});
    ASSERT_OK(impl.fn(ReduceKind::Max, x.view(), allKept.view(), {0, 1}));
    EXPECT_TRUE(Values(allKept, {5}));
  }
}

TEST(ReduceTest, FastMatchesReference) {
  Rng rng(7);
  const Shape shapes[] = {{1},        {65},         {7, 3}, {3, 17},
                          {2, 33, 5}, {4, 1, 3, 9}, {1000}, {3, 257}};
  const ReduceKind kinds[] = {ReduceKind::Sum, ReduceKind::Max,
                              ReduceKind::Mean};
  for (DType t : kFloatTypes) {
    for (const Shape &s : shapes) {
      int64_t rank = static_cast<int64_t>(s.size());
      for (int64_t mask = 1; mask < (1 << rank); ++mask) {
        std::vector<int64_t> dims;
        int64_t count = 1;
        for (int64_t d = 0; d < rank; ++d)
          if (mask & (1 << d)) {
            dims.push_back(d);
            count *= s[d];
          }
        for (int keep = 0; keep < 2; ++keep) {
          Shape outShape;
          for (int64_t d = 0; d < rank; ++d)
            if (!(mask & (1 << d)))
              outShape.push_back(s[d]);
            else if (keep)
              outShape.push_back(1);
          for (ReduceKind kind : kinds) {
            SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " dims ", Str(dims),
                                      " keep ", keep, " kind ",
                                      static_cast<int>(kind)));
            Buffer in = Uniform(t, s, rng);
            Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
            ASSERT_OK(ref::Reduce(kind, in.view(), want.view(), dims));
            ASSERT_OK(fast::Reduce(kind, in.view(), got.view(), dims));
            EXPECT_TRUE(AllClose(got, want, TolFor(t, count)));
          }
        }
      }
    }
  }
}

TEST(ReduceTest, Errors) {
  Buffer x(DType::F32, {2, 3, 4});
  Buffer out(DType::F32, {2, 4}), wrong(DType::F32, {3, 4});
  Buffer wrongRank(DType::F32, {2, 1});
  for (const auto &impl : BOTH(Reduce)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(ReduceKind::Sum, x.view(), wrong.view(), {1}),
                   Reduce);
    EXPECT_INVALID(impl,
                   impl.fn(ReduceKind::Sum, x.view(), wrongRank.view(), {1}),
                   Reduce);
    EXPECT_INVALID(impl, impl.fn(ReduceKind::Sum, x.view(), out.view(), {3}),
                   Reduce);
    Buffer out2(DType::F32, {4});
    EXPECT_INVALID(
        impl, impl.fn(ReduceKind::Max, x.view(), out2.view(), {1, 0}), Reduce);
  }
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
// Broadcast, Transpose, Slice, Concat: exact
//===----------------------------------------------------------------------===//

TEST(BroadcastTest, Known) {
  Buffer row = Floats(DType::F32, {3}, {1, 2, 3});
  Buffer col = Ints(DType::I64, {2, 1}, {int64_t{1} << 40, -5});
  for (const auto &impl : BOTH(Broadcast)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {2, 3});
    ASSERT_OK(impl.fn(row.view(), out.view(), {1}));
    EXPECT_TRUE(Values(out, {1, 2, 3, 1, 2, 3}, 0));
    Buffer outCols = Garbage(DType::F32, {3, 2});
    ASSERT_OK(impl.fn(row.view(), outCols.view(), {0}));
    EXPECT_TRUE(Values(outCols, {1, 1, 2, 2, 3, 3}, 0));
    Buffer outI = Ints(DType::I64, {2, 2}, {0, 0, 0, 0});
    ASSERT_OK(impl.fn(col.view(), outI.view(), {0, 1}));
    EXPECT_EQ(outI.i(1), int64_t{1} << 40);
    EXPECT_EQ(outI.i(3), -5);
  }
}

TEST(BroadcastTest, FastMatchesReference) {
  Rng rng(11);
  struct Case {
    Shape in;
    Shape out;
    std::vector<int64_t> dims;
  };
  const Case cases[] = {
      {{1}, {7}, {0}},
      {{}, {3, 5}, {}},
      {{17}, {3, 17}, {1}},
      {{17}, {17, 3}, {0}},
      {{3, 1}, {3, 65}, {0, 1}},
      {{1, 65}, {7, 65}, {0, 1}},
      {{2, 3}, {2, 4, 3}, {0, 2}},
      {{2, 1, 5}, {2, 7, 3, 5}, {0, 1, 3}},
      {{1, 1}, {33, 1, 17}, {1, 2}},
  };
  for (DType t : {DType::F32, DType::BF16, DType::I32, DType::I64}) {
    for (const Case &c : cases) {
      SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(c.in), " -> ", Str(c.out),
                                " dims ", Str(c.dims)));
      Buffer in = IsFloat(t) ? Uniform(t, c.in, rng)
                             : RandomInts(t, c.in, rng, -1000000, 1000000);
      Buffer want = Garbage(t, c.out), got = Garbage(t, c.out);
      ASSERT_OK(ref::Broadcast(in.view(), want.view(), c.dims));
      ASSERT_OK(fast::Broadcast(in.view(), got.view(), c.dims));
      EXPECT_TRUE(Identical(got, want));
    }
  }
}

TEST(BroadcastTest, Errors) {
  Buffer in(DType::F32, {3}), out(DType::F32, {2, 4}), ok(DType::F32, {2, 3});
  Buffer in2(DType::F32, {2, 3}), out3(DType::F32, {2, 3, 4});
  Buffer otherType(DType::BF16, {2, 3});
  for (const auto &impl : BOTH(Broadcast)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(in.view(), out.view(), {1}), Broadcast);
    EXPECT_INVALID(impl, impl.fn(in.view(), ok.view(), {2}), Broadcast);
    EXPECT_INVALID(impl, impl.fn(in.view(), ok.view(), {}), Broadcast);
    EXPECT_INVALID(impl, impl.fn(in2.view(), out3.view(), {1, 0}), Broadcast);
    EXPECT_INVALID(impl, impl.fn(in.view(), otherType.view(), {1}), Broadcast);
  }
}

TEST(TransposeTest, Known) {
  Buffer x = Floats(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Buffer y = Floats(DType::F32, {1, 2, 2}, {1, 2, 3, 4});
  for (const auto &impl : BOTH(Transpose)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 2});
    ASSERT_OK(impl.fn(x.view(), out.view(), {1, 0}));
    EXPECT_TRUE(Values(out, {1, 4, 2, 5, 3, 6}, 0));
    Buffer out2 = Garbage(DType::F32, {2, 1, 2});
    ASSERT_OK(impl.fn(y.view(), out2.view(), {2, 0, 1}));
    EXPECT_TRUE(Values(out2, {1, 3, 2, 4}, 0));
  }
}

TEST(TransposeTest, FastMatchesReference) {
  Rng rng(12);
  const Shape shapes[] = {{7},        {1, 1},        {3, 17},
                          {65, 33},   {128, 96},     {2, 3, 5},
                          {7, 1, 17}, {2, 33, 3, 4}, {2, 3, 1, 5, 2}};
  for (DType t : {DType::F32, DType::BF16, DType::I64}) {
    for (const Shape &s : shapes) {
      std::vector<int64_t> perm(s.size());
      std::iota(perm.begin(), perm.end(), 0);
      do {
        Shape outShape;
        for (int64_t p : perm)
          outShape.push_back(s[p]);
        SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " perm ", Str(perm)));
        Buffer in = IsFloat(t) ? Uniform(t, s, rng)
                               : RandomInts(t, s, rng, -1000000, 1000000);
        Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
        ASSERT_OK(ref::Transpose(in.view(), want.view(), perm));
        ASSERT_OK(fast::Transpose(in.view(), got.view(), perm));
        EXPECT_TRUE(Identical(got, want));
      } while (std::next_permutation(perm.begin(), perm.end()));
    }
  }
}

TEST(TransposeTest, Errors) {
  Buffer x(DType::F32, {2, 3}), out(DType::F32, {3, 2});
  for (const auto &impl : BOTH(Transpose)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {0, 0}), Transpose);
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {1, 2}), Transpose);
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {1}), Transpose);
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {0, 1}), Transpose);
  }
}

TEST(SliceTest, Known) {
  Buffer x = Floats(DType::F32, {3, 4}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  for (const auto &impl : BOTH(Slice)) {
    SCOPED_TRACE(impl.name);
    // Rows 0 and 2, columns 1 and 3.
    Buffer out = Garbage(DType::F32, {2, 2});
    ASSERT_OK(impl.fn(x.view(), out.view(), {0, 1}, {3, 4}, {2, 2}));
    EXPECT_TRUE(Values(out, {1, 3, 9, 11}, 0));
    Buffer row = Garbage(DType::F32, {1, 3});
    ASSERT_OK(impl.fn(x.view(), row.view(), {1, 1}, {2, 4}, {1, 1}));
    EXPECT_TRUE(Values(row, {5, 6, 7}, 0));
  }
}

TEST(SliceTest, FastMatchesReference) {
  Rng rng(13);
  const Shape shapes[] = {{1},      {17},      {7, 3},
                          {33, 65}, {3, 5, 7}, {2, 3, 4, 17}};
  for (DType t : {DType::F32, DType::BF16, DType::I32}) {
    for (const Shape &s : shapes) {
      for (int trial = 0; trial < 6; ++trial) {
        std::vector<int64_t> start, limit, step;
        Shape outShape;
        for (int64_t d : s) {
          int64_t a = Pick(rng, 0, d - 1), b = Pick(rng, a + 1, d);
          int64_t st = Pick(rng, 1, 3);
          start.push_back(a);
          limit.push_back(b);
          step.push_back(st);
          outShape.push_back((b - a + st - 1) / st);
        }
        SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " start ", Str(start),
                                  " limit ", Str(limit), " step ", Str(step)));
        Buffer in = IsFloat(t) ? Uniform(t, s, rng)
                               : RandomInts(t, s, rng, -1000000, 1000000);
        Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
        ASSERT_OK(ref::Slice(in.view(), want.view(), start, limit, step));
        ASSERT_OK(fast::Slice(in.view(), got.view(), start, limit, step));
        EXPECT_TRUE(Identical(got, want));
      }
    }
  }
}

TEST(SliceTest, Errors) {
  Buffer x(DType::F32, {3, 4}), out(DType::F32, {1, 2}),
      big(DType::F32, {2, 2});
  for (const auto &impl : BOTH(Slice)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {0, 0}, {1, 5}, {1, 2}),
                   Slice); // limit past the end
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {0, 0}, {1, 4}, {1, 0}),
                   Slice); // step 0
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {-1, 0}, {0, 4}, {1, 2}),
                   Slice); // negative start
    EXPECT_INVALID(impl, impl.fn(x.view(), big.view(), {0, 0}, {1, 4}, {1, 2}),
                   Slice); // out shape
    EXPECT_INVALID(impl, impl.fn(x.view(), out.view(), {0}, {1}, {1}), Slice);
  }
}

TEST(ConcatTest, Known) {
  Buffer a = Floats(DType::F32, {2, 1}, {1, 2});
  Buffer b = Floats(DType::F32, {2, 2}, {3, 4, 5, 6});
  Buffer c = Floats(DType::F32, {1, 2}, {7, 8});
  for (const auto &impl : BOTH(Concat)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {2, 3});
    std::vector<TensorView> ins = {a.view(), b.view()};
    ASSERT_OK(impl.fn(ins, out.view(), 1));
    EXPECT_TRUE(Values(out, {1, 3, 4, 2, 5, 6}, 0));
    Buffer out0 = Garbage(DType::F32, {3, 2});
    std::vector<TensorView> ins0 = {b.view(), c.view()};
    ASSERT_OK(impl.fn(ins0, out0.view(), 0));
    EXPECT_TRUE(Values(out0, {3, 4, 5, 6, 7, 8}, 0));
  }
}

TEST(ConcatTest, FastMatchesReference) {
  Rng rng(14);
  const Shape shapes[] = {{5}, {3, 7}, {2, 17, 3}, {2, 3, 1, 33}};
  for (DType t : {DType::F32, DType::BF16, DType::I64}) {
    for (const Shape &s : shapes) {
      for (int64_t dim = 0; dim < static_cast<int64_t>(s.size()); ++dim) {
        for (int64_t count : {1, 2, 4}) {
          std::vector<Buffer> ins;
          std::vector<TensorView> views;
          Shape outShape = s;
          outShape[dim] = 0;
          std::string sizes;
          for (int64_t n = 0; n < count; ++n) {
            Shape piece = s;
            piece[dim] = Pick(rng, 0, 4) == 0 ? 0 : Pick(rng, 1, 9);
            outShape[dim] += piece[dim];
            absl::StrAppend(&sizes, piece[dim], ",");
            ins.push_back(IsFloat(t)
                              ? Uniform(t, piece, rng)
                              : RandomInts(t, piece, rng, -1000000, 1000000));
          }
          for (const Buffer &b : ins)
            views.push_back(b.view());
          SCOPED_TRACE(absl::StrCat(Name(t), " ", Str(s), " dim ", dim,
                                    " sizes ", sizes));
          Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
          ASSERT_OK(ref::Concat(views, want.view(), dim));
          ASSERT_OK(fast::Concat(views, got.view(), dim));
          EXPECT_TRUE(Identical(got, want));
        }
      }
    }
  }
}

TEST(ConcatTest, Errors) {
  Buffer a(DType::F32, {2, 1}), b(DType::F32, {3, 2}), out(DType::F32, {2, 3});
  Buffer c(DType::F32, {2, 2}), bf(DType::BF16, {2, 2});
  Buffer tooWide(DType::F32, {2, 4});
  for (const auto &impl : BOTH(Concat)) {
    SCOPED_TRACE(impl.name);
    std::vector<TensorView> mismatched = {a.view(), b.view()};
    EXPECT_INVALID(impl, impl.fn(mismatched, out.view(), 1), Concat);
    std::vector<TensorView> good = {a.view(), c.view()};
    EXPECT_INVALID(impl, impl.fn(good, tooWide.view(), 1), Concat);
    EXPECT_INVALID(impl, impl.fn(good, out.view(), 2), Concat);
    std::vector<TensorView> mixed = {a.view(), bf.view()};
    EXPECT_INVALID(impl, impl.fn(mixed, out.view(), 1), Concat);
    EXPECT_INVALID(impl, impl.fn({}, out.view(), 1), Concat);
  }
}

//===----------------------------------------------------------------------===//
// Gather, ScatterAdd
//===----------------------------------------------------------------------===//

TEST(GatherTest, Known) {
  Buffer table = Floats(DType::F32, {3, 2}, {0, 1, 10, 11, 20, 21});
  Buffer ids = Ints(DType::I32, {2, 2}, {2, 0, 2, 1});
  Buffer cols = Ints(DType::I64, {1}, {1});
  for (const auto &impl : BOTH(Gather)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {2, 2, 2});
    ASSERT_OK(impl.fn(table.view(), ids.view(), out.view(), 0));
    EXPECT_TRUE(Values(out, {20, 21, 0, 1, 20, 21, 10, 11}, 0));
    Buffer out1 = Garbage(DType::F32, {3, 1});
    ASSERT_OK(impl.fn(table.view(), cols.view(), out1.view(), 1));
    EXPECT_TRUE(Values(out1, {1, 11, 21}, 0));
  }
}

TEST(GatherTest, FastMatchesReference) {
  Rng rng(15);
  const Shape sources[] = {{1},    {17},       {1000, 64},
                           {7, 3}, {3, 65, 5}, {2, 3, 4, 5}};
  const Shape indexShapes[] = {{}, {1}, {7}, {2, 17}};
  for (DType t : {DType::F32, DType::BF16, DType::I64}) {
    for (DType it : {DType::I32, DType::I64}) {
      for (const Shape &s : sources) {
        for (int64_t axis = 0; axis < static_cast<int64_t>(s.size()); ++axis) {
          for (const Shape &is : indexShapes) {
            Shape outShape(s.begin(), s.begin() + axis);
            outShape.insert(outShape.end(), is.begin(), is.end());
            outShape.insert(outShape.end(), s.begin() + axis + 1, s.end());
            SCOPED_TRACE(absl::StrCat(Name(t), " source ", Str(s), " axis ",
                                      axis, " indices ", Name(it), Str(is)));
            Buffer src = IsFloat(t) ? Uniform(t, s, rng)
                                    : RandomInts(t, s, rng, -1000000, 1000000);
            Buffer ids = RandomInts(it, is, rng, 0, s[axis] - 1);
            Buffer want = Garbage(t, outShape), got = Garbage(t, outShape);
            ASSERT_OK(ref::Gather(src.view(), ids.view(), want.view(), axis));
            ASSERT_OK(fast::Gather(src.view(), ids.view(), got.view(), axis));
            EXPECT_TRUE(Identical(got, want));
          }
        }
      }
    }
  }
}

TEST(GatherTest, Errors) {
  Buffer table(DType::F32, {3, 2}), out(DType::F32, {2, 2});
  Buffer tooBig = Ints(DType::I32, {2}, {0, 3});
  Buffer negative = Ints(DType::I64, {2}, {-1, 0});
  Buffer good = Ints(DType::I32, {2}, {0, 2});
  Buffer floatIds = Floats(DType::F32, {2}, {0, 1});
  Buffer wrongOut(DType::F32, {2, 3});
  for (const auto &impl : BOTH(Gather)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(table.view(), tooBig.view(), out.view(), 0),
                   Gather);
    EXPECT_INVALID(impl, impl.fn(table.view(), negative.view(), out.view(), 0),
                   Gather);
    EXPECT_INVALID(impl, impl.fn(table.view(), floatIds.view(), out.view(), 0),
                   Gather);
    EXPECT_INVALID(impl, impl.fn(table.view(), good.view(), wrongOut.view(), 0),
                   Gather);
    EXPECT_INVALID(impl, impl.fn(table.view(), good.view(), out.view(), 2),
                   Gather);
  }
}

TEST(ScatterAddTest, Known) {
  Buffer dest = Floats(DType::F32, {3, 2}, {1, 1, 1, 1, 1, 1});
  Buffer ids = Ints(DType::I32, {3}, {2, 0, 2}); // 2 twice: accumulates
  Buffer upd = Floats(DType::F32, {3, 2}, {1, 2, 10, 20, 100, 200});
  for (const auto &impl : BOTH(ScatterAdd)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 2});
    ASSERT_OK(impl.fn(dest.view(), ids.view(), upd.view(), out.view(), 0));
    EXPECT_TRUE(Values(out, {11, 21, 1, 1, 102, 203}, 0));
    // Along axis 1, in place.
    Buffer d2 = Floats(DType::F32, {2, 2}, {0, 0, 0, 0});
    Buffer i2 = Ints(DType::I64, {3}, {1, 1, 0});
    Buffer u2 = Floats(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
    ASSERT_OK(impl.fn(d2.view(), i2.view(), u2.view(), d2.view(), 1));
    EXPECT_TRUE(Values(d2, {3, 3, 6, 9}, 0));
  }
}

TEST(ScatterAddTest, FastMatchesReference) {
  Rng rng(16);
  const Shape dests[] = {{1}, {17}, {100, 64}, {7, 3}, {3, 65, 5}};
  const Shape indexShapes[] = {{}, {1}, {7}, {3, 17}};
  for (DType t : kFloatTypes) {
    for (const Shape &s : dests) {
      for (int64_t axis = 0; axis < static_cast<int64_t>(s.size()); ++axis) {
        for (const Shape &is : indexShapes) {
          Shape updShape(s.begin(), s.begin() + axis);
          updShape.insert(updShape.end(), is.begin(), is.end());
          updShape.insert(updShape.end(), s.begin() + axis + 1, s.end());
          int64_t count = 1;
          for (int64_t d : is)
            count *= d;
          SCOPED_TRACE(absl::StrCat(Name(t), " dest ", Str(s), " axis ", axis,
                                    " indices ", Str(is)));
          Buffer dest = Uniform(t, s, rng);
          Buffer ids = RandomInts(DType::I32, is, rng, 0, s[axis] - 1);
          Buffer upd = Uniform(t, updShape, rng);
          Buffer want = Garbage(t, s), got = Garbage(t, s);
          ASSERT_OK(ref::ScatterAdd(dest.view(), ids.view(), upd.view(),
                                    want.view(), axis));
          ASSERT_OK(fast::ScatterAdd(dest.view(), ids.view(), upd.view(),
                                     got.view(), axis));
          // Duplicates may be summed in another order (and, in bf16, with
          // intermediate rounding): one ulp per addition at most.
          Tol tol = TolFor(t, count);
          if (t == DType::BF16)
            tol = {1e-2 * static_cast<double>(std::min<int64_t>(count, 8)),
                   1e-2 * static_cast<double>(count)};
          EXPECT_TRUE(AllClose(got, want, tol));
          Buffer inPlace = dest;
          ASSERT_OK(fast::ScatterAdd(inPlace.view(), ids.view(), upd.view(),
                                     inPlace.view(), axis));
          EXPECT_TRUE(AllClose(inPlace, want, tol)) << "out = dest";
        }
      }
    }
  }
}

TEST(ScatterAddTest, Errors) {
  Buffer dest(DType::F32, {3, 2}), upd(DType::F32, {2, 2});
  Buffer tooBig = Ints(DType::I32, {2}, {0, 3});
  Buffer negative = Ints(DType::I64, {2}, {0, -1});
  Buffer good = Ints(DType::I32, {2}, {0, 2});
  Buffer badUpd(DType::F32, {2, 3}), badOut(DType::F32, {2, 2});
  for (const auto &impl : BOTH(ScatterAdd)) {
    SCOPED_TRACE(impl.name);
    Buffer out(DType::F32, {3, 2});
    EXPECT_INVALID(
        impl, impl.fn(dest.view(), tooBig.view(), upd.view(), out.view(), 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl, impl.fn(dest.view(), negative.view(), upd.view(), out.view(), 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl, impl.fn(dest.view(), good.view(), badUpd.view(), out.view(), 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl, impl.fn(dest.view(), good.view(), upd.view(), badOut.view(), 0),
        ScatterAdd);
  }
}

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
  };
  for (DType t : kFloatTypes) {
    for (DType pt : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        for (double scaling : {1.0, 1.25}) {
          RopeConfig attrs;
          attrs.theta = c.d == 128 ? 1000000.0 : 10000.0;
          attrs.mropeSection = c.sections;
          attrs.attentionScaling = scaling;
          std::vector<float> freq;
          for (int64_t j = 0; j < c.d / 2; ++j)
            freq.push_back(0.5f * std::pow(500.0f, -2.0f * j / c.d));
          if (c.invFreq)
            attrs.invFreq = freq;
          int64_t n = static_cast<int64_t>(c.sections.size());
          Shape posShape = n ? Shape{n, c.b, c.s} : Shape{c.b, c.s};
          SCOPED_TRACE(absl::StrCat(Name(t), " ", Name(pt), " B ", c.b, " S ",
                                    c.s, " H ", c.h, " D ", c.d, " sections ",
                                    Str(c.sections), " invFreq ", c.invFreq,
                                    " scaling ", scaling));
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
  for (const auto &impl : BOTH(Attention)) {
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
  for (const auto &impl : BOTH(Attention)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {1, 1, 4, 1});
    ASSERT_OK(
        impl.fn(q.view(), k.view(), v.view(), nullptr, out.view(), true, 0.7));
    EXPECT_TRUE(Values(out, {10, 10, 20, 20}));
  }
}

/// Packed segments [0 0 0 1 1 2 ...], or random ids for `scattered`.
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

TEST(AttentionTest, FastMatchesReference) {
  Rng rng(18);
  struct Case {
    int64_t b, s, skv, hq, hkv, d, dv;
  };
  const Case cases[] = {
      {1, 1, 1, 1, 1, 8, 8},     {2, 7, 7, 4, 2, 16, 16},
      {1, 17, 17, 3, 1, 64, 64}, {2, 33, 33, 6, 3, 32, 17},
      {1, 65, 65, 2, 2, 64, 64}, {1, 128, 128, 4, 1, 64, 64},
      {2, 5, 9, 2, 1, 8, 8}, // cross attention: Skv != S
      {1, 17, 3, 4, 4, 16, 7},
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
  for (const auto &impl : BOTH(Attention)) {
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
// The reference: untrusted views never crash it.
//===----------------------------------------------------------------------===//

TEST(ReferenceTest, NullDataAndNegativeDimsAreErrors) {
  // Beyond shapes: the reference also refuses views it could not read.
  TensorView null{nullptr, DType::F32, {2, 2}};
  TensorView negative{nullptr, DType::F32, {-1, 2}};
  TensorView unknown{nullptr, static_cast<DType>(9), {}};
  Buffer ok(DType::F32, {2, 2});
  Impl<decltype(&ref::Unary)> unary{&ref::Unary, "ref"};
  EXPECT_INVALID(unary, ref::Unary(UnaryKind::Exp, null, ok.view()), Unary);
  EXPECT_INVALID(unary, ref::Unary(UnaryKind::Exp, ok.view(), null), Unary);
  EXPECT_INVALID(unary, ref::Unary(UnaryKind::Exp, unknown, unknown), Unary);
  Impl<decltype(&ref::Matmul)> matmul{&ref::Matmul, "ref"};
  EXPECT_INVALID(matmul, ref::Matmul(null, ok.view(), ok.view(), false, false),
                 Matmul);
  EXPECT_INVALID(matmul,
                 ref::Matmul(negative, ok.view(), ok.view(), false, false),
                 Matmul);
}

} // namespace
} // namespace veomni::rt
