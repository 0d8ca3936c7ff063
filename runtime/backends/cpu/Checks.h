//===- Checks.h - view checks every backend shares --------------*- C++ -*-===//
//
// What makes a kernel call valid, apart from the values in its data: the
// CPU kernels run these first, and the CUDA backend's adapters call the
// same functions, so both refuse the same programs with the same messages
// ("<Kernel>: <view> <type>[shape] <why>"). Checks that read data (index
// and label ranges, group sizes) stay with each backend, which sees its
// data where it lives; CheckGroupSizes takes the sizes once read.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_CHECKS_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_CHECKS_H

#include "runtime/backends/cpu/Kernels.h"

#include "absl/status/statusor.h"

#include "absl/types/span.h"
#include <vector>

namespace veomni::rt::cpu {

/// out[batch, m, n] = op(lhs) op(rhs); sharedRhs: a rank-2 rhs for every
/// batch.
struct MatmulShape {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool sharedRhs = false;
};
absl::StatusOr<MatmulShape> CheckMatmul(const TensorView &lhs,
                                        const TensorView &rhs,
                                        const TensorView &out,
                                        bool transposeLhs, bool transposeRhs);

/// rows [rows, k] grouped over `experts` times [k, m] per expert.
struct GroupedShape {
  int64_t rows = 0, k = 0, m = 0, experts = 0;
};
absl::StatusOr<GroupedShape> CheckGroupedMatmul(const TensorView &input,
                                                const TensorView &weight,
                                                const TensorView &groupSizes,
                                                const TensorView &out,
                                                bool transposeWeight);
absl::StatusOr<GroupedShape> CheckGroupedMatmulWeightGrad(
    const TensorView &input, const TensorView &groupSizes,
    const TensorView &dout, const TensorView &dweight, bool transposeWeight);
/// The group sizes' values (read from `groupSizes`): each >= 0, summing to
/// the rows of `input`.
absl::Status CheckGroupSizes(absl::string_view kernel,
                             const TensorView &groupSizes,
                             absl::Span<const int64_t> sizes,
                             const TensorView &input);

/// CrossEntropy and its VJP: logits [..., V], integer labels [...], and the
/// f32 loss (or its cotangent) `lossName`: [] for a mean or a sum, labels'
/// shape for per-row losses.
absl::Status CheckLossOperands(absl::string_view kernel,
                               const TensorView &logits,
                               const TensorView &labels,
                               absl::string_view lossName,
                               const TensorView &loss, LossReduction reduction);

/// q [batch, s, hq, d], k [batch, skv, hkv, d], v [batch, skv, hkv, dv],
/// segments [batch, s], [2, batch, s] with bidirectional blocks (causal
/// only), or null; hkv dividing hq; causality and
/// segments need s == skv; window >= 0, > 0 only when causal; sinks
/// (or null) a float [hq].
struct AttentionDims {
  int64_t batch = 0, s = 0, skv = 0, hq = 0, hkv = 0, d = 0, dv = 0;
};
absl::StatusOr<AttentionDims>
CheckAttention(absl::string_view kernel, const TensorView &q,
               const TensorView &k, const TensorView &v,
               const TensorView *segments, bool causal, int64_t window = 0,
               const TensorView *sinks = nullptr);

/// The MoE kernels (their index values are the backends' to check).
absl::Status CheckMoETopK(const TensorView &logits, const TensorView &weights,
                          const TensorView &indices, int64_t k);
/// moe_group_topk and its VJP (dweights/dscores null for the forward;
/// weights/indices null for the VJP).
absl::Status CheckMoEGroupTopK(absl::string_view kernel,
                               const TensorView &scores, const TensorView &bias,
                               const TensorView *weights,
                               const TensorView *indices,
                               const TensorView *dweights,
                               const TensorView *dscores, int64_t k,
                               int64_t groups, int64_t topkGroups);
/// The experts token `t` chooses (their order: best first), from its
/// scores `s` [E] and `bias` [E]: moe_group_topk's rule.
void MoEGroupChoice(const float *s, const float *bias, int64_t experts,
                    int64_t k, int64_t groups, int64_t topkGroups,
                    std::vector<int64_t> &chosen);
absl::Status CheckMoETopKGrad(const TensorView &logits,
                              const TensorView &dweights,
                              const TensorView &dlogits, int64_t k);
absl::Status CheckMoEDispatch(const TensorView &input,
                              const TensorView &indices, const TensorView &out,
                              const TensorView &groupSizes, int64_t numExperts);
absl::Status CheckMoECombine(const TensorView &input, const TensorView &weights,
                             const TensorView &indices, const TensorView &out);
absl::Status
CheckMoECombineGrad(const TensorView &input, const TensorView &weights,
                    const TensorView &indices, const TensorView &dout,
                    const TensorView &dinput, const TensorView &dweights);

} // namespace veomni::rt::cpu

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_CHECKS_H
