//===- ShapeKernelsTest.cpp - reductions and data movement kernels --------===//
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
    ASSERT_OK(impl.fn(table.view(), ids.view(), out.view(), 0, 0, 0));
    EXPECT_TRUE(Values(out, {20, 21, 0, 1, 20, 21, 10, 11}, 0));
    Buffer out1 = Garbage(DType::F32, {3, 1});
    ASSERT_OK(impl.fn(table.view(), cols.view(), out1.view(), 1, 0, 0));
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
    EXPECT_INVALID(impl,
                   impl.fn(table.view(), tooBig.view(), out.view(), 0, 0, 0),
                   Gather);
    EXPECT_INVALID(impl,
                   impl.fn(table.view(), negative.view(), out.view(), 0, 0, 0),
                   Gather);
    EXPECT_INVALID(impl,
                   impl.fn(table.view(), floatIds.view(), out.view(), 0, 0, 0),
                   Gather);
    EXPECT_INVALID(impl,
                   impl.fn(table.view(), good.view(), wrongOut.view(), 0, 0, 0),
                   Gather);
    EXPECT_INVALID(
        impl, impl.fn(table.view(), good.view(), out.view(), 2, 0, 0), Gather);
  }
}

TEST(ScatterAddTest, Known) {
  Buffer dest = Floats(DType::F32, {3, 2}, {1, 1, 1, 1, 1, 1});
  Buffer ids = Ints(DType::I32, {3}, {2, 0, 2}); // 2 twice: accumulates
  Buffer upd = Floats(DType::F32, {3, 2}, {1, 2, 10, 20, 100, 200});
  for (const auto &impl : BOTH(ScatterAdd)) {
    SCOPED_TRACE(impl.name);
    Buffer out = Garbage(DType::F32, {3, 2});
    ASSERT_OK(
        impl.fn(dest.view(), ids.view(), upd.view(), out.view(), 0, 0, 0));
    EXPECT_TRUE(Values(out, {11, 21, 1, 1, 102, 203}, 0));
    // Along axis 1, in place.
    Buffer d2 = Floats(DType::F32, {2, 2}, {0, 0, 0, 0});
    Buffer i2 = Ints(DType::I64, {3}, {1, 1, 0});
    Buffer u2 = Floats(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
    ASSERT_OK(impl.fn(d2.view(), i2.view(), u2.view(), d2.view(), 1, 0, 0));
    EXPECT_TRUE(Values(d2, {3, 3, 6, 9}, 0));
  }
}

// A table split over ranks: this rank holds rows [offset, offset + size)
// of `total`; other rows gather zeros and scatter nowhere, so the ranks'
// results sum (or, for scatters, tile) to the whole table's.
TEST(GatherTest, SplitTable) {
  Buffer whole = Floats(DType::F32, {4, 2}, {0, 1, 10, 11, 20, 21, 30, 31});
  Buffer ids = Ints(DType::I32, {3}, {3, 0, 2});
  for (const auto &impl : BOTH(Gather)) {
    SCOPED_TRACE(impl.name);
    std::vector<float> sum(6, 0);
    for (int64_t rank = 0; rank < 2; ++rank) {
      Buffer part = Floats(DType::F32, {2, 2},
                           {float(rank * 20), float(rank * 20 + 1),
                            float(rank * 20 + 10), float(rank * 20 + 11)});
      Buffer out = Garbage(DType::F32, {3, 2});
      ASSERT_OK(impl.fn(part.view(), ids.view(), out.view(), 0, rank * 2, 4));
      for (int i = 0; i < 6; ++i)
        sum[i] += LoadF(out.view(), i);
    }
    EXPECT_EQ(sum, (std::vector<float>{30, 31, 0, 1, 20, 21}));
    // Indices still lie within the whole table.
    Buffer part(DType::F32, {2, 2}), out(DType::F32, {3, 2});
    Buffer outside = Ints(DType::I32, {3}, {4, 0, 1});
    EXPECT_INVALID(impl,
                   impl.fn(part.view(), outside.view(), out.view(), 0, 2, 4),
                   Gather);
  }
  for (const auto &impl : BOTH(ScatterAdd)) {
    SCOPED_TRACE(impl.name);
    Buffer upd = Floats(DType::F32, {3, 2}, {1, 2, 10, 20, 100, 200});
    for (int64_t rank = 0; rank < 2; ++rank) {
      Buffer part = Floats(DType::F32, {2, 2}, {0, 0, 0, 0});
      ASSERT_OK(impl.fn(part.view(), ids.view(), upd.view(), part.view(), 0,
                        rank * 2, 4));
      EXPECT_TRUE(Values(part,
                         rank == 0 ? std::vector<double>{10, 20, 0, 0}
                                   : std::vector<double>{100, 200, 1, 2},
                         0));
    }
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
        impl,
        impl.fn(dest.view(), tooBig.view(), upd.view(), out.view(), 0, 0, 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl,
        impl.fn(dest.view(), negative.view(), upd.view(), out.view(), 0, 0, 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl,
        impl.fn(dest.view(), good.view(), badUpd.view(), out.view(), 0, 0, 0),
        ScatterAdd);
    EXPECT_INVALID(
        impl,
        impl.fn(dest.view(), good.view(), upd.view(), badOut.view(), 0, 0, 0),
        ScatterAdd);
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

//===----------------------------------------------------------------------===//
// SliceGrad
//===----------------------------------------------------------------------===//

TEST(SliceGradTest, Known) {
  // dx [2, 5], rows 0..1, columns 1 and 3: dy lands there, zeros elsewhere.
  Buffer dy = Floats(DType::F32, {2, 2}, {1, 2, 3, 4});
  const std::vector<int64_t> start = {0, 1}, limit = {2, 5}, step = {1, 2};
  for (const auto &impl : BOTH(SliceGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dx = Garbage(DType::F32, {2, 5});
    ASSERT_OK(impl.fn(dy.view(), dx.view(), start, limit, step));
    EXPECT_TRUE(Values(dx, {0, 1, 0, 2, 0, 0, 3, 0, 4, 0}, 0));
    // A scalar is its own slice.
    Buffer s = Floats(DType::F32, {}, {7}), ds = Garbage(DType::F32, {});
    ASSERT_OK(impl.fn(s.view(), ds.view(), {}, {}, {}));
    EXPECT_TRUE(Values(ds, {7}, 0));
  }
}

TEST(SliceGradTest, FastMatchesReference) {
  Rng rng(55);
  const DType types[] = {DType::F32, DType::BF16, DType::F16, DType::I32,
                         DType::I64};
  for (DType t : types) {
    for (int trial = 0; trial < 40; ++trial) {
      int64_t rank = Pick(rng, 1, 4);
      Shape shape;
      std::vector<int64_t> start, limit, step;
      Shape out;
      for (int64_t d = 0; d < rank; ++d) {
        int64_t n = Pick(rng, 1, trial == 0 ? 300 : 7);
        int64_t lo = Pick(rng, 0, n - 1), hi = Pick(rng, lo + 1, n);
        int64_t st = Pick(rng, 1, 3);
        shape.push_back(n);
        start.push_back(lo);
        limit.push_back(hi);
        step.push_back(st);
        out.push_back((hi - lo + st - 1) / st);
      }
      std::string what = absl::StrCat(
          "SliceGrad fast/ref ", Name(t), " ", Str(shape), " start ",
          Str(start), " limit ", Str(limit), " step ", Str(step));
      SCOPED_TRACE(what);
      Buffer dy = IsFloat(t) ? Uniform(t, out, rng)
                             : RandomInts(t, out, rng, -1000, 1000);
      Buffer want = Garbage(t, shape), got = Garbage(t, shape);
      ASSERT_OK(ref::SliceGrad(dy.view(), want.view(), start, limit, step));
      ASSERT_OK(fast::SliceGrad(dy.view(), got.view(), start, limit, step));
      EXPECT_TRUE(AllClose(got, want, {0, 0}, what)); // a copy: exact
    }
  }
}

TEST(SliceGradTest, FiniteDifferences) {
  // Slice is linear: its VJP must be its transpose.
  Rng rng(56);
  Buffer x = Uniform(DType::F32, {4, 3, 7}, rng);
  const std::vector<int64_t> start = {1, 0, 2}, limit = {4, 3, 7},
                             step = {2, 1, 3};
  Shape out = {2, 3, 2};
  Buffer dy = Uniform(DType::F32, out, rng);
  Buffer dx = Garbage(DType::F32, x.shape);
  ASSERT_OK(ref::SliceGrad(dy.view(), dx.view(), start, limit, step));
  auto forward = [&] {
    Buffer y(DType::F32, out);
    EXPECT_TRUE(ref::Slice(x.view(), y.view(), start, limit, step).ok());
    return y;
  };
  EXPECT_TRUE(MatchesFiniteDifferences(x, dx, dy, forward, "SliceGrad vs FD"));
}

TEST(SliceGradTest, Errors) {
  Buffer dy(DType::F32, {2, 2}), dx(DType::F32, {2, 5});
  Buffer dyBf16(DType::BF16, {2, 2}), dy3(DType::F32, {2, 3});
  const std::vector<int64_t> start = {0, 1}, limit = {2, 5}, step = {1, 2};
  const std::vector<int64_t> zeroStep = {1, 0}, farLimit = {2, 6},
                             backwards = {2, 0};
  const std::vector<int64_t> one = {0};
  for (const auto &impl : BOTH(SliceGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(dyBf16.view(), dx.view(), start, limit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy3.view(), dx.view(), start, limit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, limit, zeroStep),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, farLimit, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), start, backwards, step),
                   SliceGrad);
    EXPECT_INVALID(impl, impl.fn(dy.view(), dx.view(), one, limit, step),
                   SliceGrad);
  }
}

//===----------------------------------------------------------------------===//
// ReduceMaxGrad
//===----------------------------------------------------------------------===//

TEST(ReduceMaxGradTest, Known) {
  // [[1 5 5] [7 2 7]] over dim 1: the first maxima are (0,1) and (1,0).
  // Over dims [0, 1] with keep_dims: (1,0). A NaN takes the gradient.
  Buffer x = Floats(DType::F32, {2, 3}, {1, 5, 5, 7, 2, 7});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Buffer withNan = Floats(DType::F32, {1, 4}, {1, nan, 3, nan});
  const std::vector<int64_t> dim1 = {1}, both = {0, 1};
  for (const auto &impl : BOTH(ReduceMaxGrad)) {
    SCOPED_TRACE(impl.name);
    Buffer dy = Floats(DType::F32, {2}, {10, 20});
    Buffer dx = Garbage(DType::F32, {2, 3});
    ASSERT_OK(impl.fn(x.view(), dy.view(), dx.view(), dim1));
    EXPECT_TRUE(Values(dx, {0, 10, 0, 20, 0, 0}, 0));
    Buffer dyKept = Floats(DType::F32, {1, 1}, {3});
    ASSERT_OK(impl.fn(x.view(), dyKept.view(), dx.view(), both));
    EXPECT_TRUE(Values(dx, {0, 0, 0, 3, 0, 0}, 0));
    Buffer dyNan = Floats(DType::F32, {1}, {4});
    Buffer dxNan = Garbage(DType::F32, {1, 4});
    ASSERT_OK(impl.fn(withNan.view(), dyNan.view(), dxNan.view(), dim1));
    EXPECT_TRUE(Values(dxNan, {0, 4, 0, 0}, 0));
  }
}

TEST(ReduceMaxGradTest, FastMatchesReference) {
  Rng rng(65);
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const Case cases[] = {
      {{7}, {0}},          {{3, 5}, {1}},    {{3, 5}, {0}},
      {{2, 3, 4}, {0, 2}}, {{2, 3, 4}, {1}}, {{4, 1, 6, 2}, {1, 2, 3}},
      {{300, 257}, {1}},   {{0, 3}, {1}},    {{5, 4}, {0, 1}}};
  for (DType t : kFloatTypes) {
    for (const Case &c : cases) {
      for (bool keep : {false, true}) {
        std::string what =
            absl::StrCat("ReduceMaxGrad fast/ref ", Name(t), " ", Str(c.shape),
                         " dims ", Str(c.dims), " keep ", keep);
        SCOPED_TRACE(what);
        Shape out;
        for (int64_t d = 0; d < static_cast<int64_t>(c.shape.size()); ++d) {
          bool reduced =
              std::find(c.dims.begin(), c.dims.end(), d) != c.dims.end();
          if (!reduced)
            out.push_back(c.shape[d]);
          else if (keep)
            out.push_back(1);
        }
        // Coarse values: ties (which the first maximum wins) are common.
        Buffer x(t, c.shape);
        for (int64_t i = 0; i < x.numel(); ++i)
          x.setF(i, static_cast<float>(Pick(rng, -20, 20)) / 4);
        Buffer dy = Uniform(t, out, rng);
        Buffer want = Garbage(t, c.shape), got = Garbage(t, c.shape);
        ASSERT_OK(ref::ReduceMaxGrad(x.view(), dy.view(), want.view(), c.dims));
        ASSERT_OK(fast::ReduceMaxGrad(x.view(), dy.view(), got.view(), c.dims));
        EXPECT_TRUE(AllClose(got, want, {0, 0}, what)); // a copy: exact
      }
    }
  }
}

TEST(ReduceMaxGradTest, FiniteDifferences) {
  Rng rng(66);
  // Values 0.1 apart within each reduced group: a step never changes the
  // maximum. Groups of dim 1 of [3, 6] are rows.
  Buffer x = Spread({3, 6}, 6, 0.1f, rng);
  const std::vector<int64_t> dims = {1};
  Buffer dy = Uniform(DType::F32, {3}, rng);
  Buffer dx = Garbage(DType::F32, {3, 6});
  ASSERT_OK(ref::ReduceMaxGrad(x.view(), dy.view(), dx.view(), dims));
  auto forward = [&] {
    Buffer y(DType::F32, {3});
    EXPECT_TRUE(ref::Reduce(ReduceKind::Max, x.view(), y.view(), dims).ok());
    return y;
  };
  EXPECT_TRUE(
      MatchesFiniteDifferences(x, dx, dy, forward, "ReduceMaxGrad vs FD"));
}

TEST(ReduceMaxGradTest, Errors) {
  Buffer x(DType::F32, {2, 3}), dy(DType::F32, {2}), dx(DType::F32, {2, 3});
  Buffer dyBad(DType::F32, {3}), dxBad(DType::F32, {3, 2});
  Buffer dxInt(DType::I32, {2, 3}), xInt(DType::I64, {2, 3});
  const std::vector<int64_t> dim1 = {1}, dim2 = {2}, unsorted = {1, 0};
  for (const auto &impl : BOTH(ReduceMaxGrad)) {
    SCOPED_TRACE(impl.name);
    EXPECT_INVALID(impl, impl.fn(x.view(), dyBad.view(), dx.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dxBad.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dxInt.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(xInt.view(), dy.view(), dx.view(), dim1),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dx.view(), dim2),
                   ReduceMaxGrad);
    EXPECT_INVALID(impl, impl.fn(x.view(), dy.view(), dx.view(), unsorted),
                   ReduceMaxGrad);
  }
}

} // namespace
} // namespace veomni::rt
