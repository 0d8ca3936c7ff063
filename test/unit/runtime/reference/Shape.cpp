//===- Shape.cpp - reference reductions and data movement -----------------===//
//
// Element by element through unravelled indices, for the tests.
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
// Reductions and normalisation
//===----------------------------------------------------------------------===//

absl::Status Reduce(ReduceKind kind, const TensorView &in,
                    const TensorView &out, absl::Span<const int64_t> dims) {
  const char *kName = "Reduce";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  std::vector<bool> reduced(in.rank(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= in.rank())
      return BadView(kName, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return BadView(kName, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    reduced[dims[i]] = true;
  }
  // The rank of out tells whether the reduced dimensions are kept (size 1).
  bool keepDims = out.rank() == in.rank();
  Shape expected;
  for (int64_t d = 0; d < in.rank(); ++d) {
    if (!reduced[d])
      expected.push_back(in.dim(d));
    else if (keepDims)
      expected.push_back(1);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, expected));

  int64_t count = 1;
  for (int64_t d : dims)
    count *= in.dim(d);
  double init =
      kind == ReduceKind::Max ? -std::numeric_limits<double>::infinity() : 0.0;
  std::vector<double> acc(out.numel(), init);
  std::vector<int64_t> outStrides = Strides(expected);
  for (int64_t i = 0; i < in.numel(); ++i) {
    std::vector<int64_t> coords = Unravel(i, in.shape);
    int64_t o = 0, od = 0;
    for (int64_t d = 0; d < in.rank(); ++d) {
      if (!reduced[d])
        o += coords[d] * outStrides[od++];
      else if (keepDims)
        ++od; // coordinate 0 of a kept size-1 dimension
    }
    double v = LoadF(in, i);
    if (kind == ReduceKind::Max) {
      if (std::isnan(v) || v > acc[o])
        acc[o] = v; // NaN, once in, stays
    } else {
      acc[o] += v;
    }
  }
  for (int64_t o = 0; o < out.numel(); ++o) {
    double v = acc[o];
    if (kind == ReduceKind::Mean)
      v /= static_cast<double>(count);
    StoreF(out, o, static_cast<float>(v));
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// ReduceMaxGrad
//===----------------------------------------------------------------------===//

absl::Status ReduceMaxGrad(const TensorView &in, const TensorView &dy,
                           const TensorView &dx,
                           absl::Span<const int64_t> dims) {
  const char *kName = "ReduceMaxGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, in.shape));
  std::vector<bool> reduced(in.rank(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= in.rank())
      return BadView(kName, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return BadView(kName, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    reduced[dims[i]] = true;
  }
  bool keepDims = dy.rank() == in.rank();
  Shape expected;
  for (int64_t d = 0; d < in.rank(); ++d) {
    if (!reduced[d])
      expected.push_back(in.dim(d));
    else if (keepDims)
      expected.push_back(1);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, expected));

  // For each dy element, scan the input elements it reduces in row-major
  // order: the first NaN, else the first of the largest, takes dy.
  std::vector<int64_t> outStrides = Strides(expected);
  std::vector<int64_t> winner(dy.numel(), -1);
  for (int64_t i = 0; i < in.numel(); ++i) {
    std::vector<int64_t> coords = Unravel(i, in.shape);
    int64_t o = 0, od = 0;
    for (int64_t d = 0; d < in.rank(); ++d) {
      if (!reduced[d])
        o += coords[d] * outStrides[od++];
      else if (keepDims)
        ++od;
    }
    double v = LoadF(in, i);
    int64_t &w = winner[o];
    if (w < 0) {
      w = i;
      continue;
    }
    double best = LoadF(in, w);
    if (!std::isnan(best) && (std::isnan(v) || v > best))
      w = i;
  }
  for (int64_t i = 0; i < dx.numel(); ++i)
    StoreF(dx, i, 0.0f);
  for (int64_t o = 0; o < dy.numel(); ++o)
    if (winner[o] >= 0)
      StoreF(dx, winner[o], LoadF(dy, o));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Shape manipulation: elements move bit for bit, of any type.
//===----------------------------------------------------------------------===//

absl::Status Broadcast(const TensorView &in, const TensorView &out,
                       absl::Span<const int64_t> dims) {
  const char *kName = "Broadcast";
  VEOMNI_RETURN_IF_ERROR(CheckPerDimension(kName, in, out, dims, "dims"));
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= out.rank())
      return BadView(kName, "out", out, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return BadView(kName, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    if (in.dim(i) != 1 && in.dim(i) != out.dim(dims[i]))
      return BadView(kName, "in", in, "dimension ", i, " cannot broadcast to ",
                     "dimension ", dims[i], " of out ", out.ToString());
  }

  std::vector<int64_t> inStrides = Strides(in.shape);
  for (int64_t o = 0; o < out.numel(); ++o) {
    std::vector<int64_t> coords = Unravel(o, out.shape);
    int64_t i = 0;
    for (int64_t d = 0; d < in.rank(); ++d)
      if (in.dim(d) != 1)
        i += coords[dims[d]] * inStrides[d];
    CopyElement(out, o, in, i);
  }
  return absl::OkStatus();
}

absl::Status Transpose(const TensorView &in, const TensorView &out,
                       absl::Span<const int64_t> perm) {
  const char *kName = "Transpose";
  VEOMNI_RETURN_IF_ERROR(CheckPerDimension(kName, in, out, perm, "perm"));
  std::vector<bool> seen(in.rank(), false);
  Shape expected;
  for (int64_t p : perm) {
    if (p < 0 || p >= in.rank() || seen[p])
      return BadView(kName, "in", in, "perm ", ShapeString(perm),
                     " is not a permutation of its dimensions");
    seen[p] = true;
    expected.push_back(in.dim(p));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, expected));

  std::vector<int64_t> inStrides = Strides(in.shape);
  for (int64_t o = 0; o < out.numel(); ++o) {
    std::vector<int64_t> coords = Unravel(o, out.shape);
    int64_t i = 0;
    for (int64_t d = 0; d < out.rank(); ++d)
      i += coords[d] * inStrides[perm[d]];
    CopyElement(out, o, in, i);
  }
  return absl::OkStatus();
}

absl::Status Slice(const TensorView &in, const TensorView &out,
                   absl::Span<const int64_t> start,
                   absl::Span<const int64_t> limit,
                   absl::Span<const int64_t> step) {
  const char *kName = "Slice";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, "out", out, in, "in"));
  size_t rank = in.rank();
  if (start.size() != rank || limit.size() != rank || step.size() != rank)
    return BadView(kName, "in", in, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (size_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return BadView(kName, "in", in, "step[", d, "] = ", step[d],
                     " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > in.dim(d))
      return BadView(kName, "in", in, "dimension ", d, " slice [", start[d],
                     ", ", limit[d], ") is outside it");
    expected.push_back((limit[d] - start[d] + step[d] - 1) / step[d]);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, expected));

  std::vector<int64_t> inStrides = Strides(in.shape);
  for (int64_t o = 0; o < out.numel(); ++o) {
    std::vector<int64_t> coords = Unravel(o, out.shape);
    int64_t i = 0;
    for (size_t d = 0; d < rank; ++d)
      i += (start[d] + coords[d] * step[d]) * inStrides[d];
    CopyElement(out, o, in, i);
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// SliceGrad
//===----------------------------------------------------------------------===//

absl::Status SliceGrad(const TensorView &dy, const TensorView &dx,
                       absl::Span<const int64_t> start,
                       absl::Span<const int64_t> limit,
                       absl::Span<const int64_t> step) {
  const char *kName = "SliceGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "dx", dx));
  if (dx.dtype != dy.dtype)
    return BadView(kName, "dx", dx, "must have the element type of dy ",
                   dy.ToString());
  size_t rank = dx.rank();
  if (start.size() != rank || limit.size() != rank || step.size() != rank)
    return BadView(kName, "dx", dx, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (size_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return BadView(kName, "dx", dx, "step[", d, "] = ", step[d],
                     " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > dx.dim(d))
      return BadView(kName, "dx", dx, "dimension ", d, " slice [", start[d],
                     ", ", limit[d], ") is outside it");
    expected.push_back((limit[d] - start[d] + step[d] - 1) / step[d]);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, expected));

  for (int64_t i = 0; i < dx.numel(); ++i) {
    if (IsFloat(dx.dtype))
      StoreF(dx, i, 0.0f);
    else
      StoreI(dx, i, 0);
  }
  std::vector<int64_t> dxStrides = Strides(dx.shape);
  for (int64_t o = 0; o < dy.numel(); ++o) {
    std::vector<int64_t> coords = Unravel(o, dy.shape);
    int64_t i = 0;
    for (size_t d = 0; d < rank; ++d)
      i += (start[d] + coords[d] * step[d]) * dxStrides[d];
    if (IsFloat(dx.dtype))
      StoreF(dx, i, LoadF(dy, o));
    else
      StoreI(dx, i, LoadI(dy, o));
  }
  return absl::OkStatus();
}

absl::Status Concat(absl::Span<const TensorView> inputs, const TensorView &out,
                    int64_t dim) {
  const char *kName = "Concat";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  if (inputs.empty())
    return BadView(kName, "out", out, "needs at least one input");
  if (dim < 0 || dim >= out.rank())
    return BadView(kName, "out", out, "has no dimension ", dim);
  int64_t total = 0;
  for (size_t n = 0; n < inputs.size(); ++n) {
    const TensorView &in = inputs[n];
    std::string name = absl::StrCat("input #", n);
    VEOMNI_RETURN_IF_ERROR(CheckView(kName, name, in));
    VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, name, in, out, "out"));
    if (in.rank() != out.rank())
      return BadView(kName, name, in, "must have the rank of out ",
                     out.ToString());
    for (int64_t d = 0; d < out.rank(); ++d)
      if (d != dim && in.dim(d) != out.dim(d))
        return BadView(kName, name, in, "dimension ", d, " differs from out ",
                       out.ToString());
    total += in.dim(dim);
  }
  if (total != out.dim(dim))
    return BadView(kName, "out", out, "dimension ", dim, " must be ", total,
                   ", the sum of the inputs'");

  for (int64_t o = 0; o < out.numel(); ++o) {
    std::vector<int64_t> coords = Unravel(o, out.shape);
    size_t n = 0; // the input holding this coordinate along `dim`
    while (coords[dim] >= inputs[n].dim(dim)) {
      coords[dim] -= inputs[n].dim(dim);
      ++n;
    }
    std::vector<int64_t> inStrides = Strides(inputs[n].shape);
    int64_t i = 0;
    for (int64_t d = 0; d < out.rank(); ++d)
      i += coords[d] * inStrides[d];
    CopyElement(out, o, inputs[n], i);
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

absl::Status Gather(const TensorView &source, const TensorView &indices,
                    const TensorView &out, int64_t axis, int64_t offset,
                    int64_t total) {
  const char *kName = "Gather";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "source", source));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, "out", out, source, "source"));
  if (axis < 0 || axis >= source.rank())
    return BadView(kName, "source", source, "has no axis ", axis);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "out", out, GatheredShape(source, indices, axis)));
  VEOMNI_RETURN_IF_ERROR(
      CheckIndices(kName, indices, total > 0 ? total : source.dim(axis)));

  // source as [outer, size, inner]; out as [outer, count, inner]; rows
  // outside [offset, offset + size) are zero.
  int64_t outer = Product(absl::MakeSpan(source.shape).subspan(0, axis));
  int64_t size = source.dim(axis);
  int64_t inner = Product(absl::MakeSpan(source.shape).subspan(axis + 1));
  int64_t count = indices.numel();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < count; ++i)
      for (int64_t n = 0; n < inner; ++n) {
        int64_t row = LoadI(indices, i) - offset;
        if (row < 0 || row >= size)
          StoreF(out, (o * count + i) * inner + n, 0.0f);
        else
          CopyElement(out, (o * count + i) * inner + n, source,
                      (o * size + row) * inner + n);
      }
  return absl::OkStatus();
}

absl::Status ScatterAdd(const TensorView &dest, const TensorView &indices,
                        const TensorView &updates, const TensorView &out,
                        int64_t axis, int64_t offset, int64_t total) {
  const char *kName = "ScatterAdd";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dest", dest));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "updates", updates));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (axis < 0 || axis >= dest.rank())
    return BadView(kName, "dest", dest, "has no axis ", axis);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "updates", updates,
                                    GatheredShape(dest, indices, axis)));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, dest.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckIndices(kName, indices, total > 0 ? total : dest.dim(axis)));

  // Sum in double, then round once: out may alias dest.
  std::vector<double> sum(dest.numel());
  for (int64_t i = 0; i < dest.numel(); ++i)
    sum[i] = LoadF(dest, i);
  int64_t outer = Product(absl::MakeSpan(dest.shape).subspan(0, axis));
  int64_t size = dest.dim(axis);
  int64_t inner = Product(absl::MakeSpan(dest.shape).subspan(axis + 1));
  int64_t count = indices.numel();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < count; ++i)
      for (int64_t n = 0; n < inner; ++n) {
        int64_t row = LoadI(indices, i) - offset;
        if (row >= 0 && row < size)
          sum[(o * size + row) * inner + n] +=
              LoadF(updates, (o * count + i) * inner + n);
      }
  for (int64_t i = 0; i < dest.numel(); ++i)
    StoreF(out, i, static_cast<float>(sum[i]));
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu::ref
