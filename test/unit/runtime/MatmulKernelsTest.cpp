//===- MatmulKernelsTest.cpp - matmul and grouped matmul kernels ----------===//
//
// For every kernel of the topic, forward and backward: Known (hand-computed
// values, on the reference and the fast path), FastMatchesReference (random
// shapes and element types, within TolFor), FiniteDifferences for the VJPs,
// and Errors (InvalidArgument from both).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
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
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

TEST(GroupedMatmulWeightGradTest, Known) {
  // Rows [1 2], [3 4] to expert 0, none to expert 1, [5 6] to expert 2;
  // dout rows [1], [-1], [2]: dW_0 = [1 2]^T [1] + [3 4]^T [-1] = [-2 -2]^T,
  // dW_1 = 0, dW_2 = [10 12]^T ([K, M] = [2, 1]; transposed [1, 2]).
  Buffer x = Floats(DType::F32, {3, 2}, {1, 2, 3, 4, 5, 6});
  Buffer groups = Ints(DType::I64, {3}, {2, 0, 1});
  Buffer dout = Floats(DType::F32, {3, 1}, {1, -1, 2});
  for (const auto &impl : BOTH(GroupedMatmulWeightGrad)) {
    SCOPED_TRACE(impl.name);
    for (bool tw : {false, true}) {
      Buffer dw = Garbage(DType::F32, tw ? Shape{3, 1, 2} : Shape{3, 2, 1});
      ASSERT_OK(impl.fn(x.view(), groups.view(), dout.view(), dw.view(), tw));
      EXPECT_TRUE(Values(dw, {-2, -2, 0, 0, 10, 12}));
    }
  }
}

TEST(GroupedMatmulWeightGradTest, FastMatchesReference) {
  Rng rng(59);
  struct Case {
    int64_t rows, k, m, experts;
  };
  const Case cases[] = {{1, 1, 1, 1},
                        {7, 3, 5, 4},
                        {0, 4, 3, 2},
                        {64, 32, 48, 8},
                        {300, 64, 96, 5}};
  for (DType t : kFloatTypes) {
    for (DType gt : {DType::I32, DType::I64}) {
      for (const Case &c : cases) {
        for (bool tw : {false, true}) {
          std::string what =
              absl::StrCat("GroupedMatmulWeightGrad fast/ref ", Name(t),
                           " groups ", Name(gt), " rows ", c.rows, " K ", c.k,
                           " M ", c.m, " E ", c.experts, " transpose ", tw);
          SCOPED_TRACE(what);
          Buffer x = Uniform(t, {c.rows, c.k}, rng);
          Buffer dout = Uniform(t, {c.rows, c.m}, rng);
          Buffer groups = RandomGroups(gt, c.experts, c.rows, rng);
          Shape ws =
              tw ? Shape{c.experts, c.m, c.k} : Shape{c.experts, c.k, c.m};
          Buffer want = Garbage(t, ws), got = Garbage(t, ws);
          ASSERT_OK(ref::GroupedMatmulWeightGrad(x.view(), groups.view(),
                                                 dout.view(), want.view(), tw));
          ASSERT_OK(fast::GroupedMatmulWeightGrad(x.view(), groups.view(),
                                                  dout.view(), got.view(), tw));
          EXPECT_TRUE(AllClose(got, want, FastTol(t, c.rows), what));
        }
      }
    }
  }
}

TEST(GroupedMatmulWeightGradTest, FiniteDifferences) {
  Rng rng(60);
  for (bool tw : {false, true}) {
    std::string what =
        absl::StrCat("GroupedMatmulWeightGrad vs FD transpose ", tw);
    SCOPED_TRACE(what);
    const int64_t rows = 6, k = 3, m = 4, experts = 3;
    Buffer x = Uniform(DType::F32, {rows, k}, rng);
    Buffer w = Uniform(DType::F32,
                       tw ? Shape{experts, m, k} : Shape{experts, k, m}, rng);
    Buffer groups = Ints(DType::I32, {experts}, {3, 0, 3});
    Buffer dout = Uniform(DType::F32, {rows, m}, rng);
    Buffer dw = Garbage(DType::F32, w.shape);
    ASSERT_OK(ref::GroupedMatmulWeightGrad(x.view(), groups.view(), dout.view(),
                                           dw.view(), tw));
    auto forward = [&] {
      Buffer y(DType::F32, {rows, m});
      EXPECT_TRUE(
          ref::GroupedMatmul(x.view(), w.view(), groups.view(), y.view(), tw)
              .ok());
      return y;
    };
    EXPECT_TRUE(MatchesFiniteDifferences(w, dw, dout, forward, what + " dw"));
  }
}

TEST(GroupedMatmulWeightGradTest, Errors) {
  Buffer x(DType::F32, {4, 3}), dout(DType::F32, {4, 2});
  Buffer dw(DType::F32, {2, 3, 2}), dwT(DType::F32, {2, 2, 3});
  Buffer groups = Ints(DType::I32, {2}, {1, 3});
  Buffer short3 = Ints(DType::I32, {2}, {1, 2});
  Buffer negative = Ints(DType::I64, {2}, {-1, 5});
  Buffer floatGroups = Floats(DType::F32, {2}, {1, 3});
  Buffer doutRows(DType::F32, {3, 2}), dwInt(DType::I32, {2, 3, 2});
  for (const auto &impl : BOTH(GroupedMatmulWeightGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), short3.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), negative.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), floatGroups.view(), dout.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), groups.view(), dout.view(), dwT.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl, impl.fn(x.view(), groups.view(), dout.view(), dw.view(), true),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), groups.view(), doutRows.view(), dw.view(), false),
        GroupedMatmulWeightGrad);
    EXPECT_INVALID(
        impl,
        impl.fn(x.view(), groups.view(), dout.view(), dwInt.view(), false),
        GroupedMatmulWeightGrad);
  }
}

} // namespace
} // namespace veomni::rt

namespace {

// The GEMM libraries the backend may choose (KernelUtil.h): each gives the
// naive product, with transposes, leading dimensions wider than the rows,
// alpha, beta, and the empty sizes.
TEST(GemmLibraries, EachComputesTheProduct) {
  using veomni::rt::cpu::detail::BlasGemm;
  using veomni::rt::cpu::detail::GemmLibrary;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 1);
  struct Case {
    int64_t m, n, k;
    bool ta, tb;
    float alpha, beta;
  };
  for (GemmLibrary lib : {GemmLibrary::OpenBlas, GemmLibrary::OneDnn}) {
    for (Case c : {Case{5, 7, 3, false, false, 1, 0},
                   Case{5, 7, 3, true, false, 0.5f, 1},
                   Case{5, 7, 3, false, true, 1, -2},
                   Case{33, 17, 65, true, true, 2, 0.25f},
                   Case{4, 6, 0, false, false, 1, 3}}) {
      const int64_t pad = 2;
      const int64_t lda = (c.ta ? c.m : c.k) + pad,
                    ldb = (c.tb ? c.k : c.n) + pad, ldc = c.n + pad;
      std::vector<float> a((c.ta ? c.k : c.m) * lda),
          b((c.tb ? c.n : c.k) * ldb), got(c.m * ldc);
      for (float &x : a)
        x = normal(rng);
      for (float &x : b)
        x = normal(rng);
      for (float &x : got)
        x = normal(rng);
      std::vector<float> want = got;
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < c.k; ++p)
            sum += double(c.ta ? a[p * lda + i] : a[i * lda + p]) *
                   double(c.tb ? b[j * ldb + p] : b[p * ldb + j]);
          want[i * ldc + j] = float(c.alpha * sum + c.beta * want[i * ldc + j]);
        }
      BlasGemm(lib, c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(),
               ldb, c.beta, got.data(), ldc);
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < ldc; ++j)
          EXPECT_NEAR(got[i * ldc + j], want[i * ldc + j],
                      1e-4 * (1 + std::abs(want[i * ldc + j])))
              << (lib == GemmLibrary::OneDnn ? "onednn" : "openblas") << " "
              << c.m << "x" << c.n << "x" << c.k << " at " << i << ", " << j;
    }
  }
}

// bf16 operands through oneDNN's matmul primitive (what a CPU with AVX-512
// BF16 or AMX runs; here called directly, on any CPU with AVX-512; an AVX2
// CPU must get false, never a wrong product): the f32-accumulated product of
// the exact bf16 values, with transposes, padded leading dimensions, and
// f32 or bf16 results (rounded to nearest even).
TEST(GemmLibraries, AutoTakesTheFasterOnEachMeasuredCpu) {
  using veomni::rt::cpu::detail::GemmLibrary;
  using veomni::rt::cpu::detail::PickGemmLibrary;
  // AVX-512 (Intel, Zen 4): oneDNN, whatever core OpenBLAS detected.
  EXPECT_EQ(PickGemmLibrary(nullptr, true, "Zen"), GemmLibrary::OneDnn);
  EXPECT_EQ(PickGemmLibrary(nullptr, true, "Prescott"), GemmLibrary::OneDnn);
  EXPECT_EQ(PickGemmLibrary("auto", true, "SkylakeX"), GemmLibrary::OneDnn);
  // AVX2: OpenBLAS on its tuned cores, oneDNN where it fell back.
  EXPECT_EQ(PickGemmLibrary(nullptr, false, "Zen"), GemmLibrary::OpenBlas);
  EXPECT_EQ(PickGemmLibrary(nullptr, false, "Haswell"), GemmLibrary::OpenBlas);
  EXPECT_EQ(PickGemmLibrary(nullptr, false, "Sandybridge"),
            GemmLibrary::OneDnn);
  // Asked for by name.
  EXPECT_EQ(PickGemmLibrary("openblas", true, "Prescott"),
            GemmLibrary::OpenBlas);
  EXPECT_EQ(PickGemmLibrary("onednn", false, "Zen"), GemmLibrary::OneDnn);
  // Anything else is auto, with a warning.
  EXPECT_EQ(PickGemmLibrary("mkl", false, "Zen"), GemmLibrary::OpenBlas);
}

TEST(GemmLibraries, Bf16ThroughOneDnn) {
  using veomni::rt::DType;
  using veomni::rt::cpu::detail::Bf16Gemm;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0, 1);
  auto bf16 = [](float x) { return veomni::rt::F32ToBf16(x); };
  auto f32 = [](uint16_t x) { return veomni::rt::Bf16ToF32(x); };
  struct Case {
    int64_t m, n, k;
    bool ta, tb;
  };
  for (DType out : {DType::F32, DType::BF16})
    for (Case c :
         {Case{5, 7, 3, false, false}, Case{5, 7, 3, true, false},
          Case{64, 48, 96, false, true}, Case{33, 17, 65, true, true}}) {
      const int64_t pad = 3;
      const int64_t lda = (c.ta ? c.m : c.k) + pad,
                    ldb = (c.tb ? c.k : c.n) + pad, ldc = c.n + pad;
      std::vector<uint16_t> a((c.ta ? c.k : c.m) * lda),
          b((c.tb ? c.n : c.k) * ldb);
      for (uint16_t &x : a)
        x = bf16(normal(rng));
      for (uint16_t &x : b)
        x = bf16(normal(rng));
      std::vector<float> got32(c.m * ldc, 7.0f);
      std::vector<uint16_t> got16(c.m * ldc, bf16(7.0f));
      void *dst = out == DType::F32 ? static_cast<void *>(got32.data())
                                    : static_cast<void *>(got16.data());
      bool ran = Bf16Gemm(c.ta, c.tb, c.m, c.n, c.k, a.data(), lda, b.data(),
                          ldb, dst, out, ldc);
      // oneDNN 2.6 multiplies bf16 from AVX-512 on; below, callers widen.
      ASSERT_EQ(ran, veomni::rt::cpu::detail::Bf16GemmAvailable());
      if (!ran)
        continue;
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < ldc; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < c.k; ++p)
            sum += double(f32(c.ta ? a[p * lda + i] : a[i * lda + p])) *
                   double(f32(c.tb ? b[j * ldb + p] : b[p * ldb + j]));
          float got =
              out == DType::F32 ? got32[i * ldc + j] : f32(got16[i * ldc + j]);
          if (j >= c.n) { // padding stays as it was
            EXPECT_EQ(got, 7.0f);
            continue;
          }
          double tol = out == DType::F32 ? 1e-4 * (1 + std::abs(sum))
                                         : 8e-3 * (1 + std::abs(sum));
          EXPECT_NEAR(got, sum, tol)
              << c.m << "x" << c.n << "x" << c.k << " at " << i << ", " << j;
        }
    }
}

} // namespace
