//===- Executor.cpp - run a program on the CPU backend --------------------===//

#include "runtime/executor/Executor.h"

#include "runtime/backends/cpu/Kernels.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace veomni::rt {

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(Program program) {
  uint64_t bytes = program.arenaBytes;
  // aligned_alloc wants a multiple of the alignment; the plan's buffers
  // all end inside arenaBytes, so the rounding is never read.
  uint64_t rounded = (std::max<uint64_t>(bytes, 64) + 63) / 64 * 64;
  auto *arena = static_cast<uint8_t *>(std::aligned_alloc(64, rounded));
  if (!arena)
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate an arena of ", bytes, " bytes"));
  std::memset(arena, 0, rounded);
  for (const ConstantDesc &c : program.constants)
    std::memcpy(arena + program.buffers[c.buffer].offset, c.data.data(),
                c.data.size());
  return std::unique_ptr<Executor>(
      new Executor(std::move(program), arena, bytes));
}

Executor::~Executor() { std::free(arena_); }

TensorView Executor::View(uint32_t buffer) const {
  const BufferDesc &b = program_.buffers[buffer];
  return TensorView{arena_ + b.offset, b.dtype, b.shape};
}

absl::StatusOr<TensorView> Executor::Argument(absl::string_view name) const {
  const ArgumentDesc *a = program_.FindArgument(name);
  if (!a)
    return absl::NotFoundError(
        absl::StrCat("the program has no argument '", name, "'"));
  return View(a->buffer);
}

absl::Status Executor::Run() {
  for (size_t i = 0; i < program_.kernels.size(); ++i) {
    const KernelDesc &k = program_.kernels[i];
    absl::Status s = RunKernel(k);
    if (!s.ok())
      return absl::Status(s.code(),
                          absl::StrCat("kernel ", i, " (", KernelName(k.kind),
                                       ")", k.location.empty() ? "" : " in ",
                                       k.location, ": ", s.message()));
  }
  return absl::OkStatus();
}

namespace {
absl::Status BadAttrs(absl::string_view why) {
  return absl::InvalidArgumentError(why);
}
} // namespace

absl::Status Executor::RunKernel(const KernelDesc &k) {
  std::vector<TensorView> in, out;
  for (uint32_t b : k.ins)
    in.push_back(View(b));
  for (uint32_t b : k.outs)
    out.push_back(View(b));
  absl::Span<const int64_t> ints = k.ints;
  using K = KernelKind;
  switch (k.kind) {
  case K::Matmul:
    return cpu::Matmul(in[0], in[1], out[0], ints[0], ints[1]);
  case K::GroupedMatmul:
    return cpu::GroupedMatmul(in[0], in[1], in[2], out[0], ints[0]);
  case K::Conv1D:
    if (ints[2] != (in.size() == 3))
      return BadAttrs("has_bias disagrees with the inputs");
    return cpu::Conv1D(in[0], in[1], in.size() == 3 ? &in[2] : nullptr, out[0],
                       ints[0], ints[1]);
  case K::Neg:
  case K::Exp:
  case K::Log:
  case K::Sqrt:
  case K::Rsqrt:
  case K::Sin:
  case K::Cos:
  case K::Tanh:
  case K::Sigmoid:
  case K::Silu:
  case K::Gelu:
  case K::GeluTanh: {
    static constexpr cpu::UnaryKind kinds[] = {
        cpu::UnaryKind::Neg,  cpu::UnaryKind::Exp,   cpu::UnaryKind::Log,
        cpu::UnaryKind::Sqrt, cpu::UnaryKind::Rsqrt, cpu::UnaryKind::Sin,
        cpu::UnaryKind::Cos,  cpu::UnaryKind::Tanh,  cpu::UnaryKind::Sigmoid,
        cpu::UnaryKind::Silu, cpu::UnaryKind::Gelu,  cpu::UnaryKind::GeluTanh};
    auto i = static_cast<size_t>(k.kind) - static_cast<size_t>(K::Neg);
    return cpu::Unary(kinds[i], in[0], out[0]);
  }
  case K::Add:
    return cpu::Binary(cpu::BinaryKind::Add, in[0], in[1], out[0]);
  case K::Sub:
    return cpu::Binary(cpu::BinaryKind::Sub, in[0], in[1], out[0]);
  case K::Mul:
    return cpu::Binary(cpu::BinaryKind::Mul, in[0], in[1], out[0]);
  case K::Div:
    return cpu::Binary(cpu::BinaryKind::Div, in[0], in[1], out[0]);
  case K::Cast:
    return cpu::Cast(in[0], out[0]);
  case K::ReduceSum:
    return cpu::Reduce(cpu::ReduceKind::Sum, in[0], out[0], ints);
  case K::ReduceMax:
    return cpu::Reduce(cpu::ReduceKind::Max, in[0], out[0], ints);
  case K::ReduceMean:
    return cpu::Reduce(cpu::ReduceKind::Mean, in[0], out[0], ints);
  case K::Softmax:
    return cpu::Softmax(in[0], out[0], ints[0]);
  case K::RmsNorm:
    return cpu::RmsNorm(in[0], in[1], out[0], k.floats[0]);
  case K::LayerNorm:
    if (ints[0] != (in.size() == 3))
      return BadAttrs("has_bias disagrees with the inputs");
    return cpu::LayerNorm(in[0], in[1], in.size() == 3 ? &in[2] : nullptr,
                          out[0], k.floats[0]);
  case K::Broadcast:
    return cpu::Broadcast(in[0], out[0], ints);
  case K::Transpose:
    return cpu::Transpose(in[0], out[0], ints);
  case K::Slice: {
    size_t rank = in[0].shape.size();
    if (ints.size() != 3 * rank)
      return BadAttrs(absl::StrCat("slice needs 3 x ", rank, " integers"));
    return cpu::Slice(in[0], out[0], ints.subspan(0, rank),
                      ints.subspan(rank, rank), ints.subspan(2 * rank, rank));
  }
  case K::Concat:
    return cpu::Concat(in, out[0], ints[0]);
  case K::Gather:
    return cpu::Gather(in[0], in[1], out[0], ints[0]);
  case K::ScatterAdd:
    return cpu::ScatterAdd(in[0], in[1], in[2], out[0], ints[0]);
  case K::Rope:
  case K::RopeInverse: {
    std::vector<float> invFreq(k.floats.begin() + 2, k.floats.end());
    cpu::RopeAttrs attrs;
    attrs.theta = k.floats[0];
    attrs.attentionScaling = k.floats[1];
    attrs.mropeSection = ints;
    attrs.invFreq = invFreq;
    if (k.kind == K::RopeInverse)
      return cpu::RopeInverse(in[0], in[1], out[0], attrs);
    return cpu::Rope(in[0], in[1], out[0], attrs);
  }
  case K::Attention:
    if (ints[1] != (in.size() == 4))
      return BadAttrs("has_segments disagrees with the inputs");
    return cpu::Attention(in[0], in[1], in[2],
                          in.size() == 4 ? &in[3] : nullptr, out[0], ints[0],
                          k.floats[0]);
  case K::CrossEntropy: {
    if (ints[1] < 0 || ints[1] > 2)
      return BadAttrs(absl::StrCat("unknown loss reduction ", ints[1]));
    auto reduction = static_cast<cpu::LossReduction>(ints[1]);
    return cpu::CrossEntropy(in[0], in[1], out[0], ints[0], reduction);
  }
  case K::MoETopK:
    return cpu::MoETopK(in[0], out[0], out[1], ints[0], ints[1]);
  case K::MoEDispatch:
    return cpu::MoEDispatch(in[0], in[1], out[0], out[1], ints[0]);
  case K::MoECombine:
    return cpu::MoECombine(in[0], in[1], in[2], out[0]);
  case K::Fill: {
    // Converted once, then stored with fill_n: fills of zeros and scalars
    // run every step and are pure memory traffic.
    TensorView t = out[0];
    int64_t n = t.numel();
    double v = k.floats[0];
    switch (t.dtype) {
    case DType::F32:
      std::fill_n(static_cast<float *>(t.data), n, static_cast<float>(v));
      break;
    case DType::BF16:
      std::fill_n(static_cast<uint16_t *>(t.data), n,
                  F32ToBf16(static_cast<float>(v)));
      break;
    case DType::F16:
      std::fill_n(static_cast<uint16_t *>(t.data), n,
                  F32ToF16(static_cast<float>(v)));
      break;
    case DType::I32:
      std::fill_n(static_cast<int32_t *>(t.data), n, static_cast<int32_t>(v));
      break;
    case DType::I64:
      std::fill_n(static_cast<int64_t *>(t.data), n, static_cast<int64_t>(v));
      break;
    }
    return absl::OkStatus();
  }
  case K::RmsNormGrad:
    return cpu::RmsNormGrad(in[0], in[1], in[2], out[0], out[1], k.floats[0]);
  case K::AttentionGrad: {
    if (ints[1] != (in.size() == 5))
      return BadAttrs("has_segments disagrees with the inputs");
    const TensorView *segments = in.size() == 5 ? &in[3] : nullptr;
    return cpu::AttentionGrad(in[0], in[1], in[2], segments, in.back(), out[0],
                              out[1], out[2], ints[0], k.floats[0]);
  }
  case K::CrossEntropyGrad: {
    if (ints[1] < 0 || ints[1] > 2)
      return BadAttrs(absl::StrCat("unknown loss reduction ", ints[1]));
    return cpu::CrossEntropyGrad(in[0], in[1], in[2], out[0], ints[0],
                                 static_cast<cpu::LossReduction>(ints[1]));
  }
  case K::GeluGrad:
    return cpu::GeluGrad(in[0], in[1], out[0], ints[0] != 0);
  case K::LayerNormGrad: {
    bool bias = in.size() == 4;
    if (ints[0] != bias || out.size() != (bias ? 3u : 2u))
      return BadAttrs("has_bias disagrees with the inputs or outputs");
    return cpu::LayerNormGrad(in[0], in[1], in.back(), out[0], out[1],
                              bias ? &out[2] : nullptr, k.floats[0]);
  }
  case K::SliceGrad: {
    size_t rank = out[0].shape.size();
    if (ints.size() != 3 * rank)
      return BadAttrs(absl::StrCat("slice_grad needs 3 x ", rank, " integers"));
    return cpu::SliceGrad(in[0], out[0], ints.subspan(0, rank),
                          ints.subspan(rank, rank),
                          ints.subspan(2 * rank, rank));
  }
  case K::Conv1DGrad: {
    bool bias = in.size() == 4;
    if (ints[2] != bias || out.size() != (bias ? 3u : 2u))
      return BadAttrs("has_bias disagrees with the inputs or outputs");
    return cpu::Conv1DGrad(in[0], in[1], in.back(), out[0], out[1],
                           bias ? &out[2] : nullptr, ints[0], ints[1]);
  }
  case K::GroupedMatmulWeightGrad: // in[1], the weight, only gave the type
    return cpu::GroupedMatmulWeightGrad(in[0], in[2], in[3], out[0], ints[0]);
  case K::MoETopKGrad:
    return cpu::MoETopKGrad(in[0], in[1], out[0], ints[0], ints[1] != 0);
  case K::MoECombineGrad:
    return cpu::MoECombineGrad(in[0], in[1], in[2], in[3], out[0], out[1]);
  case K::ReduceMaxGrad:
    return cpu::ReduceMaxGrad(in[0], in[1], out[0], ints);
  case K::Copy:
    if (in[0].bytes() != out[0].bytes())
      return BadAttrs("copy between buffers of different sizes");
    std::memmove(out[0].data, in[0].data, in[0].bytes());
    return absl::OkStatus();
  }
  return BadAttrs("unknown kernel kind");
}

} // namespace veomni::rt
