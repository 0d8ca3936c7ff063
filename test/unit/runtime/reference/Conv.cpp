//===- Conv.cpp - reference conv1d and its VJP ----------------------------===//
//
// Naive loop nests, for the tests.
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
    return BadView(kName, "weight", weight, "must have the ", cin,
                   " input channels of input ", input.ToString());
  if (bias) {
    VEOMNI_RETURN_IF_ERROR(CheckFloat(kName, "bias", *bias));
    VEOMNI_RETURN_IF_ERROR(CheckShape(kName, "bias", *bias, {cout}));
  }
  if (stride < 1)
    return BadView(kName, "input", input, "stride must be >= 1, got ", stride);
  if (padding < 0)
    return BadView(kName, "input", input, "padding must be >= 0, got ",
                   padding);
  int64_t span = length + 2 * padding - kernel;
  if (span < 0)
    return BadView(kName, "weight", weight, "is longer than padded input ",
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
    return BadView(kName, "weight", weight,
                   "must have the input channels of input ", input.ToString());
  if (stride < 1 || padding < 0 || padding > (int64_t{1} << 40))
    return BadView(kName, "weight", weight, "needs stride >= 1 and padding ",
                   ">= 0, got ", stride, " and ", padding);
  if (len + 2 * padding < kw)
    return BadView(kName, "weight", weight, "is longer than the padded input ",
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

} // namespace veomni::rt::cpu::ref
