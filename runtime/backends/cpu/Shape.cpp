//===- Shape.cpp - reductions and data movement, forward and backward -----===//
//
// Strided walks over simplified dimension lists: broadcast, transpose,
// slice and concat copy contiguous runs; gather and scatter_add check
// every index; reductions and the max-reduction VJP.
//
//===----------------------------------------------------------------------===//

#include "absl/container/inlined_vector.h"
#include "runtime/backends/cpu/KernelUtil.h"
#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/MoEUtil.h"
#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu {

using namespace detail;

namespace {

/// One dimension of a strided walk: its size and the element strides of the
/// source and destination.
struct Dim {
  int64_t size, src, dst;
};
using Dims = absl::InlinedVector<Dim, 8>;

/// Row-major element strides of `shape`.
Shape Strides(absl::Span<const int64_t> shape) {
  Shape s(shape.size());
  int64_t step = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    s[i] = step;
    step *= shape[i];
  }
  return s;
}

/// Calls f(srcOffset, dstOffset) for every index of `dims`, last fastest.
template <typename F> void ForEach(absl::Span<const Dim> dims, F f) {
  int64_t r = static_cast<int64_t>(dims.size());
  absl::InlinedVector<int64_t, 8> idx(r, 0);
  int64_t so = 0, d = 0;
  while (true) {
    f(so, d);
    int64_t k = r - 1;
    for (; k >= 0; --k) {
      if (++idx[k] < dims[k].size) {
        so += dims[k].src;
        d += dims[k].dst;
        break;
      }
      so -= (dims[k].size - 1) * dims[k].src;
      d -= (dims[k].size - 1) * dims[k].dst;
      idx[k] = 0;
    }
    if (k < 0)
      return;
  }
}

/// Drops size-1 dimensions and merges neighbours contiguous in both source
/// and destination. Returns false when the walk is empty.
bool Simplify(Dims &dims) {
  Dims merged;
  for (const Dim &d : dims) {
    if (d.size == 0)
      return false;
    if (d.size == 1)
      continue;
    if (!merged.empty()) {
      Dim &outer = merged.back();
      if (outer.src == d.src * d.size && outer.dst == d.dst * d.size) {
        outer = {outer.size * d.size, d.src, d.dst};
        continue;
      }
    }
    merged.push_back(d);
  }
  dims = std::move(merged);
  return true;
}

template <typename T> void CopyWalk(const T *src, T *dst, Dims dims) {
  if (!Simplify(dims))
    return;
  if (dims.empty()) {
    *dst = *src;
    return;
  }
  Dim in = dims.back();
  absl::Span<const Dim> outer(dims.data(), dims.size() - 1);
  // The destination is dense, so the innermost merged dimension has dst
  // stride 1.
  if (in.src == 1) {
    ForEach(outer, [&](int64_t s, int64_t d) {
      std::memcpy(dst + d, src + s, in.size * sizeof(T));
    });
    return;
  }
  if (in.src == 0) {
    ForEach(outer, [&](int64_t s, int64_t d) {
      std::fill_n(dst + d, in.size, src[s]);
    });
    return;
  }
  // A transpose of the innermost dimension: walk (p, last) in square tiles
  // so that both the strided reads and the dense writes stay in L1.
  int64_t p = -1;
  for (int64_t i = 0; i + 1 < static_cast<int64_t>(dims.size()); ++i)
    if (dims[i].src == 1)
      p = i;
  if (p < 0) {
    ForEach(outer, [&](int64_t s, int64_t d) {
      for (int64_t i = 0; i < in.size; ++i)
        dst[d + i] = src[s + i * in.src];
    });
    return;
  }
  Dim pd = dims[p];
  Dims rest;
  for (int64_t i = 0; i + 1 < static_cast<int64_t>(dims.size()); ++i)
    if (i != p)
      rest.push_back(dims[i]);
  constexpr int64_t kTile = 32;
  ForEach(rest, [&](int64_t s, int64_t d) {
    for (int64_t a0 = 0; a0 < pd.size; a0 += kTile) {
      int64_t a1 = std::min(pd.size, a0 + kTile);
      for (int64_t c0 = 0; c0 < in.size; c0 += kTile) {
        int64_t c1 = std::min(in.size, c0 + kTile);
        for (int64_t a = a0; a < a1; ++a) {
          const T *sp = src + s + a;
          T *dp = dst + d + a * pd.dst;
          for (int64_t c = c0; c < c1; ++c)
            dp[c] = sp[c * in.src];
        }
      }
    }
  });
}

/// dst (dense, `dims` sizes) = src walked with `dims` source strides.
void StridedCopy(const void *src, void *dst, DType t, Dims dims) {
  switch (SizeOf(t)) {
  case 2:
    return CopyWalk(static_cast<const uint16_t *>(src),
                    static_cast<uint16_t *>(dst), std::move(dims));
  case 4:
    return CopyWalk(static_cast<const uint32_t *>(src),
                    static_cast<uint32_t *>(dst), std::move(dims));
  case 8:
    return CopyWalk(static_cast<const uint64_t *>(src),
                    static_cast<uint64_t *>(dst), std::move(dims));
  }
}

/// Dense destination strides for `dims` whose sizes are the output shape.
void FillDstStrides(Dims &dims) {
  int64_t step = 1;
  for (int64_t i = static_cast<int64_t>(dims.size()) - 1; i >= 0; --i) {
    dims[i].dst = step;
    step *= dims[i].size;
  }
}

const char *Bytes(const TensorView &v) {
  return static_cast<const char *>(v.data);
}
char *MutableBytes(const TensorView &v) { return static_cast<char *>(v.data); }

} // namespace

absl::Status Reduce(ReduceKind kind, const TensorView &in,
                    const TensorView &out, absl::Span<const int64_t> dims) {
  constexpr absl::string_view K = "Reduce";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  if (kind != ReduceKind::Sum && kind != ReduceKind::Max &&
      kind != ReduceKind::Mean)
    return Invalid(K, "unknown kind ", static_cast<int>(kind));
  int64_t rank = in.rank();
  absl::InlinedVector<bool, 8> reduced(rank, false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= rank || (i > 0 && dims[i] <= dims[i - 1]))
      return BadView(K, "in", in, "cannot reduce over dims ", ShapeString(dims),
                     ": they must be sorted, distinct and in range");
    reduced[dims[i]] = true;
  }
  Shape dropped, kept;
  int64_t count = 1;
  for (int64_t d = 0; d < rank; ++d) {
    kept.push_back(reduced[d] ? 1 : in.dim(d));
    if (reduced[d])
      count *= in.dim(d);
    else
      dropped.push_back(in.dim(d));
  }
  if (absl::Span<const int64_t>(out.shape) !=
          absl::Span<const int64_t>(dropped) &&
      absl::Span<const int64_t>(out.shape) != absl::Span<const int64_t>(kept))
    return BadView(K, "out", out, "must have shape ", ShapeString(dropped),
                   " or ", ShapeString(kept), " for in ", in.ToString());

  int64_t outN = out.numel();
  bool isMax = kind == ReduceKind::Max;
  // Sums accumulate in f64; max needs no wider type.
  std::vector<double> sum(isMax ? 0 : outN, 0.0);
  std::vector<float> max(isMax ? outN : 0,
                         -std::numeric_limits<float>::infinity());
  F32Input x(in);
  if (in.numel() > 0) {
    Dims walk;
    Shape inStrides = Strides(in.shape), outStrides = Strides(kept);
    for (int64_t d = 0; d < rank; ++d)
      walk.push_back({in.dim(d), inStrides[d], reduced[d] ? 0 : outStrides[d]});
    Simplify(walk);
    if (walk.empty())
      walk.push_back({1, 1, 1});
    Dim last = walk.back();
    absl::Span<const Dim> outer(walk.data(), walk.size() - 1);
    const float *xp = x.data();
    ForEach(outer, [&](int64_t s, int64_t d) {
      const float *row = xp + s;
      if (last.dst == 0) { // the contiguous run is reduced away
        if (isMax) {
          float m = vec::Max(row, last.size);
          max[d] = m > max[d] || std::isnan(m) ? m : max[d];
        } else {
          sum[d] += vec::Sum(row, last.size);
        }
      } else if (isMax) { // the run survives: accumulate elementwise
        float *acc = max.data() + d;
        for (int64_t i = 0; i < last.size; ++i) // NaN, once in, stays
          acc[i] = row[i] > acc[i] || std::isnan(row[i]) ? row[i] : acc[i];
      } else {
        double *acc = sum.data() + d;
        for (int64_t i = 0; i < last.size; ++i)
          acc[i] += row[i];
      }
    });
  }
  std::unique_ptr<float[]> result = Scratch(outN);
  for (int64_t i = 0; i < outN; ++i)
    result[i] =
        isMax ? max[i]
              : static_cast<float>(kind == ReduceKind::Mean
                                       ? sum[i] / static_cast<double>(count)
                                       : sum[i]);
  StoreF32(result.get(), out, 0, outN);
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// ReduceMaxGrad
//===----------------------------------------------------------------------===//

absl::Status ReduceMaxGrad(const TensorView &in, const TensorView &dy,
                           const TensorView &dx,
                           absl::Span<const int64_t> dims) {
  constexpr absl::string_view K = "ReduceMaxGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, in.shape));
  const int64_t rank = in.rank();
  std::vector<bool> reduced(rank, false);
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0 || dims[i] >= rank)
      return BadView(K, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return BadView(K, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    reduced[dims[i]] = true;
  }
  // As Reduce: the rank of dy tells whether reduced dimensions are kept.
  bool keepDims = dy.rank() == rank;
  Shape expected;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d])
      expected.push_back(in.dim(d));
    else if (keepDims)
      expected.push_back(1);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, expected));
  if (in.numel() == 0)
    return absl::OkStatus();

  // outStride[d]: how far the dy element moves with input dimension d.
  std::vector<int64_t> outStride(rank, 0);
  for (int64_t d = rank - 1, s = 1; d >= 0; --d)
    if (!reduced[d]) {
      outStride[d] = s;
      s *= in.dim(d);
    }
  const int64_t outs = dy.numel(), n = in.numel();
  std::vector<int64_t> best(outs, -1);
  std::vector<float> bestValue(outs);
  F32Input xf(in);
  const float *x = xf.data();
  std::vector<int64_t> coord(rank, 0);
  int64_t o = 0;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    int64_t &b = best[o];
    // The first maximum wins; a NaN, once taken, stays (as in Reduce).
    if (b < 0 ||
        (!std::isnan(bestValue[o]) && (std::isnan(v) || v > bestValue[o]))) {
      b = i;
      bestValue[o] = v;
    }
    for (int64_t d = rank - 1; d >= 0; --d) {
      o += outStride[d];
      if (++coord[d] < in.dim(d))
        break;
      o -= outStride[d] * in.dim(d);
      coord[d] = 0;
    }
  }
  F32Input gf(dy);
  F32Output out(dx);
  std::fill_n(out.data(), n, 0.0f);
  for (int64_t j = 0; j < outs; ++j)
    if (best[j] >= 0)
      out.data()[best[j]] = gf.data()[j];
  out.Commit();
  return absl::OkStatus();
}

absl::Status Broadcast(const TensorView &in, const TensorView &out,
                       absl::Span<const int64_t> dims) {
  constexpr absl::string_view K = "Broadcast";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", out, "in", in));
  if (static_cast<int64_t>(dims.size()) != in.rank())
    return BadView(K, "in", in, "needs one entry in dims ", ShapeString(dims),
                   " per dimension");
  Dims walk;
  for (int64_t d : out.shape)
    walk.push_back({d, 0, 0});
  Shape inStrides = Strides(in.shape);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = dims[i];
    if (d < 0 || d >= out.rank() || (i > 0 && d <= dims[i - 1]))
      return BadView(K, "out", out, "cannot take in ", in.ToString(),
                     " at dims ", ShapeString(dims),
                     ": they must be increasing and in range");
    if (in.dim(i) != 1 && in.dim(i) != out.dim(d))
      return BadView(K, "in", in, "dimension ", i, " cannot broadcast to out ",
                     out.ToString(), " dimension ", d);
    if (in.dim(i) != 1)
      walk[d].src = inStrides[i];
  }
  if (out.numel() == 0)
    return absl::OkStatus();
  if (in.numel() == 0)
    return BadView(K, "in", in, "is empty but out ", out.ToString(), " is not");
  FillDstStrides(walk);
  StridedCopy(in.data, out.data, in.dtype, std::move(walk));
  return absl::OkStatus();
}

absl::Status Transpose(const TensorView &in, const TensorView &out,
                       absl::Span<const int64_t> perm) {
  constexpr absl::string_view K = "Transpose";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", out, "in", in));
  int64_t rank = in.rank();
  absl::InlinedVector<bool, 8> seen(rank, false);
  bool valid = static_cast<int64_t>(perm.size()) == rank;
  for (size_t i = 0; valid && i < perm.size(); ++i) {
    valid = perm[i] >= 0 && perm[i] < rank && !seen[perm[i]];
    if (valid)
      seen[perm[i]] = true;
  }
  if (!valid)
    return BadView(K, "in", in, "perm ", ShapeString(perm),
                   " is not a permutation of its dimensions");
  Shape expected;
  for (int64_t p : perm)
    expected.push_back(in.dim(p));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, expected));
  Shape inStrides = Strides(in.shape);
  Dims walk;
  for (int64_t p : perm)
    walk.push_back({in.dim(p), inStrides[p], 0});
  FillDstStrides(walk);
  StridedCopy(in.data, out.data, in.dtype, std::move(walk));
  return absl::OkStatus();
}

absl::Status Slice(const TensorView &in, const TensorView &out,
                   absl::Span<const int64_t> start,
                   absl::Span<const int64_t> limit,
                   absl::Span<const int64_t> step) {
  constexpr absl::string_view K = "Slice";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "out", out, "in", in));
  int64_t rank = in.rank();
  if (static_cast<int64_t>(start.size()) != rank ||
      static_cast<int64_t>(limit.size()) != rank ||
      static_cast<int64_t>(step.size()) != rank)
    return BadView(K, "in", in, "needs start, limit and step of rank ", rank);
  Shape inStrides = Strides(in.shape), expected;
  Dims walk;
  int64_t base = 0;
  for (int64_t d = 0; d < rank; ++d) {
    if (step[d] < 1 || start[d] < 0 || start[d] > limit[d] ||
        limit[d] > in.dim(d))
      return BadView(K, "in", in, "dimension ", d, " cannot take [", start[d],
                     ", ", limit[d], ") step ", step[d]);
    int64_t size = (limit[d] - start[d] + step[d] - 1) / step[d];
    expected.push_back(size);
    walk.push_back({size, inStrides[d] * step[d], 0});
    base += start[d] * inStrides[d];
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, expected));
  if (out.numel() == 0)
    return absl::OkStatus();
  FillDstStrides(walk);
  StridedCopy(Bytes(in) + base * SizeOf(in.dtype), out.data, in.dtype,
              std::move(walk));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// SliceGrad
//===----------------------------------------------------------------------===//

absl::Status SliceGrad(const TensorView &dy, const TensorView &dx,
                       absl::Span<const int64_t> start,
                       absl::Span<const int64_t> limit,
                       absl::Span<const int64_t> step) {
  constexpr absl::string_view K = "SliceGrad";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckSameType(K, "dx", dx, "dy", dy));
  const int64_t rank = dx.rank();
  if (static_cast<int64_t>(start.size()) != rank ||
      static_cast<int64_t>(limit.size()) != rank ||
      static_cast<int64_t>(step.size()) != rank)
    return BadView(K, "dx", dx, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (int64_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return BadView(K, "dx", dx, "step[", d, "] = ", step[d], " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > dx.dim(d))
      return BadView(K, "dx", dx, "dimension ", d, " slice [", start[d], ", ",
                     limit[d], ") is outside it");
    expected.push_back((limit[d] - start[d] + step[d] - 1) / step[d]);
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, expected));
  if (dx.numel() == 0)
    return absl::OkStatus();
  std::memset(dx.data, 0, dx.bytes());
  if (dy.numel() == 0)
    return absl::OkStatus();

  const size_t elem = SizeOf(dx.dtype);
  const char *src = static_cast<const char *>(dy.data);
  char *dst = static_cast<char *>(dx.data);
  if (rank == 0) {
    std::memcpy(dst, src, elem);
    return absl::OkStatus();
  }
  std::vector<int64_t> strides(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * dx.dim(d + 1);
  const int64_t inner = dy.dim(rank - 1), innerStep = step[rank - 1];
  const int64_t rows = dy.numel() / inner;
  // One dy row at a time: its dx base from an odometer over the outer dims.
  std::vector<int64_t> coord(rank, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = start[rank - 1];
    for (int64_t d = 0; d < rank - 1; ++d)
      base += (start[d] + coord[d] * step[d]) * strides[d];
    const char *s = src + r * inner * elem;
    if (innerStep == 1) {
      std::memcpy(dst + base * elem, s, inner * elem);
    } else {
      for (int64_t i = 0; i < inner; ++i)
        std::memcpy(dst + (base + i * innerStep) * elem, s + i * elem, elem);
    }
    for (int64_t d = rank - 2; d >= 0; --d) {
      if (++coord[d] < dy.dim(d))
        break;
      coord[d] = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status Concat(absl::Span<const TensorView> inputs, const TensorView &out,
                    int64_t dim) {
  constexpr absl::string_view K = "Concat";
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  if (inputs.empty())
    return Invalid(K, "needs at least one input");
  if (dim < 0 || dim >= out.rank())
    return BadView(K, "out", out, "has no dimension ", dim);
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorView &t = inputs[i];
    std::string name = absl::StrCat("inputs[", i, "]");
    VEOMNI_RETURN_IF_ERROR(CheckView(K, name, t));
    VEOMNI_RETURN_IF_ERROR(CheckSameType(K, name, t, "out", out));
    if (t.rank() != out.rank())
      return BadView(K, name, t, "must have the rank of out ", out.ToString());
    for (int64_t d = 0; d < t.rank(); ++d)
      if (d != dim && t.dim(d) != out.dim(d))
        return BadView(K, name, t, "dimension ", d, " differs from out ",
                       out.ToString());
    total += t.dim(dim);
  }
  if (total != out.dim(dim))
    return BadView(K, "out", out, "dimension ", dim, " must be ", total,
                   ", the inputs' sum");
  if (out.numel() == 0)
    return absl::OkStatus();
  size_t elem = SizeOf(out.dtype);
  int64_t outer = Product(out.shape, 0, dim);
  int64_t inner = Product(out.shape, dim + 1, out.rank()) * elem;
  int64_t outRow = out.dim(dim) * inner;
  int64_t offset = 0; // byte offset of this input's block within a row
  for (const TensorView &t : inputs) {
    int64_t row = t.dim(dim) * inner;
    for (int64_t o = 0; o < outer && row > 0; ++o)
      std::memcpy(MutableBytes(out) + o * outRow + offset, Bytes(t) + o * row,
                  row);
    offset += row;
  }
  return absl::OkStatus();
}

namespace {

/// Shared checks of Gather and ScatterAdd: `sliced` is source.shape[:axis]
/// + indices.shape + source.shape[axis+1:]; Gather copies bits, so its
/// element types must match, while ScatterAdd adds any float types.
absl::Status CheckGathered(absl::string_view kernel, const TensorView &table,
                           absl::string_view tableName,
                           const TensorView &indices, const TensorView &sliced,
                           absl::string_view slicedName, int64_t axis,
                           bool sameType, int64_t total) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, tableName, table));
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, slicedName, sliced));
  VEOMNI_RETURN_IF_ERROR(CheckInteger(kernel, "indices", indices));
  if (sameType) {
    VEOMNI_RETURN_IF_ERROR(
        CheckSameType(kernel, slicedName, sliced, tableName, table));
  } else {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kernel, tableName, table));
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kernel, slicedName, sliced));
  }
  if (axis < 0 || axis >= table.rank())
    return BadView(kernel, tableName, table, "has no axis ", axis);
  Shape expected(table.shape.begin(), table.shape.begin() + axis);
  expected.insert(expected.end(), indices.shape.begin(), indices.shape.end());
  expected.insert(expected.end(), table.shape.begin() + axis + 1,
                  table.shape.end());
  VEOMNI_RETURN_IF_ERROR(CheckShape(kernel, slicedName, sliced, expected));
  return CheckIndices(kernel, "indices", indices,
                      total > 0 ? total : table.dim(axis));
}

/// Index i's row of this rank's slice [offset, offset + rows), or -1.
inline int64_t LocalRow(const TensorView &indices, int64_t i, int64_t offset,
                        int64_t rows) {
  int64_t r = IndexAt(indices, i) - offset;
  return r >= 0 && r < rows ? r : -1;
}

} // namespace

absl::Status Gather(const TensorView &source, const TensorView &indices,
                    const TensorView &out, int64_t axis, int64_t offset,
                    int64_t total) {
  constexpr absl::string_view K = "Gather";
  VEOMNI_RETURN_IF_ERROR(CheckGathered(K, source, "source", indices, out, "out",
                                       axis, true, total));
  if (out.numel() == 0)
    return absl::OkStatus();
  size_t elem = SizeOf(source.dtype);
  int64_t outer = Product(source.shape, 0, axis);
  int64_t inner = Product(source.shape, axis + 1, source.rank()) * elem;
  int64_t rows = source.dim(axis), n = indices.numel();
  char *dst = MutableBytes(out);
  for (int64_t o = 0; o < outer; ++o) {
    const char *table = Bytes(source) + o * rows * inner;
    for (int64_t i = 0; i < n; ++i, dst += inner) {
      int64_t r = LocalRow(indices, i, offset, rows);
      if (r >= 0)
        std::memcpy(dst, table + r * inner, inner);
      else
        std::memset(dst, 0, inner); // another rank's row
    }
  }
  return absl::OkStatus();
}

absl::Status ScatterAdd(const TensorView &dest, const TensorView &indices,
                        const TensorView &updates, const TensorView &out,
                        int64_t axis, int64_t offset, int64_t total) {
  constexpr absl::string_view K = "ScatterAdd";
  VEOMNI_RETURN_IF_ERROR(CheckGathered(K, dest, "dest", indices, updates,
                                       "updates", axis, false, total));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "out", out, dest.shape));
  if (out.data == dest.data && out.dtype != dest.dtype)
    return BadView(K, "out", out, "aliases dest ", dest.ToString(),
                   " with another element type");
  int64_t outer = Product(dest.shape, 0, axis);
  int64_t inner = Product(dest.shape, axis + 1, dest.rank());
  int64_t rows = dest.dim(axis), n = indices.numel();
  if (out.data != dest.data) {
    if (out.dtype == dest.dtype) {
      std::memmove(out.data, dest.data, dest.bytes());
    } else {
      float buf[kChunk];
      for (int64_t i = 0, total = dest.numel(); i < total; i += kChunk) {
        int64_t len = std::min(kChunk, total - i);
        LoadF32(dest, i, len, buf);
        StoreF32(buf, out, i, len);
      }
    }
  }
  if (n == 0 || inner == 0 || outer == 0)
    return absl::OkStatus();
  if (out.dtype == DType::F32 && dest.dtype == DType::F32 &&
      updates.dtype == DType::F32) {
    float *o = static_cast<float *>(out.data);
    const float *u = static_cast<const float *>(updates.data);
    for (int64_t p = 0; p < outer; ++p)
      for (int64_t i = 0; i < n; ++i, u += inner) {
        int64_t r = LocalRow(indices, i, offset, rows);
        if (r < 0)
          continue; // another rank's row
        float *row = o + (p * rows + r) * inner;
        for (int64_t j = 0; j < inner; ++j)
          row[j] += u[j];
      }
    return absl::OkStatus();
  }
  // Otherwise all updates of one destination row are summed in f32 onto
  // dest's row and rounded once. They are visited grouped by target index,
  // in their original order within a group (the order the f32 path adds
  // them in). A row of dest is read before its row of out is written, so
  // out may alias dest.
  std::vector<int64_t> order(n), first(rows + 1, 0);
  for (int64_t i = 0; i < n; ++i)
    if (int64_t r = LocalRow(indices, i, offset, rows); r >= 0)
      ++first[r + 1];
  for (int64_t r = 0; r < rows; ++r)
    first[r + 1] += first[r];
  {
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t i = 0; i < n; ++i)
      if (int64_t r = LocalRow(indices, i, offset, rows); r >= 0)
        order[next[r]++] = i;
  }
  std::unique_ptr<float[]> acc = Scratch(inner), upd = Scratch(inner);
  for (int64_t p = 0; p < outer; ++p)
    for (int64_t r = 0; r < rows; ++r) {
      if (first[r] == first[r + 1])
        continue;
      int64_t at = (p * rows + r) * inner;
      LoadF32(dest, at, inner, acc.get());
      for (int64_t q = first[r]; q < first[r + 1]; ++q) {
        LoadF32(updates, (p * n + order[q]) * inner, inner, upd.get());
        for (int64_t j = 0; j < inner; ++j)
          acc[j] += upd[j];
      }
      StoreF32(acc.get(), out, at, inner);
    }
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
