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
  int64_t n = in.numel();
  if (in.dtype == DType::F32 && out.dtype == DType::F32) {
    vec::Unary(kind, static_cast<const float *>(in.data),
               static_cast<float *>(out.data), n);
    return absl::OkStatus();
  }
  float buf[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    LoadF32(in, i, len, buf);
    vec::Unary(kind, buf, buf, len);
    StoreF32(buf, out, i, len);
  }
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
  int64_t n = lhs.numel();
  if (lhs.dtype == DType::F32 && rhs.dtype == DType::F32 &&
      out.dtype == DType::F32) {
    vec::Binary(kind, static_cast<const float *>(lhs.data),
                static_cast<const float *>(rhs.data),
                static_cast<float *>(out.data), n);
    return absl::OkStatus();
  }
  float a[kChunk], b[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    LoadF32(lhs, i, len, a);
    LoadF32(rhs, i, len, b);
    vec::Binary(kind, a, b, a, len);
    StoreF32(a, out, i, len);
  }
  return absl::OkStatus();
}

namespace {

/// Integer to integer, a chunk at a time through a buffer so that an
/// in-place cast of equal-size types reads each chunk before writing it.
template <typename From, typename To>
void CastInts(const void *in, void *out, int64_t n) {
  To buf[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    const From *src = static_cast<const From *>(in) + i;
    for (int64_t j = 0; j < len; ++j)
      buf[j] = static_cast<To>(src[j]);
    std::memcpy(static_cast<To *>(out) + i, buf, len * sizeof(To));
  }
}

} // namespace

absl::Status Cast(const TensorView &in, const TensorView &out) {
  constexpr absl::string_view K = "Cast";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, in.shape));
  if (IsFloat(in.dtype) && !IsFloat(out.dtype))
    return BadView(K, "out", out, "cannot receive float in ", in.ToString());
  int64_t n = in.numel();
  if (in.dtype == out.dtype) {
    if (in.data != out.data)
      std::memmove(out.data, in.data, in.bytes());
    return absl::OkStatus();
  }
  if (!IsFloat(out.dtype)) { // i32 <-> i64
    if (in.dtype == DType::I32)
      CastInts<int32_t, int64_t>(in.data, out.data, n);
    else
      CastInts<int64_t, int32_t>(in.data, out.data, n);
    return absl::OkStatus();
  }
  // Floats and integers to floats go through f32, as LoadF/StoreF do.
  float buf[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    LoadF32(in, i, len, buf);
    StoreF32(buf, out, i, len);
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
