//===- Jsonl.h - JSONL datasets of text and conversations -------*- C++ -*-===//
//
// One sample a line: {"text": "..."} (every token trained) or
// {"messages": [{"role": ..., "content": ...}, ...]} rendered in a chat
// format with the assistant's turns trained (Chat.h). A content is a
// string or a list of parts {"type": "text", "text": ...}; image, video
// and audio parts are read by Multimodal.h for models that take them and
// refused by name here. Every error names the file and line.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_JSONL_H
#define VEOMNI_RUNTIME_DATA_JSONL_H

#include "runtime/data/Audio.h"
#include "runtime/data/Chat.h"
#include "runtime/data/Image.h"
#include "runtime/data/Tokenizer.h"
#include "runtime/io/Json.h"

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

struct TokenizedSample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained; ///< per token: 1 where it is a target
  /// A conversation's media (Multimodal.h), in the order of their
  /// placeholders in `ids`.
  std::vector<VisionPatches> images;
  std::vector<LogMel> audios;
};

/// Samples a reader left out (with skipBad): how many, and the first
/// one's "FILE:LINE: why".
struct SkippedSamples {
  int64_t count = 0;
  std::string first;
};

/// The sample of a parsed line's "text" (every token trained, `eos`
/// appended when >= 0): false when the line has none.
absl::StatusOr<bool> EncodeTextLine(const Json &line,
                                    const Tokenizer &tokenizer, int32_t eos,
                                    TokenizedSample &out);

/// Reads a content part of a type other than "text" (`type`): what
/// stands for it in the text, in order (its runs of placeholder ids, and
/// any text between them, as Qwen3-VL's frame timestamps), or an error.
using PartReader = std::function<absl::StatusOr<std::vector<ChatPart>>(
    const Json &part, const std::string &type)>;

/// A parsed line's {"messages": [...]} sample, rendered in `chat` with the
/// assistant's turns trained. A content is a string or a list of parts;
/// parts other than text go to `media`, or with none are an error naming
/// them. Errors name the message (and part).
absl::Status EncodeConversation(const Json &line, const Tokenizer &tokenizer,
                                ChatFormat chat, const PartReader *media,
                                TokenizedSample &out);

/// The sample of one JSONL line (its text, without the newline).
/// `chat`: the format conversations are rendered in (a conversation
/// without one is an error); `eos` >= 0: appended to text samples. Errors
/// say what is wrong with the line; the caller names the file and line
/// (a SampleSource of Stream.h reads files).
absl::Status EncodeJsonlSample(absl::string_view line,
                               const Tokenizer &tokenizer,
                               std::optional<ChatFormat> chat, int32_t eos,
                               TokenizedSample &out);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_JSONL_H
