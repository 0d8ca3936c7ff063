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
// The file must be exactly that long. runtime/data/Stream.h reads it as
// one of a training run's sources and packs its documents into rows.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_TOKENDATASET_H
#define VEOMNI_RUNTIME_IO_TOKENDATASET_H

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

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_TOKENDATASET_H
