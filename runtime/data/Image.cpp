//===- Image.cpp - Qwen2-VL image patches ---------------------------------===//

#include "runtime/data/Image.h"
#include "runtime/data/Media.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>

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

namespace {

/// Rows of patches of `frames` (each height x width x 3, at the target
/// size): one frame stands for every frame of a temporal patch (an image);
/// otherwise their count is a multiple of the temporal patch.
VisionPatches Patchify(const std::vector<const std::vector<uint8_t> *> &frames,
                       int64_t height, int64_t width, const VisionConfig &c) {
  const int64_t p = c.patch, m = c.merge, tp = c.temporalPatch;
  const bool still = frames.size() == 1;
  VisionPatches out;
  out.t = still ? 1 : static_cast<int64_t>(frames.size()) / tp;
  out.h = height / p;
  out.w = width / p;
  out.rowSize = 3 * tp * p * p;
  out.values.resize(out.t * out.h * out.w * out.rowSize);
  // Row order: temporal patches, merged blocks (bh, bw), then within a
  // block (mh, mw); a row holds channel, then frame, then the patch's
  // pixels.
  int64_t row = 0;
  for (int64_t t = 0; t < out.t; ++t)
    for (int64_t bh = 0; bh < out.h / m; ++bh)
      for (int64_t bw = 0; bw < out.w / m; ++bw)
        for (int64_t mh = 0; mh < m; ++mh)
          for (int64_t mw = 0; mw < m; ++mw, ++row) {
            float *dst = out.values.data() + row * out.rowSize;
            const int64_t y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
            for (int64_t ch = 0; ch < 3; ++ch)
              for (int64_t frame = 0; frame < tp; ++frame) {
                const std::vector<uint8_t> &rgb =
                    *frames[still ? 0 : t * tp + frame];
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
          }
  return out;
}

} // namespace

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
  if (target.first != height || target.second != width) {
    // Resampled first, as the processor's PIL resize does.
    RgbImage src{height, width, rgb};
    auto resized = ResizeBicubic(src, target.first, target.second);
    if (!resized.ok())
      return resized.status();
    return Qwen2VLPatches(resized->pixels, target.first, target.second, c);
  }
  return Patchify({&rgb}, height, width, c);
}

absl::StatusOr<std::pair<int64_t, int64_t>>
VideoSmartResize(int64_t frames, int64_t height, int64_t width,
                 const VisionConfig &c, int64_t totalPixels) {
  const int64_t tp = std::max<int64_t>(c.temporalPatch, 1);
  if (frames < tp)
    return absl::InvalidArgumentError(absl::StrCat(
        "a video of ", frames, " sampled frames: fewer than a temporal patch (",
        tp, ")"));
  if (height < 1 || width < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("video of ", height, "x", width, ": an empty frame"));
  const int64_t f = c.factor();
  double h = static_cast<double>(height), w = static_cast<double>(width);
  if (height < f || width < f) {
    // Scaled up (truncated, as int() does) before the rule.
    const double scale = std::max(double(f) / h, double(f) / w);
    h = std::trunc(h * scale);
    w = std::trunc(w * scale);
  }
  if (std::max(h, w) / std::min(h, w) > 200)
    return absl::InvalidArgumentError(
        absl::StrCat("video of ", height, "x", width,
                     ": the aspect ratio must be below 200"));
  const int64_t perFrame = std::max<int64_t>(
      std::min<int64_t>(c.maxPixels, totalPixels / frames),
      static_cast<int64_t>(static_cast<double>(c.minPixels) * 1.05));
  const int64_t most = perFrame * frames;
  const double n = static_cast<double>(frames);
  const int64_t tBar = PyRound(n / double(tp)) * tp;
  int64_t hBar = PyRound(h / f) * f, wBar = PyRound(w / f) * f;
  if (tBar * hBar * wBar > most) {
    const double beta = std::sqrt(n * h * w / static_cast<double>(most));
    hBar = std::max<int64_t>(f, static_cast<int64_t>(std::floor(h / beta / f)) *
                                    f);
    wBar = std::max<int64_t>(f, static_cast<int64_t>(std::floor(w / beta / f)) *
                                    f);
  } else if (tBar * hBar * wBar < c.minPixels) {
    const double beta =
        std::sqrt(static_cast<double>(c.minPixels) / (n * h * w));
    hBar = static_cast<int64_t>(std::ceil(h * beta / f)) * f;
    wBar = static_cast<int64_t>(std::ceil(w * beta / f)) * f;
  }
  return std::make_pair(hBar, wBar);
}

absl::StatusOr<VisionPatches> VideoPatches(const std::vector<RgbImage> &frames,
                                           std::pair<int64_t, int64_t> target,
                                           const VisionConfig &c) {
  if (frames.empty())
    return absl::InvalidArgumentError("a video of no frames");
  const int64_t height = frames[0].height, width = frames[0].width;
  std::vector<RgbImage> resized;
  std::vector<const std::vector<uint8_t> *> pixels;
  for (const RgbImage &f : frames) {
    if (f.height != height || f.width != width ||
        static_cast<int64_t>(f.pixels.size()) != height * width * 3)
      return absl::InvalidArgumentError("a video's frames differ in size");
    if (target.first == height && target.second == width) {
      pixels.push_back(&f.pixels);
      continue;
    }
    auto r = ResizeBicubic(f, target.first, target.second);
    if (!r.ok())
      return r.status();
    resized.push_back(*std::move(r));
  }
  for (const RgbImage &r : resized)
    pixels.push_back(&r.pixels);
  // The last frame repeated up to a whole temporal patch.
  while (pixels.size() % c.temporalPatch)
    pixels.push_back(pixels.back());
  return Patchify(pixels, target.first, target.second, c);
}

absl::StatusOr<VisionPatches>
Qwen2VLVideoPatches(const std::vector<RgbImage> &frames,
                    const VisionConfig &c) {
  if (frames.empty())
    return absl::InvalidArgumentError("a video of no frames");
  VEOMNI_ASSIGN_OR_RETURN(auto target,
                          SmartResize(frames[0].height, frames[0].width, c));
  return VideoPatches(frames, target, c);
}

} // namespace veomni::rt

//===----------------------------------------------------------------------===//
// Decoding
//===----------------------------------------------------------------------===//

namespace veomni::rt {

namespace {

absl::StatusOr<RgbImage> DecodePng(const std::string &path,
                                   const std::vector<uint8_t> &bytes) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable PNG: ", image.message));
  // Read with alpha and drop it after: PIL's convert("RGB") drops alpha
  // without compositing, where libpng's RGB output would composite.
  image.format = PNG_FORMAT_RGBA;
  if (image.width == 0 || image.height == 0 ||
      static_cast<uint64_t>(image.width) * image.height > (uint64_t{1} << 28)) {
    png_image_free(&image);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": implausible size ", image.width, "x", image.height));
  }
  RgbImage out;
  out.height = image.height;
  out.width = image.width;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": damaged PNG: ", image.message));
  out.pixels.resize(out.height * out.width * 3);
  for (int64_t i = 0; i < out.height * out.width; ++i)
    std::memcpy(out.pixels.data() + 3 * i, rgba.data() + 4 * i, 3);
  return out;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnJpegError(j_common_ptr cinfo) {
  auto *err = reinterpret_cast<JpegError *>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

absl::StatusOr<RgbImage> DecodeJpeg(const std::string &path,
                                    const std::vector<uint8_t> &bytes) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = OnJpegError;
  RgbImage out;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": damaged JPEG: ", err.message));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), bytes.size());
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB; // gray and YCbCr convert
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3 ||
      static_cast<uint64_t>(cinfo.output_width) * cinfo.output_height >
          (uint64_t{1} << 28)) {
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unsupported JPEG (", cinfo.output_components, " components, ",
        cinfo.output_width, "x", cinfo.output_height, ")"));
  }
  out.height = cinfo.output_height;
  out.width = cinfo.output_width;
  out.pixels.resize(out.height * out.width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + cinfo.output_scanline * out.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  // libjpeg only warns of a truncated or corrupt stream and fills the
  // rest with gray: a warning is a damaged file here.
  if (err.mgr.num_warnings > 0) {
    (*err.mgr.format_message)(reinterpret_cast<j_common_ptr>(&cinfo),
                              err.message);
    jpeg_destroy_decompress(&cinfo);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": damaged JPEG: ", err.message));
  }
  jpeg_destroy_decompress(&cinfo);
  return out;
}

} // namespace

namespace {

double BicubicKernel(double x) { // Pillow's bicubic, a = -0.5
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0)
    return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

double BilinearKernel(double x) { // Pillow's triangle
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

/// A Pillow resampling filter: its kernel and support (in input samples
/// at scale 1).
struct Filter {
  double (*kernel)(double);
  double support;
};
constexpr Filter kBicubic{BicubicKernel, 2.0}, kBilinear{BilinearKernel, 1.0};

/// Pillow's coefficients for resampling `in` samples to `out`: per output
/// index, its first input and normalised weights.
void Coefficients(const Filter &f, int64_t in, int64_t out,
                  std::vector<int64_t> &first,
                  std::vector<std::vector<double>> &weights) {
  const double scale = static_cast<double>(in) / out;
  const double filterScale = std::max(scale, 1.0);
  const double support = f.support * filterScale;
  first.resize(out);
  weights.resize(out);
  for (int64_t x = 0; x < out; ++x) {
    double center = (x + 0.5) * scale;
    int64_t lo =
        std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    int64_t hi =
        std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    std::vector<double> &w = weights[x];
    w.assign(hi - lo, 0.0);
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      w[j - lo] = f.kernel((j - center + 0.5) / filterScale);
      total += w[j - lo];
    }
    if (total != 0)
      for (double &v : w)
        v /= total;
    first[x] = lo;
  }
}

uint8_t Clip8(double v) {
  v = std::nearbyint(v);
  return static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
}

/// `image` resampled to height x width with `filter`, as Image.resize.
absl::StatusOr<RgbImage> Resize(const RgbImage &image, int64_t height,
                                int64_t width, const Filter &filter) {
  if (height < 1 || width < 1 || image.height < 1 || image.width < 1 ||
      static_cast<int64_t>(image.pixels.size()) !=
          image.height * image.width * 3)
    return absl::InvalidArgumentError(absl::StrCat(
        "resize of a ", image.height, "x", image.width, " image to ", height,
        "x", width, ": empty or inconsistent"));
  // One pass per axis, each rounded to 8 bits. Pillow (13) goes
  // horizontally first, except when the width grows and the height
  // shrinks: then the shrinking vertical pass comes first.
  auto horizontal = [&](const RgbImage &in, int64_t w) {
    std::vector<int64_t> first;
    std::vector<std::vector<double>> k;
    Coefficients(filter, in.width, w, first, k);
    RgbImage out{in.height, w, std::vector<uint8_t>(in.height * w * 3)};
    for (int64_t y = 0; y < in.height; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          double acc = 0;
          for (size_t t = 0; t < k[x].size(); ++t)
            acc += k[x][t] * in.pixels[(y * in.width + first[x] + t) * 3 + c];
          out.pixels[(y * w + x) * 3 + c] = Clip8(acc);
        }
    return out;
  };
  auto vertical = [&](const RgbImage &in, int64_t h) {
    std::vector<int64_t> first;
    std::vector<std::vector<double>> k;
    Coefficients(filter, in.height, h, first, k);
    RgbImage out{h, in.width, std::vector<uint8_t>(h * in.width * 3)};
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < in.width; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          double acc = 0;
          for (size_t t = 0; t < k[y].size(); ++t)
            acc += k[y][t] * in.pixels[((first[y] + t) * in.width + x) * 3 + c];
          out.pixels[(y * in.width + x) * 3 + c] = Clip8(acc);
        }
    return out;
  };
  const bool needH = width != image.width, needV = height != image.height;
  if (needV && needH && width > image.width && height < image.height)
    return horizontal(vertical(image, height), width);
  RgbImage out = needH ? horizontal(image, width) : image;
  if (needV)
    out = vertical(out, height);
  return out;
}

} // namespace

absl::StatusOr<RgbImage> ResizeBicubic(const RgbImage &image, int64_t height,
                                       int64_t width) {
  return Resize(image, height, width, kBicubic);
}

absl::StatusOr<RgbImage> ResizeBilinear(const RgbImage &image, int64_t height,
                                        int64_t width) {
  return Resize(image, height, width, kBilinear);
}

absl::StatusOr<VisionPatches> WholeImage(const RgbImage &image, int64_t size,
                                         const VisionConfig &c) {
  RgbImage resized;
  const RgbImage *at = &image;
  if (image.height != size || image.width != size) {
    VEOMNI_ASSIGN_OR_RETURN(resized, ResizeBilinear(image, size, size));
    at = &resized;
  }
  VisionPatches out;
  out.t = out.h = out.w = 1;
  out.rowSize = 3 * size * size;
  out.values.resize(out.rowSize);
  // Channel-major: [3, size, size], rescaled by 1/255 then normalised in
  // f32, as transformers stores the rescaled image.
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t i = 0; i < size * size; ++i) {
      float scaled = static_cast<float>(at->pixels[i * 3 + ch] * (1.0 / 255.0));
      out.values[ch * size * size + i] =
          static_cast<float>((scaled - static_cast<float>(c.mean[ch])) /
                             static_cast<float>(c.stddev[ch]));
    }
  return out;
}

std::vector<RgbImage> PanAndScanCrops(const RgbImage &image, int64_t minCrop,
                                      int64_t maxCrops, double minRatio) {
  const int64_t h = image.height, w = image.width;
  if (h < 1 || w < 1 || minCrop < 1)
    return {};
  const bool wide = w >= h;
  const int64_t along = wide ? w : h, across = wide ? h : w;
  if (double(along) / double(across) < minRatio)
    return {};
  int64_t n =
      static_cast<int64_t>(std::floor(double(along) / double(across) + 0.5));
  n = std::min(
      static_cast<int64_t>(std::floor(double(along) / double(minCrop))), n);
  n = std::min(maxCrops, std::max<int64_t>(2, n));
  const int64_t cw = wide ? (w + n - 1) / n : w,
                ch = wide ? h : (h + n - 1) / n;
  if (std::min(cw, ch) < minCrop)
    return {};
  std::vector<RgbImage> crops;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y0 = wide ? 0 : k * ch, x0 = wide ? k * cw : 0;
    RgbImage crop;
    crop.height = std::min(ch, h - y0);
    crop.width = std::min(cw, w - x0);
    if (crop.height < 1 || crop.width < 1)
      continue; // (a slice past the edge is empty; PIL cannot take it)
    crop.pixels.resize(crop.height * crop.width * 3);
    for (int64_t y = 0; y < crop.height; ++y)
      std::copy_n(image.pixels.begin() + ((y0 + y) * w + x0) * 3,
                  crop.width * 3, crop.pixels.begin() + y * crop.width * 3);
    crops.push_back(std::move(crop));
  }
  return crops;
}

absl::StatusOr<RgbImage> DecodeImage(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0)
    return DecodePng(path, bytes);
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 &&
      bytes[2] == 0xFF)
    return DecodeJpeg(path, bytes);
  // Anything else (BMP, GIF, WebP, TIFF, ...) through FFmpeg.
  absl::StatusOr<RgbImage> other = DecodeFirstFrame(path);
  if (!other.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not an image (PNG, JPEG, or a format FFmpeg reads: ",
        other.status().message(), ")"));
  return other;
}

} // namespace veomni::rt
