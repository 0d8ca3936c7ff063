//===- CpuDevice.cpp - the CPU backend's arena and copies -----------------===//

#include "runtime/backends/cpu/CpuDevice.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace veomni::rt::cpu {

CpuDevice::~CpuDevice() { std::free(arena_); }

absl::Status CpuDevice::AllocateArena(uint64_t bytes) {
  if (arena_)
    return absl::FailedPreconditionError("the arena is already allocated");
  // aligned_alloc wants a multiple of the alignment; the plan's buffers
  // all end inside `bytes`, so the rounding is never read.
  uint64_t rounded = (std::max<uint64_t>(bytes, 64) + 63) / 64 * 64;
  arena_ = static_cast<uint8_t *>(std::aligned_alloc(64, rounded));
  if (!arena_)
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate an arena of ", bytes, " bytes"));
  std::memset(arena_, 0, rounded);
  bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status CpuDevice::CheckRange(uint64_t offset, uint64_t bytes) const {
  if (offset > bytes_ || bytes > bytes_ - offset)
    return absl::OutOfRangeError(absl::StrCat("[", offset, ", +", bytes,
                                              ") lies outside the arena of ",
                                              bytes_, " bytes"));
  return absl::OkStatus();
}

absl::Status CpuDevice::CopyIn(uint64_t offset, const void *src,
                               uint64_t bytes) {
  if (absl::Status s = CheckRange(offset, bytes); !s.ok())
    return s;
  std::memmove(arena_ + offset, src, bytes);
  return absl::OkStatus();
}

absl::Status CpuDevice::CopyOut(uint64_t offset, void *dst,
                                uint64_t bytes) const {
  if (absl::Status s = CheckRange(offset, bytes); !s.ok())
    return s;
  std::memmove(dst, arena_ + offset, bytes);
  return absl::OkStatus();
}

absl::Status CpuDevice::CopyWithin(uint64_t dst, uint64_t src, uint64_t bytes) {
  if (absl::Status s = CheckRange(dst, bytes); !s.ok())
    return s;
  if (absl::Status s = CheckRange(src, bytes); !s.ok())
    return s;
  std::memmove(arena_ + dst, arena_ + src, bytes);
  return absl::OkStatus();
}

} // namespace veomni::rt::cpu
