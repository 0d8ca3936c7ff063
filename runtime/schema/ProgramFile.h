//===- ProgramFile.h - the .vmb container around the FlatBuffer -*- C++ -*-===//
//
// Shared by the compiler (which writes it) and the runtime (which checks
// it): a 32-byte header in front of the Program FlatBuffer, see program.fbs.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_SCHEMA_PROGRAMFILE_H
#define VEOMNI_RUNTIME_SCHEMA_PROGRAMFILE_H

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace veomni::fb {

constexpr char kProgramMagic[8] = {'V', 'E', 'O', 'M', 'N', 'I', 'P', 'G'};
constexpr uint32_t kFormatVersion = 4;
constexpr size_t kHeaderBytes = 32;
/// Buffers start at multiples of this many bytes in the arena.
constexpr uint64_t kBufferAlignment = 64;

/// FNV-1a, 64 bit: cheap, and any flipped bit changes it.
inline uint64_t HashPayload(const uint8_t *data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 1099511628211ull;
  }
  return h;
}

struct ProgramHeader {
  char magic[8];
  uint32_t version;
  uint32_t reserved;
  uint64_t payloadBytes;
  uint64_t payloadHash;
};
static_assert(sizeof(ProgramHeader) == kHeaderBytes, "header layout");

inline ProgramHeader MakeHeader(const uint8_t *payload, size_t size) {
  ProgramHeader h;
  std::memcpy(h.magic, kProgramMagic, sizeof(h.magic));
  h.version = kFormatVersion;
  h.reserved = 0;
  h.payloadBytes = size;
  h.payloadHash = HashPayload(payload, size);
  return h;
}

} // namespace veomni::fb

#endif // VEOMNI_RUNTIME_SCHEMA_PROGRAMFILE_H
