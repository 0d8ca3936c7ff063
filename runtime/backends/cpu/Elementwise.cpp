//===- Elementwise.cpp - unary, binary, cast and the gelu VJP -------------===//
//
// Vector loops from VecMath over chunks split across threads.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/MoEUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

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
      static_cast<int>(kind) > static_cast<int>(UnaryKind::IsFinite))
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
      static_cast<int>(kind) > static_cast<int>(BinaryKind::MulNoNan))
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

//===----------------------------------------------------------------------===//
// Clamp and ClampGrad
//===----------------------------------------------------------------------===//

namespace {
/// Runs `body(xs, gs, len)` over chunks of x (and dy, when given), storing
/// gs into out: in place is safe, chunks are read whole first.
template <typename Body>
absl::Status ClampChunks(absl::string_view K, const TensorView &x,
                         const TensorView *dy, const TensorView &out,
                         Body body) {
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, x.shape));
  if (dy) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", *dy));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", *dy));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", *dy, x.shape));
  }
  const int64_t n = x.numel();
  if (n == 0)
    return absl::OkStatus();
  auto run = [&](int64_t c0, int64_t c1) {
    float xs[kChunk], gs[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      int64_t at = c * kChunk, len = std::min(kChunk, n - at);
      LoadF32(x, at, len, xs);
      if (dy)
        LoadF32(*dy, at, len, gs);
      body(xs, gs, len);
      StoreF32(gs, out, at, len);
    }
  };
  ParallelFor((n + kChunk - 1) / kChunk, 4.0 * static_cast<double>(n), run);
  return absl::OkStatus();
}
} // namespace

absl::Status Clamp(const TensorView &in, const TensorView &out, double lo,
                   double hi) {
  const float l = static_cast<float>(lo), h = static_cast<float>(hi);
  return ClampChunks("Clamp", in, nullptr, out,
                     [&](const float *xs, float *gs, int64_t len) {
                       for (int64_t i = 0; i < len; ++i)
                         gs[i] = std::min(std::max(xs[i], l), h);
                     });
}

absl::Status ClampGrad(const TensorView &x, const TensorView &dy,
                       const TensorView &dx, double lo, double hi) {
  const float l = static_cast<float>(lo), h = static_cast<float>(hi);
  return ClampChunks("ClampGrad", x, &dy, dx,
                     [&](const float *xs, float *gs, int64_t len) {
                       for (int64_t i = 0; i < len; ++i)
                         gs[i] = xs[i] >= l && xs[i] <= h ? gs[i] : 0.0f;
                     });
}

//===----------------------------------------------------------------------===//
// GeluGrad
//===----------------------------------------------------------------------===//

absl::Status GeluGrad(const TensorView &x, const TensorView &dy,
                      const TensorView &dx, bool tanhApproximation) {
  constexpr absl::string_view K = "GeluGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, x.shape));
  const int64_t n = x.numel();
  if (n == 0)
    return absl::OkStatus();
  // Chunks are read whole before they are written: in place is safe.
  auto run = [&](int64_t c0, int64_t c1) {
    float xs[kChunk], gs[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      int64_t at = c * kChunk, len = std::min(kChunk, n - at);
      LoadF32(x, at, len, xs);
      LoadF32(dy, at, len, gs);
      if (tanhApproximation) {
        // y = x s with s = sigmoid(2u), u = c (x + a x^3), which is
        // 0.5 x (1 + tanh u): y' = s + 2 x s (1 - s) c (1 + 3 a x^2).
        const float c = 0.7978845608028654f, a = 0.044715f;
        for (int64_t i = 0; i < len; ++i) {
          float v = xs[i], v2 = v * v;
          float u = c * (v + a * v2 * v);
          float s = 1.0f / (1.0f + std::exp(-2.0f * u));
          float d = s + 2.0f * v * s * (1.0f - s) * c * (1.0f + 3.0f * a * v2);
          gs[i] *= d;
        }
      } else {
        // y = x Phi(x): y' = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi).
        for (int64_t i = 0; i < len; ++i) {
          float v = xs[i];
          float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
          float pdf = 0.3989422804014327f * std::exp(-0.5f * v * v);
          gs[i] *= cdf + v * pdf;
        }
      }
      StoreF32(gs, dx, at, len);
    }
  };
  ParallelFor((n + kChunk - 1) / kChunk, 40.0 * static_cast<double>(n), run);
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
