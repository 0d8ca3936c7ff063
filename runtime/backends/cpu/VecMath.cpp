//===- VecMath.cpp - vectorised f32 loops, dispatched by CPU --------------===//
//
// The library is built for baseline x86-64, so the wide code paths are
// compiled under `#pragma GCC target` and chosen once, at first use, from
// what the CPU reports. Zen 4 and Intel server parts take the AVX-512 path;
// any AVX2 machine the AVX2 one.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/VecMath.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include <limits>
#include <string>

namespace veomni::rt::cpu::vec {
namespace {

struct Table {
  void (*bf16ToF32)(const uint16_t *, float *, int64_t);
  void (*f32ToBf16)(const float *, uint16_t *, int64_t);
  void (*f16ToF32)(const uint16_t *, float *, int64_t);
  void (*f32ToF16)(const float *, uint16_t *, int64_t);
  void (*unary)(UnaryKind, const float *, float *, int64_t);
  void (*binary)(BinaryKind, const float *, const float *, float *, int64_t);
  float (*max)(const float *, int64_t);
  float (*expShift)(const float *, float, float *, int64_t);
  void (*scale)(const float *, float, float *, int64_t);
  double (*sum)(const float *, int64_t);
  double (*sumSquares)(const float *, int64_t);
};

// Vector arguments wider than the baseline ABI only cross always-inline
// boundaries here, so GCC's ABI note does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace sse2 {
constexpr int W = 4;
#define VEOMNI_VEC_F16C 0
#include "runtime/backends/cpu/VecMathImpl.inc"
#undef VEOMNI_VEC_F16C
} // namespace sse2

// clang applies a target to functions through its own pragma (the sanitizer
// build, scripts/fuzz.sh, compiles with clang).
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))),         \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
namespace avx2 {
constexpr int W = 8;
#define VEOMNI_VEC_F16C 256
#include "runtime/backends/cpu/VecMathImpl.inc"
#undef VEOMNI_VEC_F16C
} // namespace avx2
#ifdef __clang__
#pragma clang attribute pop
#pragma clang attribute push(                                                  \
    __attribute__((                                                            \
        target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c"))),          \
    apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")
#endif
namespace avx512 {
constexpr int W = 16;
#define VEOMNI_VEC_F16C 512
#include "runtime/backends/cpu/VecMathImpl.inc"
#undef VEOMNI_VEC_F16C
} // namespace avx512
#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#pragma GCC diagnostic pop

struct Active {
  const Table *table;
  const char *name;
};

const Active &Pick() {
  static const Active active = [] {
    __builtin_cpu_init();
    // VEOMNI_CPU_ISA caps the choice, so tests can run the narrower paths on
    // a machine that would never pick them.
    const char *cap = std::getenv("VEOMNI_CPU_ISA");
    std::string limit = cap ? cap : "";
    bool avx2 = limit != "sse2" && __builtin_cpu_supports("avx2") &&
                __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    bool avx512 = avx2 && limit != "avx2" &&
                  __builtin_cpu_supports("avx512f") &&
                  __builtin_cpu_supports("avx512vl") &&
                  __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512dq");
    if (avx512)
      return Active{&avx512::kTable, "avx512"};
    if (avx2)
      return Active{&avx2::kTable, "avx2"};
    return Active{&sse2::kTable, "sse2"};
  }();
  return active;
}

const Table &T() { return *Pick().table; }

} // namespace

void Bf16ToF32(const uint16_t *in, float *out, int64_t n) {
  T().bf16ToF32(in, out, n);
}
void F32ToBf16(const float *in, uint16_t *out, int64_t n) {
  T().f32ToBf16(in, out, n);
}
void F16ToF32(const uint16_t *in, float *out, int64_t n) {
  T().f16ToF32(in, out, n);
}
void F32ToF16(const float *in, uint16_t *out, int64_t n) {
  T().f32ToF16(in, out, n);
}
void Unary(UnaryKind kind, const float *in, float *out, int64_t n) {
  T().unary(kind, in, out, n);
}
void Binary(BinaryKind kind, const float *lhs, const float *rhs, float *out,
            int64_t n) {
  T().binary(kind, lhs, rhs, out, n);
}
float Max(const float *x, int64_t n) { return T().max(x, n); }
float ExpShift(const float *x, float shift, float *out, int64_t n) {
  return T().expShift(x, shift, out, n);
}
float SumExpShift(const float *x, float shift, int64_t n) {
  return T().expShift(x, shift, nullptr, n);
}
void Scale(const float *x, float s, float *out, int64_t n) {
  T().scale(x, s, out, n);
}
double Sum(const float *x, int64_t n) { return T().sum(x, n); }
double SumSquares(const float *x, int64_t n) { return T().sumSquares(x, n); }
const char *IsaName() { return Pick().name; }

} // namespace veomni::rt::cpu::vec
