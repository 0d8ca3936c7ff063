//===- Media.h - audio and video through FFmpeg's libraries -----*- C++ -*-===//
//
// Audio in any container and codec FFmpeg's libavformat and libavcodec
// read (WAV, FLAC, MP3, Ogg, M4A, the audio track of a video, ...),
// decoded by Debian's FFmpeg 5.1, its channels averaged to mono (as
// librosa.load and the Qwen processors' loaders do) and resampled to the
// rate the feature extractor wants by libswresample, in one pass. FFmpeg
// logs nothing: every failure is one error naming the file (cannot open,
// no audio stream, no decoder for its codec, damaged data, a file that ends
// before its stated duration, no samples at all).
//
// Video: the frames Qwen2-VL's video processor samples from the first
// video stream (fps frames a second, at least minFrames, at most
// maxFrames, a multiple of the temporal patch; frame i of n is
// floor(i * total / n)), or Qwen3-VL's (`spread`: any count, frame i of
// n the nearest to i * (total - 1) / (n - 1)), decoded and converted to
// 8-bit RGB by libswscale at their own size (bicubic chroma, as the
// ffmpeg tool).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_MEDIA_H
#define VEOMNI_RUNTIME_DATA_MEDIA_H

#include "runtime/data/Image.h"

#include "absl/status/statusor.h"

#include <string>
#include <vector>

namespace veomni::rt {

/// The first audio stream of `path` as mono float samples in [-1, 1] at
/// `rate` Hz.
absl::StatusOr<std::vector<float>> DecodeAudio(const std::string &path,
                                               int rate = 16000);

/// Whether `path` opens and has an audio stream (a video's sound track).
bool HasAudioStream(const std::string &path);

struct VideoSampling {
  double fps = 2;
  int64_t minFrames = 4, maxFrames = 768;
  int64_t frameFactor = 2; ///< the temporal patch
  /// Qwen3VLVideoProcessor.sample_frames: the count is not rounded to
  /// temporal patches and the frames span the first to the last.
  bool spread = false;
};

struct DecodedVideo {
  std::vector<RgbImage> frames; ///< the sampled ones, in order
  std::vector<int64_t> indices; ///< their frame numbers
  double fps = 0;               ///< the stream's
  int64_t totalFrames = 0;
};

/// The sampled frames of `path`'s first video stream.
absl::StatusOr<DecodedVideo> DecodeVideo(const std::string &path,
                                         const VideoSampling &sampling = {});

/// The first picture of an image file FFmpeg reads (BMP, GIF, WebP,
/// TIFF, ...) as 8-bit RGB, alpha dropped as PIL's convert("RGB") drops
/// it; DecodeImage reads PNG and JPEG itself and the rest through this.
absl::StatusOr<RgbImage> DecodeFirstFrame(const std::string &path);

/// The frame numbers Qwen2-VL's processor (Qwen3-VL's with `spread`)
/// samples from `total` frames at `fps` frames a second (an error when
/// none can be).
absl::StatusOr<std::vector<int64_t>>
SampleFrames(int64_t total, double fps, const VideoSampling &sampling);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_MEDIA_H
