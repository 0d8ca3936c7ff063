//===- Image.h - Qwen2-VL image patches ------------------------*- C++ -*-===//
//
// The vision input of Qwen2-VL / Qwen2.5-VL (and Qwen2.5-Omni's vision
// tower), as transformers' Qwen2VLImageProcessor makes it:
//   SmartResize   the target size: both sides multiples of factor (28),
//                 the pixel count within [min, max], the aspect ratio kept
//                 as well as that allows (Python's round: ties to even);
//   Qwen2VLPatches  RGB pixels at that size, rescaled by 1/255, normalised
//                 with CLIP's mean and std, repeated to temporal_patch (2)
//                 frames and cut into rows of C x 2 x 14 x 14 values,
//                 merge_size x merge_size neighbours adjacent, with the
//                 grid (t, h, w) and one placeholder token per merged
//                 patch.
// An image not at its target size is resampled to it first (bicubic, as
// PIL's resize: ResizeBicubic). Gemma 3 takes whole images of one size
// instead (WholeImage).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_IMAGE_H
#define VEOMNI_RUNTIME_DATA_IMAGE_H

#include "absl/status/statusor.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace veomni::rt {

struct VisionConfig {
  int64_t patch = 14, merge = 2, temporalPatch = 2;
  int64_t minPixels = 56 * 56, maxPixels = 14 * 14 * 4 * 1280;
  double mean[3] = {0.48145466, 0.4578275, 0.40821073};
  double stddev[3] = {0.26862954, 0.26130258, 0.27577711};
  int64_t factor() const { return patch * merge; }
};

/// (height, width) Qwen2-VL resizes an image of this size to; an aspect
/// ratio over 200 is an error.
absl::StatusOr<std::pair<int64_t, int64_t>>
SmartResize(int64_t height, int64_t width, const VisionConfig &config = {});

/// An 8-bit RGB image.
struct RgbImage {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> pixels; ///< height x width x 3, row-major
};

/// A PNG (libpng; gray, palette, alpha and 16-bit converted to 8-bit RGB,
/// alpha dropped) or JPEG (libjpeg-turbo, as PIL decodes it) file, by its
/// signature. A damaged or unknown file is an error naming it.
absl::StatusOr<RgbImage> DecodeImage(const std::string &path);

/// `image` resampled to height x width with Pillow's bicubic filter
/// (a = -0.5, widened by the scale when shrinking, so it averages), one
/// pass per axis with 8-bit rounding between, as PIL's Image.resize does;
/// within 1 of PIL's pixel values.
absl::StatusOr<RgbImage> ResizeBicubic(const RgbImage &image, int64_t height,
                                       int64_t width);

/// The same with Pillow's bilinear filter (a triangle, widened by the
/// scale when shrinking), as Gemma 3's processor resizes.
absl::StatusOr<RgbImage> ResizeBilinear(const RgbImage &image, int64_t height,
                                        int64_t width);

struct VisionPatches {
  int64_t t = 0, h = 0, w = 0; ///< the grid, in patches
  int64_t rowSize = 0;         ///< C x temporalPatch x patch x patch
  std::vector<float> values;   ///< [t * h * w, rowSize], row-major
  /// A video's seconds per temporal patch (temporalPatch / the sampling
  /// fps), which its rope positions step by; 0 for an image.
  double secondsPerGrid = 0;
  /// A video whose sound track's tokens are interleaved with its own
  /// (MediaModel::audioInVideo); the clip follows in the sample's audios.
  bool withAudio = false;
  /// Placeholder tokens the text carries for this image: t h w / merge^2.
  int64_t Tokens(const VisionConfig &c) const {
    return t * h * w / (c.merge * c.merge);
  }
};

/// The patches of a video's sampled frames (8-bit RGB, all of one size),
/// as transformers' Qwen2VLVideoProcessor makes them: each resampled to
/// the SmartResize size of the frame within `config`'s pixel bounds (the
/// video's), the count padded to a multiple of temporalPatch by repeating
/// the last, consecutive frames forming each temporal patch.
absl::StatusOr<VisionPatches>
Qwen2VLVideoPatches(const std::vector<RgbImage> &frames,
                    const VisionConfig &config);

/// (height, width) Qwen3-VL's video processor (cap_pixels_per_frame)
/// resizes `frames` frames of this size to: a frame's pixels at most
/// `config.maxPixels` and its share of `totalPixels`, at least 1.05 x
/// `config.minPixels`; then SmartResize's rule with the bounds on all the
/// frames together (their count rounded to temporal patches; at least
/// `config.minPixels`), a side below the factor scaled up first. Fewer
/// frames than a temporal patch is an error.
absl::StatusOr<std::pair<int64_t, int64_t>>
VideoSmartResize(int64_t frames, int64_t height, int64_t width,
                 const VisionConfig &config, int64_t totalPixels);

/// The patches of a video's frames resized to height x width (`size`),
/// as Qwen2VLVideoPatches makes them once the size is chosen.
absl::StatusOr<VisionPatches> VideoPatches(const std::vector<RgbImage> &frames,
                                           std::pair<int64_t, int64_t> size,
                                           const VisionConfig &config);

/// The patches of an 8-bit RGB image (`rgb`: height x width x 3,
/// row-major), resampled to its SmartResize size when it is not at it.
absl::StatusOr<VisionPatches> Qwen2VLPatches(const std::vector<uint8_t> &rgb,
                                             int64_t height, int64_t width,
                                             const VisionConfig &config = {});

/// Gemma 3's image input (transformers' Gemma3ImageProcessor, without pan
/// and scan): the image resized to size x size (ResizeBilinear, unless it
/// is that size), rescaled by 1/255 and normalised with `c`'s mean and
/// std, channel-major; one "patch" (t = h = w = 1) of rowSize 3 x size x
/// size.
absl::StatusOr<VisionPatches> WholeImage(const RgbImage &image, int64_t size,
                                         const VisionConfig &c);

/// Gemma 3's pan and scan (Gemma3ImageProcessor's do_pan_and_scan): an
/// image whose long side is at least `minRatio` times its short side is
/// cut along the long side into n equal crops (ceil division, the last
/// clipped at the edge), n the aspect ratio rounded half up, at most
/// long / minCrop, within [2, maxCrops]; none when a crop's short side
/// would be under minCrop, or the image is not elongated enough.
std::vector<RgbImage> PanAndScanCrops(const RgbImage &image,
                                      int64_t minCrop = 256,
                                      int64_t maxCrops = 4,
                                      double minRatio = 1.2);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_IMAGE_H
