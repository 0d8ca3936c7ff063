//===- jsonl_fuzzer.cpp - JSONL samples: text and conversations -----------===//
//
// One line of a JSONL data file ({"text": ...} or {"messages": [...]}),
// tokenized with the shipped omni tokenizer and rendered in each chat
// format: an error names what is wrong, or a sample comes out whose
// trained flags match its tokens.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Jsonl.h"
#include "runtime/data/Tokenizer.h"

#include <cstdlib>
#include <memory>

namespace {
const veomni::rt::Tokenizer &Shipped() {
  static std::unique_ptr<veomni::rt::Tokenizer> tok = [] {
    auto t = veomni::rt::Tokenizer::Load(VEOMNI_SOURCE_DIR
                                         "/examples/data/omni/tokenizer.json");
    if (!t.ok())
      std::abort();
    return *std::move(t);
  }();
  return *tok;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  absl::string_view line(reinterpret_cast<const char *>(data), size);
  for (ChatFormat chat :
       {ChatFormat::ChatML, ChatFormat::Llama3, ChatFormat::Gemma,
        ChatFormat::DeepSeek, ChatFormat::Harmony}) {
    TokenizedSample sample;
    absl::Status s = EncodeJsonlSample(line, Shipped(), chat, 0, sample);
    if (s.ok() && !sample.trained.empty() &&
        sample.trained.size() != sample.ids.size())
      std::abort(); // flags and tokens out of step
  }
  return 0;
}
