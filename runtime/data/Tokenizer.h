//===- Tokenizer.h - Hugging Face byte-level BPE tokenizers -----*- C++ -*-===//
//
// A tokenizer.json as Qwen2/2.5/3 and Llama 3 ship it, read and run in C++
// with the ids of Hugging Face `tokenizers`:
//   added tokens   matched first, anywhere in the text (longest first), and
//                  emitted as their ids; the text between them goes on;
//   normalizer     none, or NFC (ICU);
//   pre-tokenizer  a Sequence of Split (a regex, PCRE2 with Unicode
//                  properties; behavior Isolated) and ByteLevel (bytes to
//                  the GPT-2 printable alphabet; use_regex false, or true
//                  with GPT-2's own pattern);
//   model          BPE: vocab and ranked merges (["a", "b"] or "a b").
// A SentencePiece .model (Llama 2, Gemma, ...) runs through Debian's
// libsentencepiece instead; its control tokens are never parsed from text.
// Anything else in the file is an error naming the field, never a silent
// difference in ids.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_TOKENIZER_H
#define VEOMNI_RUNTIME_DATA_TOKENIZER_H

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace veomni::rt {

class Tokenizer {
public:
  /// Reads `path` (a tokenizer.json); errors name the file and field.
  static absl::StatusOr<std::unique_ptr<Tokenizer>>
  Load(const std::string &path);
  /// Parses a tokenizer.json's text (`name` labels errors).
  static absl::StatusOr<std::unique_ptr<Tokenizer>>
  Parse(absl::string_view json, const std::string &name);
  ~Tokenizer();

  /// The ids of `text` (UTF-8; invalid UTF-8 is an error), added tokens
  /// included, no special tokens added around it.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;
  /// The text of `ids` (added tokens as written); an id that is no token
  /// is an error.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;
  /// The id of an added or vocabulary token spelled `token`, or -1.
  int32_t TokenId(absl::string_view token) const;
  /// The first special added token whose text appears in `text`, or "".
  std::string FindSpecialToken(absl::string_view text) const;
  /// One more than the largest id.
  int64_t VocabSize() const;

  class Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_TOKENIZER_H
