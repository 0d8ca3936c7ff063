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
