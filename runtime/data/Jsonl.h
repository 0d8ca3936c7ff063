//===- Jsonl.h - JSONL datasets of text and conversations -------*- C++ -*-===//
//
// One sample a line: {"text": "..."} (every token trained) or
// {"messages": [{"role": ..., "content": ...}, ...]} rendered in a chat
// format with the assistant's turns trained (Chat.h). A content is a
// string or a list of parts {"type": "text", "text": ...}; image, video
// and audio parts need the media pipeline of issue 17 and are refused by
// name for now. Every error names the file and line.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_JSONL_H
#define VEOMNI_RUNTIME_DATA_JSONL_H

#include "runtime/data/Chat.h"
#include "runtime/data/Tokenizer.h"

#include "absl/status/status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

struct TokenizedSample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained; ///< per token: 1 where it is a target
};

/// Samples a reader left out (with skipBad): how many, and the first
/// one's "FILE:LINE: why".
struct SkippedSamples {
  int64_t count = 0;
  std::string first;
};

/// Appends the samples of the JSONL file `path` to `out`, read a line at a
/// time. `chat`: the format conversations are rendered in (a conversation
/// without one is an error); `eos` >= 0: appended to text samples. A bad
/// sample stops the read with its error, or with `skipped` is counted
/// there and left out (a file that cannot be read still stops it).
absl::Status ReadJsonlSamples(const std::string &path,
                              const Tokenizer &tokenizer,
                              std::optional<ChatFormat> chat, int32_t eos,
                              std::vector<TokenizedSample> &out,
                              SkippedSamples *skipped = nullptr);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_JSONL_H
