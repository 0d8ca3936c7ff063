//===- FusedKernelTest.cpp - the fused elementwise kernel -----------------===//
//
// The fused kernel's reference is the chain of unfused kernels it replaces:
// the same chain run op by op (each result stored in its type) must give
// the same bits. Broadcast modes, reductions, segments and in-place outputs
// against values computed here; malformed programs are refused.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "runtime/program/Fused.h"
#include "test/unit/runtime/KernelTestUtil.h"

#include "absl/strings/match.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace veomni::rt {
namespace {

using namespace kerneltest;
using kernel_table::fused::Mode;
using kernel_table::fused::Op;
using Fold = kernel_table::fused::Reduce;

/// A program under construction.
struct Prog {
  std::vector<int64_t> code, modes, results;
  std::vector<double> constants;
  int64_t segments = 1;
  void emit(Op op, int64_t dst, int64_t a = 0, int64_t b = 0) {
    code.insert(code.end(), {static_cast<int64_t>(op), dst, a, b});
  }
  int64_t constant(int64_t dst, double v) {
    constants.push_back(v);
    emit(Op::Const, dst, static_cast<int64_t>(constants.size()) - 1);
    return dst;
  }
  void result(int64_t reg, Fold f = Fold::None) {
    results.insert(results.end(), {reg, static_cast<int64_t>(f)});
  }
  cpu::FusedProgram get() const {
    return {code, constants, modes, results, segments};
  }
};

absl::Status RunFused(const Prog &p, std::vector<const Buffer *> ins,
                      std::vector<const Buffer *> outs) {
  std::vector<TensorView> in, out;
  for (const Buffer *b : ins)
    in.push_back(b->view());
  for (const Buffer *b : outs)
    out.push_back(b->view());
  return fast::Fused(in, out, p.get());
}

bool SameBits(const Buffer &a, const Buffer &b) {
  return a.bytes.size() == b.bytes.size() &&
         std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
}

// AdamW's moment and parameter update, as veomni-optimizer writes it:
//   m' = b1 m + (1 - b1) g        v' = b2 v + (1 - b2) g^2
//   p' = p d - s m' / (sqrt(v') / c + eps)
// with d, s, c scalars. Fused and op by op, in f32 and bf16, over sizes that
// take one block, several, and enough for the backend's threads.
TEST(FusedKernel, AdamChainMatchesTheUnfusedKernelsBitForBit) {
  Rng rng(7);
  for (DType t : {DType::F32, DType::BF16}) {
    for (int64_t n :
         {int64_t{1}, int64_t{700}, int64_t{5000}, int64_t{3000001}}) {
      SCOPED_TRACE(absl::StrCat(Name(t), " n=", n));
      Shape s = {n};
      Buffer p = Uniform(t, s, rng), g = Uniform(t, s, rng),
             m = Uniform(t, s, rng), v = Uniform(t, s, rng, 0, 1);
      Buffer d = Floats(t, {}, {0.999f}), sc = Floats(t, {}, {1e-3f}),
             c = Floats(t, {}, {0.3f});
      // Op by op, every intermediate in t.
      auto tmp = [&] { return Buffer(t, s); };
      auto full = [&](const Buffer &scalar) {
        return Filled(t, s, scalar.f(0));
      };
      auto bin = [&](BinaryKind k, const Buffer &a, const Buffer &b) {
        Buffer o = tmp();
        EXPECT_TRUE(fast::Binary(k, a.view(), b.view(), o.view()).ok());
        return o;
      };
      Buffer m1 =
          bin(BinaryKind::Add, bin(BinaryKind::Mul, m, Filled(t, s, 0.9f)),
              bin(BinaryKind::Mul, g, Filled(t, s, 0.1f)));
      Buffer v1 =
          bin(BinaryKind::Add, bin(BinaryKind::Mul, v, Filled(t, s, 0.95f)),
              bin(BinaryKind::Mul, bin(BinaryKind::Mul, g, g),
                  Filled(t, s, 0.05f)));
      Buffer root = tmp();
      ASSERT_TRUE(fast::Unary(UnaryKind::Sqrt, v1.view(), root.view()).ok());
      Buffer den = bin(BinaryKind::Add, bin(BinaryKind::Div, root, full(c)),
                       Filled(t, s, 1e-8f));
      Buffer p1 =
          bin(BinaryKind::Sub, bin(BinaryKind::Mul, p, full(d)),
              bin(BinaryKind::Mul, full(sc), bin(BinaryKind::Div, m1, den)));

      // Fused: registers 0-6 are p, g, m, v, d, s, c.
      Prog f;
      f.modes = {0, 0, 0, 0, 1, 1, 1};
      const bool round = t == DType::BF16;
      int64_t next = 7;
      auto op = [&](Op o, int64_t a, int64_t b = 0) {
        int64_t r = next++;
        f.emit(o, r, a, b);
        if (round)
          f.emit(Op::RoundBf16, r, r);
        return r;
      };
      auto k = [&](double v) {
        int64_t r = f.constant(next++, v);
        if (round)
          f.emit(Op::RoundBf16, r, r);
        return r;
      };
      int64_t rm =
          op(Op::Add, op(Op::Mul, 2, k(0.9f)), op(Op::Mul, 1, k(0.1f)));
      int64_t rv = op(Op::Add, op(Op::Mul, 3, k(0.95f)),
                      op(Op::Mul, op(Op::Mul, 1, 1), k(0.05f)));
      int64_t rden = op(Op::Add, op(Op::Div, op(Op::Sqrt, rv), 6), k(1e-8f));
      int64_t rp =
          op(Op::Sub, op(Op::Mul, 0, 4), op(Op::Mul, 5, op(Op::Div, rm, rden)));
      ASSERT_LT(next, kernel_table::fused::kMaxRegisters);
      f.result(rm);
      f.result(rv);
      f.result(rp);
      Buffer fm = Garbage(t, s), fv = Garbage(t, s), fp = Garbage(t, s);
      ASSERT_TRUE(
          RunFused(f, {&p, &g, &m, &v, &d, &sc, &c}, {&fm, &fv, &fp}).ok());
      EXPECT_TRUE(SameBits(fm, m1));
      EXPECT_TRUE(SameBits(fv, v1));
      EXPECT_TRUE(SameBits(fp, p1));

      // In place over p, m and v: the same bits.
      ASSERT_TRUE(
          RunFused(f, {&p, &g, &m, &v, &d, &sc, &c}, {&m, &v, &p}).ok());
      EXPECT_TRUE(SameBits(m, m1));
      EXPECT_TRUE(SameBits(v, v1));
      EXPECT_TRUE(SameBits(p, p1));
    }
  }
}

TEST(FusedKernel, BroadcastModes) {
  Rng rng(3);
  const int64_t rows = 37, cols = 129; // rows * cols spans blocks unevenly
  Buffer x = Uniform(DType::F32, {rows, cols}, rng);
  Buffer w = Uniform(DType::F32, {cols}, rng);
  Buffer r = Uniform(DType::F32, {rows, 1}, rng);
  // out = x * w (inner: w over rows) + r (outer: r over columns).
  Prog f;
  f.modes = {static_cast<int64_t>(Mode::Full),
             static_cast<int64_t>(Mode::Inner),
             static_cast<int64_t>(Mode::Outer)};
  f.emit(Op::Mul, 3, 0, 1);
  f.emit(Op::Add, 3, 3, 2);
  f.result(3);
  Buffer out = Garbage(DType::F32, {rows, cols});
  ASSERT_TRUE(RunFused(f, {&x, &w, &r}, {&out}).ok());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      ASSERT_EQ(out.f(i * cols + j), x.f(i * cols + j) * w.f(j) + r.f(i))
          << i << "," << j;
}

// The optimizer's guarded blend, as veomni-optimizer writes it:
//   out = mul_no_nan(update, on) + mul_no_nan(old, 1 - on)
// on = 1 gives the update bit for bit; on = 0 the old value bit for bit,
// even where the update is NaN or infinite (a plain blend gives NaN there).
TEST(FusedKernel, GuardedBlendKeepsTheOldValueExactly) {
  Rng rng(9);
  const int64_t n = 1031; // blocks and a tail
  Buffer update = Uniform(DType::F32, {n}, rng);
  Buffer old = Uniform(DType::F32, {n}, rng);
  for (int64_t i = 0; i < n; i += 7)
    update.setF(i, i % 2 ? std::numeric_limits<float>::infinity()
                         : std::numeric_limits<float>::quiet_NaN());
  Prog f;
  f.modes = {static_cast<int64_t>(Mode::Full), static_cast<int64_t>(Mode::Full),
             static_cast<int64_t>(Mode::Inner)};
  f.constant(3, 1.0);
  f.emit(Op::Sub, 3, 3, 2); // 1 - on
  f.emit(Op::MulNoNan, 4, 0, 2);
  f.emit(Op::MulNoNan, 5, 1, 3);
  f.emit(Op::Add, 4, 4, 5);
  f.result(4);
  for (float on : {0.0f, 1.0f}) {
    SCOPED_TRACE(on);
    Buffer flag = Floats(DType::F32, {1}, {on});
    Buffer out = Garbage(DType::F32, {n});
    ASSERT_TRUE(RunFused(f, {&update, &old, &flag}, {&out}).ok());
    const Buffer &want = on == 0 ? old : update;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(want.f(i)))
        ASSERT_TRUE(std::isnan(out.f(i))) << i;
      else
        ASSERT_EQ(out.f(i), want.f(i)) << i;
    }
  }
  // is_finite in a fused chain.
  Prog g;
  g.modes = {static_cast<int64_t>(Mode::Full)};
  g.emit(Op::IsFinite, 1, 0);
  g.result(1);
  Buffer out = Garbage(DType::F32, {n});
  ASSERT_TRUE(RunFused(g, {&update}, {&out}).ok());
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(out.f(i), i % 7 ? 1.0f : 0.0f) << i;
}

TEST(FusedKernel, TrailingReductions) {
  Rng rng(5);
  for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{64}}) {
    for (int64_t cols : {int64_t{5}, int64_t{2048}, int64_t{4099}}) {
      SCOPED_TRACE(absl::StrCat(rows, "x", cols));
      Buffer x = Uniform(DType::F32, {rows, cols}, rng);
      // sum(x^2), max(x) and mean(x) per row, and x^2 itself.
      Prog f;
      f.modes = {0};
      f.emit(Op::Mul, 1, 0, 0);
      f.result(1, Fold::Sum);
      f.result(0, Fold::Max);
      f.result(0, Fold::Mean);
      f.result(1);
      Buffer sum = Garbage(DType::F32, {rows}),
             max = Garbage(DType::F32, {rows}),
             mean = Garbage(DType::F32, {rows}),
             sq = Garbage(DType::F32, {rows, cols});
      ASSERT_TRUE(RunFused(f, {&x}, {&sum, &max, &mean, &sq}).ok());
      for (int64_t i = 0; i < rows; ++i) {
        double s = 0, m = 0;
        float mx = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) {
          float v = x.f(i * cols + j);
          s += double(v * v);
          m += v;
          mx = std::max(mx, v);
          ASSERT_EQ(sq.f(i * cols + j), v * v);
        }
        EXPECT_FLOAT_EQ(sum.f(i), static_cast<float>(s));
        EXPECT_EQ(max.f(i), mx);
        EXPECT_FLOAT_EQ(mean.f(i), static_cast<float>(m / cols));
      }
      // The whole tensor to one value, as the unfused reduce kernel does.
      Prog all = f;
      all.results = {1, static_cast<int64_t>(Fold::Sum)};
      Buffer one = Garbage(DType::F32, {}), want = Garbage(DType::F32, {});
      ASSERT_TRUE(RunFused(all, {&x}, {&one}).ok());
      ASSERT_TRUE(
          fast::Reduce(ReduceKind::Sum, sq.view(), want.view(), {0, 1}).ok());
      EXPECT_FLOAT_EQ(one.f(0), want.f(0));
    }
  }
}

TEST(FusedKernel, SegmentsRunTheSameCodeOnTheirOwnBuffers) {
  Rng rng(9);
  Buffer a = Uniform(DType::F32, {10, 7}, rng),
         b = Uniform(DType::F32, {3}, rng);
  Buffer k = Floats(DType::F32, {}, {2.0f});
  Prog f;
  f.segments = 2;
  f.modes = {0, 1};
  f.emit(Op::Mul, 2, 0, 1);
  f.emit(Op::Exp, 2, 2);
  f.result(2);
  Buffer oa = Garbage(DType::F32, {10, 7}), ob = Garbage(DType::F32, {3});
  ASSERT_TRUE(RunFused(f, {&a, &k, &b, &k}, {&oa, &ob}).ok());
  for (int64_t i = 0; i < 70; ++i)
    ASSERT_FLOAT_EQ(oa.f(i), std::exp(a.f(i) * 2.0f));
  for (int64_t i = 0; i < 3; ++i)
    ASSERT_FLOAT_EQ(ob.f(i), std::exp(b.f(i) * 2.0f));
}

TEST(FusedKernel, MalformedProgramsAreRefused) {
  Buffer x = Filled(DType::F32, {4, 8}, 1);
  Buffer out = Garbage(DType::F32, {4, 8}), small = Garbage(DType::F32, {3});
  auto refused = [&](Prog f, std::vector<const Buffer *> ins,
                     std::vector<const Buffer *> outs, const char *what) {
    absl::Status s = RunFused(f, ins, outs);
    EXPECT_FALSE(s.ok()) << what;
    EXPECT_TRUE(absl::StrContains(s.message(), "Fused")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), what)) << s;
  };
  Prog ok;
  ok.modes = {0};
  ok.emit(Op::Exp, 1, 0);
  ok.result(1);
  ASSERT_TRUE(RunFused(ok, {&x}, {&out}).ok());

  Prog f = ok;
  f.code[0] = 99;
  refused(f, {&x}, {&out}, "unknown op 99");
  f = ok;
  f.code[2] = 5;
  refused(f, {&x}, {&out}, "reads a register before it is written");
  f = ok;
  f.code[1] = kernel_table::fused::kMaxRegisters;
  refused(f, {&x}, {&out}, "out of range");
  f = ok;
  f.constant(2, 1.0);
  f.code[f.code.size() - 2] = 7;
  refused(f, {&x}, {&out}, "constant 7 of 1");
  f = ok;
  f.code.pop_back();
  refused(f, {&x}, {&out}, "not whole instructions");
  f = ok;
  f.results = {3, 0};
  refused(f, {&x}, {&out}, "never written");
  f = ok;
  f.results = {1, 9};
  refused(f, {&x}, {&out}, "unknown reduction 9");
  f = ok;
  f.modes = {7};
  refused(f, {&x}, {&out}, "unknown input mode 7");
  f = ok;
  f.segments = 2;
  refused(f, {&x}, {&out}, "do not split into 2 segments");
  refused(ok, {&x}, {&small}, "must have 32 elements");
  Prog bc = ok; // an inner-mode input of 8 elements, and one of 3
  bc.modes = {1};
  refused(bc, {&small}, {&out}, "does not fit a domain of 32");
  // Writing over a broadcast input would change what later blocks read.
  Prog add;
  add.modes = {0, 1};
  add.emit(Op::Add, 2, 0, 1);
  add.result(2);
  TensorView whole = x.view();
  TensorView part{x.bytes.data(), DType::F32, {8}};
  absl::Status s = fast::Fused({whole, part}, {whole}, add.get());
  EXPECT_TRUE(absl::StrContains(s.message(), "overlaps an input")) << s;
}

} // namespace
} // namespace veomni::rt
