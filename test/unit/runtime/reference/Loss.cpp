//===- Loss.cpp - reference cross entropy ---------------------------------===//
//
// Row by row in double, for the tests.
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

absl::Status CrossEntropy(const TensorView &logits, const TensorView &labels,
                          const TensorView &out, int64_t ignoreIndex,
                          LossReduction reduction) {
  const char *kName = "CrossEntropy";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  if (out.dtype != DType::F32)
    return BadView(kName, "out", out, "must be f32");
  if (logits.rank() < 1)
    return BadView(kName, "logits", logits, "must have rank >= 1");
  int64_t vocab = logits.dim(logits.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "labels", labels,
                 absl::MakeSpan(logits.shape).subspan(0, logits.rank() - 1)));
  if (reduction == LossReduction::None)
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, labels.shape));
  else
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {}));
  int64_t rows = labels.numel();
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label != ignoreIndex && (label < 0 || label >= vocab))
      return BadView(kName, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
  }

  std::vector<double> loss(rows, 0.0);
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label == ignoreIndex)
      continue;
    ++counted;
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < vocab; ++i)
      max = std::max<double>(max, LoadF(logits, r * vocab + i));
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i)
      sum += std::exp(LoadF(logits, r * vocab + i) - max);
    double logSumExp = max + std::log(sum);
    loss[r] = logSumExp - LoadF(logits, r * vocab + label);
  }

  if (reduction == LossReduction::None) {
    for (int64_t r = 0; r < rows; ++r)
      StoreF(out, r, static_cast<float>(loss[r]));
    return absl::OkStatus();
  }
  double total = 0;
  for (int64_t r = 0; r < rows; ++r)
    total += loss[r];
  if (reduction == LossReduction::Mean)
    total = counted == 0 ? 0.0 : total / static_cast<double>(counted);
  StoreF(out, 0, static_cast<float>(total));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// CrossEntropyGrad
//===----------------------------------------------------------------------===//

absl::Status CrossEntropyGrad(const TensorView &logits,
                              const TensorView &labels, const TensorView &dloss,
                              const TensorView &dlogits, int64_t ignoreIndex,
                              LossReduction reduction) {
  const char *kName = "CrossEntropyGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "dloss", dloss));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dlogits", dlogits));
  if (dloss.dtype != DType::F32)
    return BadView(kName, "dloss", dloss, "must be f32");
  if (logits.rank() < 1)
    return BadView(kName, "logits", logits, "must have rank >= 1");
  int64_t vocab = logits.dim(logits.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "labels", labels,
                 absl::MakeSpan(logits.shape).subspan(0, logits.rank() - 1)));
  switch (reduction) {
  case LossReduction::None:
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dloss", dloss, labels.shape));
    break;
  case LossReduction::Mean:
  case LossReduction::Sum:
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dloss", dloss, {}));
    break;
  default:
    return BadView(kName, "dloss", dloss, "has an unknown reduction ",
                   static_cast<int>(reduction));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dlogits", dlogits, logits.shape));
  int64_t rows = labels.numel();
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= vocab)
      return BadView(kName, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
    ++counted;
  }

  for (int64_t r = 0; r < rows; ++r) {
    int64_t label = LoadI(labels, r);
    if (label == ignoreIndex) {
      for (int64_t i = 0; i < vocab; ++i)
        StoreF(dlogits, r * vocab + i, 0.0f);
      continue;
    }
    // The upstream gradient of this row's loss.
    double g = reduction == LossReduction::None ? LoadF(dloss, r)
               : reduction == LossReduction::Sum
                   ? LoadF(dloss, 0)
                   : LoadF(dloss, 0) / static_cast<double>(counted);
    double max = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < vocab; ++i)
      max = std::max<double>(max, LoadF(logits, r * vocab + i));
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i)
      sum += std::exp(LoadF(logits, r * vocab + i) - max);
    for (int64_t i = 0; i < vocab; ++i) {
      double p = std::exp(LoadF(logits, r * vocab + i) - max) / sum;
      StoreF(dlogits, r * vocab + i,
             static_cast<float>((p - (i == label ? 1.0 : 0.0)) * g));
    }
  }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
