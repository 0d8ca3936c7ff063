//===- Image.cpp - Qwen2-VL image patches ---------------------------------===//

#include "runtime/data/Image.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cfenv>
#include <cmath>

namespace veomni::rt {

namespace {
/// Python's round(): to the nearest integer, ties to even.
int64_t PyRound(double x) {
  double r = std::nearbyint(x); // the default mode rounds ties to even
  return static_cast<int64_t>(r);
}
} // namespace

absl::StatusOr<std::pair<int64_t, int64_t>>
SmartResize(int64_t height, int64_t width, const VisionConfig &c) {
  if (height < 1 || width < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("image of ", height, "x", width, ": an empty image"));
  const double h = static_cast<double>(height), w = static_cast<double>(width);
  if (std::max(h, w) / std::min(h, w) > 200)
    return absl::InvalidArgumentError(
        absl::StrCat("image of ", height, "x", width,
                     ": the aspect ratio must be below 200"));
  const int64_t f = c.factor();
  int64_t hBar = PyRound(h / f) * f, wBar = PyRound(w / f) * f;
  if (hBar * wBar > c.maxPixels) {
    double beta = std::sqrt(h * w / static_cast<double>(c.maxPixels));
    hBar = std::max<int64_t>(f, static_cast<int64_t>(std::floor(h / beta / f)) *
                                    f);
    wBar = std::max<int64_t>(f, static_cast<int64_t>(std::floor(w / beta / f)) *
                                    f);
  } else if (hBar * wBar < c.minPixels) {
    double beta = std::sqrt(static_cast<double>(c.minPixels) / (h * w));
    hBar = static_cast<int64_t>(std::ceil(h * beta / f)) * f;
    wBar = static_cast<int64_t>(std::ceil(w * beta / f)) * f;
  }
  return std::make_pair(hBar, wBar);
}

absl::StatusOr<VisionPatches> Qwen2VLPatches(const std::vector<uint8_t> &rgb,
                                             int64_t height, int64_t width,
                                             const VisionConfig &c) {
  if (static_cast<int64_t>(rgb.size()) != height * width * 3)
    return absl::InvalidArgumentError(
        absl::StrCat("image of ", height, "x", width, ": ", rgb.size(),
                     " bytes, not height x width x 3"));
  std::pair<int64_t, int64_t> target;
  if (auto t = SmartResize(height, width, c); t.ok())
    target = *t;
  else
    return t.status();
  if (target.first != height || target.second != width)
    return absl::UnimplementedError(absl::StrCat(
        "image of ", height, "x", width, " would be resized to ", target.first,
        "x", target.second, "; resampling is not there yet (issue 17)"));
  const int64_t p = c.patch, m = c.merge, tp = c.temporalPatch;
  VisionPatches out;
  out.t = 1;
  out.h = height / p;
  out.w = width / p;
  out.rowSize = 3 * tp * p * p;
  out.values.resize(out.t * out.h * out.w * out.rowSize);
  // Row order: merged blocks (bh, bw), then within a block (mh, mw); a row
  // holds channel, then frame (the image twice), then the patch's pixels.
  int64_t row = 0;
  for (int64_t bh = 0; bh < out.h / m; ++bh)
    for (int64_t bw = 0; bw < out.w / m; ++bw)
      for (int64_t mh = 0; mh < m; ++mh)
        for (int64_t mw = 0; mw < m; ++mw, ++row) {
          float *dst = out.values.data() + row * out.rowSize;
          const int64_t y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
          for (int64_t ch = 0; ch < 3; ++ch)
            for (int64_t frame = 0; frame < tp; ++frame)
              for (int64_t y = 0; y < p; ++y)
                for (int64_t x = 0; x < p; ++x) {
                  double v = rgb[((y0 + y) * width + (x0 + x)) * 3 + ch];
                  // rescale by 1/255 then normalise, in f32 as
                  // transformers stores the rescaled image.
                  float scaled = static_cast<float>(v * (1.0 / 255.0));
                  *dst++ = static_cast<float>(
                      (scaled - static_cast<float>(c.mean[ch])) /
                      static_cast<float>(c.stddev[ch]));
                }
        }
  return out;
}

} // namespace veomni::rt
