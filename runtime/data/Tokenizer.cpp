//===- Tokenizer.cpp - Hugging Face byte-level BPE tokenizers -------------===//

#include "runtime/data/Tokenizer.h"

#include "runtime/data/SentencePiece.h"

#include "runtime/io/Json.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <tuple>

namespace veomni::rt {

namespace {

/// GPT-2's byte-level alphabet: byte b -> a printable code point, as UTF-8.
std::vector<std::string> ByteAlphabet() {
  std::vector<int> printable;
  for (int b = '!'; b <= '~'; ++b)
    printable.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b)
    printable.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b)
    printable.push_back(b);
  std::vector<int> code(256, -1);
  for (int b : printable)
    code[b] = b;
  int next = 256;
  for (int b = 0; b < 256; ++b)
    if (code[b] < 0)
      code[b] = next++;
  std::vector<std::string> out(256);
  for (int b = 0; b < 256; ++b) {
    int c = code[b];
    if (c < 0x80) {
      out[b] = std::string(1, static_cast<char>(c));
    } else { // < 0x800 here
      out[b] = {static_cast<char>(0xC0 | (c >> 6)),
                static_cast<char>(0x80 | (c & 0x3F))};
    }
  }
  return out;
}

/// The UTF-8 characters of `s` (already valid).
std::vector<std::string> Utf8Chars(absl::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    n = std::min(n, s.size() - i);
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

/// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code
/// points past U+10FFFF).
bool ValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c < 0xE0) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c < 0xF0) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c < 0xF5) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size())
      return false;
    for (size_t k = 1; k < n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += n;
  }
  return true;
}

const char *kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A compiled PCRE2 pattern (UTF, Unicode properties).
class Regex {
public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string &p) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code *re =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                      PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof(msg));
      return absl::InvalidArgumentError(
          absl::StrCat("pattern ", p, ": ", reinterpret_cast<char *>(msg),
                       " at offset ", offset));
    }
    auto r = std::unique_ptr<Regex>(new Regex);
    r->re_ = re;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // best effort
    return r;
  }
  ~Regex() { pcre2_code_free(re_); }
  /// Splits `s` into its matches and the text between them (Isolated).
  absl::Status Split(absl::string_view s, std::vector<std::string> &out) const {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re_, nullptr);
    size_t at = 0, gap = 0;
    absl::Status status;
    while (at <= s.size()) {
      // The text is valid UTF-8 (Encode checks it; ICU writes it): no
      // check from `at` to the end on every call.
      int rc = pcre2_match(re_, reinterpret_cast<PCRE2_SPTR>(s.data()),
                           s.size(), at, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH)
        break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        status = absl::InvalidArgumentError(
            absl::StrCat("text: ", reinterpret_cast<char *>(msg)));
        break;
      }
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) { // an empty match: step over one character
        if (b >= s.size())
          break;
        unsigned char c = static_cast<unsigned char>(s[b]);
        at = b + (c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4);
        continue;
      }
      if (b > gap)
        out.emplace_back(s.substr(gap, b - gap));
      out.emplace_back(s.substr(b, e - b));
      gap = at = e;
    }
    pcre2_match_data_free(md);
    if (status.ok() && gap < s.size())
      out.emplace_back(s.substr(gap));
    return status;
  }

private:
  Regex() = default;
  pcre2_code *re_ = nullptr;
};

} // namespace

class Tokenizer::Impl {
public:
  /// A SentencePiece model, when the file is one (the rest is unused).
  std::unique_ptr<spm::Model> sp;
  std::unordered_map<std::string, int32_t> vocab;
  struct Added {
    std::string content;
    int32_t id;
    bool special;
  };
  std::vector<Added> added; // longest first
  bool nfc = false;
  std::vector<std::unique_ptr<Regex>> splits;
  bool ignoreMerges = false;
  std::vector<std::string> bytes = ByteAlphabet();
  int64_t size = 0;
  mutable std::mutex mu;
  mutable std::vector<std::string> pieces;              // for Decode
  mutable std::unordered_map<std::string, char> byteOf; // for Decode
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  /// Merges as (left id, right id) -> (rank, merged id).
  struct PairHash {
    size_t operator()(uint64_t k) const { return std::hash<uint64_t>()(k); }
  };
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>, PairHash> merges;
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  /// BPE over the characters of `word` (byte-level mapped): symbols in a
  /// linked list, candidate merges in a min-heap by (rank, position), as
  /// `tokenizers` does: O(n log n) in the word's length.
  absl::Status Bpe(const std::string &word, std::vector<int32_t> &out) const {
    std::vector<std::string> chars = Utf8Chars(word);
    const int n = static_cast<int>(chars.size());
    std::vector<int32_t> sym(n);
    std::vector<int> prev(n), next(n);
    std::vector<char> alive(n, 1);
    for (int i = 0; i < n; ++i) {
      auto it = vocab.find(chars[i]);
      if (it == vocab.end())
        return absl::InvalidArgumentError(absl::StrCat(
            "the piece '", chars[i], "' is in no token of the vocabulary"));
      sym[i] = it->second;
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    // (rank, left position, left id, right id): stale entries are skipped.
    using Cand = std::tuple<int32_t, int, int32_t, int32_t>;
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int i) {
      if (i < 0 || next[i] < 0)
        return;
      auto m = merges.find(Key(sym[i], sym[next[i]]));
      if (m != merges.end())
        heap.emplace(m->second.first, i, sym[i], sym[next[i]]);
    };
    for (int i = 0; i + 1 < n; ++i)
      push(i);
    while (!heap.empty()) {
      auto [rank, i, a, b] = heap.top();
      heap.pop();
      if (!alive[i] || next[i] < 0 || sym[i] != a || sym[next[i]] != b)
        continue; // this pair changed since it was queued
      int j = next[i];
      sym[i] = merges.find(Key(a, b))->second.second;
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0)
        prev[next[j]] = i;
      push(prev[i]);
      push(i);
    }
    for (int i = 0; i >= 0 && i < n; i = next[i])
      out.push_back(sym[i]);
    return absl::OkStatus();
  }

  absl::Status Word(const std::string &word, std::vector<int32_t> &ids) const {
    // Short words (almost all) are cached; a long run of letters in a
    // script without spaces is not, so the cache stays small.
    const bool cacheable = word.size() <= 256;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mu);
      auto it = cache.find(word);
      if (it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return absl::OkStatus();
      }
    }
    std::vector<int32_t> out;
    auto whole = vocab.find(word);
    if (ignoreMerges && whole != vocab.end())
      out.push_back(whole->second);
    else
      VEOMNI_RETURN_IF_ERROR(Bpe(word, out));
    ids.insert(ids.end(), out.begin(), out.end());
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mu);
      if (cache.size() < (1u << 20))
        cache.emplace(word, std::move(out));
    }
    return absl::OkStatus();
  }

  /// Text with no added token in it.
  absl::Status Plain(absl::string_view text, std::vector<int32_t> &ids) const {
    std::string normal(text);
    if (nfc) {
      UErrorCode err = U_ZERO_ERROR;
      const icu::Normalizer2 *n = icu::Normalizer2::getNFCInstance(err);
      if (U_FAILURE(err))
        return absl::InternalError("ICU has no NFC normalizer");
      icu::UnicodeString u = icu::UnicodeString::fromUTF8(
          icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
      icu::UnicodeString v = n->normalize(u, err);
      if (U_FAILURE(err))
        return absl::InvalidArgumentError("text: cannot be NFC-normalized");
      normal.clear();
      v.toUTF8String(normal);
    }
    std::vector<std::string> pieces = {normal};
    for (const auto &re : splits) {
      std::vector<std::string> next;
      for (const std::string &p : pieces)
        VEOMNI_RETURN_IF_ERROR(re->Split(p, next));
      pieces = std::move(next);
    }
    for (const std::string &p : pieces) {
      std::string mapped;
      for (unsigned char c : p)
        mapped += bytes[c];
      VEOMNI_RETURN_IF_ERROR(Word(mapped, ids));
    }
    return absl::OkStatus();
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>>
Tokenizer::Load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  if (path.size() > 6 && path.compare(path.size() - 6, 6, ".model") == 0) {
    auto impl = std::make_unique<Impl>();
    std::string error;
    impl->sp = spm::Model::Load(path, error);
    if (!impl->sp)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a SentencePiece model: ", error));
    impl->size = impl->sp->Size();
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>>
Tokenizer::Parse(absl::string_view json, const std::string &name) {
  auto bad = [&](const std::string &field, const std::string &why) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", field, ": ", why));
  };
  absl::StatusOr<Json> root = ParseJson(json);
  if (!root.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", root.status().message()));
  if (root->kind != Json::Object)
    return bad("(top)", "expected an object");
  auto impl = std::make_unique<Impl>();

  const Json *model = FindField(*root, "model");
  if (!model || model->kind != Json::Object)
    return bad("model", "missing");
  const Json *type = FindField(*model, "type");
  if (!type || type->kind != Json::String || type->text != "BPE")
    return bad("model.type", "only BPE models are read");
  for (const char *flag : {"byte_fallback", "fuse_unk"})
    if (const Json *f = FindField(*model, flag);
        f && f->kind == Json::Bool && f->number)
      return bad(absl::StrCat("model.", flag), "is not supported");
  if (const Json *f = FindField(*model, "ignore_merges"))
    impl->ignoreMerges = f->kind == Json::Bool && f->number;
  const Json *vocab = FindField(*model, "vocab");
  if (!vocab || vocab->kind != Json::Object)
    return bad("model.vocab", "expected an object of token: id");
  for (const auto &[token, id] : vocab->fields) {
    if (id.kind != Json::Number || !id.integral || id.number < 0 ||
        id.number > INT32_MAX)
      return bad("model.vocab", absl::StrCat("'", token, "' has no valid id"));
    impl->vocab[token] = static_cast<int32_t>(id.number);
    impl->size = std::max<int64_t>(impl->size, id.number + 1);
  }
  for (const char *field :
       {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
    if (const Json *f = FindField(*model, field); f && f->kind != Json::Null)
      return bad(absl::StrCat("model.", field), "is not supported");
  const Json *merges = FindField(*model, "merges");
  if (!merges || merges->kind != Json::Array)
    return bad("model.merges", "expected an array");
  for (size_t i = 0; i < merges->items.size(); ++i) {
    const Json &m = merges->items[i];
    std::string a, b;
    if (m.kind == Json::String && m.text.find(' ') != std::string::npos) {
      size_t space = m.text.find(' ');
      a = m.text.substr(0, space);
      b = m.text.substr(space + 1);
    } else if (m.kind == Json::Array && m.items.size() == 2 &&
               m.items[0].kind == Json::String &&
               m.items[1].kind == Json::String) {
      a = m.items[0].text;
      b = m.items[1].text;
    } else {
      return bad(absl::StrCat("model.merges[", i, "]"),
                 "expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = impl->vocab.find(a), ib = impl->vocab.find(b),
         iab = impl->vocab.find(a + b);
    if (ia == impl->vocab.end() || ib == impl->vocab.end() ||
        iab == impl->vocab.end())
      return bad(absl::StrCat("model.merges[", i, "]"),
                 absl::StrCat("'", a, "' + '", b,
                              "': a part or the merge is not in the "
                              "vocabulary"));
    // A merge listed twice keeps its last rank, as tokenizers does.
    impl->merges[Impl::Key(ia->second, ib->second)] = {static_cast<int32_t>(i),
                                                       iab->second};
  }

  if (const Json *added = FindField(*root, "added_tokens");
      added && added->kind == Json::Array) {
    for (size_t i = 0; i < added->items.size(); ++i) {
      const Json &t = added->items[i];
      const Json *id = FindField(t, "id"), *content = FindField(t, "content");
      std::string where = absl::StrCat("added_tokens[", i, "]");
      if (!id || id->kind != Json::Number || !id->integral || id->number < 0 ||
          id->number > INT32_MAX || !content || content->kind != Json::String ||
          content->text.empty())
        return bad(where, "needs an id and a content");
      for (const char *flag : {"single_word", "lstrip", "rstrip"})
        if (const Json *f = FindField(t, flag);
            f && f->kind == Json::Bool && f->number)
          return bad(absl::StrCat(where, ".", flag), "is not supported");
      const Json *special = FindField(t, "special");
      impl->added.push_back(
          {content->text, static_cast<int32_t>(id->number),
           special && special->kind == Json::Bool && special->number != 0});
      impl->size = std::max<int64_t>(impl->size, id->number + 1);
    }
  }
  std::stable_sort(impl->added.begin(), impl->added.end(),
                   [](const Impl::Added &a, const Impl::Added &b) {
                     return a.content.size() > b.content.size();
                   });

  if (const Json *norm = FindField(*root, "normalizer");
      norm && norm->kind != Json::Null) {
    const Json *t = FindField(*norm, "type");
    if (!t || t->kind != Json::String || t->text != "NFC")
      return bad("normalizer", "only NFC (or none) is read");
    impl->nfc = true;
  }

  const Json *pre = FindField(*root, "pre_tokenizer");
  std::vector<const Json *> steps;
  if (pre && pre->kind == Json::Object) {
    const Json *t = FindField(*pre, "type");
    if (t && t->kind == Json::String && t->text == "Sequence") {
      const Json *list = FindField(*pre, "pretokenizers");
      if (!list || list->kind != Json::Array)
        return bad("pre_tokenizer.pretokenizers", "expected an array");
      for (const Json &s : list->items)
        steps.push_back(&s);
    } else {
      steps.push_back(pre);
    }
  }
  bool byteLevel = false;
  for (const Json *s : steps) {
    const Json *t = FindField(*s, "type");
    std::string kind = t && t->kind == Json::String ? t->text : "";
    if (byteLevel)
      return bad("pre_tokenizer", absl::StrCat("a '", kind,
                                               "' step after ByteLevel is not "
                                               "supported"));
    if (kind == "Split") {
      const Json *pattern = FindField(*s, "pattern");
      const Json *regex = pattern ? FindField(*pattern, "Regex") : nullptr;
      const Json *behavior = FindField(*s, "behavior");
      const Json *invert = FindField(*s, "invert");
      if (!regex || regex->kind != Json::String)
        return bad("pre_tokenizer Split.pattern", "expected {\"Regex\": ...}");
      if (!behavior || behavior->text != "Isolated" ||
          (invert && invert->kind == Json::Bool && invert->number))
        return bad("pre_tokenizer Split",
                   "only behavior Isolated, not inverted, is read");
      absl::StatusOr<std::unique_ptr<Regex>> re = Regex::Compile(regex->text);
      if (!re.ok())
        return bad("pre_tokenizer Split.pattern",
                   std::string(re.status().message()));
      impl->splits.push_back(*std::move(re));
    } else if (kind == "ByteLevel") {
      const Json *prefix = FindField(*s, "add_prefix_space");
      if (prefix && prefix->kind == Json::Bool && prefix->number)
        return bad("pre_tokenizer ByteLevel.add_prefix_space",
                   "is not supported");
      const Json *useRegex = FindField(*s, "use_regex");
      if (!useRegex || (useRegex->kind == Json::Bool && useRegex->number)) {
        absl::StatusOr<std::unique_ptr<Regex>> re =
            Regex::Compile(kGpt2Pattern);
        if (!re.ok())
          return re.status();
        impl->splits.push_back(*std::move(re));
      }
      byteLevel = true;
    } else {
      return bad("pre_tokenizer",
                 absl::StrCat("type '", kind, "' is not supported"));
    }
  }
  if (!byteLevel)
    return bad("pre_tokenizer", "needs a ByteLevel step (byte-level BPE)");
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

absl::StatusOr<std::vector<int32_t>>
Tokenizer::Encode(absl::string_view text) const {
  if (!ValidUtf8(text))
    return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  if (impl_->sp) {
    std::string error;
    if (!impl_->sp->Encode(std::string(text), ids, error))
      return absl::InvalidArgumentError(absl::StrCat("SentencePiece: ", error));
    return ids;
  }
  size_t at = 0;
  // Each added token's next place at or after `at` (npos: none left);
  // only those that fall behind `at` are searched again.
  std::vector<size_t> nextAt(impl_->added.size());
  for (size_t k = 0; k < nextAt.size(); ++k)
    nextAt[k] = text.find(impl_->added[k].content);
  while (at < text.size()) {
    // The earliest added token, the longest at that place (added is
    // sorted longest first).
    size_t best = absl::string_view::npos;
    const Impl::Added *hit = nullptr;
    for (size_t k = 0; k < nextAt.size(); ++k) {
      if (nextAt[k] != absl::string_view::npos && nextAt[k] < at)
        nextAt[k] = text.find(impl_->added[k].content, at);
      if (nextAt[k] < best) {
        best = nextAt[k];
        hit = &impl_->added[k];
      }
    }
    absl::string_view plain = text.substr(at, best == absl::string_view::npos
                                                  ? absl::string_view::npos
                                                  : best - at);
    if (!plain.empty())
      VEOMNI_RETURN_IF_ERROR(impl_->Plain(plain, ids));
    if (!hit)
      break;
    ids.push_back(hit->id);
    at = best + hit->content.size();
  }
  return ids;
}

absl::StatusOr<std::string>
Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  if (impl_->sp) {
    std::string error;
    if (!impl_->sp->Decode(std::vector<int32_t>(ids.begin(), ids.end()), text,
                           error))
      return absl::InvalidArgumentError(error);
    return text;
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->pieces.empty()) { // id -> token, and GPT-2 char -> byte
    impl_->pieces.resize(impl_->size);
    for (const auto &[token, id] : impl_->vocab)
      impl_->pieces[id] = token;
    for (const Impl::Added &a : impl_->added)
      impl_->pieces[a.id] = a.content;
    for (int b = 0; b < 256; ++b)
      impl_->byteOf[impl_->bytes[b]] = static_cast<char>(b);
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= impl_->size)
      return absl::InvalidArgumentError(
          absl::StrCat("id ", id, " is outside the vocabulary"));
    const std::string &piece = impl_->pieces[id];
    bool added = false;
    for (const Impl::Added &a : impl_->added)
      added |= a.id == id;
    if (added) {
      text += piece;
      continue;
    }
    for (const std::string &c : Utf8Chars(piece)) {
      auto it = impl_->byteOf.find(c);
      if (it == impl_->byteOf.end())
        return absl::InvalidArgumentError(
            absl::StrCat("token ", id, " holds '", c, "', which is no byte"));
      text += it->second;
    }
  }
  return text;
}

int32_t Tokenizer::TokenId(absl::string_view token) const {
  if (impl_->sp)
    return impl_->sp->PieceToId(std::string(token));

  for (const Impl::Added &a : impl_->added)
    if (a.content == token)
      return a.id;
  auto it = impl_->vocab.find(std::string(token));
  return it == impl_->vocab.end() ? -1 : it->second;
}

std::string Tokenizer::FindSpecialToken(absl::string_view text) const {
  for (const Impl::Added &a : impl_->added)
    if (a.special && text.find(a.content) != absl::string_view::npos)
      return a.content;
  return "";
}

int64_t Tokenizer::VocabSize() const { return impl_->size; }

} // namespace veomni::rt
