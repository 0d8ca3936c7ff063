//===- Tensor.h - element types and tensor views ----------------*- C++ -*-===//
//
// What a kernel sees: a pointer into the arena, an element type and a shape
// (row-major, contiguous). Views do not own memory.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_CORE_TENSOR_H
#define VEOMNI_RUNTIME_CORE_TENSOR_H

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace veomni::rt {

enum class DType : uint8_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4 };

/// Bytes per element.
size_t SizeOf(DType t);
absl::string_view Name(DType t);
inline bool IsFloat(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16;
}

using Shape = absl::InlinedVector<int64_t, 6>;

struct TensorView {
  void *data = nullptr;
  DType dtype = DType::F32;
  Shape shape;

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t dim(int64_t i) const { return shape[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  size_t bytes() const { return numel() * SizeOf(dtype); }
  /// "bf16[2x16x64]"
  std::string ToString() const;
};

//===----------------------------------------------------------------------===//
// Scalar conversions. Floats are computed in f32; bf16 and f16 round to
// nearest even on the way back, as a GPU's conversion instructions do.
//===----------------------------------------------------------------------===//

inline float Bf16ToF32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu))
    return static_cast<uint16_t>((bits >> 16) | 0x40); // quiet NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

/// Element i of a float or integer tensor, as float / as int64.
inline float LoadF(const TensorView &t, int64_t i) {
  switch (t.dtype) {
  case DType::F32:
    return static_cast<const float *>(t.data)[i];
  case DType::BF16:
    return Bf16ToF32(static_cast<const uint16_t *>(t.data)[i]);
  case DType::F16:
    return F16ToF32(static_cast<const uint16_t *>(t.data)[i]);
  case DType::I32:
    return static_cast<float>(static_cast<const int32_t *>(t.data)[i]);
  case DType::I64:
    return static_cast<float>(static_cast<const int64_t *>(t.data)[i]);
  }
  return 0;
}

inline void StoreF(const TensorView &t, int64_t i, float v) {
  switch (t.dtype) {
  case DType::F32:
    static_cast<float *>(t.data)[i] = v;
    return;
  case DType::BF16:
    static_cast<uint16_t *>(t.data)[i] = F32ToBf16(v);
    return;
  case DType::F16:
    static_cast<uint16_t *>(t.data)[i] = F32ToF16(v);
    return;
  case DType::I32:
    static_cast<int32_t *>(t.data)[i] = static_cast<int32_t>(v);
    return;
  case DType::I64:
    static_cast<int64_t *>(t.data)[i] = static_cast<int64_t>(v);
    return;
  }
}

inline int64_t LoadI(const TensorView &t, int64_t i) {
  switch (t.dtype) {
  case DType::I32:
    return static_cast<const int32_t *>(t.data)[i];
  case DType::I64:
    return static_cast<const int64_t *>(t.data)[i];
  default:
    return static_cast<int64_t>(LoadF(t, i));
  }
}

inline void StoreI(const TensorView &t, int64_t i, int64_t v) {
  switch (t.dtype) {
  case DType::I32:
    static_cast<int32_t *>(t.data)[i] = static_cast<int32_t>(v);
    return;
  case DType::I64:
    static_cast<int64_t *>(t.data)[i] = v;
    return;
  default:
    StoreF(t, i, static_cast<float>(v));
  }
}

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_CORE_TENSOR_H
