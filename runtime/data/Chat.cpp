//===- Chat.cpp - conversations as token ids and training labels ----------===//

#include "runtime/data/Chat.h"

#include "absl/strings/match.h"

#include "runtime/support/Status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#include <algorithm>
#include <ctime>
#include <mutex>

namespace veomni::rt {

absl::StatusOr<ChatFormat> ParseChatFormat(const std::string &name) {
  if (name == "chatml")
    return ChatFormat::ChatML;
  if (name == "llama3")
    return ChatFormat::Llama3;
  if (name == "gemma")
    return ChatFormat::Gemma;
  if (name == "deepseek")
    return ChatFormat::DeepSeek;
  if (name == "harmony")
    return ChatFormat::Harmony;
  return absl::InvalidArgumentError(
      absl::StrCat("chat format '", name,
                   "': expected chatml, llama3, gemma, deepseek or harmony"));
}

std::optional<ChatFormat> ChatFormatOf(const std::string &modelType) {
  if (modelType == "llama")
    return ChatFormat::Llama3;
  if (absl::StartsWith(modelType, "qwen"))
    return ChatFormat::ChatML;
  if (absl::StartsWith(modelType, "gemma"))
    return ChatFormat::Gemma;
  if (modelType == "deepseek_v3")
    return ChatFormat::DeepSeek;
  if (modelType == "gpt_oss")
    return ChatFormat::Harmony;
  return std::nullopt;
}

namespace {
std::mutex chatDateMu;
std::string chatDate; // "" until set or first read
} // namespace

absl::Status SetChatDate(const std::string &date) {
  bool ok = date.size() == 10 && date[4] == '-' && date[7] == '-';
  for (size_t i = 0; ok && i < date.size(); ++i)
    ok = i == 4 || i == 7 || absl::ascii_isdigit(date[i]);
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat("chat date '", date, "': expected YYYY-MM-DD"));
  std::lock_guard<std::mutex> lock(chatDateMu);
  chatDate = date;
  return absl::OkStatus();
}

std::string ChatDate() {
  std::lock_guard<std::mutex> lock(chatDateMu);
  if (chatDate.empty()) {
    std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[16];
    std::strftime(text, sizeof(text), "%Y-%m-%d", &utc);
    chatDate = text;
  }
  return chatDate;
}

namespace {

/// Whether the UTF-8 character at s[i] (of n bytes) is whitespace as
/// Python's str.strip (Jinja's trim) sees it.
bool PythonSpace(absl::string_view s, size_t i, size_t &n) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  uint32_t cp = c;
  n = 1;
  if (c >= 0xC0) {
    n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i + n > s.size())
      return false;
    cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  }
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
         cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/// s without leading and trailing Python whitespace.
absl::string_view PythonStrip(absl::string_view s) {
  size_t n;
  while (!s.empty() && PythonSpace(s, 0, n))
    s.remove_prefix(n);
  // From the end: find the last character's start.
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
      --start;
    if (!PythonSpace(s, start, n) || start + n != s.size())
      break;
    s.remove_suffix(n);
  }
  return s;
}

class Builder {
public:
  explicit Builder(const Tokenizer &t) : t_(t) {}

  absl::StatusOr<int32_t> Special(absl::string_view token) {
    int32_t id = t_.TokenId(token);
    if (id < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("the tokenizer has no ", token, " token"));
    return id;
  }
  void Token(int32_t id, bool trained) {
    out.ids.push_back(id);
    out.labels.push_back(trained ? id : kIgnoreLabel);
  }
  /// `head` then `body` as one stretch of text (no special token between
  /// them, so tokenized together); only the body's tokens are trained
  /// when `trained`. Where a token spans the two, it counts as head.
  absl::Status Text(absl::string_view head, absl::string_view body,
                    bool trained) {
    std::string whole = absl::StrCat(head, body);
    if (whole.empty())
      return absl::OkStatus();
    VEOMNI_ASSIGN_OR_RETURN(std::vector<int32_t> ids, t_.Encode(whole));
    size_t split = 0;
    if (!head.empty()) {
      VEOMNI_ASSIGN_OR_RETURN(std::vector<int32_t> h, t_.Encode(head));
      while (split < h.size() && split < ids.size() && h[split] == ids[split])
        ++split;
    }
    for (size_t i = 0; i < ids.size(); ++i)
      Token(ids[i], trained && i >= split);
    return absl::OkStatus();
  }

  /// A content list: text parts joined (each trimmed with `trim`), the
  /// first stretch after `head`; each run of ids as given, never trained,
  /// its `before` text and its `around` text before it, `around` after.
  absl::Status Parts(std::string head, absl::Span<const ChatPart> parts,
                     bool trained, bool trim) {
    std::string body;
    for (const ChatPart &p : parts) {
      if (p.ids.empty()) {
        absl::StrAppend(&body, trim ? PythonStrip(p.text) : p.text);
        continue;
      }
      VEOMNI_RETURN_IF_ERROR(
          Text(head, absl::StrCat(body, p.before, p.around), trained));
      head.clear();
      body = p.around;
      for (int32_t id : p.ids)
        Token(id, false);
    }
    return Text(head, body, trained);
  }

  EncodedChat out;

private:
  const Tokenizer &t_;
};

} // namespace

absl::StatusOr<EncodedChat> EncodeChat(const Tokenizer &tokenizer,
                                       ChatFormat format,
                                       absl::Span<const ChatMessage> messages) {
  Builder b(tokenizer);
  for (size_t i = 0; i < messages.size(); ++i) {
    std::vector<const std::string *> texts = {&messages[i].role,
                                              &messages[i].content};
    for (const ChatPart &p : messages[i].parts)
      texts.push_back(&p.text);
    for (const std::string *text : texts)
      if (std::string s = tokenizer.FindSpecialToken(*text); !s.empty())
        return absl::InvalidArgumentError(
            absl::StrCat("message ", i, ": its ",
                         text == &messages[i].role ? "role" : "content",
                         " holds the special token ", s));
    if (!messages[i].thinking.empty() && format != ChatFormat::Harmony)
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i,
                       ": a \"thinking\" field is rendered by the harmony "
                       "format only"));
    if (!messages[i].parts.empty() &&
        (format == ChatFormat::Llama3 || format == ChatFormat::DeepSeek ||
         format == ChatFormat::Harmony))
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, ": images and audio need the chatml or gemma format"));
  }
  if (format == ChatFormat::ChatML) {
    VEOMNI_ASSIGN_OR_RETURN(int32_t start, b.Special("<|im_start|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t end, b.Special("<|im_end|>"));
    for (const ChatMessage &m : messages) {
      const bool trained = m.role == "assistant";
      b.Token(start, false);
      if (m.parts.empty()) {
        VEOMNI_RETURN_IF_ERROR(
            b.Text(absl::StrCat(m.role, "\n"), m.content, trained));
      } else {
        // Text up to each run of ids is one stretch (the header's with
        // the first).
        VEOMNI_RETURN_IF_ERROR(b.Parts(absl::StrCat(m.role, "\n"), m.parts,
                                       trained, /*trim=*/false));
      }
      b.Token(end, trained);
      VEOMNI_RETURN_IF_ERROR(b.Text("\n", "", false));
    }
  } else if (format == ChatFormat::Gemma) {
    VEOMNI_ASSIGN_OR_RETURN(int32_t bos, b.Special("<bos>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t start, b.Special("<start_of_turn>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t end, b.Special("<end_of_turn>"));
    b.Token(bos, false);
    // A system prompt goes, untrimmed, before the first user turn's
    // content; then the turns alternate user, model (Gemma's template
    // refuses anything else).
    size_t first = 0;
    std::string prefix;
    if (!messages.empty() && messages[0].role == "system") {
      // (A content list's first text, as Gemma's template takes it.)
      const ChatMessage &system = messages[0];
      prefix = absl::StrCat(
          system.parts.empty() ? system.content : system.parts[0].text, "\n\n");
      first = 1;
    }
    for (size_t i = first; i < messages.size(); ++i) {
      const ChatMessage &m = messages[i];
      const bool model = (i - first) % 2 == 1;
      if (m.role != (model ? "assistant" : "user"))
        return absl::InvalidArgumentError(absl::StrCat(
            "message ", i, ": its role is '", m.role,
            "', but Gemma's turns alternate user and assistant (after an "
            "optional system prompt)"));
      b.Token(start, false);
      std::string head = absl::StrCat(model ? "model" : "user", "\n",
                                      i == first ? prefix : "");
      if (m.parts.empty()) {
        VEOMNI_RETURN_IF_ERROR(b.Text(head, PythonStrip(m.content), model));
      } else {
        // Each text item trimmed; a run's `around` text (the processor's
        // "\n\n") joins the stretches on both sides of it.
        VEOMNI_RETURN_IF_ERROR(b.Parts(head, m.parts, model, /*trim=*/true));
      }
      b.Token(end, model);
      VEOMNI_RETURN_IF_ERROR(b.Text("\n", "", false));
    }
  } else if (format == ChatFormat::Harmony) {
    VEOMNI_ASSIGN_OR_RETURN(int32_t start, b.Special("<|start|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t message, b.Special("<|message|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t end, b.Special("<|end|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t channel, b.Special("<|channel|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t done, b.Special("<|return|>"));
    // gpt-oss's template without tools: its system message, a first
    // system (or developer) message as the developer's instructions.
    b.Token(start, false);
    VEOMNI_RETURN_IF_ERROR(b.Text("system", "", false));
    b.Token(message, false);
    VEOMNI_RETURN_IF_ERROR(b.Text(
        absl::StrCat("You are ChatGPT, a large language model trained by "
                     "OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: ",
                     ChatDate(),
                     "\n\nReasoning: medium\n\n# Valid channels: analysis, "
                     "commentary, final. Channel must be included for every "
                     "message."),
        "", false));
    b.Token(end, false);
    size_t first = 0;
    if (!messages.empty() &&
        (messages[0].role == "system" || messages[0].role == "developer")) {
      first = 1;
      if (!messages[0].content.empty()) {
        b.Token(start, false);
        VEOMNI_RETURN_IF_ERROR(b.Text("developer", "", false));
        b.Token(message, false);
        VEOMNI_RETURN_IF_ERROR(b.Text(
            absl::StrCat("# Instructions\n\n", messages[0].content, "\n\n"), "",
            false));
        b.Token(end, false);
      }
    }
    for (size_t i = first; i < messages.size(); ++i) {
      const ChatMessage &m = messages[i];
      if (m.role != "user" && m.role != "assistant")
        return absl::InvalidArgumentError(absl::StrCat(
            "message ", i, ": its role is '", m.role,
            "', but the harmony format here has user and assistant turns "
            "after an optional system prompt (no tools)"));
      const bool answer = m.role == "assistant";
      const bool last = answer && i + 1 == messages.size();
      // The last answer's thinking, then every answer in the final
      // channel (earlier thinking is dropped, as the template does).
      auto turn = [&](absl::string_view role, absl::string_view channelName,
                      absl::string_view content, int32_t close,
                      bool trained) -> absl::Status {
        b.Token(start, false);
        VEOMNI_RETURN_IF_ERROR(b.Text(role, "", false));
        if (!channelName.empty()) {
          b.Token(channel, false);
          VEOMNI_RETURN_IF_ERROR(b.Text(channelName, "", false));
        }
        b.Token(message, false);
        VEOMNI_RETURN_IF_ERROR(b.Text("", content, trained));
        b.Token(close, trained);
        return absl::OkStatus();
      };
      if (!answer) {
        VEOMNI_RETURN_IF_ERROR(turn("user", "", m.content, end, false));
        continue;
      }
      if (last && !m.thinking.empty())
        VEOMNI_RETURN_IF_ERROR(
            turn("assistant", "analysis", m.thinking, end, true));
      VEOMNI_RETURN_IF_ERROR(
          turn("assistant", "final", m.content, last ? done : end, true));
    }
  } else if (format == ChatFormat::DeepSeek) {
    VEOMNI_ASSIGN_OR_RETURN(int32_t bos, b.Special("<｜begin▁of▁sentence｜>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t eos, b.Special("<｜end▁of▁sentence｜>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t user, b.Special("<｜User｜>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t assistant, b.Special("<｜Assistant｜>"));
    // Every system prompt, wherever it stands, joined up front; contents
    // as they are (DeepSeek-V3's template trims nothing).
    std::string system;
    bool any = false;
    for (const ChatMessage &m : messages)
      if (m.role == "system") {
        absl::StrAppend(&system, any ? "\n\n" : "", m.content);
        any = true;
      }
    b.Token(bos, false);
    VEOMNI_RETURN_IF_ERROR(b.Text(system, "", false));
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage &m = messages[i];
      if (m.role == "system")
        continue;
      if (m.role != "user" && m.role != "assistant")
        return absl::InvalidArgumentError(absl::StrCat(
            "message ", i, ": its role is '", m.role,
            "', but DeepSeek's format has user and assistant turns (and "
            "system prompts)"));
      const bool trained = m.role == "assistant";
      b.Token(trained ? assistant : user, false);
      VEOMNI_RETURN_IF_ERROR(b.Text("", m.content, trained));
      if (trained)
        b.Token(eos, true);
    }
  } else {
    VEOMNI_ASSIGN_OR_RETURN(int32_t bos, b.Special("<|begin_of_text|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t header, b.Special("<|start_header_id|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t headerEnd, b.Special("<|end_header_id|>"));
    VEOMNI_ASSIGN_OR_RETURN(int32_t eot, b.Special("<|eot_id|>"));
    b.Token(bos, false);
    for (const ChatMessage &m : messages) {
      const bool trained = m.role == "assistant";
      b.Token(header, false);
      VEOMNI_RETURN_IF_ERROR(b.Text(m.role, "", false));
      b.Token(headerEnd, false);
      // Llama 3's template trims the content (Jinja's trim: Python's
      // strip, Unicode whitespace included).
      VEOMNI_RETURN_IF_ERROR(b.Text("\n\n", PythonStrip(m.content), trained));
      b.Token(eot, trained);
    }
  }
  return std::move(b.out);
}

} // namespace veomni::rt
