//===- Stream.h - training data read as a stream ----------------*- C++ -*-===//
//
// What the trainer reads when a recipe names `data.path` (docs/data.md):
//
//   FILE.jsonl  one sample a line ({"text": ...} or {"messages": [...]},
//               Jsonl.h), tokenized with `data.tokenizer` as it is read
//   FILE.txt    (or .md, .text) one document a paragraph, the text
//               between "\n\n" separators, tokenized exactly as it stands
//               (without a tokenizer a token is a byte and paragraphs are
//               trimmed, as `veomni data pack` does)
//   FILE.vtd    documents already tokenized (runtime/io/TokenDataset.h;
//               known by its magic whatever its name)
//
// A source is read a sample at a time from a position (a byte offset, or
// a document index for .vtd), never loaded whole; its errors name the file
// and line (or paragraph, or document). A DataStream mixes several sources
// by weight: sample n comes from the source a seeded hash of n picks, so
// the order depends on the seed and the weights alone, and every rank of a
// job draws the same samples. A source at its end starts over (a new
// epoch). Its position — how many samples were drawn and where each source
// stands — fits in one line of text that checkpoints keep, so a resumed
// run continues with the next sample.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_STREAM_H
#define VEOMNI_RUNTIME_DATA_STREAM_H

#include "runtime/data/Jsonl.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

struct MediaModel;

/// How sources turn text into samples.
struct DataOptions {
  /// A model with vision or audio inputs (Multimodal.h): JSONL
  /// conversations may hold image and audio parts, read relative to the
  /// file's folder; null: text only.
  const MediaModel *media = nullptr;
  /// Null: a token is a byte (plain text only; JSONL needs a tokenizer).
  const Tokenizer *tokenizer = nullptr;
  std::optional<ChatFormat> chat; ///< conversations' format
  int32_t eos = -1;               ///< >= 0: appended to text samples
  int64_t vocab = 0;    ///< > 0: a sample holding an id at or above it is bad
  bool skipBad = false; ///< leave bad samples out (counted) or stop
  /// JSONL: lines encoded (tokenized, their media decoded) ahead on this
  /// many threads, twice as many lines in flight; 0: when read.
  int threads = 0;
};

/// Where a source stands: the next sample's byte offset (document index
/// for .vtd), its line (paragraph, document) number from 1, and how many
/// times the source was read to its end.
struct SourcePosition {
  uint64_t offset = 0, line = 1, epoch = 0;
};

class SampleSource {
public:
  /// The source for `path`, by its extension (above). Errors name it.
  static absl::StatusOr<std::unique_ptr<SampleSource>>
  Open(const std::string &path, const DataOptions &options);
  virtual ~SampleSource() = default;

  /// Reads the next sample into `s`: false at the end of the file (the
  /// position stays there; Seek({0, 1, epoch + 1}) starts over). A bad
  /// sample is an error naming FILE:LINE, or with skipBad is counted in
  /// skipped() and passed over.
  virtual absl::StatusOr<bool> Next(TokenizedSample &s) = 0;
  virtual absl::Status Seek(const SourcePosition &at) = 0;
  const SourcePosition &position() const { return at_; }
  const std::string &path() const { return path_; }
  /// (A copy: a loader thread may be reading on while another asks.)
  SkippedSamples skipped() const {
    std::lock_guard<std::mutex> lock(skipMu_);
    return skipped_;
  }

protected:
  SampleSource(std::string path, const DataOptions &options)
      : path_(std::move(path)), options_(options) {}
  /// Checks a tokenized sample against options_ (vocabulary, emptiness is
  /// fine); `where` names it.
  absl::Status Check(const TokenizedSample &s) const;
  /// Counts `bad` (FILE:LINE already in its message) when skipping, else
  /// returns it.
  absl::Status Bad(absl::Status bad);

  std::string path_;
  DataOptions options_;
  SourcePosition at_;
  mutable std::mutex skipMu_;
  SkippedSamples skipped_;
};

/// Calls `each` on every sample of one pass of `source`, from where it
/// stands; the first error stops it.
absl::Status ForEachSample(SampleSource &source,
                           const std::function<void(TokenizedSample &)> &each);

/// Several sources mixed by weight, each read round and round.
class DataStream {
public:
  /// `weights` empty: equal weights; else one positive number a source. A
  /// folder stands for its data files (.jsonl, .txt, .md, .text, .vtd) in
  /// name order, its weight shared among them by their sizes.
  static absl::StatusOr<std::unique_ptr<DataStream>>
  Open(const std::vector<std::string> &paths, std::vector<double> weights,
       const DataOptions &options, uint64_t seed);

  /// The next sample (of any source). A source with no sample at all in a
  /// whole pass is an error naming it.
  absl::Status Next(TokenizedSample &s);

  /// "n src0 ... srcK": samples drawn so far and each source's offset,
  /// line and epoch; Restore reads it back (an error names what does not
  /// fit these sources).
  std::string Position() const;
  absl::Status Restore(const std::string &position);

  size_t sources() const { return sources_.size(); }
  const SampleSource &source(size_t i) const { return *sources_[i]; }
  /// Bad samples left out, over all sources.
  int64_t SkippedCount() const;

private:
  DataStream() = default;
  size_t Pick(uint64_t n) const;
  std::vector<std::unique_ptr<SampleSource>> sources_;
  std::vector<double> cumulative_; ///< normalized, last == 1
  /// Per source: read from its start without a token yet.
  std::vector<bool> emptyPass_;
  uint64_t seed_ = 0, drawn_ = 0;
};

/// Rows of packed sequences: ids, positions, segments and labels, each
/// rows x seqLen, row-major.
struct PackedRows {
  std::vector<int32_t> ids, positions, segments, labels;
};

/// Lays a stream's samples end to end into rows of seqLen tokens, a sample
/// too long for the rest of a row continuing in the next; every piece is
/// its own segment with positions from 0, and a token's label is its
/// successor within the sample where that one is trained (-100 otherwise
/// and after the sample's last token). Rows are always full.
class Packer {
public:
  Packer(DataStream &stream, int64_t seqLen)
      : stream_(stream), seqLen_(seqLen), start_(stream.Position()) {}
  /// The next `rows` rows.
  absl::StatusOr<PackedRows> Next(int64_t rows);

  /// Where the next row starts ("STREAM|TOKEN": the stream's position
  /// before the sample it starts in, and the token in that sample), to
  /// save in checkpoints; Restore continues from one.
  std::string Position() const;
  absl::Status Restore(const std::string &position);

private:
  DataStream &stream_;
  int64_t seqLen_;
  TokenizedSample sample_; ///< the sample being packed
  bool loaded_ = false;    ///< whether sample_ holds one
  std::string start_;      ///< the stream's position before sample_
  uint64_t at_ = 0;        ///< sample_'s next token
};

class Executor;

/// Rows of the global batch `executor`'s text inputs take; an error when
/// the program needs inputs a token stream does not carry (images, ...).
absl::StatusOr<int64_t> TextBatchRows(const Executor &executor);
/// Fills the text inputs of `executor` (input_ids, position_ids,
/// segment_ids, labels) with `rows` (TextBatchRows of them); token ids must
/// lie below input_ids' bound (the vocabulary).
absl::Status FillTextBatch(Executor &executor, const PackedRows &rows);
/// The same with the packer's next rows.
absl::Status FillTextBatch(Executor &executor, Packer &packer);

/// Splits a recipe's list ("a.jsonl,b.vtd", or "[a.jsonl, b.vtd]" as a
/// command line may write it) into its items, trimmed.
std::vector<std::string> SplitList(const std::string &list);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_STREAM_H
