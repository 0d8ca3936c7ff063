//===- ReferenceUtil.h - shared helpers of the reference kernels -*- C++
//-*-===//
//
// Internal to the reference kernels of this folder: row-major index
// arithmetic, the rope tables Rope and RopeInverse both read, and the checks
// a forward reference and its gradient share. Not a public interface.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCEUTIL_H
#define VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCEUTIL_H

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/support/Status.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace veomni::rt::cpu::ref::detail {

//===----------------------------------------------------------------------===//
// Checks. Each names the kernel and the view at fault:
//   "Matmul: rhs f32[3x4] must have 5 rows ..."
//===----------------------------------------------------------------------===//

// The argument checks are the fast kernels' (KernelUtil.h): one library,
// one set of messages.
using namespace ::veomni::rt::cpu::detail;

inline bool IsInt(DType t) { return t == DType::I32 || t == DType::I64; }

/// source.shape[:axis] + indices.shape + source.shape[axis+1:]
inline Shape GatheredShape(const TensorView &source, const TensorView &indices,
                           int64_t axis) {
  Shape shape(source.shape.begin(), source.shape.begin() + axis);
  shape.insert(shape.end(), indices.shape.begin(), indices.shape.end());
  shape.insert(shape.end(), source.shape.begin() + axis + 1,
               source.shape.end());
  return shape;
}

inline absl::Status CheckIndices(absl::string_view kernel,
                                 const TensorView &indices, int64_t bound) {
  for (int64_t i = 0; i < indices.numel(); ++i) {
    int64_t index = LoadI(indices, i);
    if (index < 0 || index >= bound)
      return BadView(kernel, "indices", indices, "element ", i, " = ", index,
                     " is outside [0, ", bound, ")");
  }
  return absl::OkStatus();
}

inline absl::Status CheckSameDType(absl::string_view kernel,
                                   absl::string_view name, const TensorView &v,
                                   const TensorView &like,
                                   absl::string_view likeName) {
  if (v.dtype != like.dtype)
    return BadView(kernel, name, v, "must have the element type of ", likeName,
                   " ", like.ToString());
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Index arithmetic on row-major shapes.
//===----------------------------------------------------------------------===//

inline int64_t Product(absl::Span<const int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  return n;
}

/// Copies element `si` of `src` to element `di` of `dst` (same element
/// type), bit for bit: the data-movement kernels carry any type exactly.
inline void CopyElement(const TensorView &dst, int64_t di,
                        const TensorView &src, int64_t si) {
  size_t size = SizeOf(src.dtype);
  std::memcpy(static_cast<char *>(dst.data) + di * size,
              static_cast<const char *>(src.data) + si * size, size);
}

/// `v` rounded to `t`'s precision (and back to f32).
inline float RoundTo(DType t, float v) {
  switch (t) {
  case DType::BF16:
    return Bf16ToF32(F32ToBf16(v));
  case DType::F16:
    return F16ToF32(F32ToF16(v));
  default:
    return v;
  }
}

inline double ApplyUnary(UnaryKind kind, double x) {
  switch (kind) {
  case UnaryKind::Neg:
    return -x;
  case UnaryKind::Exp:
    return std::exp(x);
  case UnaryKind::Log:
    return std::log(x);
  case UnaryKind::Sqrt:
    return std::sqrt(x);
  case UnaryKind::Rsqrt:
    return 1.0 / std::sqrt(x);
  case UnaryKind::Sin:
    return std::sin(x);
  case UnaryKind::Cos:
    return std::cos(x);
  case UnaryKind::Tanh:
    return std::tanh(x);
  case UnaryKind::Sigmoid:
    return 1.0 / (1.0 + std::exp(-x));
  case UnaryKind::Silu:
    return x / (1.0 + std::exp(-x));
  case UnaryKind::Gelu:
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  case UnaryKind::GeluTanh: {
    const double kPi = 3.14159265358979323846;
    double inner = std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + std::tanh(inner));
  }
  case UnaryKind::IsFinite:
    return std::isfinite(x) ? 1.0 : 0.0;
  }
  return 0;
}

/// Broadcast's and Transpose's shared checks: in and out any views of one
/// element type, and `list` (named `listName`) one entry per dimension of in.
inline absl::Status CheckPerDimension(absl::string_view kName,
                                      const TensorView &in,
                                      const TensorView &out,
                                      absl::Span<const int64_t> list,
                                      absl::string_view listName) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, "out", out, in, "in"));
  if (static_cast<int64_t>(list.size()) != in.rank())
    return BadView(kName, "in", in, "needs one entry of ", listName,
                   " per dimension, got ", ShapeString(list));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Index arithmetic on row-major shapes.
//===----------------------------------------------------------------------===//

/// strides[i] = product of shape[i+1:].
inline std::vector<int64_t> Strides(absl::Span<const int64_t> shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/// The coordinates of flat index `flat` in `shape`.
inline std::vector<int64_t> Unravel(int64_t flat,
                                    absl::Span<const int64_t> shape) {
  std::vector<int64_t> coords(shape.size(), 0);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    coords[i] = flat % shape[i];
    flat /= shape[i];
  }
  return coords;
}

//===----------------------------------------------------------------------===//
// Rope: shared by Rope and RopeInverse, so both turn by the same angles.
//===----------------------------------------------------------------------===//

/// Checks `attrs` against the rank-4 view `in` (named `name`; its head
/// dimension already checked even) and `positions`, then fills section[j],
/// the row of `positions` that frequency j reads, and freq[j], frequency j
/// in f32.
inline absl::Status RopeTables(absl::string_view kernel, absl::string_view name,
                               const TensorView &in,
                               const TensorView &positions,
                               const RopeConfig &attrs,
                               std::vector<int64_t> &section,
                               std::vector<float> &freq) {
  int64_t batch = in.dim(0), seq = in.dim(1);
  int64_t headDim = in.dim(3), half = headDim / 2;
  if (!attrs.invFreq.empty() &&
      static_cast<int64_t>(attrs.invFreq.size()) != half)
    return BadView(kernel, name, in, "needs ", half, " inverse frequencies, ",
                   "got ", attrs.invFreq.size());
  if (attrs.invFreq.empty() && !(attrs.theta > 0))
    return BadView(kernel, name, in, "theta must be positive, got ",
                   attrs.theta);

  section.assign(half, 0);
  int64_t sections = static_cast<int64_t>(attrs.mropeSection.size());
  if (attrs.mropeInterleaved && sections == 0)
    return BadView(kernel, name, in, "interleaved rope without sections");
  if (sections == 0) {
    VEOMNI_RETURN_IF_ERROR(
        CheckShape(kernel, "positions", positions, {batch, seq}));
  } else {
    int64_t j = 0;
    for (int64_t k = 0; k < sections; ++k) {
      int64_t size = attrs.mropeSection[k];
      if (size < 1 || size > half - j)
        return BadView(kernel, name, in, "mrope sections ",
                       ShapeString(attrs.mropeSection), " must be positive ",
                       "and sum to ", half);
      for (int64_t end = j + size; j < end; ++j)
        section[j] = attrs.mropeInterleaved ? 0 : k;
    }
    if (j != half)
      return BadView(kernel, name, in, "mrope sections ",
                     ShapeString(attrs.mropeSection), " must sum to ", half);
    // Interleaved, as transformers' Qwen3-VL recomposes its frequencies:
    // every frequency starts in section 0, then section k >= 1 overwrites
    // the slice k : sections * size_k : sections.
    if (attrs.mropeInterleaved)
      for (int64_t k = 1; k < sections; ++k) {
        int64_t stop = sections * attrs.mropeSection[k];
        if (stop - sections + k >= half)
          return BadView(kernel, name, in, "interleaved mrope sections ",
                         ShapeString(attrs.mropeSection), " reach past ", half);
        for (int64_t i = k; i < stop; i += sections)
          section[i] = k;
      }
    VEOMNI_RETURN_IF_ERROR(
        CheckShape(kernel, "positions", positions, {sections, batch, seq}));
  }

  freq.resize(half);
  for (int64_t j = 0; j < half; ++j)
    freq[j] = attrs.invFreq.empty()
                  ? static_cast<float>(
                        1.0 / std::pow(attrs.theta,
                                       2.0 * static_cast<double>(j) / headDim))
                  : attrs.invFreq[j];
  return absl::OkStatus();
}

/// Calls fn(i1, i2, c, sn) for every rotated pair of `in`: elements i1
/// (first half) and i2 (second half) of a head, turned by an angle with
/// scaled cosine c and sine sn.
template <typename Fn>
void ForEachRopePair(const TensorView &in, const TensorView &positions,
                     const RopeConfig &attrs,
                     const std::vector<int64_t> &section,
                     const std::vector<float> &freq, Fn fn) {
  int64_t batch = in.dim(0), seq = in.dim(1), heads = in.dim(2);
  int64_t headDim = in.dim(3), half = headDim / 2;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < seq; ++s) {
      for (int64_t h = 0; h < heads; ++h) {
        int64_t base = ((b * seq + s) * heads + h) * headDim;
        for (int64_t j = 0; j < half; ++j) {
          int64_t position =
              LoadI(positions, (section[j] * batch + b) * seq + s);
          float angle = static_cast<float>(position) * freq[j]; // in f32
          double c =
              std::cos(static_cast<double>(angle)) * attrs.attentionScaling;
          double sn =
              std::sin(static_cast<double>(angle)) * attrs.attentionScaling;
          fn(base + j, base + j + half, c, sn);
        }
      }
    }
  }
}

//===----------------------------------------------------------------------===//
// Argument checks and steps that a forward reference and its gradient share.
//===----------------------------------------------------------------------===//

/// Attention's q, k, v (and segments) checks, after their element types:
/// rank 4, k and v of q's batch and head size, k's head count dividing q's,
/// equal sequences where causal or segmented.
/// Whether query i of batch row b sees key j: causally, within its window
/// and its segment, or (segments [2, B, S]) inside its bidirectional
/// block, a run of equal non-zero ids of plane 1 over one segment.
inline bool AttentionVisible(const TensorView *segments, int64_t b, int64_t seq,
                             int64_t i, int64_t j, bool causal,
                             int64_t window) {
  auto seg = [&](int64_t t) { return LoadI(*segments, b * seq + t); };
  if (segments && seg(i) != seg(j))
    return false;
  if (window > 0 && j <= i - window)
    return false;
  if (!causal || j <= i)
    return true;
  if (!segments || segments->rank() != 3)
    return false;
  const int64_t plane = segments->numel() / 2;
  auto block = [&](int64_t t) { return LoadI(*segments, plane + b * seq + t); };
  for (int64_t t = i; t <= j; ++t)
    if (block(t) == 0 || block(t) != block(i) || seg(t) != seg(i))
      return false;
  return true;
}

inline absl::Status CheckAttention(absl::string_view kName, const TensorView &q,
                                   const TensorView &k, const TensorView &v,
                                   const TensorView *segments, bool causal,
                                   int64_t window = 0,
                                   const TensorView *sinks = nullptr) {
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "q", q, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "k", k, 4));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "v", v, 4));
  int64_t batch = q.dim(0), seq = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t seqKv = k.dim(1), hkv = k.dim(2), dv = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "k", k, {batch, seqKv, hkv, d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "v", v, {batch, seqKv, hkv, dv}));
  if (hkv < 1 || hq % hkv != 0)
    return BadView(kName, "k", k, "head count must divide the ", hq,
                   " heads of q ", q.ToString());
  if (causal && seq != seqKv)
    return BadView(kName, "k", k, "must have the sequence length of q ",
                   q.ToString(), " for causal attention");
  if (segments) {
    VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "segments", *segments));
    if (seq != seqKv)
      return BadView(kName, "k", k, "must have the sequence length of q ",
                     q.ToString(), " with segments");
    if (segments->rank() == 3 && !causal)
      return BadView(kName, "segments", *segments,
                     "bidirectional blocks need causal attention");
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "segments", *segments,
                                      segments->rank() == 3
                                          ? std::vector<int64_t>{2, batch, seq}
                                          : std::vector<int64_t>{batch, seq}));
  }
  if (window < 0 || (window > 0 && !causal))
    return BadView(kName, "q", q, "window ", window,
                   " must be 0, or positive with causal attention");
  if (sinks) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "sinks", *sinks));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "sinks", *sinks, {hq}));
  }
  return absl::OkStatus();
}

/// MoETopK's choice for token t of the [tokens, experts] `logits`: fills
/// prob with the softmax, each probability rounded to f32 before they are
/// ranked, and chosen with k rounds of "the largest not yet taken" (the
/// first of equals wins); returns the sum of the chosen probabilities.
inline double MoETopKRow(const TensorView &logits, int64_t t, int64_t k,
                         std::vector<float> &prob, std::vector<bool> &taken,
                         std::vector<int64_t> &chosen) {
  int64_t experts = logits.dim(1);
  double max = -std::numeric_limits<double>::infinity();
  for (int64_t e = 0; e < experts; ++e)
    max = std::max<double>(max, LoadF(logits, t * experts + e));
  double sum = 0;
  for (int64_t e = 0; e < experts; ++e)
    sum += std::exp(LoadF(logits, t * experts + e) - max);
  for (int64_t e = 0; e < experts; ++e)
    prob[e] = static_cast<float>(
        std::exp(LoadF(logits, t * experts + e) - max) / sum);

  std::fill(taken.begin(), taken.end(), false);
  double chosenSum = 0;
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < experts; ++e)
      if (!taken[e] && (best < 0 || prob[e] > prob[best]))
        best = e;
    taken[best] = true;
    chosen[j] = best;
    chosenSum += prob[best];
  }
  return chosenSum;
}

} // namespace veomni::rt::cpu::ref::detail

#endif // VEOMNI_TEST_UNIT_RUNTIME_REFERENCE_REFERENCEUTIL_H
