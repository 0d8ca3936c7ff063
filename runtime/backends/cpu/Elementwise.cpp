//===- Elementwise.cpp - Unary, Binary and Cast fast paths ----------------===//
//
// f32 runs straight through the vector loops. bf16/f16 stage through small
// f32 stack buffers a chunk at a time, so no tensor-sized scratch is needed
// and a chunk is read completely before it is written: that is what makes
// `out` aliasing an input safe.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/VecMath.h"

#include <algorithm>

namespace veomni::rt::cpu {

using namespace detail;

namespace {

/// Calls fn(offset, length) for the kChunk-sized pieces of [0, n), spread
/// over threads when n is large (these loops are memory-bound, and one core
/// does not saturate memory bandwidth). Pieces are disjoint, so in-place
/// calls stay safe.
template <typename F>
void ForEachChunk(int64_t n, double workPerElement, const F &fn) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  ParallelFor(chunks, workPerElement * static_cast<double>(n),
              [&](int64_t c0, int64_t c1) {
                for (int64_t c = c0; c < c1; ++c) {
                  int64_t i = c * kChunk;
                  fn(i, std::min(kChunk, n - i));
                }
              });
}

/// Integer to integer through a buffer, so that an in-place cast of
/// equal-size types reads a chunk before writing it.
template <typename From, typename To>
void CastInts(const From *in, To *out, int64_t n) {
  To buf[kChunk];
  for (int64_t j = 0; j < n; ++j)
    buf[j] = static_cast<To>(in[j]);
  std::memcpy(out, buf, n * sizeof(To));
}

} // namespace

absl::Status Unary(UnaryKind kind, const TensorView &in,
                   const TensorView &out) {
  constexpr absl::string_view K = "Unary";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, in.shape));
  if (static_cast<int>(kind) < static_cast<int>(UnaryKind::Neg) ||
      static_cast<int>(kind) > static_cast<int>(UnaryKind::GeluTanh))
    return Invalid(K, "unknown kind ", static_cast<int>(kind));
  // These call libm per element and cost far more than a memory access.
  bool scalar = kind == UnaryKind::Log || kind == UnaryKind::Sin ||
                kind == UnaryKind::Cos || kind == UnaryKind::Gelu;
  double work = scalar ? 40 : kMemoryBoundWork;
  if (in.dtype == DType::F32 && out.dtype == DType::F32) {
    const float *x = static_cast<const float *>(in.data);
    float *y = static_cast<float *>(out.data);
    ForEachChunk(in.numel(), work, [&](int64_t i, int64_t len) {
      vec::Unary(kind, x + i, y + i, len);
    });
    return absl::OkStatus();
  }
  ForEachChunk(in.numel(), work, [&](int64_t i, int64_t len) {
    float buf[kChunk];
    LoadF32(in, i, len, buf);
    vec::Unary(kind, buf, buf, len);
    StoreF32(buf, out, i, len);
  });
  return absl::OkStatus();
}

absl::Status Binary(BinaryKind kind, const TensorView &lhs,
                    const TensorView &rhs, const TensorView &out) {
  constexpr absl::string_view K = "Binary";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "rhs", rhs, lhs.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, lhs.shape));
  if (static_cast<int>(kind) < static_cast<int>(BinaryKind::Add) ||
      static_cast<int>(kind) > static_cast<int>(BinaryKind::Div))
    return Invalid(K, "unknown kind ", static_cast<int>(kind));
  if (lhs.dtype == DType::F32 && rhs.dtype == DType::F32 &&
      out.dtype == DType::F32) {
    const float *a = static_cast<const float *>(lhs.data);
    const float *b = static_cast<const float *>(rhs.data);
    float *y = static_cast<float *>(out.data);
    ForEachChunk(lhs.numel(), kMemoryBoundWork, [&](int64_t i, int64_t len) {
      vec::Binary(kind, a + i, b + i, y + i, len);
    });
    return absl::OkStatus();
  }
  ForEachChunk(lhs.numel(), kMemoryBoundWork, [&](int64_t i, int64_t len) {
    float a[kChunk], b[kChunk];
    LoadF32(lhs, i, len, a);
    LoadF32(rhs, i, len, b);
    vec::Binary(kind, a, b, a, len);
    StoreF32(a, out, i, len);
  });
  return absl::OkStatus();
}

absl::Status Cast(const TensorView &in, const TensorView &out) {
  constexpr absl::string_view K = "Cast";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, in.shape));
  if (IsFloat(in.dtype) && !IsFloat(out.dtype))
    return BadView(K, "out", out, "cannot receive float in ", in.ToString());
  if (in.dtype == out.dtype) {
    if (in.data != out.data)
      std::memmove(out.data, in.data, in.bytes());
    return absl::OkStatus();
  }
  ForEachChunk(in.numel(), kMemoryBoundWork, [&](int64_t i, int64_t len) {
    if (in.dtype == DType::I32 && out.dtype == DType::I64) {
      CastInts(static_cast<const int32_t *>(in.data) + i,
               static_cast<int64_t *>(out.data) + i, len);
    } else if (in.dtype == DType::I64 && out.dtype == DType::I32) {
      CastInts(static_cast<const int64_t *>(in.data) + i,
               static_cast<int32_t *>(out.data) + i, len);
    } else { // to a float, through f32 as LoadF/StoreF do
      float buf[kChunk];
      LoadF32(in, i, len, buf);
      StoreF32(buf, out, i, len);
    }
  });
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
