//===- Fused.cpp - a chain of elementwise ops in one pass -----------------===//
//
// The `fused` kernel (runtime/program/Fused.h) as an interpreter over
// blocks: each block of kBlock elements loads its inputs into f32
// registers, runs the code with the vector loops of VecMath (one pass per
// instruction over a block that stays in L1), and stores or reduces the
// outputs. Memory is touched once per input and output, whatever the
// chain's length. Blocks run on the backend's threads; reductions sum each
// block (or each row) on its own and add the partial sums in order, so the
// result does not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "runtime/program/Fused.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/VecMath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;
using kernel_table::fused::kInstrWidth;
using kernel_table::fused::kMaxRegisters;
using kernel_table::fused::Mode;
using kernel_table::fused::Op;
// cpu::Reduce is the reduce kernel.
using Fold = kernel_table::fused::Reduce;

// Execute maps the program's unary and binary ops onto VecMath's kinds by
// offset: the two lists must keep one order.
static_assert(static_cast<int>(Op::GeluTanh) - static_cast<int>(Op::Neg) ==
              static_cast<int>(UnaryKind::GeluTanh));
static_assert(static_cast<int>(Op::Div) - static_cast<int>(Op::Add) ==
              static_cast<int>(BinaryKind::Div));

namespace {

constexpr absl::string_view K = "Fused";
constexpr int64_t kBlock = 512;
/// How many blocks ahead the inputs are prefetched.
constexpr int64_t kPrefetchBlocks = 2;

/// The program's shape, once checked.
struct Layout {
  int64_t ins = 0, outs = 0, registers = 0;
};

absl::Status CheckProgram(const FusedProgram &p, size_t numIns, size_t numOuts,
                          Layout &l) {
  if (p.segments < 1 || numIns % p.segments || numOuts % p.segments)
    return Invalid(K, numIns, " inputs and ", numOuts,
                   " outputs do not split into ", p.segments, " segments");
  l.ins = static_cast<int64_t>(numIns) / p.segments;
  l.outs = static_cast<int64_t>(numOuts) / p.segments;
  if (l.outs == 0)
    return Invalid(K, "no outputs");
  if (static_cast<int64_t>(p.inputModes.size()) != l.ins)
    return Invalid(K, p.inputModes.size(), " input modes for ", l.ins,
                   " inputs a segment");
  if (static_cast<int64_t>(p.results.size()) != 2 * l.outs)
    return Invalid(K, p.results.size(), " result entries for ", l.outs,
                   " outputs a segment (two each)");
  if (p.code.size() % kInstrWidth)
    return Invalid(K, "code of ", p.code.size(), " integers is not whole ",
                   "instructions of ", kInstrWidth);
  if (l.ins > kMaxRegisters)
    return Invalid(K, l.ins, " inputs a segment, more than the ", kMaxRegisters,
                   " registers");
  bool defined[kMaxRegisters] = {};
  for (int64_t j = 0; j < l.ins; ++j)
    defined[j] = true;
  l.registers = l.ins;
  auto reg = [&](int64_t r) { return r >= 0 && r < kMaxRegisters; };
  for (size_t at = 0; at < p.code.size(); at += kInstrWidth) {
    int64_t op = p.code[at], dst = p.code[at + 1], a = p.code[at + 2],
            b = p.code[at + 3];
    size_t n = at / kInstrWidth;
    if (op < 0 || op > static_cast<int64_t>(Op::Last))
      return Invalid(K, "instruction ", n, ": unknown op ", op);
    Op o = static_cast<Op>(op);
    if (!reg(dst))
      return Invalid(K, "instruction ", n, ": register ", dst, " out of range");
    if (o == Op::Const) {
      if (a < 0 || a >= static_cast<int64_t>(p.constants.size()))
        return Invalid(K, "instruction ", n, ": constant ", a, " of ",
                       p.constants.size());
    } else if (!reg(a) || !defined[a] ||
               (kernel_table::fused::IsBinary(o) && (!reg(b) || !defined[b]))) {
      return Invalid(K, "instruction ", n, ": reads a register before it is ",
                     "written");
    }
    defined[dst] = true;
    l.registers = std::max(l.registers, dst + 1);
  }
  for (int64_t m : p.inputModes)
    if (m < 0 || m > static_cast<int64_t>(Mode::Last))
      return Invalid(K, "unknown input mode ", m);
  for (int64_t o = 0; o < l.outs; ++o) {
    int64_t r = p.results[2 * o], reduce = p.results[2 * o + 1];
    if (!reg(r) || !defined[r])
      return Invalid(K, "output ", o, " reads register ", r,
                     ", which is never written");
    if (reduce < 0 || reduce > static_cast<int64_t>(Fold::Last))
      return Invalid(K, "output ", o, ": unknown reduction ", reduce);
  }
  return absl::OkStatus();
}

bool Overlap(const TensorView &a, const TensorView &b) {
  auto *a0 = static_cast<const char *>(a.data);
  auto *b0 = static_cast<const char *>(b.data);
  return a.numel() > 0 && b.numel() > 0 && a0 < b0 + b.bytes() &&
         b0 < a0 + a.bytes();
}

/// Elements [at, at + len) of the domain of `n` elements, as input `x`
/// (whose mode is `mode`) gives them.
void LoadInput(const TensorView &x, Mode mode, int64_t n, int64_t at,
               int64_t len, float *dst) {
  const int64_t size = x.numel();
  if (mode == Mode::Full || size == n) {
    LoadF32(x, at, len, dst);
    return;
  }
  if (size == 1) {
    float v;
    LoadF32(x, 0, 1, &v);
    std::fill(dst, dst + len, v);
    return;
  }
  if (mode == Mode::Inner) { // x[i % size]: runs of consecutive elements
    for (int64_t k = 0; k < len;) {
      int64_t from = (at + k) % size;
      int64_t run = std::min(len - k, size - from);
      LoadF32(x, from, run, dst + k);
      k += run;
    }
    return;
  }
  const int64_t stride = n / size; // x[i / stride]: runs of one value
  for (int64_t k = 0; k < len;) {
    int64_t q = (at + k) / stride;
    int64_t run = std::min(len - k, (q + 1) * stride - (at + k));
    float v;
    LoadF32(x, q, 1, &v);
    std::fill(dst + k, dst + k + run, v);
    k += run;
  }
}

/// Instructions that need to run once per register file, not once per
/// block: a Const into a register nothing else writes (veomni-lower-to-vrt
/// gives each constant such a register).
std::vector<bool> Hoisted(const FusedProgram &p, int64_t ins) {
  std::vector<int> writes(kMaxRegisters, 0);
  for (size_t at = 0; at < p.code.size(); at += kInstrWidth)
    ++writes[p.code[at + 1]];
  std::vector<bool> hoisted(p.code.size() / kInstrWidth, false);
  for (size_t at = 0; at < p.code.size(); at += kInstrWidth) {
    int64_t dst = p.code[at + 1];
    hoisted[at / kInstrWidth] = static_cast<Op>(p.code[at]) == Op::Const &&
                                dst >= ins && writes[dst] == 1;
  }
  return hoisted;
}

/// Runs the instructions whose `hoisted` flag equals `once` over `len`
/// elements of each register.
void Execute(const FusedProgram &p, const std::vector<bool> &hoisted, bool once,
             float *regs, int64_t len) {
  auto r = [&](int64_t i) { return regs + i * kBlock; };
  uint16_t half[kBlock];
  for (size_t at = 0; at < p.code.size(); at += kInstrWidth) {
    if (hoisted[at / kInstrWidth] != once)
      continue;
    Op op = static_cast<Op>(p.code[at]);
    float *dst = r(p.code[at + 1]);
    int64_t a = p.code[at + 2], b = p.code[at + 3];
    switch (op) {
    case Op::Const:
      std::fill(dst, dst + len, static_cast<float>(p.constants[a]));
      break;
    case Op::RoundBf16:
      vec::F32ToBf16(r(a), half, len);
      vec::Bf16ToF32(half, dst, len);
      break;
    case Op::RoundF16:
      vec::F32ToF16(r(a), half, len);
      vec::F16ToF32(half, dst, len);
      break;
    case Op::Add:
    case Op::Sub:
    case Op::Mul:
    case Op::Div:
      vec::Binary(static_cast<BinaryKind>(static_cast<int64_t>(op) -
                                          static_cast<int64_t>(Op::Add)),
                  r(a), r(b), dst, len);
      break;
    case Op::IsFinite:
      vec::Unary(UnaryKind::IsFinite, r(a), dst, len);
      break;
    case Op::MulNoNan:
      vec::Binary(BinaryKind::MulNoNan, r(a), r(b), dst, len);
      break;
    default:
      vec::Unary(static_cast<UnaryKind>(static_cast<int64_t>(op) -
                                        static_cast<int64_t>(Op::Neg)),
                 r(a), dst, len);
    }
  }
}

/// A segment's shape, once checked: its domain of n elements, its inputs'
/// modes, and (with reductions) the rows they reduce to and which outputs.
struct SegmentShape {
  int64_t n = 0, rows = 0;
  std::vector<Mode> modes;
  std::vector<int64_t> reduced;
};

absl::Status CheckSegment(const FusedProgram &p, const Layout &l,
                          absl::Span<const TensorView> in,
                          absl::Span<const TensorView> out,
                          SegmentShape &shape) {
  int64_t n = 0;
  for (const TensorView &v : in) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", v));
    n = std::max(n, v.numel());
  }
  for (const TensorView &v : out) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "output", v));
    n = std::max(n, v.numel());
  }
  shape.n = n;
  if (n == 0)
    return absl::OkStatus();
  std::vector<Mode> &modes = shape.modes;
  modes.resize(l.ins);
  for (int64_t j = 0; j < l.ins; ++j) {
    modes[j] = static_cast<Mode>(p.inputModes[j]);
    int64_t size = in[j].numel();
    bool fits = modes[j] == Mode::Full ? size == n : size > 0 && n % size == 0;
    if (!fits)
      return BadView(K, "input", in[j], "does not fit a domain of ", n,
                     " elements in its mode");
  }
  // The reduced outputs share `rows`: each sums a contiguous run of
  // n / rows elements.
  int64_t &rows = shape.rows;
  std::vector<int64_t> &reduced = shape.reduced;
  for (int64_t o = 0; o < l.outs; ++o) {
    Fold kind = static_cast<Fold>(p.results[2 * o + 1]);
    int64_t size = out[o].numel();
    if (kind == Fold::None) {
      if (size != n)
        return BadView(K, "output", out[o], "must have ", n, " elements");
      for (int64_t j = 0; j < l.ins; ++j)
        if (Overlap(out[o], in[j]) &&
            (out[o].data != in[j].data || out[o].dtype != in[j].dtype ||
             (modes[j] != Mode::Full && in[j].numel() != n)))
          return BadView(K, "output", out[o],
                         "overlaps an input it does not replace");
    } else {
      if (size < 1 || n % size || (rows && size != rows))
        return BadView(K, "output", out[o], "cannot reduce a domain of ", n,
                       " elements");
      rows = size;
      reduced.push_back(o);
      for (const TensorView &x : in)
        if (Overlap(out[o], x))
          return BadView(K, "output", out[o], "overlaps an input");
    }
    for (int64_t q = 0; q < o; ++q)
      if (Overlap(out[o], out[q]))
        return BadView(K, "output", out[o], "overlaps another output");
  }
  return absl::OkStatus();
}

absl::Status RunSegment(const FusedProgram &p, const Layout &l,
                        absl::Span<const TensorView> in,
                        absl::Span<const TensorView> out) {
  SegmentShape shape;
  VEOMNI_RETURN_IF_ERROR(CheckSegment(p, l, in, out, shape));
  const int64_t n = shape.n, rows = shape.rows;
  const std::vector<Mode> &modes = shape.modes;
  const std::vector<int64_t> &reduced = shape.reduced;
  if (n == 0)
    return absl::OkStatus();

  const double work =
      static_cast<double>(n) *
      (kMemoryBoundWork + static_cast<double>(p.code.size() / kInstrWidth));
  // One register file per thread's slice of the work.
  const std::vector<bool> hoisted = Hoisted(p, l.ins);
  auto registers = [&] {
    std::unique_ptr<float[]> regs = Scratch(l.registers * kBlock);
    Execute(p, hoisted, /*once=*/true, regs.get(), kBlock);
    return regs;
  };
  auto block = [&](float *regs, int64_t at, int64_t len) {
    // Ask for the whole inputs' next blocks now: the loads of many
    // streams then overlap this block's arithmetic.
    for (int64_t j = 0; j < l.ins; ++j)
      if (in[j].numel() == n) {
        const int64_t ahead = at + kPrefetchBlocks * kBlock;
        const int64_t end = std::min(n, ahead + kBlock);
        const char *base = static_cast<const char *>(in[j].data);
        const int64_t size = SizeOf(in[j].dtype);
        for (int64_t e = ahead; e < end; e += 64 / size)
          __builtin_prefetch(base + e * size);
      }
    for (int64_t j = 0; j < l.ins; ++j)
      LoadInput(in[j], modes[j], n, at, len, regs + j * kBlock);
    Execute(p, hoisted, /*once=*/false, regs, len);
    for (int64_t o = 0; o < l.outs; ++o)
      if (static_cast<Fold>(p.results[2 * o + 1]) == Fold::None)
        StoreF32(regs + p.results[2 * o] * kBlock, out[o], at, len);
  };
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (reduced.empty()) {
    ParallelFor(blocks, work, [&](int64_t b0, int64_t b1) {
      std::unique_ptr<float[]> regs = registers();
      for (int64_t b = b0; b < b1; ++b)
        block(regs.get(), b * kBlock, std::min(kBlock, n - b * kBlock));
    });
    return absl::OkStatus();
  }

  // Reductions: partial results per piece (a block when everything reduces
  // to one value, else a row), combined in order.
  const int64_t rowLen = n / rows;
  const bool oneRow = rows == 1;
  const int64_t pieces = oneRow ? blocks : rows;
  const size_t nr = reduced.size();
  std::vector<double> sums(pieces * nr, 0.0);
  std::vector<float> maxes(pieces * nr,
                           -std::numeric_limits<float>::infinity());
  auto fold = [&](const float *x, int64_t len, size_t slot, Fold kind) {
    if (kind == Fold::Max) {
      float m = vec::Max(x, len);
      float &acc = maxes[slot];
      acc = m > acc || std::isnan(m) ? m : acc; // NaN, once in, stays
    } else {
      sums[slot] += vec::Sum(x, len);
    }
  };
  ParallelFor(pieces, work, [&](int64_t p0, int64_t p1) {
    std::unique_ptr<float[]> regs = registers();
    for (int64_t piece = p0; piece < p1; ++piece) {
      int64_t begin = oneRow ? piece * kBlock : piece * rowLen;
      int64_t end = oneRow ? std::min(n, begin + kBlock) : begin + rowLen;
      for (int64_t at = begin; at < end; at += kBlock) {
        int64_t len = std::min(kBlock, end - at);
        block(regs.get(), at, len);
        for (size_t k = 0; k < nr; ++k) {
          int64_t o = reduced[k];
          fold(regs.get() + p.results[2 * o] * kBlock, len, piece * nr + k,
               static_cast<Fold>(p.results[2 * o + 1]));
        }
      }
    }
  });
  for (size_t k = 0; k < nr; ++k) {
    int64_t o = reduced[k];
    Fold kind = static_cast<Fold>(p.results[2 * o + 1]);
    std::unique_ptr<float[]> result = Scratch(rows);
    if (oneRow) {
      double s = 0;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t piece = 0; piece < pieces; ++piece) {
        s += sums[piece * nr + k];
        float v = maxes[piece * nr + k];
        m = v > m || std::isnan(v) ? v : m;
      }
      result[0] = kind == Fold::Max    ? m
                  : kind == Fold::Mean ? static_cast<float>(s / double(n))
                                       : static_cast<float>(s);
    } else {
      for (int64_t row = 0; row < rows; ++row)
        result[row] =
            kind == Fold::Max ? maxes[row * nr + k]
            : kind == Fold::Mean
                ? static_cast<float>(sums[row * nr + k] / double(rowLen))
                : static_cast<float>(sums[row * nr + k]);
    }
    StoreF32(result.get(), out[o], 0, rows);
  }
  return absl::OkStatus();
}

} // namespace

absl::Status CheckFused(absl::Span<const TensorView> ins,
                        absl::Span<const TensorView> outs,
                        const FusedProgram &program, FusedSegment *segments) {
  Layout l;
  VEOMNI_RETURN_IF_ERROR(CheckProgram(program, ins.size(), outs.size(), l));
  for (int64_t s = 0; s < program.segments; ++s) {
    SegmentShape shape;
    VEOMNI_RETURN_IF_ERROR(
        CheckSegment(program, l, ins.subspan(s * l.ins, l.ins),
                     outs.subspan(s * l.outs, l.outs), shape));
    if (segments)
      segments[s] = {shape.n, shape.rows};
  }
  return absl::OkStatus();
}

absl::Status Fused(absl::Span<const TensorView> ins,
                   absl::Span<const TensorView> outs,
                   const FusedProgram &program) {
  Layout l;
  VEOMNI_RETURN_IF_ERROR(CheckProgram(program, ins.size(), outs.size(), l));
  for (int64_t s = 0; s < program.segments; ++s)
    VEOMNI_RETURN_IF_ERROR(RunSegment(program, l, ins.subspan(s * l.ins, l.ins),
                                      outs.subspan(s * l.outs, l.outs)));
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
