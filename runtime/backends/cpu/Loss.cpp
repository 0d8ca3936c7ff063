//===- Loss.cpp - cross entropy, its VJP and the fused LM head ------------===//
//
// One row of logits at a time in f32; mean, sum or per-row reduction. The
// fused LM head (LinearCrossEntropy) runs the same rows over token chunks.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Checks.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include "absl/status/statusor.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

absl::Status CheckLossOperands(absl::string_view K, const TensorView &logits,
                               const TensorView &labels,
                               absl::string_view lossName,
                               const TensorView &loss,
                               LossReduction reduction) {
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, lossName, loss));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "labels", labels));
  if (logits.rank() < 1)
    return BadView(K, "logits", logits, "needs a vocabulary dimension");
  Shape rowsShape(logits.shape.begin(), logits.shape.end() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "labels", labels, rowsShape));
  if (loss.dtype != DType::F32)
    return BadView(K, lossName, loss, "must be f32");
  if (reduction == LossReduction::None)
    return CheckShape(K, lossName, loss, rowsShape);
  if (reduction == LossReduction::Mean || reduction == LossReduction::Sum)
    return CheckShape(K, lossName, loss, {});
  return Invalid(K, "unknown reduction ", static_cast<int>(reduction));
}

namespace {

/// The labels that count (not `ignoreIndex`), after checking that each of
/// them lies in [0, vocab).
absl::StatusOr<int64_t> CountLabels(absl::string_view K,
                                    const TensorView &labels, int64_t vocab,
                                    int64_t ignoreIndex) {
  int64_t counted = 0;
  for (int64_t r = 0, rows = labels.numel(); r < rows; ++r) {
    int64_t label = IndexAt(labels, r);
    if (label == ignoreIndex)
      continue;
    if (label < 0 || label >= vocab)
      return BadView(K, "labels", labels, "element ", r, " = ", label,
                     " is outside [0, ", vocab, ") and not the ignore index ",
                     ignoreIndex);
    ++counted;
  }
  return counted;
}

/// The sum, or the mean, of the losses of the rows that count, added in
/// row order so that it does not depend on the thread count.
float ReduceLosses(const std::vector<float> &rowLoss, const TensorView &labels,
                   int64_t ignoreIndex, LossReduction reduction) {
  double total = 0;
  int64_t counted = 0;
  for (int64_t r = 0, rows = labels.numel(); r < rows; ++r) {
    if (IndexAt(labels, r) == ignoreIndex)
      continue;
    total += rowLoss[r];
    ++counted;
  }
  if (reduction == LossReduction::Sum)
    return static_cast<float>(total);
  return counted ? static_cast<float>(total / static_cast<double>(counted))
                 : 0.0f;
}

/// The cotangent of each counted row's loss for a mean or a sum whose
/// cotangent is `dloss`: one rounding of dloss / counted for a mean.
float RowCotangent(float dloss, LossReduction reduction, int64_t counted) {
  if (reduction == LossReduction::Sum)
    return dloss;
  return counted > 0 ? static_cast<float>(static_cast<double>(dloss) /
                                          static_cast<double>(counted))
                     : 0.0f;
}

} // namespace

absl::Status CrossEntropy(const TensorView &logits, const TensorView &labels,
                          const TensorView &out, int64_t ignoreIndex,
                          LossReduction reduction) {
  constexpr absl::string_view K = "CrossEntropy";
  VEOMNI_RETURN_IF_ERROR(
      CheckLossOperands(K, logits, labels, "out", out, reduction));
  int64_t vocab = logits.dim(logits.rank() - 1), rows = labels.numel();
  VEOMNI_RETURN_IF_ERROR(CountLabels(K, labels, vocab, ignoreIndex).status());
  // Rows in parallel into per-row losses (0 where ignored), then one sum in
  // row order, so the result does not depend on the thread count.
  std::vector<float> loss(rows, 0.0f);
  ParallelFor(rows, 2 * kMemoryBoundWork * logits.numel(),
              [&](int64_t r0, int64_t r1) {
                RowReader reader(logits, vocab);
                for (int64_t r = r0; r < r1; ++r) {
                  int64_t label = IndexAt(labels, r);
                  if (label == ignoreIndex)
                    continue;
                  const float *x = reader.Row(r);
                  float mx = vec::Max(x, vocab);
                  float lse = mx + std::log(vec::SumExpShift(x, mx, vocab));
                  loss[r] = lse - x[label];
                }
              });
  float *o = static_cast<float *>(out.data);
  if (reduction == LossReduction::None) {
    std::copy(loss.begin(), loss.end(), o);
    return absl::OkStatus();
  }
  o[0] = ReduceLosses(loss, labels, ignoreIndex, reduction);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// CrossEntropyGrad
//===----------------------------------------------------------------------===//

absl::Status CrossEntropyGrad(const TensorView &logits,
                              const TensorView &labels, const TensorView &dloss,
                              const TensorView &dlogits, int64_t ignoreIndex,
                              LossReduction reduction) {
  constexpr absl::string_view K = "CrossEntropyGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(
      CheckLossOperands(K, logits, labels, "dloss", dloss, reduction));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dlogits", dlogits, logits.shape));
  int64_t vocab = logits.dim(logits.rank() - 1), rows = labels.numel();
  VEOMNI_ASSIGN_OR_RETURN(int64_t counted,
                          CountLabels(K, labels, vocab, ignoreIndex));
  if (dlogits.numel() == 0)
    return absl::OkStatus();

  const float *dl = static_cast<const float *>(dloss.data);
  // The upstream gradient of every counted row but for None.
  const float shared = reduction == LossReduction::None
                           ? 0.0f
                           : RowCotangent(dl[0], reduction, counted);
  auto run = [&](int64_t begin, int64_t end) {
    RowReader reader(logits, vocab);
    RowWriter writer(dlogits, vocab);
    for (int64_t r = begin; r < end; ++r) {
      int64_t label = IndexAt(labels, r);
      float *y = writer.Row(r);
      if (label == ignoreIndex) {
        std::fill_n(y, vocab, 0.0f);
        writer.Done();
        continue;
      }
      float g = reduction == LossReduction::None ? dl[r] : shared;
      const float *x = reader.Row(r);
      float mx = vec::Max(x, vocab);
      float sum = vec::ExpShift(x, mx, y, vocab);
      vec::Scale(y, g / sum, y, vocab);
      y[label] -= g;
      writer.Done();
    }
  };
  // About 20 flops per element, the exp included.
  ParallelFor(rows, 20.0 * static_cast<double>(rows) * vocab, run);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// LinearCrossEntropy
//===----------------------------------------------------------------------===//

namespace {

/// x = x rounded to `t` (bf16 or f16) and back: what storing in `t` keeps.
void RoundTo(DType t, float *x, int64_t n) {
  if (t == DType::F32)
    return;
  uint16_t half[512];
  for (int64_t i = 0; i < n; i += 512) {
    int64_t len = std::min<int64_t>(512, n - i);
    if (t == DType::BF16) {
      vec::F32ToBf16(x + i, half, len);
      vec::Bf16ToF32(half, x + i, len);
    } else {
      vec::F32ToF16(x + i, half, len);
      vec::F16ToF32(half, x + i, len);
    }
  }
}

} // namespace

absl::StatusOr<int64_t>
CheckLinearCrossEntropy(const TensorView &hidden, const TensorView &weight,
                        const TensorView &labels, const TensorView &dloss,
                        const TensorView &loss, const TensorView &dhidden,
                        const TensorView &dweight, const TensorView &workspace,
                        LossReduction reduction) {
  constexpr absl::string_view K = "LinearCrossEntropy";
  struct Named {
    const char *name;
    const TensorView &view;
  };
  const DType type = hidden.dtype;
  for (const Named &f : {Named{"hidden", hidden}, Named{"weight", weight},
                         Named{"dhidden", dhidden}, Named{"dweight", dweight},
                         Named{"workspace", workspace}, Named{"loss", loss},
                         Named{"dloss", dloss}}) {
    VEOMNI_RETURN_IF_ERROR(CheckView(K, f.name, f.view));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, f.name, f.view));
  }
  for (const Named &f : {Named{"weight", weight}, Named{"dhidden", dhidden},
                         Named{"dweight", dweight}})
    if (f.view.dtype != type)
      return BadView(K, f.name, f.view, "must have the type of hidden ",
                     hidden.ToString());
  for (const Named &f : {Named{"workspace", workspace}, Named{"loss", loss},
                         Named{"dloss", dloss}})
    if (f.view.dtype != DType::F32)
      return BadView(K, f.name, f.view, "must be f32");
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "labels", labels));
  if (hidden.rank() < 1)
    return BadView(K, "hidden", hidden, "needs a feature dimension");
  const int64_t features = hidden.dim(hidden.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 2));
  const int64_t vocab = weight.dim(0);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weight", weight, {vocab, features}));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(K, "labels", labels,
                 Shape(hidden.shape.begin(), hidden.shape.end() - 1)));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dhidden", dhidden, hidden.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", dweight, weight.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "loss", loss, {}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dloss", dloss, {}));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "workspace", workspace, 2));
  // 16-bit types: the workspace's last `features` rows hold dweight's f32
  // sum, rounded once at the end as the unfused matmul rounds it.
  const bool narrow = type != DType::F32;
  const int64_t chunk = workspace.dim(0) - (narrow ? features : 0);
  if (chunk < 1 || workspace.dim(1) != vocab)
    return BadView(K, "workspace", workspace, "must be [chunk >= 1",
                   narrow ? " + features" : "", ", ", vocab, "]");
  if (reduction != LossReduction::Mean && reduction != LossReduction::Sum)
    return Invalid(K, "takes a mean or a sum, not reduction ",
                   static_cast<int>(reduction));
  if (!FitsBlas(vocab) || !FitsBlas(features) || !FitsBlas(chunk))
    return BadView(K, "weight", weight, "exceeds the 32-bit BLAS interface");
  return chunk;
}

absl::Status
LinearCrossEntropy(const TensorView &hidden, const TensorView &weight,
                   const TensorView &labels, const TensorView &dloss,
                   const TensorView &loss, const TensorView &dhidden,
                   const TensorView &dweight, const TensorView &workspace,
                   int64_t ignoreIndex, LossReduction reduction) {
  constexpr absl::string_view K = "LinearCrossEntropy";
  VEOMNI_ASSIGN_OR_RETURN(const int64_t chunk,
                          CheckLinearCrossEntropy(hidden, weight, labels, dloss,
                                                  loss, dhidden, dweight,
                                                  workspace, reduction));
  const DType type = hidden.dtype;
  const bool narrow = type != DType::F32;
  const int64_t features = hidden.dim(hidden.rank() - 1);
  const int64_t vocab = weight.dim(0);
  const int64_t rows = labels.numel();
  VEOMNI_ASSIGN_OR_RETURN(int64_t counted,
                          CountLabels(K, labels, vocab, ignoreIndex));
  // Each counted row's cotangent, as CrossEntropyGrad computes it.
  const float g = RowCotangent(static_cast<const float *>(dloss.data)[0],
                               reduction, counted);
  auto *logits = static_cast<float *>(workspace.data);
  // f32: the operands and results themselves. 16-bit: hidden rows and
  // weight panels widened as they are needed, dhidden rows rounded as they
  // are done, dweight summed in the workspace's f32 rows.
  const float *w = narrow ? nullptr : static_cast<const float *>(weight.data);
  float *dw =
      narrow ? logits + chunk * vocab : static_cast<float *>(dweight.data);
  std::unique_ptr<float[]> hc, dhc, panel;
  // Weight rows widened at a time: about 4 MiB of f32.
  const int64_t panelRows = std::clamp<int64_t>(
      (int64_t{1} << 20) / std::max<int64_t>(features, 1), 1, vocab);
  if (narrow) {
    hc = Scratch(chunk * features);
    dhc = Scratch(chunk * features);
    panel = Scratch(panelRows * features);
  }
  if (rows == 0)
    std::fill_n(dw, vocab * features, 0.0f);
  std::vector<float> rowLoss(rows, 0.0f);
  for (int64_t t0 = 0; t0 < rows; t0 += chunk) {
    const int64_t n = std::min(chunk, rows - t0);
    const float *hrows =
        narrow ? hc.get()
               : static_cast<const float *>(hidden.data) + t0 * features;
    if (narrow) {
      LoadF32(hidden, t0 * features, n * features, hc.get());
      for (int64_t p0 = 0; p0 < vocab; p0 += panelRows) {
        int64_t p = std::min(panelRows, vocab - p0);
        LoadF32(weight, p0 * features, p * features, panel.get());
        BlasGemm(false, true, n, p, features, 1.0f, hrows, features,
                 panel.get(), features, 0.0f, logits + p0, vocab);
      }
      RoundTo(type, logits, n * vocab); // as the unfused matmul stores them
    } else {
      BlasGemm(false, true, n, vocab, features, 1.0f, hrows, features, w,
               features, 0.0f, logits, vocab);
    }
    // The loss of each row (as CrossEntropy), then its dlogits in place (as
    // CrossEntropyGrad, rounded as it stores them).
    ParallelFor(n, 4 * kMemoryBoundWork * static_cast<double>(n) * vocab,
                [&](int64_t r0, int64_t r1) {
                  for (int64_t r = r0; r < r1; ++r) {
                    float *x = logits + r * vocab;
                    int64_t label = IndexAt(labels, t0 + r);
                    if (label == ignoreIndex) {
                      std::fill_n(x, vocab, 0.0f);
                      continue;
                    }
                    float mx = vec::Max(x, vocab);
                    float lse = mx + std::log(vec::SumExpShift(x, mx, vocab));
                    rowLoss[t0 + r] = lse - x[label];
                    float sum = vec::ExpShift(x, mx, x, vocab);
                    vec::Scale(x, g / sum, x, vocab);
                    x[label] -= g;
                    RoundTo(type, x, vocab);
                  }
                });
    if (narrow) {
      for (int64_t p0 = 0; p0 < vocab; p0 += panelRows) {
        int64_t p = std::min(panelRows, vocab - p0);
        LoadF32(weight, p0 * features, p * features, panel.get());
        BlasGemm(false, false, n, features, p, 1.0f, logits + p0, vocab,
                 panel.get(), features, p0 == 0 ? 0.0f : 1.0f, dhc.get(),
                 features);
      }
      StoreF32(dhc.get(), dhidden, t0 * features, n * features);
    } else {
      BlasGemm(false, false, n, features, vocab, 1.0f, logits, vocab, w,
               features, 0.0f,
               static_cast<float *>(dhidden.data) + t0 * features, features);
    }
    BlasGemm(true, false, vocab, features, n, 1.0f, logits, vocab, hrows,
             features, t0 == 0 ? 0.0f : 1.0f, dw, features);
  }
  if (narrow)
    StoreF32(dw, dweight, 0, vocab * features);
  static_cast<float *>(loss.data)[0] =
      ReduceLosses(rowLoss, labels, ignoreIndex, reduction);
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
