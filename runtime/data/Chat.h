//===- Chat.h - conversations as token ids and training labels --*- C++ -*-===//
//
// The chat formats of the shipped families, rendered and tokenized in one
// pass with the labels a supervised fine-tuning step trains on:
//
//   ChatML (Qwen2/2.5/3):  <|im_start|>ROLE\nCONTENT<|im_end|>\n  per turn
//   Llama 3:               <|begin_of_text|> once, then per turn
//                          <|start_header_id|>ROLE<|end_header_id|>\n\n
//                          CONTENT<|eot_id|>
//   Gemma (3):             <bos> once, then per turn
//                          <start_of_turn>ROLE\nCONTENT<end_of_turn>\n
//                          with ROLE user or model (the assistant), the
//                          contents trimmed, a system prompt + "\n\n"
//                          before the first user turn's content, and turns
//                          alternating user / model
//   DeepSeek (V3):         <｜begin▁of▁sentence｜> and every system prompt
//                          (joined by "\n\n") once, then per turn
//                          <｜User｜>CONTENT or
//                          <｜Assistant｜>CONTENT<｜end▁of▁sentence｜>
//   Harmony (gpt-oss):     <|start|>system<|message|> with the model
//                          identity, knowledge cutoff, date (ChatDate),
//                          reasoning effort medium and channels <|end|>,
//                          a system prompt as <|start|>developer<|message|>
//                          # Instructions\n\nPROMPT\n\n<|end|>, then
//                          <|start|>user<|message|>CONTENT<|end|> and
//                          <|start|>assistant<|channel|>final<|message|>
//                          CONTENT<|end|> (the last answer: <|return|>,
//                          after its thinking in the analysis channel)
//
// No system prompt is added (Qwen3's templates add none; Qwen2/2.5 users
// who want theirs put it in the conversation). A label is the token's id
// where the token belongs to an assistant turn's content or its
// end-of-turn token (<|im_end|>, <|eot_id|>: the model learns to stop, as
// HF's chat templates train it), and -100 everywhere else: the role
// headers, the other turns, the newline after <|im_end|>.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_CHAT_H
#define VEOMNI_RUNTIME_DATA_CHAT_H

#include "runtime/data/Tokenizer.h"

#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

enum class ChatFormat { ChatML, Llama3, Gemma, DeepSeek, Harmony };

/// "chatml", "llama3", "gemma", "deepseek" or "harmony"; an error naming
/// the value otherwise.
absl::StatusOr<ChatFormat> ParseChatFormat(const std::string &name);

/// The chat format of a model family (a config's model_type): Llama 3's
/// for llama, ChatML for the Qwen families, Gemma's for Gemma, DeepSeek's
/// for deepseek_v3, harmony for gpt_oss; none for the others.
std::optional<ChatFormat> ChatFormatOf(const std::string &modelType);

/// A piece of a message's content: text, or token ids spliced in as they
/// are (an image's or a clip's placeholders, never trained).
struct ChatPart {
  std::string text;
  std::vector<int32_t> ids; ///< non-empty: this part is these ids
  /// Text on both sides of the ids, tokenized with the text beside it
  /// (Gemma 3's "\n\n" around an image).
  std::string around;
  /// Text before the ids (and before `around`), never trimmed: what a
  /// processor writes between runs (Qwen3-VL's "<T seconds>", Gemma 3's
  /// pan-and-scan sentence).
  std::string before;
};

struct ChatMessage {
  std::string role; ///< system, user, assistant (or a tool's name)
  std::string content;
  /// An assistant's reasoning (harmony's analysis channel; the JSONL
  /// "thinking" field), rendered and trained in the last answer only.
  std::string thinking;
  /// When not empty, the content instead: text and placeholder runs in
  /// order (ChatML and Gemma), rendered as the templates render content
  /// lists: adjacent text joined (Gemma: each text trimmed), each run
  /// where its part stood.
  std::vector<ChatPart> parts;
};

struct EncodedChat {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels; ///< ids' length; -100 where not trained
};

inline constexpr int32_t kIgnoreLabel = -100;

/// The "Current date: YYYY-MM-DD" of harmony's system message: today's
/// (UTC) unless set, as gpt-oss's template renders strftime_now; a fixed
/// date makes renders reproducible (data.chat_date). An error names a
/// malformed date.
absl::Status SetChatDate(const std::string &date);
std::string ChatDate();

/// The conversation's ids and labels. The format's special tokens must be
/// the tokenizer's (an error names the missing one); a role or content
/// holding a special token's text is an error too, as it would change the
/// turns' structure.
absl::StatusOr<EncodedChat> EncodeChat(const Tokenizer &tokenizer,
                                       ChatFormat format,
                                       absl::Span<const ChatMessage> messages);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_CHAT_H
