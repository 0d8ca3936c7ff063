//===- Audio.h - Whisper log-mel features -----------------------*- C++ -*-===//
//
// The input features of Whisper-style audio encoders (Qwen2-Audio,
// Qwen2.5-Omni's audio tower), as transformers' WhisperFeatureExtractor
// computes them from 16 kHz mono samples: a periodic Hann window of n_fft,
// frames every hop samples with the signal reflect-padded by n_fft / 2 at
// both ends, the power spectrum (FFTW, in f64), a Slaney mel filter bank
// from 0 to 8 kHz with Slaney normalisation, log10 floored at 1e-10, the
// last frame dropped, values clamped to 8 below the maximum, then
// (x + 4) / 4. Padding the samples to 30 s is the caller's choice.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_AUDIO_H
#define VEOMNI_RUNTIME_DATA_AUDIO_H

#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include <cstdint>
#include <vector>

namespace veomni::rt {

struct WhisperFeatures {
  int64_t mels = 128, n_fft = 400, hop = 160, sampleRate = 16000;
};

struct LogMel {
  int64_t mels = 0, frames = 0;
  std::vector<float> values; ///< [mels, frames], row-major
};

/// The log-mel features of `samples` (at least n_fft / 2 + 1 of them, so
/// that the reflection is defined).
absl::StatusOr<LogMel> WhisperLogMel(absl::Span<const float> samples,
                                     const WhisperFeatures &config = {});

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_AUDIO_H
