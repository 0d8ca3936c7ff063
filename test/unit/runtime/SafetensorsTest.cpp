//===- SafetensorsTest.cpp - weights files: round trip and lying headers --===//

#include "runtime/io/Safetensors.h"

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

} // namespace
} // namespace veomni::rt
