//===- tokenizer_fuzzer.cpp - tokenizer.json ------------------------------===//
//
// Parses the input as a tokenizer.json; an accepted tokenizer must encode
// a fixed text and the input's own bytes (as UTF-8 or refused as not),
// and decode what it encoded, without a crash.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  absl::string_view text(reinterpret_cast<const char *>(data), size);
  auto tok = Tokenizer::Parse(text, "fuzz/tokenizer.json");
  if (!tok.ok())
    return 0;
  for (absl::string_view s :
       {absl::string_view("Hello, world! 123 \xc3\xa9t\xc3\xa9 <|im_end|>\n"),
        text.substr(0, 256)})
    (void)(*tok)->Encode(s);
  return 0;
}
