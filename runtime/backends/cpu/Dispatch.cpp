//===- Dispatch.cpp - the kernel table, run by the CPU backend ------------===//
//
// One adapter per row of KernelTable.def: it receives the kind's typed
// attributes and calls the kernel of this folder. The registry below lists
// every row, so a row without an adapter does not build.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/CpuDevice.h"
#include "runtime/backends/cpu/Kernels.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstring>

namespace veomni::rt::cpu {
namespace impl {
namespace {

absl::Status BadAttrs(absl::string_view why) {
  return absl::InvalidArgumentError(why);
}

const TensorView *Optional(KernelIns in, size_t i) {
  return in.size() > i ? &in[i] : nullptr;
}

absl::Status UnaryOf(UnaryKind kind, KernelIns in, KernelOuts out) {
  return cpu::Unary(kind, in[0], out[0]);
}

absl::Status BinaryOf(BinaryKind kind, KernelIns in, KernelOuts out) {
  return cpu::Binary(kind, in[0], in[1], out[0]);
}

absl::StatusOr<LossReduction> ReductionOf(int64_t r) {
  if (r < 0 || r > 2)
    return BadAttrs(absl::StrCat("unknown loss reduction ", r));
  return static_cast<LossReduction>(r);
}

/// Rope's attributes as the kernel takes them (inverse frequencies in f32).
struct RopeArgs {
  std::vector<float> invFreq;
  RopeConfig attrs;
};
template <typename A> void FillRope(const A &a, RopeArgs &r) {
  r.invFreq.assign(a.inv_freq.begin(), a.inv_freq.end());
  r.attrs.theta = a.theta;
  r.attrs.attentionScaling = a.attention_scaling;
  r.attrs.mropeSection = a.mrope_section;
  r.attrs.mropeInterleaved = a.mrope_interleaved;
  r.attrs.invFreq = r.invFreq;
}

absl::Status SliceOf(const TensorView &in, const TensorView &out, size_t rank,
                     absl::Span<const int64_t> start,
                     absl::Span<const int64_t> limit,
                     absl::Span<const int64_t> step, bool grad) {
  if (start.size() != rank || limit.size() != rank || step.size() != rank)
    return BadAttrs(
        absl::StrCat("start, limit and step need ", rank, " values each"));
  return grad ? cpu::SliceGrad(in, out, start, limit, step)
              : cpu::Slice(in, out, start, limit, step);
}

/// Outputs of a gradient kernel whose last output (a bias gradient) comes
/// with an optional last input.
absl::Status CheckOptionalBias(KernelIns in, KernelOuts out, size_t withBias) {
  if ((in.size() == withBias) != (out.size() == 3))
    return BadAttrs("a bias gradient needs the bias input, and the other "
                    "way round");
  return absl::OkStatus();
}

} // namespace

absl::Status Matmul(KernelIns in, KernelOuts out, const MatmulAttrs &a) {
  return cpu::Matmul(in[0], in[1], out[0], a.transpose_lhs, a.transpose_rhs);
}
absl::Status GroupedMatmul(KernelIns in, KernelOuts out,
                           const GroupedMatmulAttrs &a) {
  return cpu::GroupedMatmul(in[0], in[1], in[2], out[0], a.transpose_weight);
}
absl::Status Conv1D(KernelIns in, KernelOuts out, const Conv1DAttrs &a) {
  return cpu::Conv1D(in[0], in[1], Optional(in, 2), out[0], a.stride,
                     a.padding);
}
#define VEOMNI_UNARY(Name)                                                     \
  absl::Status Name(KernelIns in, KernelOuts out, const Name##Attrs &) {       \
    return UnaryOf(UnaryKind::Name, in, out);                                  \
  }
VEOMNI_UNARY(Neg)
VEOMNI_UNARY(Exp)
VEOMNI_UNARY(Log)
VEOMNI_UNARY(Sqrt)
VEOMNI_UNARY(Rsqrt)
VEOMNI_UNARY(Sin)
VEOMNI_UNARY(Cos)
VEOMNI_UNARY(Tanh)
VEOMNI_UNARY(Sigmoid)
VEOMNI_UNARY(Silu)
VEOMNI_UNARY(Gelu)
VEOMNI_UNARY(GeluTanh)
VEOMNI_UNARY(IsFinite)
#undef VEOMNI_UNARY
#define VEOMNI_BINARY(Name)                                                    \
  absl::Status Name(KernelIns in, KernelOuts out, const Name##Attrs &) {       \
    return BinaryOf(BinaryKind::Name, in, out);                                \
  }
VEOMNI_BINARY(Add)
VEOMNI_BINARY(Sub)
VEOMNI_BINARY(Mul)
VEOMNI_BINARY(Div)
VEOMNI_BINARY(MulNoNan)
#undef VEOMNI_BINARY
absl::Status Cast(KernelIns in, KernelOuts out, const CastAttrs &) {
  return cpu::Cast(in[0], out[0]);
}
absl::Status ReduceSum(KernelIns in, KernelOuts out, const ReduceSumAttrs &a) {
  return cpu::Reduce(ReduceKind::Sum, in[0], out[0], a.dims);
}
absl::Status ReduceMax(KernelIns in, KernelOuts out, const ReduceMaxAttrs &a) {
  return cpu::Reduce(ReduceKind::Max, in[0], out[0], a.dims);
}
absl::Status ReduceMean(KernelIns in, KernelOuts out,
                        const ReduceMeanAttrs &a) {
  return cpu::Reduce(ReduceKind::Mean, in[0], out[0], a.dims);
}
absl::Status Softmax(KernelIns in, KernelOuts out, const SoftmaxAttrs &a) {
  return cpu::Softmax(in[0], out[0], a.dim);
}
absl::Status RmsNorm(KernelIns in, KernelOuts out, const RmsNormAttrs &a) {
  return cpu::RmsNorm(in[0], in[1], out[0], a.epsilon);
}
absl::Status LayerNorm(KernelIns in, KernelOuts out, const LayerNormAttrs &a) {
  return cpu::LayerNorm(in[0], in[1], Optional(in, 2), out[0], a.epsilon);
}
absl::Status Broadcast(KernelIns in, KernelOuts out, const BroadcastAttrs &a) {
  return cpu::Broadcast(in[0], out[0], a.dims);
}
absl::Status Transpose(KernelIns in, KernelOuts out, const TransposeAttrs &a) {
  return cpu::Transpose(in[0], out[0], a.perm);
}
absl::Status Slice(KernelIns in, KernelOuts out, const SliceAttrs &a) {
  return SliceOf(in[0], out[0], in[0].shape.size(), a.start, a.limit, a.step,
                 /*grad=*/false);
}
absl::Status Concat(KernelIns in, KernelOuts out, const ConcatAttrs &a) {
  return cpu::Concat(in, out[0], a.dim);
}
absl::Status Gather(KernelIns in, KernelOuts out, const GatherAttrs &a) {
  return cpu::Gather(in[0], in[1], out[0], a.axis, a.index_offset,
                     a.index_total);
}
absl::Status ScatterAdd(KernelIns in, KernelOuts out,
                        const ScatterAddAttrs &a) {
  return cpu::ScatterAdd(in[0], in[1], in[2], out[0], a.axis, a.index_offset,
                         a.index_total);
}
absl::Status Rope(KernelIns in, KernelOuts out, const RopeAttrs &a) {
  RopeArgs r;
  FillRope(a, r);
  return cpu::Rope(in[0], in[1], out[0], r.attrs);
}
absl::Status Attention(KernelIns in, KernelOuts out, const AttentionAttrs &a) {
  absl::StatusOr<AttentionOptionals> o = AttentionOptionalsOf(in, 3, in.size());
  if (!o.ok())
    return o.status();
  return cpu::Attention(in[0], in[1], in[2], o->segments, out[0], a.causal,
                        a.scale, a.window, o->sinks);
}
absl::Status CrossEntropy(KernelIns in, KernelOuts out,
                          const CrossEntropyAttrs &a) {
  absl::StatusOr<LossReduction> r = ReductionOf(a.reduction);
  if (!r.ok())
    return r.status();
  return cpu::CrossEntropy(in[0], in[1], out[0], a.ignore_index, *r);
}
absl::Status MoETopK(KernelIns in, KernelOuts out, const MoETopKAttrs &a) {
  return cpu::MoETopK(in[0], out[0], out[1], a.k, a.normalize);
}
absl::Status MoEDispatch(KernelIns in, KernelOuts out,
                         const MoEDispatchAttrs &a) {
  return cpu::MoEDispatch(in[0], in[1], out[0], out[1], a.num_experts);
}
absl::Status MoECombine(KernelIns in, KernelOuts out, const MoECombineAttrs &) {
  return cpu::MoECombine(in[0], in[1], in[2], out[0]);
}
absl::Status Copy(KernelIns in, KernelOuts out, const CopyAttrs &) {
  if (in[0].bytes() != out[0].bytes())
    return BadAttrs("copy between buffers of different sizes");
  std::memmove(out[0].data, in[0].data, in[0].bytes());
  return absl::OkStatus();
}
absl::Status Fill(KernelIns, KernelOuts out, const FillAttrs &a) {
  // Converted once, then stored with fill_n: fills of zeros and scalars
  // run every step and are pure memory traffic.
  const TensorView &t = out[0];
  int64_t n = t.numel();
  switch (t.dtype) {
  case DType::F32:
    std::fill_n(static_cast<float *>(t.data), n, static_cast<float>(a.value));
    break;
  case DType::BF16:
    std::fill_n(static_cast<uint16_t *>(t.data), n,
                F32ToBf16(static_cast<float>(a.value)));
    break;
  case DType::F16:
    std::fill_n(static_cast<uint16_t *>(t.data), n,
                F32ToF16(static_cast<float>(a.value)));
    break;
  case DType::I32:
    std::fill_n(static_cast<int32_t *>(t.data), n,
                static_cast<int32_t>(a.value));
    break;
  case DType::I64:
    std::fill_n(static_cast<int64_t *>(t.data), n,
                static_cast<int64_t>(a.value));
    break;
  }
  return absl::OkStatus();
}
absl::Status RopeInverse(KernelIns in, KernelOuts out,
                         const RopeInverseAttrs &a) {
  RopeArgs r;
  FillRope(a, r);
  return cpu::RopeInverse(in[0], in[1], out[0], r.attrs);
}
absl::Status RmsNormGrad(KernelIns in, KernelOuts out,
                         const RmsNormGradAttrs &a) {
  return cpu::RmsNormGrad(in[0], in[1], in[2], out[0], out[1], a.epsilon);
}
absl::Status AttentionGrad(KernelIns in, KernelOuts out,
                           const AttentionGradAttrs &a) {
  absl::StatusOr<AttentionOptionals> o =
      AttentionOptionalsOf(in, 3, in.size() - 1);
  if (!o.ok())
    return o.status();
  if ((o->sinks != nullptr) != (out.size() == 4))
    return BadAttrs("attention_grad: sinks and their cotangent go together");
  return cpu::AttentionGrad(in[0], in[1], in[2], o->segments, in.back(), out[0],
                            out[1], out[2], a.causal, a.scale, a.window,
                            o->sinks, out.size() == 4 ? &out[3] : nullptr);
}
absl::Status CrossEntropyGrad(KernelIns in, KernelOuts out,
                              const CrossEntropyGradAttrs &a) {
  absl::StatusOr<LossReduction> r = ReductionOf(a.reduction);
  if (!r.ok())
    return r.status();
  return cpu::CrossEntropyGrad(in[0], in[1], in[2], out[0], a.ignore_index, *r);
}
absl::Status Clamp(KernelIns in, KernelOuts out, const ClampAttrs &a) {
  return cpu::Clamp(in[0], out[0], a.min, a.max);
}
absl::Status ClampGrad(KernelIns in, KernelOuts out, const ClampGradAttrs &a) {
  return cpu::ClampGrad(in[0], in[1], out[0], a.min, a.max);
}
absl::Status GeluGrad(KernelIns in, KernelOuts out, const GeluGradAttrs &a) {
  return cpu::GeluGrad(in[0], in[1], out[0], a.tanh_approximation);
}
absl::Status LayerNormGrad(KernelIns in, KernelOuts out,
                           const LayerNormGradAttrs &a) {
  if (absl::Status s = CheckOptionalBias(in, out, 4); !s.ok())
    return s;
  return cpu::LayerNormGrad(in[0], in[1], in.back(), out[0], out[1],
                            out.size() == 3 ? &out[2] : nullptr, a.epsilon);
}
absl::Status SliceGrad(KernelIns in, KernelOuts out, const SliceGradAttrs &a) {
  return SliceOf(in[0], out[0], out[0].shape.size(), a.start, a.limit, a.step,
                 /*grad=*/true);
}
absl::Status Conv1DGrad(KernelIns in, KernelOuts out,
                        const Conv1DGradAttrs &a) {
  if (absl::Status s = CheckOptionalBias(in, out, 4); !s.ok())
    return s;
  return cpu::Conv1DGrad(in[0], in[1], in.back(), out[0], out[1],
                         out.size() == 3 ? &out[2] : nullptr, a.stride,
                         a.padding);
}
absl::Status GroupedMatmulWeightGrad(KernelIns in, KernelOuts out,
                                     const GroupedMatmulWeightGradAttrs &a) {
  // in[1], the weight, only gave the compiler its type.
  return cpu::GroupedMatmulWeightGrad(in[0], in[2], in[3], out[0],
                                      a.transpose_weight);
}
absl::Status MoEGroupTopK(KernelIns in, KernelOuts out,
                          const MoEGroupTopKAttrs &a) {
  return cpu::MoEGroupTopK(in[0], in[1], out[0], out[1], a.k, a.groups,
                           a.topk_groups, a.normalize, a.scale);
}
absl::Status MoEGroupTopKGrad(KernelIns in, KernelOuts out,
                              const MoEGroupTopKGradAttrs &a) {
  return cpu::MoEGroupTopKGrad(in[0], in[1], in[2], out[0], a.k, a.groups,
                               a.topk_groups, a.normalize, a.scale);
}
absl::Status MoETopKGrad(KernelIns in, KernelOuts out,
                         const MoETopKGradAttrs &a) {
  return cpu::MoETopKGrad(in[0], in[1], out[0], a.k, a.normalize);
}
absl::Status MoECombineGrad(KernelIns in, KernelOuts out,
                            const MoECombineGradAttrs &) {
  return cpu::MoECombineGrad(in[0], in[1], in[2], in[3], out[0], out[1]);
}
absl::Status ReduceMaxGrad(KernelIns in, KernelOuts out,
                           const ReduceMaxGradAttrs &a) {
  return cpu::ReduceMaxGrad(in[0], in[1], out[0], a.dims);
}

absl::Status Fused(KernelIns in, KernelOuts out, const FusedAttrs &a) {
  return cpu::Fused(
      in, out, {a.code, a.constants, a.input_modes, a.results, a.segments});
}

absl::Status LinearCrossEntropy(KernelIns in, KernelOuts out,
                                const LinearCrossEntropyAttrs &a) {
  absl::StatusOr<LossReduction> r = ReductionOf(a.reduction);
  if (!r.ok())
    return r.status();
  return cpu::LinearCrossEntropy(in[0], in[1], in[2], in[3], out[0], out[1],
                                 out[2], out[3], a.ignore_index, *r);
}

} // namespace impl

const KernelRegistry &CpuKernels() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
#define VEOMNI_KERNEL(Name, ...) r.Register<KernelKind::Name, &impl::Name>();
#define VEOMNI_COLLECTIVE(...) // the communicator's, not a backend's
#include "runtime/program/KernelTable.def"
#undef VEOMNI_COLLECTIVE
#undef VEOMNI_KERNEL
    return r;
  }();
  return registry;
}

} // namespace veomni::rt::cpu
