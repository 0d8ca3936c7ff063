//===- SafetensorsTest.cpp - weights files: round trip and lying headers --===//

#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

namespace veomni::rt {
namespace {

std::string TempPath(const std::string &name) {
  return ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
}

void WriteRaw(const std::string &path, const std::string &header,
              size_t dataBytes) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char *>(&n), 8);
  f << header << std::string(dataBytes, '\0');
}

std::string OpenError(const std::string &path) {
  auto f = SafetensorsFile::Open(path);
  return f.ok() ? "" : std::string(f.status().message());
}

TEST(Safetensors, RoundTripsEveryDtypeAndConvertsFloats) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
  std::vector<uint16_t> b(4);
  for (int i = 0; i < 4; ++i)
    b[i] = F32ToBf16(0.5f * i);
  std::vector<int64_t> c = {7, -1, 1 << 20};
  std::string path = TempPath("rt.safetensors");
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"a.weight", {a.data(), DType::F32, {2, 3}}},
                                {"b", {b.data(), DType::BF16, {4}}},
                                {"c", {c.data(), DType::I64, {3}}}},
                               {{"format", "pt"}})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->entries().size(), 3u);
  const auto *ea = (*f)->Find("a.weight");
  ASSERT_TRUE(ea);
  EXPECT_EQ(ea->shape, (Shape{2, 3}));
  TensorView va = (*f)->View(*ea);
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(LoadF(va, i), a[i]);
  // bf16 on disk into an f32 tensor.
  std::vector<float> got(4);
  TensorView dst{got.data(), DType::F32, {4}};
  ASSERT_TRUE(CopyConvert((*f)->View(*(*f)->Find("b")), dst).ok());
  EXPECT_EQ(got[3], 1.5f);
  EXPECT_EQ(LoadI((*f)->View(*(*f)->Find("c")), 2), 1 << 20);
  // No temporary file is left behind.
  EXPECT_FALSE(std::ifstream(path + ".tmp." + std::to_string(getpid())));
  std::remove(path.c_str());
}

TEST(Safetensors, LyingHeadersAreErrorsNotReads) {
  std::string path = TempPath("bad.safetensors");
  auto check = [&](const std::string &header, size_t data,
                   const std::string &message) {
    WriteRaw(path, header, data);
    std::string error = OpenError(path);
    EXPECT_NE(error.find(message), std::string::npos)
        << "header " << header << " gave '" << error << "'";
  };
  check(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
        "tensor 'w': data_offsets [0, 16) outside the 8 data bytes");
  check(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16,
        "tensor 'w': 12 bytes for F32 shape [4]");
  check(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
        16, "tensors overlap");
  check(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8,
        "tensor 'w': unsupported dtype Q4");
  // One-byte quantized storage is kept raw, sized one byte an element.
  check(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,8]}})", 8,
        "tensor 'w': 8 bytes for U8 shape [4]");
  check(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
        "tensor 'w': bad shape");
  check(R"({"w":{"dtype":"F32","shape":[2]}})", 8,
        "tensor 'w': needs dtype, shape and data_offsets");
  check(R"({"w": [1, 2)", 8, "header JSON");
  check(R"([1, 2])", 8, "the header is not a JSON object");

  // A header length beyond the file.
  {
    std::ofstream f(path, std::ios::binary);
    uint64_t n = 1000;
    f.write(reinterpret_cast<const char *>(&n), 8);
    f << "{}";
  }
  EXPECT_NE(OpenError(path).find("header length 1000 exceeds the file"),
            std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    f << "abc";
  }
  EXPECT_NE(OpenError(path).find("truncated: 3 bytes"), std::string::npos);
  EXPECT_NE(OpenError(path + ".none").find("cannot open"), std::string::npos);
  std::remove(path.c_str());
}

// gpt-oss's MXFP4 experts (test/goldens/gpt_oss_mxfp4, made by
// tools/goldens/make_mxfp4_golden.py): the blocks and scales dequantize to
// exactly the tensors transformers holds after loading the checkpoint.
TEST(Safetensors, Mxfp4ExpertsDequantizeAsTransformers) {
  std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/gpt_oss_mxfp4";
  auto weights = WeightSet::Open(dir + "/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  int compared = 0;
  for (const char *name : {"model.layers.0.mlp.experts.gate_up_proj",
                           "model.layers.1.mlp.experts.down_proj"}) {
    SCOPED_TRACE(name);
    const SafetensorsFile::Entry *want = (*expected)->Find(name);
    ASSERT_NE(want, nullptr);
    EXPECT_FALSE(weights->Find(name)); // only blocks and scales
    auto blocks = weights->FindRaw(std::string(name) + "_blocks");
    auto scales = weights->FindRaw(std::string(name) + "_scales");
    ASSERT_TRUE(blocks && scales);
    EXPECT_EQ(blocks->entry->type, "U8");
    std::vector<float> out(
        TensorView{nullptr, DType::F32, want->shape}.numel());
    TensorView view{out.data(), DType::F32, want->shape};
    ASSERT_TRUE(DequantizeMxfp4(blocks->data, blocks->entry->shape,
                                scales->data, scales->entry->shape, view)
                    .ok());
    TensorView ref = (*expected)->View(*want);
    for (int64_t i = 0; i < view.numel(); ++i)
      ASSERT_EQ(out[i], static_cast<const float *>(ref.data)[i]) << "at " << i;
    ++compared;
    // Shapes that do not fit are errors, never reads.
    Shape wrongScales = scales->entry->shape;
    wrongScales[2] += 1;
    absl::Status bad = DequantizeMxfp4(blocks->data, blocks->entry->shape,
                                       scales->data, wrongScales, view);
    EXPECT_NE(std::string(bad.message()).find("MXFP4 scales are"),
              std::string::npos)
        << bad;
    TensorView wrongOut = view;
    wrongOut.shape[1] += 1;
    bad = DequantizeMxfp4(blocks->data, blocks->entry->shape, scales->data,
                          scales->entry->shape, wrongOut);
    EXPECT_NE(std::string(bad.message()).find("dequantize to"),
              std::string::npos)
        << bad;
  }
  EXPECT_EQ(compared, 2);
}

} // namespace
} // namespace veomni::rt
