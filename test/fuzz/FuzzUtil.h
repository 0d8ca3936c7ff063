//===- FuzzUtil.h - what the libFuzzer targets share ------------*- C++ -*-===//
//
// The parsers veomni exposes to outside files read paths; a target writes
// its input to a file of its own (in /dev/shm when there is one) and
// opens that. Every target checks that a parser either refuses its input
// with an error or accepts it and can then be used without a crash.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_TEST_FUZZ_FUZZUTIL_H
#define VEOMNI_TEST_FUZZ_FUZZUTIL_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace veomni::fuzz {

/// A path of this process's own for `name`.
inline std::string ScratchPath(const std::string &name) {
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/veomni-fuzz-" + std::to_string(getpid()) + "-" +
         name;
}

/// Writes `size` bytes at `data` to `path` (aborts if it cannot: the
/// fuzzer's machine, not the input, is at fault).
inline void WriteFile(const std::string &path, const uint8_t *data,
                      size_t size) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) ||
      std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

} // namespace veomni::fuzz

#endif // VEOMNI_TEST_FUZZ_FUZZUTIL_H
