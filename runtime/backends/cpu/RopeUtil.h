//===- RopeUtil.h - rope tables shared by Rope and RopeInverse --*- C++ -*-===//
//
// Internal to the fast CPU kernels: Rope and RopeInverse (Rope.cpp) check
// their attributes and build their frequency and angle
// tables here, so that the two kernels apply transposed copies of exactly
// the same rotation.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_ROPEUTIL_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_ROPEUTIL_H

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace veomni::rt::cpu::detail {

/// Checks the rank-4 view `in` (named `name`) for an even head dimension,
/// `attrs` against it and `positions` against its batch and sequence, then
/// fills section[j]: which row of `positions` frequency j reads.
inline absl::Status RopeSections(absl::string_view K, absl::string_view name,
                                 const TensorView &in,
                                 const TensorView &positions,
                                 const RopeConfig &attrs,
                                 std::vector<int64_t> &section) {
  int64_t batch = in.dim(0), seq = in.dim(1), d = in.dim(3);
  if (d % 2 != 0)
    return BadView(K, name, in, "head dimension must be even");
  int64_t half = d / 2;
  if (!attrs.invFreq.empty() &&
      static_cast<int64_t>(attrs.invFreq.size()) != half)
    return BadView(K, name, in, "needs ", half, " inverse frequencies, got ",
                   attrs.invFreq.size());
  if (attrs.invFreq.empty() && !(attrs.theta > 0))
    return Invalid(K, "theta must be positive, got ", attrs.theta);
  section.assign(half, 0);
  int64_t sections = static_cast<int64_t>(attrs.mropeSection.size());
  if (attrs.mropeInterleaved && sections == 0)
    return Invalid(K, "mropeInterleaved needs mropeSection");
  if (sections > 0) {
    int64_t j = 0;
    for (int64_t k = 0; k < sections; ++k) {
      int64_t size = attrs.mropeSection[k];
      if (size < 1 || size > half - j)
        return BadView(K, name, in, "mropeSection ",
                       ShapeString(attrs.mropeSection),
                       " must be positive sizes summing to ", half);
      if (!attrs.mropeInterleaved) {
        std::fill_n(section.begin() + j, size, k);
      } else if (k > 0) {
        // Round robin: k, k + N, ... for `size` frequencies.
        if ((size - 1) * sections + k >= half)
          return BadView(K, name, in, "interleaved mropeSection ",
                         ShapeString(attrs.mropeSection), " reaches past ",
                         half, " frequencies");
        for (int64_t i = 0; i < size; ++i)
          section[i * sections + k] = k;
      }
      j += size;
    }
    if (j != half)
      return BadView(K, name, in, "mropeSection ",
                     ShapeString(attrs.mropeSection), " must sum to ", half);
    VEOMNI_RETURN_IF_ERROR(
        CheckShape(K, "positions", positions, {sections, batch, seq}));
  } else {
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "positions", positions, {batch, seq}));
  }
  return absl::OkStatus();
}

/// The d / 2 rotation frequencies, in f32: attrs.invFreq, or theta^(-2j/d).
inline std::vector<float> RopeFrequencies(const RopeConfig &attrs, int64_t d) {
  int64_t half = d / 2;
  std::vector<float> freq(half);
  for (int64_t j = 0; j < half; ++j)
    freq[j] =
        attrs.invFreq.empty()
            ? static_cast<float>(
                  1.0 / std::pow(attrs.theta, 2.0 * static_cast<double>(j) /
                                                  static_cast<double>(d)))
            : attrs.invFreq[j];
  return freq;
}

/// Token t's angle table (of `tokens` = batch * seq), shared by its heads:
/// cosv[j], sinv[j] = cos, sin of position * freq[j], times `scaling`.
inline void RopeAngles(const TensorView &positions,
                       const std::vector<int64_t> &section,
                       const std::vector<float> &freq, int64_t tokens,
                       int64_t t, float scaling, float *cosv, float *sinv) {
  int64_t half = static_cast<int64_t>(freq.size());
  for (int64_t j = 0; j < half; ++j) {
    float pos = static_cast<float>(IndexAt(positions, section[j] * tokens + t));
    float angle = pos * freq[j];
    cosv[j] = std::cos(angle) * scaling;
    sinv[j] = std::sin(angle) * scaling;
  }
}

/// Rope (kInverse = false) or its transpose RopeInverse (kInverse = true) of
/// the rank-4 view `in` into `out`, checks included; `inName` and `outName`
/// name the views in messages. One body, so that both turn by exactly the
/// same tables.
template <bool kInverse>
absl::Status RopeRotate(absl::string_view K, absl::string_view inName,
                        const TensorView &in, const TensorView &positions,
                        absl::string_view outName, const TensorView &out,
                        const RopeConfig &attrs) {
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, inName, in, 4));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, outName, out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, inName, in));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, outName, out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, outName, out, in.shape));
  int64_t batch = in.dim(0), seq = in.dim(1), heads = in.dim(2), d = in.dim(3);
  std::vector<int64_t> section;
  VEOMNI_RETURN_IF_ERROR(
      RopeSections(K, inName, in, positions, attrs, section));
  int64_t half = d / 2;
  if (in.numel() == 0)
    return absl::OkStatus();

  std::vector<float> freq = RopeFrequencies(attrs, d);
  const float scaling = static_cast<float>(attrs.attentionScaling);
  int64_t rowLen = heads * d, tokens = batch * seq;
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<float> cosv(half), sinv(half);
    RowReader reader(in, rowLen);
    RowWriter writer(out, rowLen);
    for (int64_t t = begin; t < end; ++t) {
      // One angle table per token, shared by its heads.
      RopeAngles(positions, section, freq, tokens, t, scaling, cosv.data(),
                 sinv.data());
      const float *x = reader.Row(t);
      float *y = writer.Row(t);
      for (int64_t h = 0; h < heads; ++h) {
        const float *xh = x + h * d;
        float *yh = y + h * d;
        for (int64_t j = 0; j < half; ++j) {
          float x0 = xh[j], x1 = xh[j + half];
          if constexpr (kInverse) {
            // Rope: y0 = x0 c - x1 s, y1 = x1 c + x0 s; its transpose:
            yh[j] = x0 * cosv[j] + x1 * sinv[j];
            yh[j + half] = x1 * cosv[j] - x0 * sinv[j];
          } else {
            yh[j] = x0 * cosv[j] - x1 * sinv[j];
            yh[j + half] = x1 * cosv[j] + x0 * sinv[j];
          }
        }
      }
      writer.Done();
    }
  };
  if constexpr (kInverse) {
    // About 40 flops per sin/cos pair, 6 per element.
    ParallelFor(tokens,
                static_cast<double>(tokens) * (40.0 * half + 6.0 * rowLen),
                run);
  } else {
    ParallelFor(tokens, kMemoryBoundWork * in.numel(), run);
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::detail

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_ROPEUTIL_H
