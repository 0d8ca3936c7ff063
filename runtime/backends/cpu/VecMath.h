//===- VecMath.h - vectorised f32 loops for the CPU kernels -----*- C++ -*-===//
//
// The hot inner loops of the fast kernels, compiled once per instruction set
// (AVX-512, AVX2+FMA+F16C, SSE2) and picked at start-up from what the CPU
// supports, so the library runs on any x86-64 yet uses the wide units of the
// one it runs on. Internal to runtime/backends/cpu.
//
// Every function accepts n == 0. Where a function has an input and an output
// pointer they may be equal (in-place), but must not otherwise overlap.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_VECMATH_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_VECMATH_H

#include "runtime/backends/cpu/Kernels.h"

#include <cstdint>

namespace veomni::rt::cpu::vec {

/// Element type conversions; f32 -> bf16/f16 round to nearest even and agree
/// bit for bit with F32ToBf16 / F32ToF16 of Tensor.h.
void Bf16ToF32(const uint16_t *in, float *out, int64_t n);
void F32ToBf16(const float *in, uint16_t *out, int64_t n);
void F16ToF32(const uint16_t *in, float *out, int64_t n);
void F32ToF16(const float *in, uint16_t *out, int64_t n);

/// out[i] = kind(in[i]).
void Unary(UnaryKind kind, const float *in, float *out, int64_t n);
/// out[i] = lhs[i] kind rhs[i].
void Binary(BinaryKind kind, const float *lhs, const float *rhs, float *out,
            int64_t n);

/// Largest element; -inf when n == 0, NaN when any element is NaN.
float Max(const float *x, int64_t n);
/// out[i] = exp(x[i] - shift); returns the f32 sum of the out[i].
float ExpShift(const float *x, float shift, float *out, int64_t n);
/// The sum of exp(x[i] - shift), without storing the terms.
float SumExpShift(const float *x, float shift, int64_t n);
/// out[i] = x[i] * s.
void Scale(const float *x, float s, float *out, int64_t n);
/// Sum of x[i], accumulated in f64 over independent lanes.
double Sum(const float *x, int64_t n);
/// Sum of x[i]^2, accumulated in f64 over independent lanes.
double SumSquares(const float *x, int64_t n);

/// The column padding of attention's key and value panels (a multiple of
/// every vector width).
constexpr int64_t kGemmColumns = 32;

/// The instruction set the functions above were dispatched to ("avx512",
/// "avx2" or "sse2"), for benchmarks and logs. The environment variable
/// VEOMNI_CPU_ISA=avx2 or =sse2 caps it (read once, at first use).
const char *IsaName();

} // namespace veomni::rt::cpu::vec

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_VECMATH_H
