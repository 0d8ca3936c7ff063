//===- job_fuzzer.cpp - a compiled job's manifest.json --------------------===//
//
// `veomni run-job DIR` reads DIR/manifest.json (settings, pipeline stages
// and their actions); the input is that file.
//
//===----------------------------------------------------------------------===//

#include "runtime/train/Job.h"
#include "test/fuzz/FuzzUtil.h"

#include <sys/stat.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  static const std::string dir = [] {
    std::string d = veomni::fuzz::ScratchPath("job");
    mkdir(d.c_str(), 0700);
    return d;
  }();
  veomni::fuzz::WriteFile(dir + "/" + kJobManifest, data, size);
  (void)ReadJob(dir);
  return 0;
}
