//===- Reference.cpp - naive reference CPU kernels
//--------------------------===//
//
// The oracle the fast kernels are tested against: one function per kernel,
// each an obvious loop nest over the op's definition (see Kernels.h). Every
// element goes through LoadF/StoreF/LoadI/StoreI, so each kernel works for
// every element type; sums are accumulated in double. Nothing here is
// clever, and nothing here is fast.
//
// Every kernel first checks every rank, shape, element type and attribute it
// relies on, then every index it will follow, and only then writes: an
// invalid call returns InvalidArgument and leaves `out` untouched.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/ReferenceUtil.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu::ref {
using namespace detail;
namespace {

absl::Status CheckSameDType(absl::string_view kernel, absl::string_view name,
                            const TensorView &v, const TensorView &like,
                            absl::string_view likeName) {
  if (v.dtype != like.dtype)
    return Invalid(kernel, name, v, "must have the element type of ", likeName,
                   " ", like.ToString());
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Index arithmetic on row-major shapes.
//===----------------------------------------------------------------------===//

int64_t Product(absl::Span<const int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    n *= d;
  return n;
}

/// Copies element `si` of `src` to element `di` of `dst` (same element
/// type), bit for bit: the data-movement kernels carry any type exactly.
void CopyElement(const TensorView &dst, int64_t di, const TensorView &src,
                 int64_t si) {
  size_t size = SizeOf(src.dtype);
  std::memcpy(static_cast<char *>(dst.data) + di * size,
              static_cast<const char *>(src.data) + si * size, size);
}

/// `v` rounded to `t`'s precision (and back to f32).
float RoundTo(DType t, float v) {
  switch (t) {
  case DType::BF16:
    return Bf16ToF32(F32ToBf16(v));
  case DType::F16:
    return F16ToF32(F32ToF16(v));
  default:
    return v;
  }
}

double ApplyUnary(UnaryKind kind, double x) {
  switch (kind) {
  case UnaryKind::Neg:
    return -x;
  case UnaryKind::Exp:
    return std::exp(x);
  case UnaryKind::Log:
    return std::log(x);
  case UnaryKind::Sqrt:
    return std::sqrt(x);
  case UnaryKind::Rsqrt:
    return 1.0 / std::sqrt(x);
  case UnaryKind::Sin:
    return std::sin(x);
  case UnaryKind::Cos:
    return std::cos(x);
  case UnaryKind::Tanh:
    return std::tanh(x);
  case UnaryKind::Sigmoid:
    return 1.0 / (1.0 + std::exp(-x));
  case UnaryKind::Silu:
    return x / (1.0 + std::exp(-x));
  case UnaryKind::Gelu:
    return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  case UnaryKind::GeluTanh: {
    const double kPi = 3.14159265358979323846;
    double inner = std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + std::tanh(inner));
  }
  }
  return 0;
}

/// Broadcast's and Transpose's shared checks: in and out any views of one
/// element type, and `list` (named `listName`) one entry per dimension of in.
absl::Status CheckPerDimension(absl::string_view kName, const TensorView &in,
                               const TensorView &out,
                               absl::Span<const int64_t> list,
                               absl::string_view listName) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, "out", out, in, "in"));
  if (static_cast<int64_t>(list.size()) != in.rank())
    return Invalid(kName, "in", in, "needs one entry of ", listName,
                   " per dimension, got ", ShapeString(list));
  return absl::OkStatus();
}

} // namespace

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

absl::Status Matmul(const TensorView &lhs, const TensorView &rhs,
                    const TensorView &out, bool transposeLhs,
                    bool transposeRhs) {
  const char *kName = "Matmul";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  int64_t rank = lhs.rank();
  if (rank < 2)
    return Invalid(kName, "lhs", lhs, "must have rank >= 2");
  if (rhs.rank() != 2 && rhs.rank() != rank)
    return Invalid(kName, "rhs", rhs, "must have rank 2 or the rank of lhs ",
                   lhs.ToString());
  bool sharedRhs = rhs.rank() == 2 && rank != 2;
  if (!sharedRhs)
    for (int64_t d = 0; d < rank - 2; ++d)
      if (rhs.dim(d) != lhs.dim(d))
        return Invalid(kName, "rhs", rhs, "must have the batch dimensions of ",
                       "lhs ", lhs.ToString());

  int64_t m = transposeLhs ? lhs.dim(rank - 1) : lhs.dim(rank - 2);
  int64_t k = transposeLhs ? lhs.dim(rank - 2) : lhs.dim(rank - 1);
  int64_t rr = rhs.rank();
  int64_t rhsK = transposeRhs ? rhs.dim(rr - 1) : rhs.dim(rr - 2);
  int64_t n = transposeRhs ? rhs.dim(rr - 2) : rhs.dim(rr - 1);
  if (rhsK != k)
    return Invalid(kName, "rhs", rhs, "must have contracting dimension ", k,
                   " of lhs ", lhs.ToString());
  Shape expected(lhs.shape.begin(), lhs.shape.end() - 2);
  expected.push_back(m);
  expected.push_back(n);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, expected));

  int64_t batch = Product(absl::MakeSpan(lhs.shape).subspan(0, rank - 2));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t lhsBase = b * m * k;
    int64_t rhsBase = sharedRhs ? 0 : b * k * n;
    int64_t outBase = b * m * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          int64_t li = transposeLhs ? p * m + i : i * k + p;
          int64_t ri = transposeRhs ? j * k + p : p * n + j;
          sum += static_cast<double>(LoadF(lhs, lhsBase + li)) *
                 LoadF(rhs, rhsBase + ri);
        }
        StoreF(out, outBase + i * n + j, static_cast<float>(sum));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status GroupedMatmul(const TensorView &input, const TensorView &weight,
                           const TensorView &groupSizes, const TensorView &out,
                           bool transposeWeight) {
  const char *kName = "GroupedMatmul";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weight", weight, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "groupSizes", groupSizes, 1));
  int64_t rows = input.dim(0), k = input.dim(1);
  int64_t experts = weight.dim(0);
  int64_t weightK = transposeWeight ? weight.dim(2) : weight.dim(1);
  int64_t m = transposeWeight ? weight.dim(1) : weight.dim(2);
  if (weightK != k)
    return Invalid(kName, "weight", weight, "must have contracting dimension ",
                   k, " of input ", input.ToString());
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "groupSizes", groupSizes, {experts}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {rows, m}));

  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t size = LoadI(groupSizes, e);
    if (size < 0)
      return Invalid(kName, "groupSizes", groupSizes, "has size ", size,
                     " for group ", e);
    total += size;
    if (total > rows)
      return Invalid(kName, "groupSizes", groupSizes, "sums to more than the ",
                     rows, " rows of input ", input.ToString());
  }
  if (total != rows)
    return Invalid(kName, "groupSizes", groupSizes, "sums to ", total,
                   ", not the ", rows, " rows of input ", input.ToString());

  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t end = row + LoadI(groupSizes, e);
    for (; row < end; ++row) {
      for (int64_t j = 0; j < m; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          int64_t wi =
              transposeWeight ? (e * m + j) * k + p : (e * k + p) * m + j;
          sum += static_cast<double>(LoadF(input, row * k + p)) *
                 LoadF(weight, wi);
        }
        StoreF(out, row * m + j, static_cast<float>(sum));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Conv1D(const TensorView &input, const TensorView &weight,
                    const TensorView *bias, const TensorView &out,
                    int64_t stride, int64_t padding) {
  const char *kName = "Conv1D";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weight", weight, 3));
  int64_t batch = input.dim(0), cin = input.dim(1), length = input.dim(2);
  int64_t cout = weight.dim(0), kernel = weight.dim(2);
  if (weight.dim(1) != cin)
    return Invalid(kName, "weight", weight, "must have the ", cin,
                   " input channels of input ", input.ToString());
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", *bias, {cout}));
  }
  if (stride < 1)
    return Invalid(kName, "input", input, "stride must be >= 1, got ", stride);
  if (padding < 0)
    return Invalid(kName, "input", input, "padding must be >= 0, got ",
                   padding);
  int64_t span = length + 2 * padding - kernel;
  if (span < 0)
    return Invalid(kName, "weight", weight, "is longer than padded input ",
                   input.ToString());
  int64_t outLength = span / stride + 1;
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "out", out, {batch, cout, outLength}));

  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t o = 0; o < cout; ++o) {
      for (int64_t t = 0; t < outLength; ++t) {
        double sum = bias ? LoadF(*bias, o) : 0.0;
        for (int64_t c = 0; c < cin; ++c) {
          for (int64_t kk = 0; kk < kernel; ++kk) {
            int64_t pos = t * stride + kk - padding;
            if (pos < 0 || pos >= length)
              continue; // zero padding
            sum += static_cast<double>(
                       LoadF(weight, (o * cin + c) * kernel + kk)) *
                   LoadF(input, (b * cin + c) * length + pos);
          }
        }
        StoreF(out, (b * cout + o) * outLength + t, static_cast<float>(sum));
      }
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

absl::Status Unary(UnaryKind kind, const TensorView &in,
                   const TensorView &out) {
  const char *kName = "Unary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  // Element i is read before it is written: in-place safe.
  for (int64_t i = 0; i < in.numel(); ++i)
    StoreF(out, i, static_cast<float>(ApplyUnary(kind, LoadF(in, i))));
  return absl::OkStatus();
}

absl::Status Binary(BinaryKind kind, const TensorView &lhs,
                    const TensorView &rhs, const TensorView &out) {
  const char *kName = "Binary";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "lhs", lhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "rhs", rhs));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "rhs", rhs, lhs.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, lhs.shape));
  for (int64_t i = 0; i < lhs.numel(); ++i) {
    // Inputs are exact in f32; one f32 operation is correctly rounded.
    float a = LoadF(lhs, i), b = LoadF(rhs, i), r = 0;
    switch (kind) {
    case BinaryKind::Add:
      r = a + b;
      break;
    case BinaryKind::Sub:
      r = a - b;
      break;
    case BinaryKind::Mul:
      r = a * b;
      break;
    case BinaryKind::Div:
      r = a / b;
      break;
    }
    StoreF(out, i, r);
  }
  return absl::OkStatus();
}

absl::Status Cast(const TensorView &in, const TensorView &out) {
  const char *kName = "Cast";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));
  if (IsFloat(in.dtype) && IsInt(out.dtype))
    return Invalid(kName, "out", out, "cannot receive floats from in ",
                   in.ToString());
  for (int64_t i = 0; i < in.numel(); ++i) {
    if (IsInt(in.dtype) && IsInt(out.dtype))
      StoreI(out, i, LoadI(in, i));
    else if (IsInt(in.dtype))
      StoreF(out, i, static_cast<float>(LoadI(in, i)));
    else
      StoreF(out, i, LoadF(in, i));
  }
  return absl::OkStatus();
}

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
      return Invalid(kName, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return Invalid(kName, "in", in, "dims must be strictly increasing, got ",
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

absl::Status Softmax(const TensorView &in, const TensorView &out, int64_t dim) {
  const char *kName = "Softmax";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (dim < 0 || dim >= in.rank())
    return Invalid(kName, "in", in, "has no dimension ", dim);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  // View the tensor as [outer, size, inner] around `dim`.
  int64_t size = in.dim(dim);
  int64_t outer = Product(absl::MakeSpan(in.shape).subspan(0, dim));
  int64_t inner = Product(absl::MakeSpan(in.shape).subspan(dim + 1));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t n = 0; n < inner; ++n) {
      auto at = [&](int64_t i) { return (o * size + i) * inner + n; };
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < size; ++i)
        max = std::max<double>(max, LoadF(in, at(i)));
      double sum = 0;
      for (int64_t i = 0; i < size; ++i)
        sum += std::exp(LoadF(in, at(i)) - max);
      for (int64_t i = 0; i < size; ++i)
        StoreF(out, at(i),
               static_cast<float>(std::exp(LoadF(in, at(i)) - max) / sum));
    }
  }
  return absl::OkStatus();
}

absl::Status RmsNorm(const TensorView &in, const TensorView &weight,
                     const TensorView &out, double epsilon) {
  const char *kName = "RmsNorm";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (in.rank() < 1)
    return Invalid(kName, "in", in, "must have rank >= 1");
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  int64_t rows = d == 0 ? 0 : in.numel() / d;
  for (int64_t r = 0; r < rows; ++r) {
    double sumSquares = 0;
    for (int64_t i = 0; i < d; ++i) {
      double x = LoadF(in, r * d + i);
      sumSquares += x * x;
    }
    // As HF: the statistics and the scaling in f32...
    float variance = static_cast<float>(sumSquares / static_cast<double>(d));
    float scale = static_cast<float>(
        1.0 /
        std::sqrt(static_cast<double>(variance + static_cast<float>(epsilon))));
    for (int64_t i = 0; i < d; ++i) {
      // ...rounded to the input's type, then multiplied by the weight.
      float normalized = RoundTo(in.dtype, LoadF(in, r * d + i) * scale);
      StoreF(out, r * d + i, LoadF(weight, i) * normalized);
    }
  }
  return absl::OkStatus();
}

absl::Status LayerNorm(const TensorView &in, const TensorView &weight,
                       const TensorView *bias, const TensorView &out,
                       double epsilon) {
  const char *kName = "LayerNorm";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (in.rank() < 1)
    return Invalid(kName, "in", in, "must have rank >= 1");
  int64_t d = in.dim(in.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", *bias, {d}));
  }
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, in.shape));

  int64_t rows = d == 0 ? 0 : in.numel() / d;
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t i = 0; i < d; ++i)
      mean += LoadF(in, r * d + i);
    mean /= static_cast<double>(d);
    double variance = 0; // biased: divided by d
    for (int64_t i = 0; i < d; ++i) {
      double centered = LoadF(in, r * d + i) - mean;
      variance += centered * centered;
    }
    variance /= static_cast<double>(d);
    double inverse = 1.0 / std::sqrt(variance + epsilon);
    for (int64_t i = 0; i < d; ++i) {
      double y = (LoadF(in, r * d + i) - mean) * inverse * LoadF(weight, i);
      if (bias)
        y += LoadF(*bias, i);
      StoreF(out, r * d + i, static_cast<float>(y));
    }
  }
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
      return Invalid(kName, "out", out, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return Invalid(kName, "in", in, "dims must be strictly increasing, got ",
                     ShapeString(dims));
    if (in.dim(i) != 1 && in.dim(i) != out.dim(dims[i]))
      return Invalid(kName, "in", in, "dimension ", i, " cannot broadcast to ",
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
      return Invalid(kName, "in", in, "perm ", ShapeString(perm),
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
    return Invalid(kName, "in", in, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (size_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return Invalid(kName, "in", in, "step[", d, "] = ", step[d],
                     " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > in.dim(d))
      return Invalid(kName, "in", in, "dimension ", d, " slice [", start[d],
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

absl::Status Concat(absl::Span<const TensorView> inputs, const TensorView &out,
                    int64_t dim) {
  const char *kName = "Concat";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  if (inputs.empty())
    return Invalid(kName, "out", out, "needs at least one input");
  if (dim < 0 || dim >= out.rank())
    return Invalid(kName, "out", out, "has no dimension ", dim);
  int64_t total = 0;
  for (size_t n = 0; n < inputs.size(); ++n) {
    const TensorView &in = inputs[n];
    std::string name = absl::StrCat("input #", n);
    VEOMNI_RETURN_IF_ERROR(CheckView(kName, name, in));
    VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, name, in, out, "out"));
    if (in.rank() != out.rank())
      return Invalid(kName, name, in, "must have the rank of out ",
                     out.ToString());
    for (int64_t d = 0; d < out.rank(); ++d)
      if (d != dim && in.dim(d) != out.dim(d))
        return Invalid(kName, name, in, "dimension ", d, " differs from out ",
                       out.ToString());
    total += in.dim(dim);
  }
  if (total != out.dim(dim))
    return Invalid(kName, "out", out, "dimension ", dim, " must be ", total,
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

namespace {

/// source.shape[:axis] + indices.shape + source.shape[axis+1:]
Shape GatheredShape(const TensorView &source, const TensorView &indices,
                    int64_t axis) {
  Shape shape(source.shape.begin(), source.shape.begin() + axis);
  shape.insert(shape.end(), indices.shape.begin(), indices.shape.end());
  shape.insert(shape.end(), source.shape.begin() + axis + 1,
               source.shape.end());
  return shape;
}

absl::Status CheckIndices(absl::string_view kernel, const TensorView &indices,
                          int64_t bound) {
  for (int64_t i = 0; i < indices.numel(); ++i) {
    int64_t index = LoadI(indices, i);
    if (index < 0 || index >= bound)
      return Invalid(kernel, "indices", indices, "element ", i, " = ", index,
                     " is outside [0, ", bound, ")");
  }
  return absl::OkStatus();
}

} // namespace

absl::Status Gather(const TensorView &source, const TensorView &indices,
                    const TensorView &out, int64_t axis) {
  const char *kName = "Gather";
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "source", source));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckSameDType(kName, "out", out, source, "source"));
  if (axis < 0 || axis >= source.rank())
    return Invalid(kName, "source", source, "has no axis ", axis);
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "out", out, GatheredShape(source, indices, axis)));
  VEOMNI_RETURN_IF_ERROR(CheckIndices(kName, indices, source.dim(axis)));

  // source as [outer, size, inner]; out as [outer, count, inner].
  int64_t outer = Product(absl::MakeSpan(source.shape).subspan(0, axis));
  int64_t size = source.dim(axis);
  int64_t inner = Product(absl::MakeSpan(source.shape).subspan(axis + 1));
  int64_t count = indices.numel();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < count; ++i)
      for (int64_t n = 0; n < inner; ++n)
        CopyElement(out, (o * count + i) * inner + n, source,
                    (o * size + LoadI(indices, i)) * inner + n);
  return absl::OkStatus();
}

absl::Status ScatterAdd(const TensorView &dest, const TensorView &indices,
                        const TensorView &updates, const TensorView &out,
                        int64_t axis) {
  const char *kName = "ScatterAdd";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dest", dest));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "updates", updates));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  if (axis < 0 || axis >= dest.rank())
    return Invalid(kName, "dest", dest, "has no axis ", axis);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "updates", updates,
                                    GatheredShape(dest, indices, axis)));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, dest.shape));
  VEOMNI_RETURN_IF_ERROR(CheckIndices(kName, indices, dest.dim(axis)));

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
      for (int64_t n = 0; n < inner; ++n)
        sum[(o * size + LoadI(indices, i)) * inner + n] +=
            LoadF(updates, (o * count + i) * inner + n);
  for (int64_t i = 0; i < dest.numel(); ++i)
    StoreF(out, i, static_cast<float>(sum[i]));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

absl::Status Rope(const TensorView &in, const TensorView &positions,
                  const TensorView &out, const RopeConfig &attrs) {
  const char *kName = "Rope";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "in", in));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "positions", positions));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "in", in, 4));
  if (in.dim(3) % 2 != 0)
    return Invalid(kName, "in", in, "must have an even head dimension");
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

absl::Status Attention(const TensorView &q, const TensorView &k,
                       const TensorView &v, const TensorView *segments,
                       const TensorView &out, bool causal, double scale) {
  const char *kName = "Attention";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "q", q));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "k", k));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "v", v));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckAttention(kName, q, k, v, segments, causal));
  int64_t batch = q.dim(0), seq = q.dim(1), hq = q.dim(2), d = q.dim(3);
  int64_t seqKv = k.dim(1), hkv = k.dim(2), dv = v.dim(3);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {batch, seq, hq, dv}));

  int64_t group = hq / hkv;
  std::vector<double> score(seqKv);
  std::vector<bool> visible(seqKv);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < seq; ++i) {
      for (int64_t h = 0; h < hq; ++h) {
        int64_t kvh = h / group;
        double max = -std::numeric_limits<double>::infinity();
        bool any = false;
        for (int64_t j = 0; j < seqKv; ++j) {
          visible[j] = !(causal && j > i) &&
                       !(segments && LoadI(*segments, b * seq + i) !=
                                         LoadI(*segments, b * seq + j));
          if (!visible[j])
            continue;
          double dot = 0;
          for (int64_t x = 0; x < d; ++x)
            dot += static_cast<double>(
                       LoadF(q, ((b * seq + i) * hq + h) * d + x)) *
                   LoadF(k, ((b * seqKv + j) * hkv + kvh) * d + x);
          score[j] = dot * scale;
          max = any ? std::max(max, score[j]) : score[j];
          any = true;
        }
        double denominator = 0;
        for (int64_t j = 0; j < seqKv; ++j)
          if (visible[j])
            denominator += std::exp(score[j] - max);
        int64_t outBase = ((b * seq + i) * hq + h) * dv;
        for (int64_t y = 0; y < dv; ++y) {
          double sum = 0;
          for (int64_t j = 0; j < seqKv; ++j)
            if (visible[j])
              sum += std::exp(score[j] - max) *
                     LoadF(v, ((b * seqKv + j) * hkv + kvh) * dv + y);
          // A query that sees no key reads nothing: zero.
          StoreF(out, outBase + y,
                 any ? static_cast<float>(sum / denominator) : 0.0f);
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CrossEntropy(const TensorView &logits, const TensorView &labels,
                          const TensorView &out, int64_t ignoreIndex,
                          LossReduction reduction) {
  const char *kName = "CrossEntropy";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "labels", labels));
  VEOMNI_RETURN_IF_ERROR(CheckView(kName, "out", out));
  if (out.dtype != DType::F32)
    return Invalid(kName, "out", out, "must be f32");
  if (logits.rank() < 1)
    return Invalid(kName, "logits", logits, "must have rank >= 1");
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
      return Invalid(kName, "labels", labels, "element ", r, " = ", label,
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
// Mixture of experts
//===----------------------------------------------------------------------===//

absl::Status MoETopK(const TensorView &logits, const TensorView &weights,
                     const TensorView &indices, int64_t k, bool normalize) {
  const char *kName = "MoETopK";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "logits", logits, 2));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return Invalid(kName, "logits", logits, "k = ", k, " must be in [1, ",
                   experts, "]");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weights", weights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, {tokens, k}));

  std::vector<float> prob(experts);
  std::vector<bool> taken(experts);
  std::vector<int64_t> chosen(k);
  for (int64_t t = 0; t < tokens; ++t) {
    double chosenSum = MoETopKRow(logits, t, k, prob, taken, chosen);
    for (int64_t j = 0; j < k; ++j) {
      double w = prob[chosen[j]];
      if (normalize)
        w /= chosenSum;
      StoreF(weights, t * k + j, static_cast<float>(w));
      StoreI(indices, t * k + j, chosen[j]);
    }
  }
  return absl::OkStatus();
}

absl::Status MoEDispatch(const TensorView &input, const TensorView &indices,
                         const TensorView &out, const TensorView &groupSizes,
                         int64_t numExperts) {
  const char *kName = "MoEDispatch";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "indices", indices, 2));
  int64_t tokens = input.dim(0), hidden = input.dim(1), k = indices.dim(1);
  if (indices.dim(0) != tokens)
    return Invalid(kName, "indices", indices, "must have the ", tokens,
                   " tokens of input ", input.ToString());
  if (numExperts < 1)
    return Invalid(kName, "groupSizes", groupSizes,
                   "numExperts must be >= 1, got ", numExperts);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "groupSizes", groupSizes, {numExperts}));
  VEOMNI_RETURN_IF_ERROR(CheckIndices(kName, indices, numExperts));

  // Expert by expert, the (token, slot) pairs in order: a stable sort.
  int64_t row = 0;
  for (int64_t e = 0; e < numExperts; ++e) {
    int64_t count = 0;
    for (int64_t p = 0; p < tokens * k; ++p) {
      if (LoadI(indices, p) != e)
        continue;
      int64_t token = p / k;
      for (int64_t x = 0; x < hidden; ++x)
        StoreF(out, row * hidden + x, LoadF(input, token * hidden + x));
      ++row;
      ++count;
    }
    StoreI(groupSizes, e, count);
  }
  return absl::OkStatus();
}

absl::Status MoECombine(const TensorView &input, const TensorView &weights,
                        const TensorView &indices, const TensorView &out) {
  const char *kName = "MoECombine";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "out", out));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weights", weights, 2));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "out", out, {tokens, hidden}));
  // No expert count here: ids only order the rows, but negative ones cannot
  // come from a dispatch.
  for (int64_t p = 0; p < tokens * k; ++p)
    if (LoadI(indices, p) < 0)
      return Invalid(kName, "indices", indices, "element ", p, " = ",
                     LoadI(indices, p), " is negative");

  // rowOf[p]: where MoEDispatch put pair p = t*k+j (stable sort by expert).
  std::vector<int64_t> order(tokens * k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return LoadI(indices, a) < LoadI(indices, b);
  });
  std::vector<int64_t> rowOf(tokens * k);
  for (int64_t r = 0; r < tokens * k; ++r)
    rowOf[order[r]] = r;

  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t x = 0; x < hidden; ++x) {
      double sum = 0;
      for (int64_t j = 0; j < k; ++j)
        sum += static_cast<double>(LoadF(weights, t * k + j)) *
               LoadF(input, rowOf[t * k + j] * hidden + x);
      StoreF(out, t * hidden + x, static_cast<float>(sum));
    }
  }
  return absl::OkStatus();
}

#undef REF_TRY

} // namespace veomni::rt::cpu::ref
