//===- ReferenceGradients2.cpp - naive reference gradient kernels, 2 ------===//
//
// The oracle for the kernels of Gradients2.cpp, in the style of
// ReferenceGradients.cpp: obvious loop nests over each definition (see
// Kernels.h), every element through LoadF/StoreF/LoadI, sums in double.
// Where the fast path uses a simplified formula, the reference takes the
// long way: MoETopKGrad chains the full Jacobians of the renormalisation and
// the softmax, ReduceMaxGrad scans each group for its first maximum. Every
// kernel checks everything it relies on before it writes: an invalid call
// returns InvalidArgument and leaves its outputs untouched.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/Kernels.h"
#include "runtime/backends/cpu/ReferenceUtil.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace veomni::rt::cpu::ref {
using namespace detail;

//===----------------------------------------------------------------------===//
// GeluGrad
//===----------------------------------------------------------------------===//

absl::Status GeluGrad(const TensorView &x, const TensorView &dy,
                      const TensorView &dx, bool tanhApproximation) {
  const char *kName = "GeluGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, x.shape));
  const double kPi = 3.14159265358979323846;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = LoadF(x, i), d;
    if (tanhApproximation) {
      // d/dx 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3).
      double c = std::sqrt(2.0 / kPi);
      double t = std::tanh(c * (v + 0.044715 * v * v * v));
      d = 0.5 * (1.0 + t) +
          0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v);
    } else {
      // d/dx x Phi(x) = Phi(x) + x phi(x).
      d = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) +
          v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * kPi);
    }
    StoreF(dx, i, static_cast<float>(LoadF(dy, i) * d));
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// LayerNormGrad
//===----------------------------------------------------------------------===//

absl::Status LayerNormGrad(const TensorView &x, const TensorView &weight,
                           const TensorView &dy, const TensorView &dx,
                           const TensorView &dweight, const TensorView *dbias,
                           double epsilon) {
  const char *kName = "LayerNormGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  if (x.rank() < 1)
    return Invalid(kName, "x", x, "must have rank >= 1");
  int64_t d = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dx", dx, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight, {d}));
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dbias", *dbias, {d}));
  }
  if (!(epsilon >= 0))
    return Invalid(kName, "x", x, "epsilon must be >= 0, got ", epsilon);
  if (d == 0)
    return absl::OkStatus();
  int64_t rows = x.numel() / d;

  std::vector<double> dw(d, 0.0), db(d, 0.0), n(d), dn(d);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t i = 0; i < d; ++i)
      mean += LoadF(x, r * d + i);
    mean /= static_cast<double>(d);
    double var = 0;
    for (int64_t i = 0; i < d; ++i) {
      double c = LoadF(x, r * d + i) - mean;
      var += c * c;
    }
    var /= static_cast<double>(d);
    double rstd = 1.0 / std::sqrt(var + epsilon);
    double meanDn = 0, meanDnN = 0;
    for (int64_t i = 0; i < d; ++i) {
      double g = LoadF(dy, r * d + i);
      n[i] = (LoadF(x, r * d + i) - mean) * rstd;
      dn[i] = g * LoadF(weight, i);
      dw[i] += g * n[i];
      db[i] += g;
      meanDn += dn[i];
      meanDnN += dn[i] * n[i];
    }
    meanDn /= static_cast<double>(d);
    meanDnN /= static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i)
      StoreF(dx, r * d + i,
             static_cast<float>(rstd * (dn[i] - meanDn - n[i] * meanDnN)));
  }
  for (int64_t i = 0; i < d; ++i) {
    StoreF(dweight, i, static_cast<float>(dw[i]));
    if (dbias)
      StoreF(*dbias, i, static_cast<float>(db[i]));
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
    return Invalid(kName, "dx", dx, "must have the element type of dy ",
                   dy.ToString());
  size_t rank = dx.rank();
  if (start.size() != rank || limit.size() != rank || step.size() != rank)
    return Invalid(kName, "dx", dx, "needs one start, limit and step per ",
                   "dimension, got ", ShapeString(start), ", ",
                   ShapeString(limit), " and ", ShapeString(step));
  Shape expected;
  for (size_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return Invalid(kName, "dx", dx, "step[", d, "] = ", step[d],
                     " must be >= 1");
    if (start[d] < 0 || start[d] > limit[d] || limit[d] > dx.dim(d))
      return Invalid(kName, "dx", dx, "dimension ", d, " slice [", start[d],
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

//===----------------------------------------------------------------------===//
// Conv1DGrad
//===----------------------------------------------------------------------===//

absl::Status Conv1DGrad(const TensorView &input, const TensorView &weight,
                        const TensorView &dout, const TensorView &dinput,
                        const TensorView &dweight, const TensorView *dbias,
                        int64_t stride, int64_t padding) {
  const char *kName = "Conv1DGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 3));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weight", weight, 3));
  int64_t batch = input.dim(0), cin = input.dim(1), len = input.dim(2);
  int64_t cout = weight.dim(0), kw = weight.dim(2);
  if (weight.dim(1) != cin)
    return Invalid(kName, "weight", weight,
                   "must have the input channels of input ", input.ToString());
  if (stride < 1 || padding < 0 || padding > (int64_t{1} << 40))
    return Invalid(kName, "weight", weight, "needs stride >= 1 and padding ",
                   ">= 0, got ", stride, " and ", padding);
  if (len + 2 * padding < kw)
    return Invalid(kName, "weight", weight, "is longer than the padded input ",
                   input.ToString());
  int64_t lout = (len + 2 * padding - kw) / stride + 1;
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dout", dout, {batch, cout, lout}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dinput", dinput, input.shape));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight, weight.shape));
  if (dbias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dbias", *dbias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dbias", *dbias, {cout}));
  }

  // out[b,o,t] = bias[o] + sum_{c,k} w[o,c,k] x[b,c,t*stride+k-padding].
  std::vector<double> dx(input.numel(), 0.0), dw(weight.numel(), 0.0),
      db(cout, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t t = 0; t < lout; ++t) {
        double g = LoadF(dout, (b * cout + o) * lout + t);
        db[o] += g;
        for (int64_t c = 0; c < cin; ++c)
          for (int64_t k = 0; k < kw; ++k) {
            int64_t pos = t * stride + k - padding;
            if (pos < 0 || pos >= len)
              continue;
            int64_t xi = (b * cin + c) * len + pos;
            int64_t wi = (o * cin + c) * kw + k;
            dw[wi] += g * LoadF(input, xi);
            dx[xi] += g * LoadF(weight, wi);
          }
      }
  for (int64_t i = 0; i < input.numel(); ++i)
    StoreF(dinput, i, static_cast<float>(dx[i]));
  for (int64_t i = 0; i < weight.numel(); ++i)
    StoreF(dweight, i, static_cast<float>(dw[i]));
  if (dbias)
    for (int64_t o = 0; o < cout; ++o)
      StoreF(*dbias, o, static_cast<float>(db[o]));
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// GroupedMatmulWeightGrad
//===----------------------------------------------------------------------===//

absl::Status GroupedMatmulWeightGrad(const TensorView &input,
                                     const TensorView &groupSizes,
                                     const TensorView &dout,
                                     const TensorView &dweight,
                                     bool transposeWeight) {
  const char *kName = "GroupedMatmulWeightGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "groupSizes", groupSizes));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweight", dweight));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "groupSizes", groupSizes, 1));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "dout", dout, 2));
  int64_t rows = input.dim(0), k = input.dim(1), m = dout.dim(1);
  int64_t experts = groupSizes.dim(0);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dout", dout, {rows, m}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweight", dweight,
                                    transposeWeight ? Shape{experts, m, k}
                                                    : Shape{experts, k, m}));
  int64_t total = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t g = LoadI(groupSizes, e);
    if (g < 0)
      return Invalid(kName, "groupSizes", groupSizes, "entry ", e, " = ", g,
                     " is negative");
    total += g;
    if (total > rows)
      return Invalid(kName, "groupSizes", groupSizes, "overruns the ", rows,
                     " rows of input ", input.ToString());
  }
  if (total != rows)
    return Invalid(kName, "groupSizes", groupSizes, "sums to ", total,
                   " but input ", input.ToString(), " has ", rows, " rows");

  int64_t first = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t end = first + LoadI(groupSizes, e);
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < m; ++b) {
        double sum = 0; // dW_e[a, b] = sum over the group's rows x[a] g[b]
        for (int64_t r = first; r < end; ++r)
          sum += static_cast<double>(LoadF(input, r * k + a)) *
                 LoadF(dout, r * m + b);
        int64_t at =
            transposeWeight ? (e * m + b) * k + a : (e * k + a) * m + b;
        StoreF(dweight, at, static_cast<float>(sum));
      }
    first = end;
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoETopKGrad
//===----------------------------------------------------------------------===//

absl::Status MoETopKGrad(const TensorView &logits, const TensorView &dweights,
                         const TensorView &dlogits, int64_t k, bool normalize) {
  const char *kName = "MoETopKGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "logits", logits));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dlogits", dlogits));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "logits", logits, 2));
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  if (k < 1 || k > experts)
    return Invalid(kName, "logits", logits, "k = ", k, " must be in [1, ",
                   experts, "]");
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dweights", dweights, {tokens, k}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dlogits", dlogits, logits.shape));

  std::vector<float> prob(experts);
  std::vector<bool> taken(experts);
  std::vector<int64_t> chosen(k);
  std::vector<double> dp(experts);
  for (int64_t t = 0; t < tokens; ++t) {
    // Softmax and selection exactly as ref::MoETopK.
    double chosenSum = MoETopKRow(logits, t, k, prob, taken, chosen);

    // dL/dp_i = sum_j g_j dw_j/dp_i, with w_j = p_{c_j} (/ Z, Z = the sum
    // of the chosen p): dw_j/dp_i = [i = c_j] / Z - p_{c_j} [i chosen] / Z^2.
    std::fill(dp.begin(), dp.end(), 0.0);
    for (int64_t j = 0; j < k; ++j) {
      double g = LoadF(dweights, t * k + j);
      for (int64_t i = 0; i < experts; ++i) {
        double dw;
        if (normalize)
          dw = (i == chosen[j] ? 1.0 / chosenSum : 0.0) -
               (taken[i] ? prob[chosen[j]] / (chosenSum * chosenSum) : 0.0);
        else
          dw = i == chosen[j] ? 1.0 : 0.0;
        dp[i] += g * dw;
      }
    }
    // Through the softmax: dx_l = sum_i dp_i p_i ([i = l] - p_l).
    for (int64_t l = 0; l < experts; ++l) {
      double dx = 0;
      for (int64_t i = 0; i < experts; ++i)
        dx += dp[i] * prob[i] * ((i == l ? 1.0 : 0.0) - prob[l]);
      StoreF(dlogits, t * experts + l, static_cast<float>(dx));
    }
  }
  return absl::OkStatus();
}

//===----------------------------------------------------------------------===//
// MoECombineGrad
//===----------------------------------------------------------------------===//

absl::Status MoECombineGrad(const TensorView &input, const TensorView &weights,
                            const TensorView &indices, const TensorView &dout,
                            const TensorView &dinput,
                            const TensorView &dweights) {
  const char *kName = "MoECombineGrad";
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "input", input));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "weights", weights));
  VEOMNI_RETURN_IF_ERROR(CheckInt(kName, "indices", indices));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dout", dout));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dinput", dinput));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "dweights", dweights));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "input", input, 2));
  VEOMNI_RETURN_IF_ERROR(CheckRank(kName, "weights", weights, 2));
  int64_t tokens = weights.dim(0), k = weights.dim(1), hidden = input.dim(1);
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "indices", indices, weights.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "input", input, {tokens * k, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dout", dout, {tokens, hidden}));
  VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "dinput", dinput, input.shape));
  VEOMNI_RETURN_IF_ERROR(
      CheckShape(kName, "dweights", dweights, weights.shape));
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
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = rowOf[t * k + j];
      double w = LoadF(weights, t * k + j), dot = 0;
      for (int64_t x = 0; x < hidden; ++x) {
        double g = LoadF(dout, t * hidden + x);
        StoreF(dinput, r * hidden + x, static_cast<float>(w * g));
        dot += g * LoadF(input, r * hidden + x);
      }
      StoreF(dweights, t * k + j, static_cast<float>(dot));
    }
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
      return Invalid(kName, "in", in, "has no dimension ", dims[i]);
    if (i > 0 && dims[i - 1] >= dims[i])
      return Invalid(kName, "in", in, "dims must be strictly increasing, got ",
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

#undef REF_TRY

} // namespace veomni::rt::cpu::ref
