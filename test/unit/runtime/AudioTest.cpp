//===- AudioTest.cpp - Whisper log-mel features against transformers -----===//
//
// Goldens from tools/goldens/make_audio_goldens.py: 1.3 s of a chirp, a
// tone burst and noise, and transformers' WhisperFeatureExtractor features
// (numpy path, f64) for 128 and 80 mel bins; they must agree within 1e-4.
//
// Audio files (the same script, with FFmpeg's command-line tool): a WAV
// decodes to its samples exactly; a 44.1 kHz stereo FLAC and a 22.05 kHz
// MP3 decode, mix to mono and resample to 16 kHz as the ffmpeg tool does,
// and the FLAC's tones stay where they were.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Audio.h"
#include "runtime/data/Media.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>
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

std::string Golden(const std::string &name) {
  return std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/audio/" + name;
}

float MaxDiff(const std::vector<float> &a, const std::vector<float> &b) {
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

TEST(DecodeAudio, AWavAtSixteenKilohertzIsItsSamples) {
  absl::StatusOr<std::vector<float>> got = DecodeAudio(Golden("tone16k.wav"));
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<float> want = ReadF32("tone16k.f32");
  ASSERT_EQ(got->size(), want.size());
  EXPECT_EQ(*got, want);
}

TEST(DecodeAudio, FlacAndMp3AreMixedAndResampledAsFFmpegDoes) {
  for (const char *name : {"stereo44k", "tone22k"}) {
    SCOPED_TRACE(name);
    std::string file =
        Golden(std::string(name) +
               (std::string(name) == "tone22k" ? ".mp3" : ".flac"));
    absl::StatusOr<std::vector<float>> got = DecodeAudio(file);
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<float> want = ReadF32(std::string(name) + ".f32");
    EXPECT_EQ(got->size(), want.size());
    EXPECT_LT(MaxDiff(*got, want), 1e-4);
  }
  // Away from the edges, the FLAC's 16 kHz samples are the average of its
  // two tones at the new instants: the resampler keeps them in tune.
  absl::StatusOr<std::vector<float>> flac =
      DecodeAudio(Golden("stereo44k.flac"));
  ASSERT_TRUE(flac.ok());
  ASSERT_EQ(flac->size(), 9600u); // 0.6 s
  float worst = 0;
  for (size_t i = 200; i + 200 < flac->size(); ++i) {
    double t = double(i) / 16000;
    double want = 0.5 * (0.6 * std::sin(2 * M_PI * 440 * t) +
                         0.3 * std::sin(2 * M_PI * 1200 * t + 0.5));
    worst = std::max(worst, float(std::fabs((*flac)[i] - want)));
  }
  EXPECT_LT(worst, 2e-3);
  // Another rate: as many samples as the duration holds.
  absl::StatusOr<std::vector<float>> at8k =
      DecodeAudio(Golden("stereo44k.flac"), 8000);
  ASSERT_TRUE(at8k.ok());
  EXPECT_NEAR(double(at8k->size()), 4800, 2);
}

TEST(DecodeAudio, BadFilesAreErrorsNamingThem) {
  auto message = [](const std::string &path) {
    absl::StatusOr<std::vector<float>> got = DecodeAudio(path);
    return got.ok() ? std::string("ok") : std::string(got.status().message());
  };
  std::string dir = ::testing::TempDir() + "/" + std::to_string(getpid());
  EXPECT_NE(message(dir + ".missing.wav").find("missing.wav: no such file"),
            std::string::npos);
  // A FLAC cut in half: its header states 0.6 s.
  std::ifstream in(Golden("stereo44k.flac"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::string cut = dir + ".cut.flac";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  // (Cut mid-frame, the decoder finds the damage before the end does.)
  std::string m = message(cut);
  EXPECT_TRUE(m.find("cut.flac: ends early") != std::string::npos ||
              m.find("cut.flac: damaged audio") != std::string::npos)
      << m;
  // A WAV of a codec no decoder knows (format tag 0x1234).
  {
    std::string data(2000, '\x01'), wav = "RIFF";
    auto u32 = [](uint32_t v) {
      return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
    };
    auto u16 = [](uint16_t v) { return std::string{char(v), char(v >> 8)}; };
    std::string fmt =
        u16(0x1234) + u16(1) + u32(16000) + u32(32000) + u16(2) + u16(16);
    wav += u32(4 + 8 + fmt.size() + 8 + data.size()) + "WAVEfmt " +
           u32(fmt.size()) + fmt + "data" + u32(data.size()) + data;
    std::string odd = dir + ".odd.wav";
    std::ofstream(odd, std::ios::binary) << wav;
    EXPECT_NE(message(odd).find("odd.wav: no decoder for its audio codec"),
              std::string::npos)
        << message(odd);
    std::remove(odd.c_str());
  }
  // Not media at all.
  std::string junk = dir + ".junk.mp3";
  std::ofstream(junk, std::ios::binary) << std::string(3000, '\x7f');
  EXPECT_NE(message(junk).find("junk.mp3: "), std::string::npos);
  EXPECT_EQ(message(junk).find("ok"), std::string::npos);
  // An image has no audio stream.
  std::string image =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/images/" + "rgb.png";
  if (std::ifstream(image).good()) {
    EXPECT_NE(message(image).find("rgb.png: has no audio stream"),
              std::string::npos)
        << message(image);
  }
  std::remove(cut.c_str());
  std::remove(junk.c_str());
}

} // namespace
} // namespace veomni::rt
