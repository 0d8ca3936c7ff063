//===- Audio.cpp - Whisper log-mel features -------------------------------===//

#include "runtime/data/Audio.h"

#include "absl/strings/str_cat.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

namespace veomni::rt {

namespace {

double HzToMel(double hz) { // Slaney: linear below 1 kHz, log above
  const double minLogHz = 1000.0, minLogMel = 15.0;
  const double logStep = 27.0 / std::log(6.4);
  return hz < minLogHz ? 3.0 * hz / 200.0
                       : minLogMel + std::log(hz / minLogHz) * logStep;
}

double MelToHz(double mel) {
  const double minLogHz = 1000.0, minLogMel = 15.0;
  const double logStep = std::log(6.4) / 27.0;
  return mel < minLogMel ? 200.0 * mel / 3.0
                         : minLogHz * std::exp(logStep * (mel - minLogMel));
}

/// [bins, mels] triangular filters with Slaney normalisation, as
/// transformers' mel_filter_bank builds them.
std::vector<double> MelFilters(int64_t bins, int64_t mels, double sampleRate) {
  const double minMel = HzToMel(0.0), maxMel = HzToMel(8000.0);
  std::vector<double> edges(mels + 2);
  for (int64_t i = 0; i < mels + 2; ++i)
    edges[i] = MelToHz(minMel + (maxMel - minMel) * i / double(mels + 1));
  std::vector<double> filters(bins * mels, 0.0);
  for (int64_t b = 0; b < bins; ++b) {
    double f = (sampleRate / 2.0) * b / double(bins - 1);
    for (int64_t m = 0; m < mels; ++m) {
      double down = (f - edges[m]) / (edges[m + 1] - edges[m]);
      double up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
      double v = std::max(0.0, std::min(down, up));
      filters[b * mels + m] = v * 2.0 / (edges[m + 2] - edges[m]);
    }
  }
  return filters;
}

std::mutex planMutex; // FFTW's planner is not thread-safe

} // namespace

absl::StatusOr<LogMel> WhisperLogMel(absl::Span<const float> samples,
                                     const WhisperFeatures &c) {
  if (c.n_fft < 2 || c.hop < 1 || c.mels < 1 || c.sampleRate < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "audio features: n_fft ", c.n_fft, ", hop ", c.hop, ", mels ", c.mels,
        " and sample rate ", c.sampleRate, " must be positive"));
  const int64_t n = static_cast<int64_t>(samples.size()), pad = c.n_fft / 2;
  if (n <= pad)
    return absl::InvalidArgumentError(absl::StrCat(
        "audio features: ", n, " samples are too few for a window of ", c.n_fft,
        " (at least ", pad + 1, ")"));
  // Reflect padding: x[-k] = x[k], x[n - 1 + k] = x[n - 1 - k].
  std::vector<double> padded(n + 2 * pad);
  for (int64_t i = 0; i < n + 2 * pad; ++i) {
    int64_t j = i - pad;
    if (j < 0)
      j = -j;
    if (j >= n)
      j = 2 * (n - 1) - j;
    padded[i] = samples[j];
  }
  const int64_t frames = 1 + (n + 2 * pad - c.n_fft) / c.hop;
  const int64_t bins = c.n_fft / 2 + 1;
  std::vector<double> window(c.n_fft);
  for (int64_t i = 0; i < c.n_fft; ++i) // periodic Hann
    window[i] = 0.5 - 0.5 * std::cos(2.0 * M_PI * i / double(c.n_fft));
  std::vector<double> filters = MelFilters(bins, c.mels, c.sampleRate);

  double *in = fftw_alloc_real(c.n_fft);
  fftw_complex *out = fftw_alloc_complex(bins);
  fftw_plan plan;
  {
    std::lock_guard<std::mutex> lock(planMutex);
    plan =
        fftw_plan_dft_r2c_1d(static_cast<int>(c.n_fft), in, out, FFTW_ESTIMATE);
  }
  // The last frame is dropped, as Whisper does.
  const int64_t kept = frames - 1;
  LogMel result;
  result.mels = c.mels;
  result.frames = kept;
  std::vector<double> logs(c.mels * kept);
  std::vector<double> power(bins);
  double top = -INFINITY;
  for (int64_t f = 0; f < kept; ++f) {
    for (int64_t i = 0; i < c.n_fft; ++i)
      in[i] = padded[f * c.hop + i] * window[i];
    fftw_execute(plan);
    for (int64_t b = 0; b < bins; ++b)
      power[b] = out[b][0] * out[b][0] + out[b][1] * out[b][1];
    for (int64_t m = 0; m < c.mels; ++m) {
      double mel = 0;
      for (int64_t b = 0; b < bins; ++b)
        mel += filters[b * c.mels + m] * power[b];
      double v = std::log10(std::max(mel, 1e-10));
      logs[m * kept + f] = v;
      top = std::max(top, v);
    }
  }
  {
    std::lock_guard<std::mutex> lock(planMutex);
    fftw_destroy_plan(plan);
  }
  fftw_free(in);
  fftw_free(out);
  result.values.resize(logs.size());
  for (size_t i = 0; i < logs.size(); ++i)
    result.values[i] =
        static_cast<float>((std::max(logs[i], top - 8.0) + 4.0) / 4.0);
  return result;
}

} // namespace veomni::rt
