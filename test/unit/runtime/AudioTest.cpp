//===- AudioTest.cpp - Whisper log-mel features against transformers -----===//
//
// Goldens from tools/goldens/make_audio_goldens.py: 1.3 s of a chirp, a
// tone burst and noise, and transformers' WhisperFeatureExtractor features
// (numpy path, f64) for 128 and 80 mel bins; they must agree within 1e-4.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Audio.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

std::vector<float> ReadF32(const std::string &name) {
  std::ifstream in(std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/audio/" +
                       name,
                   std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

TEST(WhisperLogMel, EqualsTransformers) {
  std::vector<float> signal = ReadF32("signal.f32");
  ASSERT_EQ(signal.size(), 20800u);
  for (int64_t mels : {128, 80}) {
    SCOPED_TRACE(mels);
    std::vector<float> want =
        ReadF32("whisper" + std::to_string(mels) + ".f32");
    WhisperFeatures config;
    config.mels = mels;
    absl::StatusOr<LogMel> got = WhisperLogMel(signal, config);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->mels, mels);
    EXPECT_EQ(got->frames, 130);
    ASSERT_EQ(got->values.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i)
      worst = std::max(worst, std::fabs(double(got->values[i]) - want[i]));
    EXPECT_LE(worst, 1e-4);
    RecordProperty("worst_abs_diff_" + std::to_string(mels),
                   std::to_string(worst));
  }
}

TEST(WhisperLogMel, TooFewSamplesIsAnError) {
  std::vector<float> few(200, 0.0f);
  absl::StatusOr<LogMel> r = WhisperLogMel(few);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("too few"), std::string::npos);
  WhisperFeatures bad;
  bad.hop = 0;
  EXPECT_FALSE(WhisperLogMel(std::vector<float>(1000), bad).ok());
}

} // namespace
} // namespace veomni::rt
