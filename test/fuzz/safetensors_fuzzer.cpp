//===- safetensors_fuzzer.cpp - weights, checkpoints and batch files ------===//
//
// A .safetensors file: its header (JSON, dtypes, shapes, offsets) and its
// data. An accepted file's every tensor view must lie inside the file:
// each element of each tensor is read.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/Safetensors.h"
#include "test/fuzz/FuzzUtil.h"

#include <cmath>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  static const std::string path = veomni::fuzz::ScratchPath("st.safetensors");
  veomni::fuzz::WriteFile(path, data, size);
  auto file = SafetensorsFile::Open(path);
  if (!file.ok())
    return 0;
  double sum = 0;
  for (const auto &[name, entry] : (*file)->entries()) {
    TensorView v = (*file)->View(entry);
    for (int64_t i = 0, n = v.numel(); i < n; ++i)
      sum += IsFloat(v.dtype) ? LoadF(v, i) : static_cast<double>(LoadI(v, i));
  }
  for (const auto &[key, value] : (*file)->metadata())
    sum += static_cast<double>(key.size() + value.size());
  return std::isnan(sum) ? 0 : 0;
}
