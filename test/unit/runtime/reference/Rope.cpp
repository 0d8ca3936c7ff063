//===- Rope.cpp - reference rotary embeddings -----------------------------===//
//
// Pair by pair with the angles of ReferenceUtil.h, for the tests.
//
//===----------------------------------------------------------------------===//

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "test/unit/runtime/reference/Reference.h"
#include "test/unit/runtime/reference/ReferenceUtil.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu::ref {

using namespace detail;

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

absl::Status Rope(const TensorView &in, const TensorView &positions,
                  const TensorView &out, const RopeConfig &attrs) {
  const char *kName = "Rope";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "in", in, 4));
  if (in.dim(3) % 2 != 0)
    return BadView(kName, "in", in, "must have an even head dimension");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  std::vector<int64_t> section;
  std::vector<float> freq;
  VEOMNI_RETURN_IF_ERROR(
      RopeTables(kName, "in", in, positions, attrs, section, freq));

  ForEachRopePair(in, positions, attrs, section, freq,
                  [&](int64_t i1, int64_t i2, double c, double sn) {
                    double x1 = LoadF(in, i1), x2 = LoadF(in, i2);
                    StoreF(out, i1, static_cast<float>(x1 * c - x2 * sn));
                    StoreF(out, i2, static_cast<float>(x2 * c + x1 * sn));
                  });
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// RopeInverse
//===----------------------------------------------------------------------===//

absl::Status RopeInverse(const TensorView &dy, const TensorView &positions,
                         const TensorView &dx, const RopeConfig &attrs) {
  const char *kName = "RopeInverse";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "dy", dy, 4));
  if (dy.dim(3) % 2 != 0)
    return BadView(kName, "dy", dy, "must have an even head dimension");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, dy.shape));
  std::vector<int64_t> section;
  std::vector<float> freq;
  VEOMNI_RETURN_IF_ERROR(
      RopeTables(kName, "dy", dy, positions, attrs, section, freq));

  // Frequencies and angles as ref::Rope computes them.
  ForEachRopePair(dy, positions, attrs, section, freq,
                  [&](int64_t i1, int64_t i2, double c, double sn) {
                    // Rope maps (x1, x2) to (x1 c - x2 sn, x2 c + x1 sn); this
                    // is the transpose of that 2x2 matrix.
                    double g1 = LoadF(dy, i1), g2 = LoadF(dy, i2);
                    StoreF(dx, i1, static_cast<float>(g1 * c + g2 * sn));
                    StoreF(dx, i2, static_cast<float>(g2 * c - g1 * sn));
                  });
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
