//===- Json.cpp - the JSON the runtime reads ------------------------------===//

#include "runtime/io/Json.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt {
namespace {

class JsonParser {
public:
  explicit JsonParser(absl::string_view s) : s_(s) {}

  absl::StatusOr<Json> ParseDocument() {
    Json j;
    if (auto st = Value(j, 0); !st.ok())
      return st;
    Skip();
    if (pos_ != s_.size())
      return Error("trailing characters");
    return j;
  }

private:
  absl::Status Error(absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON: ", what, " at byte ", pos_));
  }
  void Skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' ||
                                s_[pos_] == '\t' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool Eat(char c) {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  /// Four hex digits at pos_.
  bool Hex4(uint32_t &v) {
    if (pos_ + 4 > s_.size())
      return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9')
        v |= h - '0';
      else if (h >= 'a' && h <= 'f')
        v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        v |= h - 'A' + 10;
      else
        return false;
    }
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string &out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  absl::Status StringValue(std::string &out) {
    if (!Eat('"'))
      return Error("expected a string");
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size())
          break;
        char e = s_[pos_++];
        switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'u': {
          // A code point as UTF-8; a surrogate pair makes one.
          uint32_t cp;
          if (!Hex4(cp))
            return Error("bad \\u escape");
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t low;
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              return Error("a lone surrogate in a \\u escape");
            pos_ += 2;
            if (!Hex4(low) || low < 0xDC00 || low >= 0xE000)
              return Error("a lone surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return Error("a lone surrogate in a \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("unknown escape");
        }
      } else {
        out += c;
      }
    }
    if (pos_ >= s_.size())
      return Error("unterminated string");
    ++pos_;
    return absl::OkStatus();
  }

  absl::Status Value(Json &j, int depth) {
    if (depth > 16)
      return Error("nested too deeply");
    Skip();
    if (pos_ >= s_.size())
      return Error("unexpected end");
    char c = s_[pos_];
    if (c == '"') {
      j.kind = Json::String;
      return StringValue(j.text);
    }
    if (c == '{') {
      ++pos_;
      j.kind = Json::Object;
      if (Eat('}'))
        return absl::OkStatus();
      do {
        std::string key;
        if (auto st = StringValue(key); !st.ok())
          return st;
        if (!Eat(':'))
          return Error("expected ':'");
        Json value;
        if (auto st = Value(value, depth + 1); !st.ok())
          return st;
        j.fields.emplace_back(std::move(key), std::move(value));
      } while (Eat(','));
      return Eat('}') ? absl::OkStatus() : Error("expected '}'");
    }
    if (c == '[') {
      ++pos_;
      j.kind = Json::Array;
      if (Eat(']'))
        return absl::OkStatus();
      do {
        Json value;
        if (auto st = Value(value, depth + 1); !st.ok())
          return st;
        j.items.push_back(std::move(value));
      } while (Eat(','));
      return Eat(']') ? absl::OkStatus() : Error("expected ']'");
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      j.kind = Json::Number;
      bool negative = c == '-';
      if (negative)
        ++pos_;
      uint64_t value = 0;
      size_t start = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        uint64_t digit = s_[pos_++] - '0';
        if (value > ((uint64_t{1} << 62) - digit) / 10)
          return Error("number too large");
        value = value * 10 + digit;
      }
      if (pos_ == start)
        return Error("bad number");
      while (pos_ < s_.size() &&
             (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E' ||
              s_[pos_] == '+' || s_[pos_] == '-' ||
              (s_[pos_] >= '0' && s_[pos_] <= '9'))) {
        j.integral = false;
        ++pos_;
      }
      j.number =
          negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
      return absl::OkStatus();
    }
    for (absl::string_view word : {"null", "true", "false"}) {
      if (s_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        if (word != "null") {
          j.kind = Json::Bool;
          j.number = word == "true";
        }
        return absl::OkStatus();
      }
    }
    return Error("unexpected character");
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

} // namespace

const Json *FindField(const Json &object, absl::string_view key) {
  for (auto &[k, v] : object.fields)
    if (k == key)
      return &v;
  return nullptr;
}

absl::StatusOr<Json> ParseJson(absl::string_view text) {
  return JsonParser(text).ParseDocument();
}

} // namespace veomni::rt
