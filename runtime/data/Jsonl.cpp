//===- Jsonl.cpp - JSONL datasets of text and conversations ---------------===//

#include "runtime/data/Jsonl.h"

#include "runtime/io/Json.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt {

namespace {

/// A message's content: a string, or text parts joined.
absl::StatusOr<std::string> Content(const Json &content) {
  if (content.kind == Json::String)
    return content.text;
  if (content.kind != Json::Array)
    return absl::InvalidArgumentError(
        "a content is a string or a list of parts");
  std::string text;
  for (const Json &part : content.items) {
    const Json *type = FindField(part, "type");
    if (!type || type->kind != Json::String)
      return absl::InvalidArgumentError("a content part needs a \"type\"");
    if (type->text != "text")
      return absl::InvalidArgumentError(absl::StrCat(
          "a \"", type->text,
          "\" part, and this reader takes text alone (a .vtd holds tokens; "
          "a model with a vision or audio tower trains on the JSONL itself, "
          "data.path)"));
    const Json *t = FindField(part, "text");
    if (!t || t->kind != Json::String)
      return absl::InvalidArgumentError("a text part needs a \"text\"");
    text += t->text;
  }
  return text;
}

absl::Status Sample(const Json &line, const Tokenizer &tokenizer,
                    std::optional<ChatFormat> chat, int32_t eos,
                    TokenizedSample &s) {
  if (line.kind != Json::Object)
    return absl::InvalidArgumentError("a line is a JSON object");
  if (const Json *text = FindField(line, "text")) {
    if (text->kind != Json::String)
      return absl::InvalidArgumentError("\"text\" is not a string");
    VEOMNI_ASSIGN_OR_RETURN(s.ids, tokenizer.Encode(text->text));
    if (eos >= 0)
      s.ids.push_back(eos);
    s.trained.assign(s.ids.size(), 1);
    return absl::OkStatus();
  }
  const Json *messages = FindField(line, "messages");
  if (!messages || messages->kind != Json::Array)
    return absl::InvalidArgumentError("a line needs \"text\" or \"messages\"");
  if (!chat)
    return absl::InvalidArgumentError(
        "a conversation needs a chat format (--chat chatml or llama3)");
  std::vector<ChatMessage> turns;
  for (size_t i = 0; i < messages->items.size(); ++i) {
    const Json &m = messages->items[i];
    const Json *role = FindField(m, "role");
    const Json *content = FindField(m, "content");
    if (!role || role->kind != Json::String || !content)
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " needs a \"role\" and a \"content\""));
    absl::StatusOr<std::string> text = Content(*content);
    if (!text.ok())
      return absl::Status(
          text.status().code(),
          absl::StrCat("message ", i, ": ", text.status().message()));
    turns.push_back({role->text, *std::move(text)});
  }
  VEOMNI_ASSIGN_OR_RETURN(EncodedChat e, EncodeChat(tokenizer, *chat, turns));
  s.ids = std::move(e.ids);
  s.trained.resize(s.ids.size());
  for (size_t i = 0; i < s.ids.size(); ++i)
    s.trained[i] = e.labels[i] != kIgnoreLabel;
  return absl::OkStatus();
}

} // namespace

absl::Status EncodeJsonlSample(absl::string_view line,
                               const Tokenizer &tokenizer,
                               std::optional<ChatFormat> chat, int32_t eos,
                               TokenizedSample &out) {
  VEOMNI_ASSIGN_OR_RETURN(Json j, ParseJson(line));
  return Sample(j, tokenizer, chat, eos, out);
}

} // namespace veomni::rt
