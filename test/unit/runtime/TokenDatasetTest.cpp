//===- TokenDatasetTest.cpp - .vtd files and sequence packing -------------===//

#include "runtime/io/TokenDataset.h"
#include "runtime/data/Stream.h"

#include <gtest/gtest.h>

#include <fstream>
#include <unistd.h>

namespace veomni::rt {
namespace {

std::string TempPath(const std::string &name) {
  return ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
}

TEST(TokenDataset, PacksDocumentsWithSegmentsPositionsAndShiftedLabels) {
  std::string path = TempPath("docs.vtd");
  ASSERT_TRUE(WriteTokenDataset(
                  path, {{10, 11, 12}, {20, 21}, {}, {30, 31, 32, 33, 34}})
                  .ok());
  auto data = TokenDataset::Open(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->documents(), 4u);
  EXPECT_EQ((*data)->tokens(), 10u);

  auto stream = DataStream::Open({path}, {}, {}, 0);
  ASSERT_TRUE(stream.ok()) << stream.status();
  Packer packer(**stream, 4);
  auto rows = packer.Next(3);
  ASSERT_TRUE(rows.ok());
  // Row 0: doc0 (3 tokens) + the first token of doc1.
  // Row 1: the rest of doc1 (a new piece), then doc3 begins.
  // Row 2: doc3 continues.
  EXPECT_EQ(rows->ids, (std::vector<int32_t>{10, 11, 12, 20, 21, 30, 31, 32, 33,
                                             34, 10, 11}));
  EXPECT_EQ(rows->segments,
            (std::vector<int32_t>{0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1}));
  EXPECT_EQ(rows->positions,
            (std::vector<int32_t>{0, 1, 2, 0, 0, 0, 1, 2, 0, 1, 0, 1}));
  // A label is the next token of the same document, even across rows.
  EXPECT_EQ(rows->labels, (std::vector<int32_t>{11, 12, -100, 21, -100, 31, 32,
                                                33, 34, -100, 11, 12}));
  std::remove(path.c_str());
}

TEST(TokenDataset, DamagedFilesAreErrors) {
  std::string path = TempPath("bad.vtd");
  ASSERT_TRUE(WriteTokenDataset(path, {{1, 2, 3}}).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto error = [&](const std::string &content) {
    std::ofstream(path, std::ios::binary) << content;
    auto d = TokenDataset::Open(path);
    return d.ok() ? std::string() : std::string(d.status().message());
  };
  EXPECT_NE(error(bytes.substr(0, bytes.size() - 4))
                .find("need " + std::to_string(bytes.size())),
            std::string::npos);
  EXPECT_NE(error(bytes + "x").find("bytes; 1 documents of 3 tokens need"),
            std::string::npos);
  std::string flipped = bytes;
  flipped[0] = 'X';
  EXPECT_NE(error(flipped).find("bad magic"), std::string::npos);
  std::string negative = bytes;
  negative[negative.size() - 1] = '\xff'; // last token becomes negative
  EXPECT_NE(error(negative).find("token 2 is negative"), std::string::npos);
  EXPECT_NE(error("VEOM").find("truncated"), std::string::npos);
  std::remove(path.c_str());
}

TEST(TokenDataset, TrainedMasksLabelOnlyTheirTargets) {
  // Version 2: a conversation whose tokens 2..3 are an assistant's answer;
  // a label is the next token only where that token is trained.
  std::string path = TempPath("sft.vtd");
  std::vector<std::vector<int32_t>> docs = {{5, 6, 7, 8, 9}, {1, 2}};
  std::vector<std::vector<uint8_t>> trained = {{0, 0, 1, 1, 0}, {1, 1}};
  ASSERT_TRUE(WriteTokenDataset(path, docs, &trained).ok());
  auto data = TokenDataset::Open(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->Trained(0).size(), 5u);
  auto stream = DataStream::Open({path}, {}, {}, 0);
  ASSERT_TRUE(stream.ok()) << stream.status();
  Packer packer(**stream, 7);
  auto rows = packer.Next(1);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->ids, (std::vector<int32_t>{5, 6, 7, 8, 9, 1, 2}));
  EXPECT_EQ(rows->labels,
            (std::vector<int32_t>{-100, 7, 8, -100, -100, 2, -100}));
  // A mask of another length is refused; a flag other than 0 or 1 is a
  // damaged file.
  std::vector<std::vector<uint8_t>> shorter = {{0, 1}, {1, 1}};
  EXPECT_FALSE(WriteTokenDataset(path, docs, &shorter).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[bytes.size() - 1] = 7;
  std::ofstream(path, std::ios::binary) << bytes;
  auto bad = TokenDataset::Open(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("trained flag is 7"), std::string::npos)
      << bad.status();
  std::remove(path.c_str());
}

} // namespace
} // namespace veomni::rt
