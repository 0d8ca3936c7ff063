//===- Media.h - audio files through FFmpeg's libraries ---------*- C++ -*-===//
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
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_MEDIA_H
#define VEOMNI_RUNTIME_DATA_MEDIA_H

#include "absl/status/statusor.h"

#include <string>
#include <vector>

namespace veomni::rt {

/// The first audio stream of `path` as mono float samples in [-1, 1] at
/// `rate` Hz.
absl::StatusOr<std::vector<float>> DecodeAudio(const std::string &path,
                                               int rate = 16000);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_MEDIA_H
