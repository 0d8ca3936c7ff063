//===- StreamTest.cpp - data sources, mixing and resumable packing --------===//
//
// What the trainer reads when a recipe names data.path: JSONL and text
// sources tokenized as they are read, mixed by weight, packed into rows,
// and a position that resumes exactly where a run stopped.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Stream.h"
#include "runtime/data/Prefetch.h"
#include "runtime/io/TokenDataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace veomni::rt {
namespace {

std::string TempPath(const std::string &name) {
  return ::testing::TempDir() + "/" + std::to_string(getpid()) + "." + name;
}

void Write(const std::string &path, const std::string &text) {
  std::ofstream(path, std::ios::binary) << text;
}

const Tokenizer &Qwen() {
  static std::unique_ptr<Tokenizer> tok = [] {
    auto t = Tokenizer::Load(std::string(VEOMNI_SOURCE_DIR) +
                             "/test/goldens/tokenizers/qwen2.json");
    EXPECT_TRUE(t.ok()) << t.status();
    return *std::move(t);
  }();
  return *tok;
}

/// Every sample of one pass.
std::vector<TokenizedSample> ReadAll(SampleSource &source) {
  std::vector<TokenizedSample> out;
  TokenizedSample s;
  while (true) {
    absl::StatusOr<bool> got = source.Next(s);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || !*got)
      return out;
    out.push_back(s);
  }
}

TEST(Stream, JsonlSamplesAreTokenizedAsTheyAreRead) {
  std::string path = TempPath("a.jsonl");
  Write(path, "{\"text\": \"Hello world\"}\n"
              "\n"
              "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
              "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}\r\n"
              "{\"text\": \"no newline at the end\"}");
  DataOptions options;
  options.tokenizer = &Qwen();
  options.chat = ChatFormat::ChatML;
  options.eos = Qwen().TokenId("<|endoftext|>");
  ASSERT_GE(options.eos, 0);
  auto source = SampleSource::Open(path, options);
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<TokenizedSample> got = ReadAll(**source);
  ASSERT_EQ(got.size(), 3u);
  // Each equals the line encoded alone.
  const char *lines[] = {
      "{\"text\": \"Hello world\"}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
      "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}",
      "{\"text\": \"no newline at the end\"}"};
  for (int i = 0; i < 3; ++i) {
    TokenizedSample want;
    ASSERT_TRUE(
        EncodeJsonlSample(lines[i], Qwen(), options.chat, options.eos, want)
            .ok());
    EXPECT_EQ(got[i].ids, want.ids) << i;
    EXPECT_EQ(got[i].trained, want.trained) << i;
  }
  EXPECT_EQ(got[0].ids.back(), options.eos);
  // The conversation trains on the answer only.
  EXPECT_EQ(got[1].trained.front(), 0);
  EXPECT_NE(std::find(got[1].trained.begin(), got[1].trained.end(), 1),
            got[1].trained.end());
  // The end of the file: the position is the file's size, line 5.
  EXPECT_EQ((*source)->position().line, 5u);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  EXPECT_EQ((*source)->position().offset, static_cast<uint64_t>(in.tellg()));
  std::remove(path.c_str());
}

TEST(Stream, BadSamplesNameTheirLineAndAreSkippedWhenAsked) {
  std::string path = TempPath("bad.jsonl");
  Write(path, "{\"text\": \"fine\"}\n"
              "{\"text\": \"a broken line\"\n"
              "{\"messages\": [{\"role\": \"user\", \"content\": "
              "[{\"type\": \"image\", \"image\": \"x.png\"}]}]}\n"
              "{\"text\": 5}\n"
              "{\"text\": \"also fine\"}\n");
  DataOptions options;
  options.tokenizer = &Qwen();
  options.chat = ChatFormat::ChatML;
  auto source = SampleSource::Open(path, options);
  ASSERT_TRUE(source.ok());
  TokenizedSample s;
  ASSERT_TRUE(*(*source)->Next(s));
  absl::StatusOr<bool> bad = (*source)->Next(s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.jsonl:2: "), std::string::npos)
      << bad.status();

  options.skipBad = true;
  auto skipping = SampleSource::Open(path, options);
  ASSERT_TRUE(skipping.ok());
  EXPECT_EQ(ReadAll(**skipping).size(), 2u);
  EXPECT_EQ((*skipping)->skipped().count, 3);
  EXPECT_NE((*skipping)->skipped().first.find("bad.jsonl:2: "),
            std::string::npos);

  // An id outside the model's vocabulary is a bad sample too.
  DataOptions small = options;
  small.skipBad = false;
  small.vocab = 10;
  auto tiny = SampleSource::Open(path, small);
  ASSERT_TRUE(tiny.ok());
  absl::StatusOr<bool> outside = (*tiny)->Next(s);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("bad.jsonl:1: token "),
            std::string::npos);
  EXPECT_NE(outside.status().message().find("outside the model's vocabulary "
                                            "of 10"),
            std::string::npos)
      << outside.status();
  // A JSONL file needs a tokenizer; a file of another kind is refused.
  EXPECT_FALSE(SampleSource::Open(path, {}).ok());
  auto config = SampleSource::Open(TempPath("c.json"), {});
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("not a data file"),
            std::string::npos);
  std::remove(path.c_str());
}

TEST(Stream, TextParagraphsAreTheTextBetweenBlankLines) {
  std::string path = TempPath("t.txt");
  Write(path, "one two\n\n\n\n  three\n\n \n\nfour");
  auto bytes = SampleSource::Open(path, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::vector<TokenizedSample> got = ReadAll(**bytes);
  // Without a tokenizer a token is a byte and paragraphs are trimmed;
  // whitespace-only paragraphs are no documents.
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(std::string(got[0].ids.begin(), got[0].ids.end()), "one two");
  EXPECT_EQ(std::string(got[1].ids.begin(), got[1].ids.end()), "three");
  EXPECT_EQ(std::string(got[2].ids.begin(), got[2].ids.end()), "four");
  // With a tokenizer each piece is tokenized exactly as it stands.
  DataOptions options;
  options.tokenizer = &Qwen();
  auto tokens = SampleSource::Open(path, options);
  ASSERT_TRUE(tokens.ok());
  got = ReadAll(**tokens);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].ids, *Qwen().Encode("  three"));
  std::remove(path.c_str());
}

/// Rows of a fresh packer over `paths` after `skip` rows, and its position.
struct PackRun {
  std::vector<PackedRows> rows;
  std::string position;
};

PackRun Pack(const std::vector<std::string> &paths,
             const std::vector<double> &weights, const DataOptions &options,
             int64_t rows, const std::string &resume = "") {
  PackRun out;
  auto stream = DataStream::Open(paths, weights, options, 7);
  EXPECT_TRUE(stream.ok()) << stream.status();
  Packer packer(**stream, 16);
  if (!resume.empty())
    EXPECT_TRUE(packer.Restore(resume).ok());
  for (int64_t i = 0; i < rows; ++i) {
    absl::StatusOr<PackedRows> r = packer.Next(1);
    EXPECT_TRUE(r.ok()) << r.status();
    out.rows.push_back(*r);
    if (i == rows / 2 - 1)
      out.position = packer.Position();
  }
  return out;
}

TEST(Stream, AResumedPackerContinuesWithTheSameRows) {
  std::string a = TempPath("r.jsonl"), b = TempPath("r.txt");
  std::string jsonl;
  for (int i = 0; i < 9; ++i)
    jsonl += "{\"text\": \"sample number " + std::to_string(i) +
             " has a few words in it\"}\n";
  Write(a, jsonl);
  Write(b, "short\n\na longer paragraph of text that spans more than one "
           "row of sixteen tokens, surely\n\nend");
  DataOptions options;
  options.tokenizer = &Qwen();
  options.eos = Qwen().TokenId("<|endoftext|>");
  // 40 rows wrap around both files several times.
  PackRun whole = Pack({a, b}, {2, 1}, options, 40);
  PackRun resumed = Pack({a, b}, {2, 1}, options, 20, whole.position);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(resumed.rows[i].ids, whole.rows[20 + i].ids) << i;
    EXPECT_EQ(resumed.rows[i].labels, whole.rows[20 + i].labels) << i;
    EXPECT_EQ(resumed.rows[i].segments, whole.rows[20 + i].segments) << i;
  }
  // A position saved for other sources is refused, naming it.
  auto one = DataStream::Open({a}, {}, options, 7);
  ASSERT_TRUE(one.ok());
  Packer packer(**one, 16);
  absl::Status wrong = packer.Restore(whole.position);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("was saved for 2 sources"), std::string::npos)
      << wrong;
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Stream, SourcesAreMixedByWeightTheSameWayEveryTime) {
  std::string a = TempPath("m.vtd"), b = TempPath("n.vtd");
  ASSERT_TRUE(WriteTokenDataset(a, {{1}, {1, 1}}).ok());
  ASSERT_TRUE(WriteTokenDataset(b, {{2}}).ok());
  auto draw = [&](uint64_t seed, std::vector<double> weights) {
    auto stream = DataStream::Open({a, b}, weights, {}, seed);
    EXPECT_TRUE(stream.ok());
    std::vector<int32_t> from;
    TokenizedSample s;
    for (int i = 0; i < 4000; ++i) {
      EXPECT_TRUE((*stream)->Next(s).ok());
      from.push_back(s.ids[0]);
    }
    // Every source went round: source a read 2 documents a pass.
    EXPECT_GT((*stream)->source(0).position().epoch, 100u);
    return from;
  };
  std::vector<int32_t> x = draw(1, {3, 1}), y = draw(1, {3, 1}),
                       z = draw(2, {3, 1});
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  double share = std::count(x.begin(), x.end(), 1) / 4000.0;
  EXPECT_NEAR(share, 0.75, 0.03); // binomial: sigma 0.007
  std::vector<int32_t> even = draw(1, {});
  EXPECT_NEAR(std::count(even.begin(), even.end(), 1) / 4000.0, 0.5, 0.03);
  // Weights must be positive and one a source.
  EXPECT_FALSE(DataStream::Open({a, b}, {1}, {}, 0).ok());
  EXPECT_FALSE(DataStream::Open({a, b}, {1, 0}, {}, 0).ok());
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST(Stream, ASourceWithNothingToTrainOnIsAnError) {
  std::string empty = TempPath("e.txt"), bad = TempPath("b.jsonl");
  Write(empty, "\n\n   \n\n");
  Write(bad, "not json\n{\"text\": 1}\n");
  auto stream = DataStream::Open({empty}, {}, {}, 0);
  ASSERT_TRUE(stream.ok());
  TokenizedSample s;
  absl::Status status = (*stream)->Next(s);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("e.txt: no token to train on"),
            std::string::npos)
      << status;
  DataOptions options;
  options.tokenizer = &Qwen();
  options.skipBad = true;
  auto skipped = DataStream::Open({bad}, {}, options, 0);
  ASSERT_TRUE(skipped.ok());
  status = (*skipped)->Next(s);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(
      status.message().find("bad samples skipped, the first: " + bad + ":1: "),
      std::string::npos)
      << status;
  std::remove(empty.c_str());
  std::remove(bad.c_str());
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

TEST(Stream, ThePrefetcherHandsOutThePackersBatchesAndPositions) {
  std::string path = TempPath("p.jsonl");
  std::string jsonl;
  for (int i = 0; i < 7; ++i)
    jsonl += "{\"text\": \"line " + std::to_string(i) + " of the data\"}\n";
  jsonl += "{\"text\": \"broken\"\n";
  Write(path, jsonl);
  DataOptions options;
  options.tokenizer = &Qwen();
  // Straight from a packer: the rows and the position after each batch.
  auto direct = DataStream::Open({path}, {}, options, 0);
  ASSERT_TRUE(direct.ok());
  Packer straight(**direct, 8);
  std::vector<PackedRows> want;
  std::vector<std::string> after;
  absl::Status failure;
  while (want.size() < 50) { // until a batch reaches line 8
    absl::StatusOr<PackedRows> r = straight.Next(2);
    if (!r.ok()) {
      failure = r.status();
      break;
    }
    want.push_back(*r);
    after.push_back(straight.Position());
  }
  ASSERT_FALSE(failure.ok());
  ASSERT_GE(want.size(), 2u);
  EXPECT_NE(failure.message().find("p.jsonl:8: "), std::string::npos)
      << failure;

  auto stream = DataStream::Open({path}, {}, options, 0);
  ASSERT_TRUE(stream.ok());
  Packer packer(**stream, 8);
  const std::string start = packer.Position();
  Prefetcher<PackedRows> ahead([&] { return packer.Next(2); },
                               [&] { return packer.Position(); }, start, 2);
  EXPECT_EQ(ahead.Position(), start);
  for (size_t i = 0; i < want.size(); ++i) {
    absl::StatusOr<PackedRows> r = ahead.Next();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->ids, want[i].ids) << i;
    EXPECT_EQ(r->labels, want[i].labels) << i;
    // The position is the consumer's, not the loader's (which runs ahead).
    EXPECT_EQ(ahead.Position(), after[i]) << i;
  }
  // The bad line's error comes out of the Next that reaches it, and again.
  absl::StatusOr<PackedRows> bad = ahead.Next();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status(), failure);
  EXPECT_FALSE(ahead.Next().ok());
  EXPECT_EQ(ahead.Position(), after.back());
  std::remove(path.c_str());
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

TEST(Stream, WorkerThreadsEncodeTheSameSamplesInOrder) {
  std::string path = TempPath("w.jsonl");
  std::string jsonl;
  for (int i = 0; i < 40; ++i) {
    jsonl += "{\"text\": \"number " + std::to_string(i * 7919) + "\"}\n";
    if (i % 9 == 4)
      jsonl += "\n  \n"; // blank lines
    if (i == 23)
      jsonl += "{\"text\": \"broken\"\n";
  }
  Write(path, jsonl);
  auto run = [&](int threads, bool skip) {
    DataOptions options;
    options.tokenizer = &Qwen();
    options.threads = threads;
    options.skipBad = skip;
    auto source = SampleSource::Open(path, options);
    EXPECT_TRUE(source.ok());
    std::vector<std::pair<std::vector<int32_t>, uint64_t>> out;
    TokenizedSample s;
    while (true) {
      absl::StatusOr<bool> got = (*source)->Next(s);
      if (!got.ok()) {
        out.push_back({{-1}, (*source)->position().line});
        EXPECT_NE(got.status().message().find("w.jsonl:"), std::string::npos);
        break;
      }
      if (!*got)
        break;
      out.push_back({s.ids, (*source)->position().offset});
      // Seeking back drops what is in flight and reads the same again.
      if (out.size() == 10) {
        SourcePosition at = (*source)->position();
        EXPECT_TRUE((*source)->Next(s).ok());
        EXPECT_TRUE((*source)->Seek(at).ok());
      }
    }
    return out;
  };
  for (bool skip : {true, false}) {
    auto one = run(0, skip), three = run(3, skip);
    EXPECT_EQ(one, three) << skip;
    EXPECT_EQ(one.size(), skip ? 40u : 25u) << skip;
  }
  std::remove(path.c_str());
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

TEST(Stream, AFolderIsItsDataFilesWeightedBySize) {
  std::string dir = TempPath("shards");
  std::filesystem::create_directories(dir);
  std::string small, large;
  for (int i = 0; i < 100; ++i)
    small += "aaaa\n\n";
  for (int i = 0; i < 300; ++i)
    large += "bbbb\n\n";
  Write(dir + "/part-0.txt", small);
  Write(dir + "/part-1.txt", large);
  Write(dir + "/README", "not data");
  Write(dir + "/.hidden.txt", "zzzz");
  auto stream = DataStream::Open({dir}, {}, {}, 3);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_EQ((*stream)->sources(), 2u);
  EXPECT_NE((*stream)->source(0).path().find("part-0.txt"), std::string::npos);
  TokenizedSample s;
  int a = 0;
  for (int i = 0; i < 4000; ++i) {
    ASSERT_TRUE((*stream)->Next(s).ok());
    a += s.ids[0] == 'a';
  }
  EXPECT_NEAR(a / 4000.0, 0.25, 0.03); // 600 of 2400 bytes
  // A folder without data files says so.
  std::string empty = TempPath("empty");
  std::filesystem::create_directories(empty);
  auto none = DataStream::Open({empty}, {}, {}, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("a folder with no data files"),
            std::string::npos);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(empty);
}

} // namespace
} // namespace veomni::rt
