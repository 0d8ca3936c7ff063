//===- Fused.h - the little program a fused kernel runs ---------*- C++ -*-===//
//
// veomni-fuse (passes/Fuse.cpp) turns a chain of elementwise ops into one
// `fused` kernel (KernelTable.def) that reads its inputs once and writes its
// outputs once. What the chain computes travels as data, so every backend
// runs the same fusions with one kernel of its own (docs/fusion.md):
//
//   segments  S >= 1: the kernel runs the same code over S independent sets
//             of buffers (multi-tensor: one call updates many parameters).
//             ins and outs hold S equal groups, segment s's first.
//   input_modes  one per input of a segment: how element i of the segment's
//             iteration domain (N elements: the largest input or output)
//             reads the input of n elements: Full (n == N) x[i]; Inner
//             x[i % n] (broadcast over leading dimensions; scalars, n ==
//             1); Outer x[i / (N / n)] (broadcast over trailing ones).
//   code      instructions of kInstrWidth integers {op, dst, a, b} over f32
//             registers: registers 0..I-1 start as the inputs; Const sets
//             dst to constants[a]; unary ops read a, binary ones a and b.
//             A register is read only after it is written.
//   results   two integers per output {register, reduce}: reduce None
//             stores N elements; Sum, Max and Mean store M (the output's
//             size, which divides N), each over a contiguous run of N / M
//             elements (a trailing reduction). The outputs of one kernel
//             that reduce share one M.
//
// Values are f32 in registers; inputs of other float types are widened and
// outputs rounded as they are stored, and RoundBf16 / RoundF16 round a
// register where the unfused chain stored an intermediate of that type, so
// that fusing changes no bit.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_PROGRAM_FUSED_H
#define VEOMNI_RUNTIME_PROGRAM_FUSED_H

#include <cstdint>

namespace kernel_table::fused {

enum class Op : int64_t {
  Const,
  // Unary, in the order of the unary kernels of KernelTable.def.
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Sin,
  Cos,
  Tanh,
  Sigmoid,
  Silu,
  Gelu,
  GeluTanh,
  RoundBf16,
  RoundF16,
  // Binary.
  Add,
  Sub,
  Mul,
  Div,
  // Appended (programs keep their numbers): unary, then binary.
  IsFinite,
  MulNoNan,
  Last = MulNoNan
};

enum class Mode : int64_t { Full, Inner, Outer, Last = Outer };
enum class Reduce : int64_t { None, Sum, Max, Mean, Last = Mean };

constexpr int64_t kInstrWidth = 4;
/// Registers one kernel may use (the compiler reuses them).
constexpr int64_t kMaxRegisters = 64;

inline bool IsUnary(Op op) {
  return (op >= Op::Neg && op <= Op::RoundF16) || op == Op::IsFinite;
}
inline bool IsBinary(Op op) {
  return (op >= Op::Add && op <= Op::Div) || op == Op::MulNoNan;
}

} // namespace kernel_table::fused

#endif // VEOMNI_RUNTIME_PROGRAM_FUSED_H
