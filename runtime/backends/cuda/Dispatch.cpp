//===- Dispatch.cpp - the kernel table, run by the CUDA backend -----------===//
//
// One adapter per row of KernelTable.def: it checks the views as the CPU
// backend does (the same helpers and messages: a program file is
// untrusted input) and launches the kernels of this folder on the device's
// stream. The registry below lists every row, so a row without an adapter
// does not build.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Checks.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/RopeUtil.h"
#include "runtime/backends/cuda/Context.h"
#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/backends/cuda/Launch.h"
#include "runtime/backends/cuda/MatmulUtil.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <memory>
#include <vector>

namespace veomni::rt::cuda {
namespace impl {
namespace {

using cpu::LossReduction;
using namespace cpu::detail;

launch::Buf B(const TensorView &v) {
  return {v.data, static_cast<int>(v.dtype), v.numel()};
}

absl::StatusOr<launch::Dims> D(absl::string_view K, absl::string_view what,
                               absl::Span<const int64_t> values) {
  if (values.size() > static_cast<size_t>(launch::kMaxRank))
    return Invalid(K, what, " has rank ", values.size(),
                   "; the CUDA backend "
                   "takes up to ",
                   launch::kMaxRank);
  launch::Dims d;
  d.rank = static_cast<int>(values.size());
  std::copy(values.begin(), values.end(), d.d);
  return d;
}

Context &Ctx() { return *CurrentContext(); }

absl::Status Launched(absl::string_view K, cudaError_t e) {
  if (e == cudaSuccess)
    return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(K, ": launch failed: ", cudaGetErrorString(e)));
}

/// A float view's f32 image in scratch (or the view itself when f32).
struct F32View {
  F32View(const TensorView &v)
      : scratch(Ctx(), v.dtype == DType::F32 ? 0 : v.numel()) {
    data = v.dtype == DType::F32 ? v.data : scratch.get();
  }
  Scratch scratch;
  void *data;
};

absl::StatusOr<LossReduction> ReductionOf(int64_t r) {
  if (r < 0 || r > 2)
    return absl::InvalidArgumentError(
        absl::StrCat("unknown loss reduction ", r));
  return static_cast<LossReduction>(r);
}

/// The product g describes, of views of any float types: straight to
/// cuBLASLt where it takes the types, else through f32 images in scratch.
absl::Status AnyGemm(absl::string_view K, GemmArgs g, const TensorView &lhs,
                     const TensorView &rhs, const TensorView &o) {
  bool same16 = lhs.dtype == rhs.dtype && lhs.dtype != DType::F32;
  if (lhs.dtype == rhs.dtype &&
      (o.dtype == lhs.dtype || (same16 && o.dtype == DType::F32))) {
    g.lhs = lhs.data;
    g.rhs = rhs.data;
    g.out = o.data;
    g.inType = static_cast<int>(lhs.dtype);
    g.outType = static_cast<int>(o.dtype);
    return LtMatmul(Ctx(), g);
  }
  // Mixed types: an f32 product of f32 images, rounded into out.
  F32View l(lhs), r(rhs), res(o);
  for (auto [view, image] : {std::pair{&lhs, &l}, {&rhs, &r}})
    if (view->dtype != DType::F32) {
      VEOMNI_RETURN_IF_ERROR(Launched(K, image->scratch.status()));
      VEOMNI_RETURN_IF_ERROR(
          Launched(K, launch::Cast(Ctx().stream, B(*view),
                                   {image->data, launch::F32, view->numel()})));
    }
  VEOMNI_RETURN_IF_ERROR(Launched(K, res.scratch.status()));
  g.lhs = l.data;
  g.rhs = r.data;
  g.out = res.data;
  g.inType = g.outType = launch::F32;
  VEOMNI_RETURN_IF_ERROR(LtMatmul(Ctx(), g));
  if (o.dtype != DType::F32)
    VEOMNI_RETURN_IF_ERROR(
        Launched(K, launch::Cast(Ctx().stream,
                                 {res.data, launch::F32, o.numel()}, B(o))));
  return absl::OkStatus();
}

} // namespace

absl::Status Matmul(KernelIns in, KernelOuts out, const MatmulAttrs &a) {
  constexpr absl::string_view K = "Matmul";
  const TensorView &lhs = in[0], &rhs = in[1], &o = out[0];
  VEOMNI_ASSIGN_OR_RETURN(
      const cpu::MatmulShape shape,
      cpu::CheckMatmul(lhs, rhs, o, a.transpose_lhs, a.transpose_rhs));
  if (o.numel() == 0)
    return absl::OkStatus();
  GemmArgs g;
  g.transposeLhs = a.transpose_lhs;
  g.transposeRhs = a.transpose_rhs;
  g.sharedRhs = shape.sharedRhs;
  g.batch = shape.batch;
  g.m = shape.m;
  g.n = shape.n;
  g.k = shape.k;
  return AnyGemm(K, g, lhs, rhs, o);
}

namespace {
absl::Status UnaryOf(int kind, KernelIns in, KernelOuts out) {
  constexpr absl::string_view K = "Unary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], in[0].shape));
  return Launched(K, launch::Unary(Ctx().stream, kind, B(in[0]), B(out[0])));
}
absl::Status BinaryOf(int kind, KernelIns in, KernelOuts out) {
  constexpr absl::string_view K = "Binary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "lhs", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "rhs", in[1]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "rhs", in[1], in[0].shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], in[0].shape));
  return Launched(
      K, launch::Binary(Ctx().stream, kind, B(in[0]), B(in[1]), B(out[0])));
}
} // namespace

#define VEOMNI_UNARY(Name)                                                     \
  absl::Status Name(KernelIns in, KernelOuts out, const Name##Attrs &) {       \
    return UnaryOf(static_cast<int>(cpu::UnaryKind::Name), in, out);           \
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
    return BinaryOf(static_cast<int>(cpu::BinaryKind::Name), in, out);         \
  }
VEOMNI_BINARY(Add)
VEOMNI_BINARY(Sub)
VEOMNI_BINARY(Mul)
VEOMNI_BINARY(Div)
VEOMNI_BINARY(MulNoNan)
#undef VEOMNI_BINARY

absl::Status Cast(KernelIns in, KernelOuts out, const CastAttrs &) {
  constexpr absl::string_view K = "Cast";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], in[0].shape));
  if (IsFloat(in[0].dtype) && !IsFloat(out[0].dtype))
    return BadView(K, "out", out[0], "cannot receive float in ",
                   in[0].ToString());
  return Launched(K, launch::Cast(Ctx().stream, B(in[0]), B(out[0])));
}

namespace {
absl::Status ReduceOf(int kind, KernelIns in, KernelOuts out,
                      absl::Span<const int64_t> dims) {
  constexpr absl::string_view K = "Reduce";
  const TensorView &x = in[0], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", o));
  int64_t rank = x.rank();
  Shape dropped, kept;
  absl::InlinedVector<bool, 8> reduced(rank, false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= rank || (i > 0 && dims[i] <= dims[i - 1]))
      return BadView(K, "in", x, "cannot reduce over dims ", ShapeString(dims),
                     ": they must be sorted, distinct and in range");
    reduced[dims[i]] = true;
  }
  for (int64_t d = 0; d < rank; ++d) {
    kept.push_back(reduced[d] ? 1 : x.dim(d));
    if (!reduced[d])
      dropped.push_back(x.dim(d));
  }
  if (absl::Span<const int64_t>(o.shape) !=
          absl::Span<const int64_t>(dropped) &&
      absl::Span<const int64_t>(o.shape) != absl::Span<const int64_t>(kept))
    return BadView(K, "out", o, "must have shape ", ShapeString(dropped));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims shape, D(K, "in", x.shape));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims rd, D(K, "dims", dims));
  return Launched(K, launch::Reduce(Ctx().stream, kind, B(x), shape, rd, B(o)));
}
} // namespace

absl::Status ReduceSum(KernelIns in, KernelOuts out, const ReduceSumAttrs &a) {
  return ReduceOf(0, in, out, a.dims);
}
absl::Status ReduceMax(KernelIns in, KernelOuts out, const ReduceMaxAttrs &a) {
  return ReduceOf(1, in, out, a.dims);
}
absl::Status ReduceMean(KernelIns in, KernelOuts out,
                        const ReduceMeanAttrs &a) {
  return ReduceOf(2, in, out, a.dims);
}

absl::Status Softmax(KernelIns in, KernelOuts out, const SoftmaxAttrs &a) {
  constexpr absl::string_view K = "Softmax";
  const TensorView &x = in[0];
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], x.shape));
  if (a.dim < 0 || a.dim >= x.rank())
    return BadView(K, "in", x, "has no dimension ", a.dim);
  return Launched(K, launch::Softmax(Ctx().stream, B(x), B(out[0]),
                                     Product(x.shape, 0, a.dim), x.dim(a.dim),
                                     Product(x.shape, a.dim + 1, x.rank())));
}

absl::Status RmsNorm(KernelIns in, KernelOuts out, const RmsNormAttrs &a) {
  constexpr absl::string_view K = "RmsNorm";
  const TensorView &x = in[0], &w = in[1];
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", w));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  if (x.rank() < 1)
    return BadView(K, "in", x, "needs a last dimension");
  int64_t n = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weight", w, {n}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], x.shape));
  return Launched(K, launch::RmsNorm(Ctx().stream, B(x), B(w), B(out[0]),
                                     n ? x.numel() / n : 0, n, a.epsilon));
}

absl::Status Broadcast(KernelIns in, KernelOuts out, const BroadcastAttrs &a) {
  constexpr absl::string_view K = "Broadcast";
  const TensorView &x = in[0], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", o));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", o, "in", x));
  if (static_cast<int64_t>(a.dims.size()) != x.rank())
    return BadView(K, "in", x, "needs one result dim per dimension, got ",
                   ShapeString(a.dims));
  for (int64_t i = 0; i < x.rank(); ++i) {
    int64_t r = a.dims[i];
    if (r < 0 || r >= o.rank() || (i > 0 && r <= a.dims[i - 1]) ||
        (x.dim(i) != 1 && x.dim(i) != o.dim(r)))
      return BadView(K, "in", x, "does not broadcast to ", o.ToString(),
                     " along dims ", ShapeString(a.dims));
  }
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims xs, D(K, "in", x.shape));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims os, D(K, "out", o.shape));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims ds, D(K, "dims", a.dims));
  return Launched(K, launch::Broadcast(Ctx().stream, B(x), xs, B(o), os, ds));
}

absl::Status Transpose(KernelIns in, KernelOuts out, const TransposeAttrs &a) {
  constexpr absl::string_view K = "Transpose";
  const TensorView &x = in[0], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", o));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", o, "in", x));
  if (static_cast<int64_t>(a.perm.size()) != x.rank())
    return BadView(K, "in", x, "needs a permutation of its dims, got ",
                   ShapeString(a.perm));
  Shape expected;
  absl::InlinedVector<bool, 8> seen(x.rank(), false);
  for (int64_t p : a.perm) {
    if (p < 0 || p >= x.rank() || seen[p])
      return BadView(K, "in", x, "needs a permutation of its dims, got ",
                     ShapeString(a.perm));
    seen[p] = true;
    expected.push_back(x.dim(p));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", o, expected));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims xs, D(K, "in", x.shape));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims perm, D(K, "perm", a.perm));
  return Launched(K, launch::Transpose(Ctx().stream, B(x), xs, B(o), perm));
}

namespace {
/// CheckGathered of the CPU backend, less the index check (done on the
/// device: launch::kIndexOutOfRange).
absl::Status CheckGather(absl::string_view K, const TensorView &table,
                         absl::string_view tableName, const TensorView &indices,
                         const TensorView &sliced, absl::string_view slicedName,
                         int64_t axis, bool sameType) {
  VEOMNI_RETURN_IF_ERROR(CheckView(K, tableName, table));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, slicedName, sliced));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "indices", indices));
  if (sameType) {
    VEOMNI_RETURN_IF_ERROR(
        CheckSameType(K, slicedName, sliced, tableName, table));
  } else {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, tableName, table));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, slicedName, sliced));
  }
  if (axis < 0 || axis >= table.rank())
    return BadView(K, tableName, table, "has no axis ", axis);
  Shape expected(table.shape.begin(), table.shape.begin() + axis);
  expected.insert(expected.end(), indices.shape.begin(), indices.shape.end());
  expected.insert(expected.end(), table.shape.begin() + axis + 1,
                  table.shape.end());
  return CheckShape(K, slicedName, sliced, expected);
}
} // namespace

absl::Status Gather(KernelIns in, KernelOuts out, const GatherAttrs &a) {
  constexpr absl::string_view K = "Gather";
  const TensorView &src = in[0], &idx = in[1], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(
      CheckGather(K, src, "source", idx, o, "out", a.axis, true));
  int64_t rows = src.dim(a.axis);
  return Launched(K, launch::Gather(Ctx().stream, B(src), B(idx), B(o),
                                    Product(src.shape, 0, a.axis), rows,
                                    Product(src.shape, a.axis + 1, src.rank()),
                                    a.index_offset,
                                    a.index_total > 0 ? a.index_total : rows));
}

absl::Status ScatterAdd(KernelIns in, KernelOuts out,
                        const ScatterAddAttrs &a) {
  constexpr absl::string_view K = "ScatterAdd";
  const TensorView &dest = in[0], &idx = in[1], &upd = in[2], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(
      CheckGather(K, dest, "dest", idx, upd, "updates", a.axis, false));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", o));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", o, dest.shape));
  if (o.data == dest.data && o.dtype != dest.dtype)
    return BadView(K, "out", o, "aliases dest ", dest.ToString(),
                   " with another element type");
  int64_t rows = dest.dim(a.axis);
  return Launched(
      K, launch::ScatterAdd(Ctx().stream, B(dest), B(idx), B(upd), B(o),
                            Product(dest.shape, 0, a.axis), rows,
                            Product(dest.shape, a.axis + 1, dest.rank()),
                            a.index_offset,
                            a.index_total > 0 ? a.index_total : rows));
}

namespace {
template <typename A>
absl::Status RopeOf(absl::string_view K, absl::string_view inName,
                    absl::string_view outName, KernelIns in, KernelOuts out,
                    const A &a, bool inverse) {
  const TensorView &x = in[0], &pos = in[1], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, inName, x, 4));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, inName, x));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(K, "positions", pos));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, outName, o));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, outName, o, x.shape));
  std::vector<float> invFreq(a.inv_freq.begin(), a.inv_freq.end());
  cpu::RopeConfig config;
  config.theta = a.theta;
  config.attentionScaling = a.attention_scaling;
  config.mropeSection = a.mrope_section;
  config.mropeInterleaved = a.mrope_interleaved;
  config.invFreq = invFreq;
  std::vector<int64_t> section;
  VEOMNI_RETURN_IF_ERROR(RopeSections(K, inName, x, pos, config, section));
  int64_t half = x.dim(3) / 2;
  if (half > launch::kMaxRopeHalf)
    return BadView(K, inName, x, "head dimension exceeds the CUDA backend's ",
                   2 * launch::kMaxRopeHalf);
  std::vector<float> freq = RopeFrequencies(config, x.dim(3));
  launch::RopeTable table;
  table.half = static_cast<int>(half);
  table.scaling = static_cast<float>(config.attentionScaling);
  for (int64_t j = 0; j < half; ++j) {
    table.freq[j] = freq[j];
    table.section[j] = static_cast<int16_t>(section[j]);
  }
  return Launched(K,
                  launch::Rope(Ctx().stream, B(x), B(pos), B(o),
                               x.dim(0) * x.dim(1), x.dim(2), table, inverse));
}
} // namespace

absl::Status Rope(KernelIns in, KernelOuts out, const RopeAttrs &a) {
  return RopeOf("Rope", "in", "out", in, out, a, false);
}
absl::Status RopeInverse(KernelIns in, KernelOuts out,
                         const RopeInverseAttrs &a) {
  return RopeOf("RopeInverse", "dy", "dx", in, out, a, true);
}

namespace {
absl::StatusOr<launch::AttentionShape>
AttentionChecks(absl::string_view K, const TensorView &q, const TensorView &k,
                const TensorView &v, const AttentionOptionals &o, bool causal,
                double scale, int64_t window) {
  VEOMNI_ASSIGN_OR_RETURN(
      const cpu::AttentionDims d,
      cpu::CheckAttention(K, q, k, v, o.segments, causal, window, o.sinks));
  if (d.d > launch::kMaxHeadDim || d.dv > launch::kMaxHeadDim)
    return BadView(K, "q", q, "head dimension exceeds the CUDA backend's ",
                   launch::kMaxHeadDim);
  return launch::AttentionShape{d.batch,
                                d.s,
                                d.skv,
                                d.hq,
                                d.hkv,
                                d.d,
                                d.dv,
                                causal,
                                static_cast<float>(scale),
                                window,
                                o.segments && o.segments->rank() == 3};
}
} // namespace

absl::Status Attention(KernelIns in, KernelOuts out, const AttentionAttrs &a) {
  constexpr absl::string_view K = "Attention";
  VEOMNI_ASSIGN_OR_RETURN(AttentionOptionals o,
                          AttentionOptionalsOf(in, 3, in.size()));
  VEOMNI_ASSIGN_OR_RETURN(
      launch::AttentionShape s,
      AttentionChecks(K, in[0], in[1], in[2], o, a.causal, a.scale, a.window));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(K, "out", out[0], {s.batch, s.s, s.hq, s.dv}));
  return Launched(
      K, launch::Attention(Ctx().stream, s, B(in[0]), B(in[1]), B(in[2]),
                           o.segments ? B(*o.segments) : launch::Buf{},
                           o.sinks ? B(*o.sinks) : launch::Buf{}, B(out[0])));
}

absl::Status AttentionGrad(KernelIns in, KernelOuts out,
                           const AttentionGradAttrs &a) {
  constexpr absl::string_view K = "AttentionGrad";
  VEOMNI_ASSIGN_OR_RETURN(AttentionOptionals o,
                          AttentionOptionalsOf(in, 3, in.size() - 1));
  const TensorView &dout = in.back();
  VEOMNI_ASSIGN_OR_RETURN(
      launch::AttentionShape s,
      AttentionChecks(K, in[0], in[1], in[2], o, a.causal, a.scale, a.window));
  if ((o.sinks != nullptr) != (out.size() == 4))
    return BadView(K, "q", in[0], "needs sinks and their cotangent together");
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(K, "dout", dout, {s.batch, s.s, s.hq, s.dv}));
  const char *names[] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; ++i) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, names[i], out[i]));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, names[i], out[i], in[i].shape));
  }
  if (o.sinks) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dsinks", out[3]));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dsinks", out[3], o.sinks->shape));
  }
  Scratch dk(Ctx(), out[1].numel()), dv(Ctx(), out[2].numel()),
      dsinks(Ctx(), o.sinks ? out[3].numel() : 0);
  VEOMNI_RETURN_IF_ERROR(Launched(K, dk.status()));
  VEOMNI_RETURN_IF_ERROR(Launched(K, dv.status()));
  VEOMNI_RETURN_IF_ERROR(Launched(K, dsinks.status()));
  return Launched(
      K, launch::AttentionGrad(Ctx().stream, s, B(in[0]), B(in[1]), B(in[2]),
                               o.segments ? B(*o.segments) : launch::Buf{},
                               o.sinks ? B(*o.sinks) : launch::Buf{}, B(dout),
                               B(out[0]), B(out[1]), B(out[2]),
                               o.sinks ? B(out[3]) : launch::Buf{}, dk.get(),
                               dv.get(), dsinks.get()));
}

namespace {} // namespace

absl::Status CrossEntropy(KernelIns in, KernelOuts out,
                          const CrossEntropyAttrs &a) {
  constexpr absl::string_view K = "CrossEntropy";
  VEOMNI_ASSIGN_OR_RETURN(LossReduction r, ReductionOf(a.reduction));
  const TensorView &logits = in[0], &labels = in[1];
  VEOMNI_RETURN_IF_ERROR(
      cpu::CheckLossOperands(K, logits, labels, "out", out[0], r));
  int64_t rows = labels.numel();
  Scratch scratch(Ctx(), rows + 2);
  VEOMNI_RETURN_IF_ERROR(Launched(K, scratch.status()));
  return Launched(K, launch::CrossEntropy(
                         Ctx().stream, B(logits), B(labels), B(out[0]), rows,
                         logits.dim(logits.rank() - 1), a.ignore_index,
                         static_cast<int>(r), scratch.get()));
}

absl::Status CrossEntropyGrad(KernelIns in, KernelOuts out,
                              const CrossEntropyGradAttrs &a) {
  constexpr absl::string_view K = "CrossEntropyGrad";
  VEOMNI_ASSIGN_OR_RETURN(LossReduction r, ReductionOf(a.reduction));
  const TensorView &logits = in[0], &labels = in[1], &dloss = in[2];
  VEOMNI_RETURN_IF_ERROR(
      cpu::CheckLossOperands(K, logits, labels, "dloss", dloss, r));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dlogits", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dlogits", out[0], logits.shape));
  int64_t rows = labels.numel();
  Scratch scratch(Ctx(), 2);
  VEOMNI_RETURN_IF_ERROR(Launched(K, scratch.status()));
  return Launched(K, launch::CrossEntropyGrad(
                         Ctx().stream, B(logits), B(labels), B(dloss),
                         B(out[0]), rows, logits.dim(logits.rank() - 1),
                         a.ignore_index, static_cast<int>(r), scratch.get()));
}

absl::Status Copy(KernelIns in, KernelOuts out, const CopyAttrs &) {
  if (in[0].bytes() != out[0].bytes())
    return absl::InvalidArgumentError(
        "copy between buffers of different sizes");
  if (in[0].bytes() == 0 || in[0].data == out[0].data)
    return absl::OkStatus();
  // memmove's contract, as on the CPU: overlapping ranges go through
  // scratch (cudaMemcpy does not promise them).
  const void *src = in[0].data;
  void *dst = out[0].data;
  size_t bytes = in[0].bytes();
  const uint8_t *s8 = static_cast<const uint8_t *>(src);
  const uint8_t *d8 = static_cast<const uint8_t *>(dst);
  Scratch tmp(Ctx(), d8 < s8 + bytes && s8 < d8 + bytes
                         ? static_cast<int64_t>((bytes + 3) / 4)
                         : 0);
  VEOMNI_RETURN_IF_ERROR(Launched("Copy", tmp.status()));
  if (tmp.get()) {
    VEOMNI_RETURN_IF_ERROR(Launched(
        "Copy", cudaMemcpyAsync(tmp.get(), src, bytes, cudaMemcpyDeviceToDevice,
                                Ctx().stream)));
    src = tmp.get();
  }
  return Launched(
      "Copy",
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, Ctx().stream));
}

absl::Status Fill(KernelIns, KernelOuts out, const FillAttrs &a) {
  return Launched("Fill", launch::Fill(Ctx().stream, B(out[0]), a.value));
}

absl::Status RmsNormGrad(KernelIns in, KernelOuts out,
                         const RmsNormGradAttrs &a) {
  constexpr absl::string_view K = "RmsNormGrad";
  const TensorView &x = in[0], &w = in[1], &dy = in[2];
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", w));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", out[1]));
  if (x.rank() < 1)
    return BadView(K, "x", x, "needs a last dimension");
  int64_t n = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weight", w, {n}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", out[0], x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", out[1], {n}));
  return Launched(K, launch::RmsNormGrad(Ctx().stream, B(x), B(w), B(dy),
                                         B(out[0]), B(out[1]),
                                         n ? x.numel() / n : 0, n, a.epsilon));
}

absl::Status Clamp(KernelIns in, KernelOuts out, const ClampAttrs &a) {
  constexpr absl::string_view K = "Clamp";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out[0], in[0].shape));
  return Launched(K, launch::Clamp(Ctx().stream, B(in[0]), launch::Buf{},
                                   B(out[0]), static_cast<float>(a.min),
                                   static_cast<float>(a.max)));
}

absl::Status ClampGrad(KernelIns in, KernelOuts out, const ClampGradAttrs &a) {
  constexpr absl::string_view K = "ClampGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", in[1]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", in[1], in[0].shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", out[0], in[0].shape));
  return Launched(K, launch::Clamp(Ctx().stream, B(in[0]), B(in[1]), B(out[0]),
                                   static_cast<float>(a.min),
                                   static_cast<float>(a.max)));
}

absl::Status GeluGrad(KernelIns in, KernelOuts out, const GeluGradAttrs &a) {
  constexpr absl::string_view K = "GeluGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", in[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", in[1]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", in[1], in[0].shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", out[0], in[0].shape));
  return Launched(K, launch::GeluGrad(Ctx().stream, B(in[0]), B(in[1]),
                                      B(out[0]), a.tanh_approximation));
}

absl::Status Fused(KernelIns in, KernelOuts out, const FusedAttrs &a) {
  constexpr absl::string_view K = "Fused";
  cpu::FusedProgram program{a.code, a.constants, a.input_modes, a.results,
                            a.segments};
  if (program.segments < 1 ||
      program.segments > static_cast<int64_t>(out.size()))
    return Invalid(K, "needs between 1 and ", out.size(),
                   " segments (one output each at least), got ",
                   program.segments);
  std::vector<cpu::FusedSegment> segments(program.segments);
  VEOMNI_RETURN_IF_ERROR(cpu::CheckFused(in, out, program, segments.data()));
  const int64_t ins = static_cast<int64_t>(in.size()) / program.segments;
  const int64_t outs = static_cast<int64_t>(out.size()) / program.segments;
  if (program.code.size() > static_cast<size_t>(launch::kFusedMaxCode) ||
      program.constants.size() >
          static_cast<size_t>(launch::kFusedMaxConstants) ||
      ins > launch::kFusedMaxIns || outs > launch::kFusedMaxOuts)
    return Invalid(K, "a program of ", program.code.size() / 4,
                   " instructions, ", program.constants.size(), " constants, ",
                   ins, " inputs and ", outs,
                   " outputs a segment exceeds the CUDA kernel's ",
                   launch::kFusedMaxCode / 4, ", ", launch::kFusedMaxConstants,
                   ", ", launch::kFusedMaxIns, " and ", launch::kFusedMaxOuts);
  auto call = std::make_unique<launch::FusedCall>();
  call->numCode = static_cast<int>(program.code.size());
  call->numIns = static_cast<int>(ins);
  call->numOuts = static_cast<int>(outs);
  for (size_t i = 0; i < program.code.size(); ++i)
    call->code[i] = static_cast<int16_t>(program.code[i]);
  for (size_t i = 0; i < program.constants.size(); ++i)
    call->constants[i] = static_cast<float>(program.constants[i]);
  for (int64_t j = 0; j < ins; ++j)
    call->modes[j] = static_cast<int8_t>(program.inputModes[j]);
  for (int64_t o = 0; o < outs; ++o) {
    call->resultRegister[o] = static_cast<int8_t>(program.results[2 * o]);
    call->resultReduce[o] = static_cast<int8_t>(program.results[2 * o + 1]);
  }
  Scratch partials(Ctx(), 2 * 2 * launch::kFusedPartials * outs);
  VEOMNI_RETURN_IF_ERROR(Launched(K, partials.status()));
  for (int64_t s = 0; s < program.segments; ++s) {
    for (int64_t j = 0; j < ins; ++j)
      call->ins[j] = B(in[s * ins + j]);
    for (int64_t o = 0; o < outs; ++o)
      call->outs[o] = B(out[s * outs + o]);
    call->n = segments[s].n;
    call->rows = segments[s].rows;
    VEOMNI_RETURN_IF_ERROR(
        Launched(K, launch::Fused(Ctx().stream, *call,
                                  reinterpret_cast<double *>(partials.get()))));
  }
  return absl::OkStatus();
}

absl::Status LinearCrossEntropy(KernelIns in, KernelOuts out,
                                const LinearCrossEntropyAttrs &a) {
  constexpr absl::string_view K = "LinearCrossEntropy";
  VEOMNI_ASSIGN_OR_RETURN(LossReduction r, ReductionOf(a.reduction));
  const TensorView &hidden = in[0], &weight = in[1], &labels = in[2],
                   &dloss = in[3];
  const TensorView &loss = out[0], &dhidden = out[1], &dweight = out[2],
                   &workspace = out[3];
  VEOMNI_ASSIGN_OR_RETURN(const int64_t chunk,
                          cpu::CheckLinearCrossEntropy(hidden, weight, labels,
                                                       dloss, loss, dhidden,
                                                       dweight, workspace, r));
  const Context &c = Ctx();
  const int type = static_cast<int>(hidden.dtype);
  const bool narrow = hidden.dtype != DType::F32;
  const int64_t features = hidden.dim(hidden.rank() - 1);
  const int64_t vocab = weight.dim(0), rows = labels.numel();
  const size_t elem = SizeOf(hidden.dtype), labelElem = SizeOf(labels.dtype);
  auto *logits = static_cast<float *>(workspace.data);
  // 16-bit: dweight summed in f32 in the workspace's last rows, rounded
  // once at the end; dlogits rounded as the unfused kernel stores them and
  // multiplied in that type.
  float *dwAcc = narrow ? logits + chunk * vocab : nullptr;
  Scratch losses(c, rows), count(c, 2),
      d16(c, narrow ? (chunk * vocab + 1) / 2 : 0);
  for (const Scratch *s : {&losses, &count, &d16})
    VEOMNI_RETURN_IF_ERROR(Launched(K, s->status()));
  auto *counted = reinterpret_cast<double *>(count.get());
  VEOMNI_RETURN_IF_ERROR(
      Launched(K, launch::CountLabels(c.stream, B(labels), rows, a.ignore_index,
                                      counted)));
  if (rows == 0)
    VEOMNI_RETURN_IF_ERROR(
        Launched(K, launch::Fill(c.stream, B(dweight), 0.0)));
  for (int64_t t0 = 0; t0 < rows; t0 += chunk) {
    const int64_t n = std::min(chunk, rows - t0);
    const auto *h =
        static_cast<const uint8_t *>(hidden.data) + t0 * features * elem;
    launch::Buf labelsChunk{static_cast<uint8_t *>(labels.data) +
                                t0 * labelElem,
                            static_cast<int>(labels.dtype), n};
    // logits = h W^T, in f32.
    GemmArgs g;
    g.lhs = h;
    g.rhs = weight.data;
    g.out = logits;
    g.inType = type;
    g.outType = launch::F32;
    g.m = n;
    g.n = vocab;
    g.k = features;
    g.transposeRhs = true;
    VEOMNI_RETURN_IF_ERROR(LtMatmul(c, g));
    VEOMNI_RETURN_IF_ERROR(
        Launched(K, launch::RoundInPlace(c.stream, logits, n * vocab, type)));
    VEOMNI_RETURN_IF_ERROR(Launched(
        K, launch::LossRows(c.stream, logits, labelsChunk, losses.get() + t0, n,
                            vocab, a.ignore_index)));
    VEOMNI_RETURN_IF_ERROR(
        Launched(K, launch::LossGradRows(c.stream, logits, labelsChunk,
                                         B(dloss), counted, n, vocab,
                                         a.ignore_index, static_cast<int>(r))));
    const void *dl = logits;
    if (narrow) {
      VEOMNI_RETURN_IF_ERROR(
          Launched(K, launch::Cast(c.stream, {logits, launch::F32, n * vocab},
                                   {d16.get(), type, n * vocab})));
      dl = d16.get();
    }
    // dhidden rows = dlogits W.
    GemmArgs dh;
    dh.lhs = dl;
    dh.rhs = weight.data;
    dh.out = static_cast<uint8_t *>(dhidden.data) + t0 * features * elem;
    dh.inType = dh.outType = type;
    dh.m = n;
    dh.n = features;
    dh.k = vocab;
    VEOMNI_RETURN_IF_ERROR(LtMatmul(c, dh));
    // dweight (+)= dlogits^T h.
    GemmArgs dw;
    dw.lhs = dl;
    dw.rhs = h;
    dw.out = narrow ? static_cast<void *>(dwAcc) : dweight.data;
    dw.inType = type;
    dw.outType = launch::F32;
    dw.m = vocab;
    dw.n = features;
    dw.k = n;
    dw.transposeLhs = true;
    dw.accumulate = t0 > 0;
    VEOMNI_RETURN_IF_ERROR(LtMatmul(c, dw));
  }
  if (narrow && rows > 0)
    VEOMNI_RETURN_IF_ERROR(Launched(
        K, launch::Cast(c.stream, {dwAcc, launch::F32, vocab * features},
                        B(dweight))));
  return Launched(K, launch::SumLosses(c.stream, losses.get(), B(labels),
                                       B(loss), rows, a.ignore_index,
                                       r == LossReduction::Mean));
}

namespace {

/// Rows [begin, begin + rows) of a row-major view of `cols` columns.
TensorView Rows(const TensorView &v, int64_t begin, int64_t rows,
                int64_t cols) {
  return TensorView{static_cast<uint8_t *>(v.data) +
                        begin * cols * SizeOf(v.dtype),
                    v.dtype,
                    {rows, cols}};
}

/// A device integer vector read to the host (the stream waits for it).
absl::StatusOr<std::vector<int64_t>> ReadInts(const TensorView &v) {
  std::vector<int64_t> out(v.numel());
  std::vector<uint8_t> raw(v.bytes());
  if (!raw.empty()) {
    cudaError_t e = cudaMemcpyAsync(raw.data(), v.data, raw.size(),
                                    cudaMemcpyDeviceToHost, Ctx().stream);
    if (e == cudaSuccess)
      e = cudaStreamSynchronize(Ctx().stream);
    if (e != cudaSuccess)
      return absl::InternalError(
          absl::StrCat("reading ", v.ToString(), ": ", cudaGetErrorString(e)));
  }
  TensorView host{raw.data(), v.dtype, v.shape};
  for (int64_t i = 0; i < v.numel(); ++i)
    out[i] = IndexAt(host, i);
  return out;
}

/// groupSizes' entries, read from the device and checked as the CPU
/// backend checks them.
absl::StatusOr<std::vector<int64_t>> GroupSizes(absl::string_view K,
                                                const TensorView &groupSizes,
                                                const TensorView &input) {
  VEOMNI_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, ReadInts(groupSizes));
  VEOMNI_RETURN_IF_ERROR(cpu::CheckGroupSizes(K, groupSizes, sizes, input));
  return sizes;
}

/// The rows MoECombine and its VJP read: the expert order of `indices`
/// over max id + 1 experts (any ids >= 0 define it).
absl::Status CombineRows(absl::string_view K, const TensorView &indices,
                         Scratch &rows) {
  Scratch maxId(Ctx(), 2);
  VEOMNI_RETURN_IF_ERROR(Launched(K, maxId.status()));
  auto *m = reinterpret_cast<int64_t *>(maxId.get());
  VEOMNI_RETURN_IF_ERROR(
      Launched(K, launch::MaxIndex(Ctx().stream, B(indices), m)));
  int64_t top = -1;
  VEOMNI_RETURN_IF_ERROR(
      Launched(K, cudaMemcpyAsync(&top, m, sizeof(top), cudaMemcpyDeviceToHost,
                                  Ctx().stream)));
  VEOMNI_RETURN_IF_ERROR(Launched(K, cudaStreamSynchronize(Ctx().stream)));
  const int64_t experts = std::max<int64_t>(top + 1, 1);
  // Counting, as the CPU backend, while the ids are small; a rank by
  // comparison (the same stable order) past that.
  if (experts > std::max<int64_t>(indices.numel(), 1024))
    return Launched(K,
                    launch::RankRows(Ctx().stream, B(indices),
                                     reinterpret_cast<int64_t *>(rows.get())));
  Scratch counts(Ctx(), 2 * (launch::kMoEChunks + 1) * experts);
  VEOMNI_RETURN_IF_ERROR(Launched(K, counts.status()));
  return Launched(K, launch::ExpertRows(
                         Ctx().stream, B(indices), experts,
                         reinterpret_cast<int64_t *>(rows.get()), launch::Buf{},
                         reinterpret_cast<int64_t *>(counts.get())));
}

} // namespace

absl::Status GroupedMatmul(KernelIns in, KernelOuts out,
                           const GroupedMatmulAttrs &a) {
  constexpr absl::string_view K = "GroupedMatmul";
  const TensorView &input = in[0], &weight = in[1], &groupSizes = in[2],
                   &o = out[0];
  const bool tw = a.transpose_weight;
  VEOMNI_ASSIGN_OR_RETURN(
      const cpu::GroupedShape shape,
      cpu::CheckGroupedMatmul(input, weight, groupSizes, o, tw));
  const int64_t k = shape.k, m = shape.m, experts = shape.experts;
  VEOMNI_ASSIGN_OR_RETURN(std::vector<int64_t> sizes,
                          GroupSizes(K, groupSizes, input));
  // One GEMM per expert with rows (reference speed: a device-side grouped
  // GEMM is to come).
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    if (sizes[e] == 0)
      continue;
    GemmArgs g;
    g.m = sizes[e];
    g.n = m;
    g.k = k;
    g.transposeRhs = tw;
    TensorView we = Rows(weight, e * (tw ? m : k), tw ? m : k, tw ? k : m);
    VEOMNI_RETURN_IF_ERROR(AnyGemm(K, g, Rows(input, row, sizes[e], k), we,
                                   Rows(o, row, sizes[e], m)));
    row += sizes[e];
  }
  return absl::OkStatus();
}

absl::Status GroupedMatmulWeightGrad(KernelIns in, KernelOuts out,
                                     const GroupedMatmulWeightGradAttrs &a) {
  constexpr absl::string_view K = "GroupedMatmulWeightGrad";
  // in[1], the weight, only gave the compiler its type.
  const TensorView &input = in[0], &groupSizes = in[2], &dout = in[3],
                   &dweight = out[0];
  const bool tw = a.transpose_weight;
  VEOMNI_ASSIGN_OR_RETURN(
      const cpu::GroupedShape shape,
      cpu::CheckGroupedMatmulWeightGrad(input, groupSizes, dout, dweight, tw));
  const int64_t k = shape.k, m = shape.m, experts = shape.experts;
  VEOMNI_ASSIGN_OR_RETURN(std::vector<int64_t> sizes,
                          GroupSizes(K, groupSizes, input));
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    // dweight[e] = input_e^T dout_e [K, M], or dout_e^T input_e [M, K];
    // an expert without rows gets zeros (an empty sum).
    GemmArgs g;
    g.transposeLhs = true;
    g.m = tw ? m : k;
    g.n = tw ? k : m;
    g.k = sizes[e];
    TensorView x = Rows(input, row, sizes[e], k),
               d = Rows(dout, row, sizes[e], m);
    // Expert e's [g.m, g.n] matrix: rows e * g.m on of dweight seen as 2-D.
    TensorView dw = Rows(dweight, e * g.m, g.m, g.n);
    VEOMNI_RETURN_IF_ERROR(tw ? AnyGemm(K, g, d, x, dw)
                              : AnyGemm(K, g, x, d, dw));
    row += sizes[e];
  }
  return absl::OkStatus();
}

namespace {
/// Router top-k's shared memory per token (launch::kTopKSharedBytes).
absl::Status CheckTopKFits(absl::string_view K, const TensorView &logits,
                           int64_t k) {
  int64_t experts = logits.dim(1);
  if (4 * experts + 4 * k + 4 * ((experts + 31) / 32) >
      launch::kTopKSharedBytes)
    return BadView(
        K, "logits", logits, "has too many experts for the CUDA backend's top ",
        k, " (", launch::kTopKSharedBytes, " bytes of shared memory a token)");
  return absl::OkStatus();
}
} // namespace

absl::Status MoETopK(KernelIns in, KernelOuts out, const MoETopKAttrs &a) {
  constexpr absl::string_view K = "MoETopK";
  const TensorView &logits = in[0], &w = out[0], &idx = out[1];
  VEOMNI_RETURN_IF_ERROR(cpu::CheckMoETopK(logits, w, idx, a.k));
  VEOMNI_RETURN_IF_ERROR(CheckTopKFits(K, logits, a.k));
  int64_t tokens = logits.dim(0);
  return Launched(K, launch::MoETopK(Ctx().stream, B(logits), B(w), B(idx),
                                     tokens, logits.dim(1), a.k, a.normalize));
}

absl::Status MoEGroupTopK(KernelIns in, KernelOuts out,
                          const MoEGroupTopKAttrs &a) {
  constexpr absl::string_view K = "MoEGroupTopK";
  VEOMNI_RETURN_IF_ERROR(cpu::CheckMoEGroupTopK(K, in[0], in[1], &out[0],
                                                &out[1], nullptr, nullptr, a.k,
                                                a.groups, a.topk_groups));
  VEOMNI_RETURN_IF_ERROR(CheckTopKFits(K, in[0], a.k + a.groups));
  return Launched(K, launch::MoEGroupTopK(
                         Ctx().stream, B(in[0]), B(in[1]), B(out[0]), B(out[1]),
                         launch::Buf{}, launch::Buf{}, in[0].dim(0),
                         in[0].dim(1), a.k, a.groups, a.topk_groups,
                         a.normalize, static_cast<float>(a.scale)));
}

absl::Status MoEGroupTopKGrad(KernelIns in, KernelOuts out,
                              const MoEGroupTopKGradAttrs &a) {
  constexpr absl::string_view K = "MoEGroupTopKGrad";
  VEOMNI_RETURN_IF_ERROR(cpu::CheckMoEGroupTopK(K, in[0], in[1], nullptr,
                                                nullptr, &in[2], &out[0], a.k,
                                                a.groups, a.topk_groups));
  VEOMNI_RETURN_IF_ERROR(CheckTopKFits(K, in[0], a.k + a.groups));
  return Launched(
      K, launch::MoEGroupTopK(Ctx().stream, B(in[0]), B(in[1]), launch::Buf{},
                              launch::Buf{}, B(in[2]), B(out[0]), in[0].dim(0),
                              in[0].dim(1), a.k, a.groups, a.topk_groups,
                              a.normalize, static_cast<float>(a.scale)));
}

absl::Status MoETopKGrad(KernelIns in, KernelOuts out,
                         const MoETopKGradAttrs &a) {
  constexpr absl::string_view K = "MoETopKGrad";
  const TensorView &logits = in[0], &dw = in[1], &dl = out[0];
  VEOMNI_RETURN_IF_ERROR(cpu::CheckMoETopKGrad(logits, dw, dl, a.k));
  VEOMNI_RETURN_IF_ERROR(CheckTopKFits(K, logits, a.k));
  int64_t tokens = logits.dim(0);
  return Launched(K,
                  launch::MoETopKGrad(Ctx().stream, B(logits), B(dw), B(dl),
                                      tokens, logits.dim(1), a.k, a.normalize));
}

absl::Status MoEDispatch(KernelIns in, KernelOuts out,
                         const MoEDispatchAttrs &a) {
  constexpr absl::string_view K = "MoEDispatch";
  const TensorView &input = in[0], &idx = in[1], &o = out[0],
                   &groupSizes = out[1];
  VEOMNI_RETURN_IF_ERROR(
      cpu::CheckMoEDispatch(input, idx, o, groupSizes, a.num_experts));
  int64_t tokens = input.dim(0), hidden = input.dim(1), k = idx.dim(1);
  Scratch rows(Ctx(), 2 * tokens * k),
      counts(Ctx(), 2 * (launch::kMoEChunks + 1) * a.num_experts);
  VEOMNI_RETURN_IF_ERROR(Launched(K, rows.status()));
  VEOMNI_RETURN_IF_ERROR(Launched(K, counts.status()));
  auto *r = reinterpret_cast<int64_t *>(rows.get());
  VEOMNI_RETURN_IF_ERROR(Launched(
      K,
      launch::ExpertRows(Ctx().stream, B(idx), a.num_experts, r, B(groupSizes),
                         reinterpret_cast<int64_t *>(counts.get()))));
  return Launched(
      K, launch::MoEDispatch(Ctx().stream, B(input), r, B(o), k, hidden));
}

absl::Status MoECombine(KernelIns in, KernelOuts out, const MoECombineAttrs &) {
  constexpr absl::string_view K = "MoECombine";
  const TensorView &input = in[0], &w = in[1], &idx = in[2], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(cpu::CheckMoECombine(input, w, idx, o));
  int64_t tokens = w.dim(0), k = w.dim(1), hidden = input.dim(1);
  Scratch rows(Ctx(), 2 * tokens * k);
  VEOMNI_RETURN_IF_ERROR(Launched(K, rows.status()));
  VEOMNI_RETURN_IF_ERROR(CombineRows(K, idx, rows));
  return Launched(K, launch::MoECombine(Ctx().stream, B(input), B(w),
                                        reinterpret_cast<int64_t *>(rows.get()),
                                        B(o), k, hidden));
}

absl::Status MoECombineGrad(KernelIns in, KernelOuts out,
                            const MoECombineGradAttrs &) {
  constexpr absl::string_view K = "MoECombineGrad";
  const TensorView &input = in[0], &w = in[1], &idx = in[2], &dout = in[3];
  const TensorView &dinput = out[0], &dw = out[1];
  VEOMNI_RETURN_IF_ERROR(
      cpu::CheckMoECombineGrad(input, w, idx, dout, dinput, dw));
  int64_t tokens = w.dim(0), k = w.dim(1), hidden = input.dim(1);
  if (tokens * k == 0)
    return absl::OkStatus();
  Scratch rows(Ctx(), 2 * tokens * k);
  VEOMNI_RETURN_IF_ERROR(Launched(K, rows.status()));
  VEOMNI_RETURN_IF_ERROR(CombineRows(K, idx, rows));
  return Launched(
      K, launch::MoECombineGrad(Ctx().stream, B(input), B(w),
                                reinterpret_cast<int64_t *>(rows.get()),
                                B(dout), B(dinput), B(dw), k, hidden));
}

namespace {

/// Row-major strides of `shape`, as launch::Dims.
launch::Dims StridesOf(absl::Span<const int64_t> shape) {
  launch::Dims d;
  d.rank = static_cast<int>(shape.size());
  int64_t s = 1;
  for (int i = d.rank - 1; i >= 0; --i) {
    d.d[i] = s;
    s *= shape[i];
  }
  return d;
}

absl::Status CheckNorm(absl::string_view K, const TensorView &in,
                       const TensorView &weight, const TensorView *bias,
                       const TensorView &out) {
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  if (in.rank() < 1)
    return BadView(K, "in", in, "must have rank >= 1");
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, in.shape));
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weight", weight, {d}));
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "bias", *bias, {d}));
  }
  return absl::OkStatus();
}

/// start, limit and step against the sliced (larger) view; the slice's
/// shape.
absl::StatusOr<Shape> SliceShape(absl::string_view K, absl::string_view name,
                                 const TensorView &whole,
                                 absl::Span<const int64_t> start,
                                 absl::Span<const int64_t> limit,
                                 absl::Span<const int64_t> step) {
  const int64_t rank = whole.rank();
  if (static_cast<int64_t>(start.size()) != rank ||
      static_cast<int64_t>(limit.size()) != rank ||
      static_cast<int64_t>(step.size()) != rank)
    return BadView(K, name, whole, "needs start, limit and step of rank ",
                   rank);
  if (rank > launch::kMaxRank)
    return BadView(K, name, whole,
                   "has more dimensions than the CUDA "
                   "backend's ",
                   launch::kMaxRank);
  Shape shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (step[d] < 1 || start[d] < 0 || start[d] > limit[d] ||
        limit[d] > whole.dim(d))
      return BadView(K, name, whole, "dimension ", d, " cannot take [",
                     start[d], ", ", limit[d], ") step ", step[d]);
    shape.push_back((limit[d] - start[d] + step[d] - 1) / step[d]);
  }
  return shape;
}

struct ConvDims {
  int64_t batch, cin, len, cout, kw, lout;
};
absl::StatusOr<ConvDims> CheckConv(absl::string_view K, const TensorView &input,
                                   const TensorView &weight,
                                   const TensorView *bias, int64_t stride,
                                   int64_t padding) {
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "input", input, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  ConvDims c{input.dim(0),  input.dim(1),  input.dim(2),
             weight.dim(0), weight.dim(2), 0};
  if (weight.dim(1) != c.cin)
    return BadView(K, "weight", weight, "input channels differ from input ",
                   input.ToString());
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "bias", *bias, {c.cout}));
  }
  if (stride < 1 || padding < 0 || padding > (int64_t{1} << 40))
    return Invalid(K, "stride ", stride, " must be >= 1 and padding ", padding,
                   " >= 0");
  int64_t span = c.len + 2 * padding - c.kw;
  if (span < 0)
    return BadView(K, "weight", weight,
                   "kernel is longer than the padded input ", input.ToString());
  if (c.cin == 0 || c.kw == 0)
    return BadView(K, "weight", weight,
                   "is empty: the CUDA backend takes "
                   "at least one input channel and tap");
  c.lout = span / stride + 1;
  return c;
}

} // namespace

absl::Status LayerNorm(KernelIns in, KernelOuts out, const LayerNormAttrs &a) {
  constexpr absl::string_view K = "LayerNorm";
  const TensorView *bias = in.size() > 2 ? &in[2] : nullptr;
  VEOMNI_RETURN_IF_ERROR(CheckNorm(K, in[0], in[1], bias, out[0]));
  int64_t d = in[0].dim(in[0].rank() - 1);
  return Launched(K,
                  launch::LayerNorm(Ctx().stream, B(in[0]), B(in[1]),
                                    bias ? B(*bias) : launch::Buf{}, B(out[0]),
                                    d ? in[0].numel() / d : 0, d, a.epsilon));
}

absl::Status LayerNormGrad(KernelIns in, KernelOuts out,
                           const LayerNormGradAttrs &a) {
  constexpr absl::string_view K = "LayerNormGrad";
  if ((in.size() == 4) != (out.size() == 3))
    return Invalid(K, "a bias gradient needs the bias input, and the other "
                      "way round");
  const TensorView &x = in[0], &w = in[1], &dy = in.back();
  VEOMNI_RETURN_IF_ERROR(CheckNorm(K, x, w, nullptr, out[0]));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, x.shape));
  int64_t d = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", out[1]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", out[1], {d}));
  const TensorView *dbias = out.size() == 3 ? &out[2] : nullptr;
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dbias", *dbias, {d}));
  }
  if (!(a.epsilon >= 0))
    return Invalid(K, "epsilon must be >= 0, got ", a.epsilon);
  int64_t rows = d ? x.numel() / d : 0;
  Scratch stats(Ctx(), 2 * rows);
  VEOMNI_RETURN_IF_ERROR(Launched(K, stats.status()));
  return Launched(K, launch::LayerNormGrad(Ctx().stream, B(x), B(w), B(dy),
                                           B(out[0]), B(out[1]),
                                           dbias ? B(*dbias) : launch::Buf{},
                                           rows, d, a.epsilon, stats.get()));
}

absl::Status Slice(KernelIns in, KernelOuts out, const SliceAttrs &a) {
  constexpr absl::string_view K = "Slice";
  const TensorView &x = in[0], &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", o));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", o, "in", x));
  VEOMNI_ASSIGN_OR_RETURN(Shape shape,
                          SliceShape(K, "in", x, a.start, a.limit, a.step));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", o, shape));
  launch::Dims inStride = StridesOf(x.shape), srcStride = inStride;
  int64_t base = 0;
  for (int d = 0; d < inStride.rank; ++d) {
    base += a.start[d] * inStride.d[d];
    srcStride.d[d] = inStride.d[d] * a.step[d];
  }
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims dims, D(K, "out", shape));
  return Launched(K, launch::StridedCopy(Ctx().stream, B(x), base, srcStride,
                                         B(o), 0, StridesOf(shape), dims));
}

absl::Status SliceGrad(KernelIns in, KernelOuts out, const SliceGradAttrs &a) {
  constexpr absl::string_view K = "SliceGrad";
  const TensorView &dy = in[0], &dx = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "dx", dx, "dy", dy));
  VEOMNI_ASSIGN_OR_RETURN(Shape shape,
                          SliceShape(K, "dx", dx, a.start, a.limit, a.step));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, shape));
  VEOMNI_RETURN_IF_ERROR(Launched(K, launch::Fill(Ctx().stream, B(dx), 0.0)));
  launch::Dims dxStride = StridesOf(dx.shape), dstStride = dxStride;
  int64_t base = 0;
  for (int d = 0; d < dxStride.rank; ++d) {
    base += a.start[d] * dxStride.d[d];
    dstStride.d[d] = dxStride.d[d] * a.step[d];
  }
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims dims, D(K, "dy", shape));
  return Launched(K,
                  launch::StridedCopy(Ctx().stream, B(dy), 0, StridesOf(shape),
                                      B(dx), base, dstStride, dims));
}

absl::Status Concat(KernelIns in, KernelOuts out, const ConcatAttrs &a) {
  constexpr absl::string_view K = "Concat";
  const TensorView &o = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", o));
  if (in.empty())
    return Invalid(K, "needs at least one input");
  if (a.dim < 0 || a.dim >= o.rank())
    return BadView(K, "out", o, "has no dimension ", a.dim);
  if (o.rank() > launch::kMaxRank)
    return BadView(K, "out", o, "has more dimensions than the CUDA backend's ",
                   launch::kMaxRank);
  int64_t total = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const TensorView &t = in[i];
    std::string name = absl::StrCat("inputs[", i, "]");
    VEOMNI_RETURN_IF_ERROR(CheckView(K, name, t));
    VEOMNI_RETURN_IF_ERROR(CheckSameType(K, name, t, "out", o));
    if (t.rank() != o.rank())
      return BadView(K, name, t, "must have the rank of out ", o.ToString());
    for (int64_t d = 0; d < t.rank(); ++d)
      if (d != a.dim && t.dim(d) != o.dim(d))
        return BadView(K, name, t, "dimension ", d, " differs from out ",
                       o.ToString());
    total += t.dim(a.dim);
  }
  if (total != o.dim(a.dim))
    return BadView(K, "out", o, "dimension ", a.dim, " must be ", total,
                   ", the inputs' sum");
  launch::Dims outStride = StridesOf(o.shape);
  int64_t at = 0;
  for (const TensorView &t : in) {
    VEOMNI_ASSIGN_OR_RETURN(launch::Dims dims, D(K, "input", t.shape));
    VEOMNI_RETURN_IF_ERROR(Launched(
        K, launch::StridedCopy(Ctx().stream, B(t), 0, StridesOf(t.shape), B(o),
                               at * outStride.d[a.dim], outStride, dims)));
    at += t.dim(a.dim);
  }
  return absl::OkStatus();
}

absl::Status ReduceMaxGrad(KernelIns in, KernelOuts out,
                           const ReduceMaxGradAttrs &a) {
  constexpr absl::string_view K = "ReduceMaxGrad";
  const TensorView &x = in[0], &dy = in[1], &dx = out[0];
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, x.shape));
  const int64_t rank = x.rank();
  absl::InlinedVector<bool, 8> reduced(rank, false);
  for (size_t i = 0; i < a.dims.size(); ++i) {
    if (a.dims[i] < 0 || a.dims[i] >= rank)
      return BadView(K, "in", x, "has no dimension ", a.dims[i]);
    if (i > 0 && a.dims[i - 1] >= a.dims[i])
      return BadView(K, "in", x, "dims must be strictly increasing, got ",
                     ShapeString(a.dims));
    reduced[a.dims[i]] = true;
  }
  bool keepDims = dy.rank() == rank;
  Shape expected;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d])
      expected.push_back(x.dim(d));
    else if (keepDims)
      expected.push_back(1);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, expected));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims shape, D(K, "in", x.shape));
  VEOMNI_ASSIGN_OR_RETURN(launch::Dims dims, D(K, "dims", a.dims));
  return Launched(
      K, launch::ReduceMaxGrad(Ctx().stream, B(x), shape, dims, B(dy), B(dx)));
}

absl::Status Conv1D(KernelIns in, KernelOuts out, const Conv1DAttrs &a) {
  constexpr absl::string_view K = "Conv1D";
  const TensorView *bias = in.size() > 2 ? &in[2] : nullptr;
  VEOMNI_ASSIGN_OR_RETURN(
      ConvDims c, CheckConv(K, in[0], in[1], bias, a.stride, a.padding));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out[0]));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(K, "out", out[0], {c.batch, c.cout, c.lout}));
  return Launched(K, launch::Conv1D(Ctx().stream, B(in[0]), B(in[1]),
                                    bias ? B(*bias) : launch::Buf{}, B(out[0]),
                                    c.batch, c.cin, c.len, c.cout, c.kw, c.lout,
                                    a.stride, a.padding));
}

absl::Status Conv1DGrad(KernelIns in, KernelOuts out,
                        const Conv1DGradAttrs &a) {
  constexpr absl::string_view K = "Conv1DGrad";
  if ((in.size() == 4) != (out.size() == 3))
    return Invalid(K, "a bias gradient needs the bias input, and the other "
                      "way round");
  const TensorView &x = in[0], &w = in[1], &dout = in.back();
  VEOMNI_ASSIGN_OR_RETURN(ConvDims c,
                          CheckConv(K, x, w, nullptr, a.stride, a.padding));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(K, "dout", dout, {c.batch, c.cout, c.lout}));
  const char *names[] = {"dinput", "dweight", "dbias"};
  for (size_t i = 0; i < out.size(); ++i)
    VEOMNI_RETURN_IF_ERROR(CheckFloat(K, names[i], out[i]));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dinput", out[0], x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", out[1], w.shape));
  if (out.size() == 3)
    VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dbias", out[2], {c.cout}));
  return Launched(K,
                  launch::Conv1DGrad(
                      Ctx().stream, B(x), B(w), B(dout), B(out[0]), B(out[1]),
                      out.size() == 3 ? B(out[2]) : launch::Buf{}, c.batch,
                      c.cin, c.len, c.cout, c.kw, c.lout, a.stride, a.padding));
}

} // namespace impl

const KernelRegistry &CudaKernels() {
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

} // namespace veomni::rt::cuda
