//===- tokens_fuzzer.cpp - packed token datasets (.vtd) -------------------===//
//
// An accepted dataset's every document and its trained flags must lie
// inside the file: each token is read.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/TokenDataset.h"
#include "test/fuzz/FuzzUtil.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  static const std::string path = veomni::fuzz::ScratchPath("tokens.vtd");
  veomni::fuzz::WriteFile(path, data, size);
  auto ds = TokenDataset::Open(path);
  if (!ds.ok())
    return 0;
  int64_t sum = 0;
  for (uint64_t d = 0; d < (*ds)->documents(); ++d) {
    for (int32_t t : (*ds)->Document(d))
      sum += t;
    for (uint8_t f : (*ds)->Trained(d))
      sum += f;
  }
  return sum == 1 ? 0 : 0;
}
