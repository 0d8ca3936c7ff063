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

TEST(Qwen2VLImage, ImagesToResizeAndBadBuffersAreRefused) {
  std::vector<uint8_t> rgb(57 * 85 * 3, 0);
  auto r = Qwen2VLPatches(rgb, 57, 85);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("would be resized to 56x84"),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(Qwen2VLPatches(std::vector<uint8_t>(10), 56, 84).ok());
}

} // namespace
} // namespace veomni::rt
