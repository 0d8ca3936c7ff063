//===- ImageTest.cpp - Qwen2-VL image inputs against transformers --------===//
//
// Goldens from tools/goldens/make_image_goldens.py: transformers'
// smart_resize on sizes that round, tie, shrink and grow, and the
// Qwen2VLImageProcessorPil pixel values of two random images already at
// their target sizes, which must be equal bit for bit.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Image.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace veomni::rt {
namespace {

std::string Path(const std::string &name) {
  return std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/images/" + name;
}

std::vector<char> Bytes(const std::string &name) {
  std::ifstream in(Path(name), std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), {});
}

TEST(Qwen2VLImage, SmartResizeEqualsTransformers) {
  std::ifstream in(Path("smart_resize.txt"));
  int64_t h, w, th, tw, cases = 0;
  while (in >> h >> w >> th >> tw) {
    auto got = SmartResize(h, w);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->first, th) << h << "x" << w;
    EXPECT_EQ(got->second, tw) << h << "x" << w;
    ++cases;
  }
  EXPECT_GE(cases, 10);
  EXPECT_FALSE(SmartResize(1, 300).ok()); // aspect ratio over 200
  EXPECT_FALSE(SmartResize(0, 10).ok());
}

TEST(Qwen2VLImage, PatchesEqualTransformersBitForBit) {
  struct Case {
    int64_t h, w, gh, gw;
  };
  for (Case c : {Case{56, 84, 4, 6}, Case{112, 56, 8, 4}}) {
    std::string size = std::to_string(c.h) + "x" + std::to_string(c.w);
    SCOPED_TRACE(size);
    std::vector<char> raw = Bytes("rgb_" + size + ".u8");
    std::vector<uint8_t> rgb(raw.begin(), raw.end());
    auto got = Qwen2VLPatches(rgb, c.h, c.w);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->t, 1);
    EXPECT_EQ(got->h, c.gh);
    EXPECT_EQ(got->w, c.gw);
    EXPECT_EQ(got->rowSize, 1176);
    EXPECT_EQ(got->Tokens({}), c.gh * c.gw / 4);
    std::vector<char> want = Bytes("pixels_" + size + ".f32");
    ASSERT_EQ(want.size(), got->values.size() * 4);
    int differ = 0;
    float worst = 0;
    for (size_t i = 0; i < got->values.size(); ++i) {
      float wv;
      std::memcpy(&wv, want.data() + 4 * i, 4);
      if (wv != got->values[i]) {
        ++differ;
        worst = std::max(worst, std::fabs(wv - got->values[i]));
      }
    }
    EXPECT_EQ(differ, 0) << "largest difference " << worst;
  }
}

TEST(Qwen2VLImage, ResizedImagesMatchTheProcessor) {
  // 70x97 is resized to 56x84 first; the pixel values are within PIL's
  // resampling difference (1/255 before normalisation) of the processor's.
  std::vector<char> raw = Bytes("noisy_70x97.u8");
  auto got =
      Qwen2VLPatches(std::vector<uint8_t>(raw.begin(), raw.end()), 70, 97);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->h, 4);
  EXPECT_EQ(got->w, 6);
  std::vector<char> want = Bytes("pixels_noisy_70x97.f32");
  ASSERT_EQ(want.size(), got->values.size() * 4);
  float worst = 0;
  for (size_t i = 0; i < got->values.size(); ++i) {
    float wv;
    std::memcpy(&wv, want.data() + 4 * i, 4);
    worst = std::max(worst, std::fabs(wv - got->values[i]));
  }
  // 1/255 over the smallest std (0.2613) and a little rounding.
  EXPECT_LE(worst, 1.0f / 255 / 0.2613f + 1e-5f);
  EXPECT_FALSE(Qwen2VLPatches(std::vector<uint8_t>(10), 56, 84).ok());
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

TEST(DecodeImage, PngAndJpegEqualPil) {
  // BMP, GIF, lossless WebP and RGBA TIFF come through FFmpeg.
  for (const char *name :
       {"rgb.png", "gray_alpha.png", "palette.png", "photo.jpg", "gray.jpg",
        "rgb.bmp", "palette.gif", "lossless.webp", "rgba.tiff"}) {
    SCOPED_TRACE(name);
    auto img = DecodeImage(Path(name));
    ASSERT_TRUE(img.ok()) << img.status();
    EXPECT_EQ(img->height, 56);
    EXPECT_EQ(img->width, 84);
    std::vector<char> want = Bytes(std::string(name) + ".rgb");
    ASSERT_EQ(want.size(), img->pixels.size());
    EXPECT_EQ(std::memcmp(want.data(), img->pixels.data(), want.size()), 0);
  }
  // A decoded image at its target size goes straight to patches.
  auto img = DecodeImage(Path("rgb.png"));
  ASSERT_TRUE(img.ok());
  EXPECT_TRUE(Qwen2VLPatches(img->pixels, img->height, img->width).ok());
}

TEST(DecodeImage, DamagedFilesAreErrorsNamingThem) {
  std::string dir = ::testing::TempDir();
  std::vector<char> png = Bytes("rgb.png"), jpg = Bytes("photo.jpg");
  struct Case {
    std::string file, content, message;
  };
  const Case cases[] = {
      {"cut.png", std::string(png.begin(), png.begin() + 100), "cut.png"},
      {"cut.jpg", std::string(jpg.begin(), jpg.begin() + 200), "cut.jpg"},
      // Headers whole, data cut: libjpeg only warns; still an error.
      {"short.jpg", std::string(jpg.begin(), jpg.end() - 1500),
       "short.jpg: damaged JPEG"},
      {"text.png", "hello",
       "text.png: not an image (PNG, JPEG, or a format "
       "FFmpeg reads"},
  };
  for (const Case &c : cases) {
    std::ofstream(dir + "/" + c.file, std::ios::binary) << c.content;
    auto r = DecodeImage(dir + "/" + c.file);
    ASSERT_FALSE(r.ok()) << c.file;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << r.status();
  }
  EXPECT_EQ(DecodeImage(dir + "/missing.png").status().code(),
            absl::StatusCode::kNotFound);
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

TEST(ResizeBicubic, WithinOneOfPil) {
  for (const char *name : {"smooth", "noisy"}) {
    std::vector<char> raw = Bytes(std::string(name) + "_70x97.u8");
    RgbImage src{70, 97, std::vector<uint8_t>(raw.begin(), raw.end())};
    for (auto [h, w] :
         {std::pair<int64_t, int64_t>{56, 84}, {140, 196}, {28, 112}}) {
      std::string target = std::to_string(h) + "x" + std::to_string(w);
      SCOPED_TRACE(std::string(name) + " to " + target);
      auto got = ResizeBicubic(src, h, w);
      ASSERT_TRUE(got.ok()) << got.status();
      std::vector<char> want =
          Bytes(std::string(name) + "_to_" + target + ".u8");
      ASSERT_EQ(want.size(), got->pixels.size());
      int worst = 0, differ = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        int d = std::abs(int(uint8_t(want[i])) - int(got->pixels[i]));
        worst = std::max(worst, d);
        differ += d != 0;
      }
      EXPECT_LE(worst, 1) << differ << " of " << want.size() << " differ";
    }
  }
  EXPECT_FALSE(ResizeBicubic(RgbImage{}, 10, 10).ok());
}

} // namespace
} // namespace veomni::rt
