//===- Rope.cpp - rotary embeddings and their inverse ---------------------===//
//
// Both turn by the angles RopeUtil.h computes, so the VJP is exact.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;


namespace {

/// Common checks of the last-dimension norms.
absl::Status CheckNorm(absl::string_view k, const TensorView &in,
                       const TensorView &weight, const TensorView *bias,
                       const TensorView &out) {
  VEOMNI_RETURN_IF_ERROR(CheckView(k, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(k, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "in", in));
  if (in.rank() < 1)
    return BadView(k, "in", in, "must have rank >= 1");
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(k, "out", out, in.shape));
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckRank(k, "weight", weight, 1));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckShape(k, "weight", weight, {d}));
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckRank(k, "bias", *bias, 1));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(k, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(k, "bias", *bias, {d}));
  }
  return absl::OkStatus();
}

/// Rounds x[0, n) to `t`'s precision in place (the HF cast back to the
/// input dtype between two f32 steps).
void RoundTo(DType t, float *x, int64_t n) {
  if (t == DType::F32)
    return;
  uint16_t tmp[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    int64_t len = std::min(kChunk, n - i);
    if (t == DType::BF16) {
      vec::F32ToBf16(x + i, tmp, len);
      vec::Bf16ToF32(tmp, x + i, len);
    } else {
      vec::F32ToF16(x + i, tmp, len);
      vec::F16ToF32(tmp, x + i, len);
    }
  }
}

} // namespace


namespace {} // namespace

absl::Status Rope(const TensorView &in, const TensorView &positions,
                  const TensorView &out, const RopeConfig &attrs) {
  return RopeRotate</*kInverse=*/false>("Rope", "in", in, positions, "out", out,
                                        attrs);
}

//===----------------------------------------------------------------------===//
// RopeInverse
//===----------------------------------------------------------------------===//

absl::Status RopeInverse(const TensorView &dy, const TensorView &positions,
                         const TensorView &dx, const RopeConfig &attrs) {
  return RopeRotate</*kInverse=*/true>("RopeInverse", "dy", dy, positions, "dx",
                                       dx, attrs);
}

} // namespace veomni::rt::cpu
