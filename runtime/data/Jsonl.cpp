//===- Jsonl.cpp - JSONL datasets of text and conversations ---------------===//

#include "runtime/data/Jsonl.h"

#include "runtime/io/Json.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt {

namespace {

absl::Status Sample(const Json &line, const Tokenizer &tokenizer,
                    std::optional<ChatFormat> chat, int32_t eos,
                    TokenizedSample &s) {
  VEOMNI_ASSIGN_OR_RETURN(bool text, EncodeTextLine(line, tokenizer, eos, s));
  if (text)
    return absl::OkStatus();
  if (FindField(line, "messages") && !chat)
    return absl::InvalidArgumentError(
        "a conversation needs a chat format (--chat chatml, llama3, gemma, "
        "deepseek or harmony)");
  return EncodeConversation(line, tokenizer, chat.value_or(ChatFormat::ChatML),
                            nullptr, s);
}

} // namespace

absl::StatusOr<bool> EncodeTextLine(const Json &line,
                                    const Tokenizer &tokenizer, int32_t eos,
                                    TokenizedSample &out) {
  if (line.kind != Json::Object)
    return absl::InvalidArgumentError("a line is a JSON object");
  const Json *text = FindField(line, "text");
  if (!text)
    return false;
  if (text->kind != Json::String)
    return absl::InvalidArgumentError("\"text\" is not a string");
  VEOMNI_ASSIGN_OR_RETURN(out.ids, tokenizer.Encode(text->text));
  if (eos >= 0)
    out.ids.push_back(eos);
  out.trained.assign(out.ids.size(), 1);
  return true;
}

absl::Status EncodeConversation(const Json &line, const Tokenizer &tokenizer,
                                ChatFormat chat, const PartReader *media,
                                TokenizedSample &out) {
  const Json *messages = FindField(line, "messages");
  if (!messages || messages->kind != Json::Array)
    return absl::InvalidArgumentError("a line needs \"text\" or \"messages\"");
  std::vector<ChatMessage> turns;
  for (size_t i = 0; i < messages->items.size(); ++i) {
    const Json &m = messages->items[i];
    const Json *role = FindField(m, "role");
    const Json *content = FindField(m, "content");
    if (!role || role->kind != Json::String || !content)
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " needs a \"role\" and a \"content\""));
    ChatMessage turn{role->text, "", {}, {}};
    if (const Json *thinking = FindField(m, "thinking")) {
      if (thinking->kind != Json::String)
        return absl::InvalidArgumentError(
            absl::StrCat("message ", i, ": \"thinking\" is not a string"));
      turn.thinking = thinking->text;
    }
    if (FindField(m, "tool_calls"))
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, ": tool calls are not supported in conversations"));
    if (content->kind == Json::String) {
      turn.content = content->text;
      turns.push_back(std::move(turn));
      continue;
    }
    if (content->kind != Json::Array)
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, ": a content is a string or a list of parts"));
    bool textOnly = true;
    for (size_t k = 0; k < content->items.size(); ++k) {
      const Json &part = content->items[k];
      auto where = [&](const absl::Status &s) {
        return absl::Status(s.code(), absl::StrCat("message ", i, ", part ", k,
                                                   ": ", s.message()));
      };
      const Json *type =
          part.kind == Json::Object ? FindField(part, "type") : nullptr;
      if (!type || type->kind != Json::String)
        return where(absl::InvalidArgumentError("a part needs a \"type\""));
      if (type->text == "text") {
        const Json *t = FindField(part, "text");
        if (!t || t->kind != Json::String)
          return where(
              absl::InvalidArgumentError("a text part needs a \"text\""));
        turn.parts.push_back({t->text, {}});
        continue;
      }
      if (!media)
        return where(absl::InvalidArgumentError(absl::StrCat(
            "a \"", type->text,
            "\" part, and this reader takes text alone (a .vtd holds tokens; "
            "a model with a vision or audio tower trains on the JSONL itself, "
            "data.path)")));
      absl::StatusOr<std::vector<ChatPart>> runs = (*media)(part, type->text);
      if (!runs.ok())
        return where(runs.status());
      for (ChatPart &run : *runs)
        turn.parts.push_back(std::move(run));
      textOnly = false;
    }
    // Text alone is the content, in any chat format.
    if (textOnly) {
      for (const ChatPart &p : turn.parts)
        turn.content += p.text;
      turn.parts.clear();
    }
    turns.push_back(std::move(turn));
  }
  VEOMNI_ASSIGN_OR_RETURN(EncodedChat e, EncodeChat(tokenizer, chat, turns));
  out.ids = std::move(e.ids);
  out.trained.resize(out.ids.size());
  for (size_t i = 0; i < out.ids.size(); ++i)
    out.trained[i] = e.labels[i] != kIgnoreLabel;
  return absl::OkStatus();
}

absl::Status EncodeJsonlSample(absl::string_view line,
                               const Tokenizer &tokenizer,
                               std::optional<ChatFormat> chat, int32_t eos,
                               TokenizedSample &out) {
  VEOMNI_ASSIGN_OR_RETURN(Json j, ParseJson(line));
  return Sample(j, tokenizer, chat, eos, out);
}

} // namespace veomni::rt
