//===- program_fuzzer.cpp - .vmb programs: loader, verifier, executor -----===//
//
// ParseProgram checks the FlatBuffers verifier and every semantic rule a
// program must keep; an accepted program must then load into an executor
// (its arena capped by VEOMNI_MEMORY_BYTES, so a huge one is refused by
// size) without a crash. Kernels are not run: a program's own numbers are
// its business once it is valid.
//
//===----------------------------------------------------------------------===//

#include "runtime/executor/Executor.h"

#include <cstdlib>

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  setenv("VEOMNI_MEMORY_BYTES", "67108864", 1); // 64 MiB of arena at most
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  absl::StatusOr<Program> p =
      ParseProgram(absl::Span<const uint8_t>(data, size), "fuzz.vmb");
  if (!p.ok())
    return 0;
  absl::StatusOr<std::unique_ptr<Executor>> ex =
      Executor::Create(*std::move(p));
  if (ex.ok())
    for (const ArgumentDesc &a : (*ex)->program().arguments)
      (void)(*ex)->View(a.buffer);
  return 0;
}
