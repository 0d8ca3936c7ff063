//===- TokenDataset.h - token datasets and sequence packing -----*- C++ -*-===//
//
// A .vtd file holds tokenized documents (docs/data.md):
//
//   bytes 0..7   magic "VEOMNITD"
//   bytes 8..11  version (u32, little endian): 1, or 2 with a trained mask
//   bytes 12..15 flags: 0 (version 1), 1 (version 2: the mask follows)
//   bytes 16..23 number of documents D (u64)
//   bytes 24..31 number of tokens T (u64)
//   then D + 1 document offsets (u64; 0 first, non-decreasing, T last)
//   then T tokens (i32, non-negative)
//   [version 2] then T trained flags (u8, 0 or 1): whether a token is a
//   target (a conversation's assistant turns)
//
// The file must be exactly that long. The Packer lays documents end to end
// into rows of seq_len tokens, a document too long for the rest of a row
// continuing in the next; every piece is its own segment with positions
// from 0, and labels are each token's successor within its document
// (-100 after a document's last token, and where the successor is not
// trained). Rows are always full: at the end of
// the data the packer wraps around to the first document.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_TOKENDATASET_H
#define VEOMNI_RUNTIME_IO_TOKENDATASET_H

#include "runtime/executor/Executor.h"

#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include <memory>
#include <string>
#include <vector>

namespace veomni::rt {

class MappedFile;

class TokenDataset {
public:
  static absl::StatusOr<std::unique_ptr<TokenDataset>>
  Open(const std::string &path);
  ~TokenDataset();

  const std::string &path() const { return path_; }
  uint64_t documents() const { return documents_; }
  uint64_t tokens() const { return tokens_; }
  absl::Span<const int32_t> Document(uint64_t i) const;
  /// Document i's trained flags, or empty (every token trained).
  absl::Span<const uint8_t> Trained(uint64_t i) const;

private:
  TokenDataset() = default;
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  const uint8_t *map_ = nullptr;
  uint64_t documents_ = 0, tokens_ = 0;
  const uint64_t *offsets_ = nullptr;
  const int32_t *data_ = nullptr;
  const uint8_t *trained_ = nullptr;
};

/// Writes documents as a .vtd file, atomically.
/// With `trained` (a flag per token), version 2.
absl::Status
WriteTokenDataset(const std::string &path,
                  const std::vector<std::vector<int32_t>> &docs,
                  const std::vector<std::vector<uint8_t>> *trained = nullptr);

/// Rows of packed sequences: ids, positions, segments and labels, each
/// rows x seqLen, row-major.
struct PackedRows {
  std::vector<int32_t> ids, positions, segments, labels;
};

class Packer {
public:
  Packer(const TokenDataset &data, int64_t seqLen)
      : data_(data), seqLen_(seqLen) {}
  /// The next `rows` rows; fails on an empty dataset.
  absl::StatusOr<PackedRows> Next(int64_t rows);

  /// Where the next row starts, to save in checkpoints and resume from.
  std::pair<uint64_t, uint64_t> Position() const { return {doc_, at_}; }
  void SetPosition(uint64_t doc, uint64_t at) {
    doc_ = doc;
    at_ = at;
  }

private:
  const TokenDataset &data_;
  int64_t seqLen_;
  uint64_t doc_ = 0, at_ = 0; ///< where the next row starts
};

/// Fills the text inputs of `executor` (input_ids, position_ids,
/// segment_ids, labels) with the packer's next rows; token ids must lie
/// below input_ids' bound (the vocabulary).
absl::Status FillTextBatch(Executor &executor, Packer &packer);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_TOKENDATASET_H
