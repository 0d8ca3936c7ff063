//===- CpuDevice.cpp - the CPU backend's arena and copies -----------------===//

#include "runtime/backends/cpu/CpuDevice.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <unistd.h>

namespace veomni::rt::cpu {

std::optional<uint64_t> MachineMemoryBytes() {
  std::optional<uint64_t> memory;
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && size > 0)
    memory = uint64_t(pages) * uint64_t(size);
  // VEOMNI_MEMORY_BYTES caps it (a share of a machine others use too).
  if (const char *cap = std::getenv("VEOMNI_MEMORY_BYTES")) {
    char *end = nullptr;
    const unsigned long long v = std::strtoull(cap, &end, 10);
    if (end != cap && *end == '\0' && v > 0)
      memory = memory ? std::min<uint64_t>(*memory, v) : uint64_t(v);
  }
  // A cgroup's limit (cgroup v2, then v1), where one is set.
  for (const char *path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    uint64_t limit = 0;
    if (in >> limit && limit > 0)
      memory = memory ? std::min(*memory, limit) : limit;
  }
  return memory;
}

CpuDevice::~CpuDevice() { std::free(arena_); }

absl::Status CpuDevice::AllocateArena(uint64_t bytes) {
  if (arena_)
    return absl::FailedPreconditionError("the arena is already allocated");
  // aligned_alloc wants a multiple of the alignment; the plan's buffers
  // all end inside `bytes`, so the rounding is never read.
  uint64_t rounded = (std::max<uint64_t>(bytes, 64) + 63) / 64 * 64;
  // More than the machine (or its cgroup) has would be granted by
  // overcommit and end in the OOM killer once touched: refuse it by size.
  if (std::optional<uint64_t> memory = MachineMemoryBytes();
      memory && rounded > *memory)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the program needs an arena of %d bytes (%.1f GiB), more than this "
        "machine's %.1f GiB of memory: plan it for more ranks, a smaller "
        "batch or sequence, or recomputation (veomni plan --report shows "
        "its memory)",
        bytes, double(bytes) / (1 << 30), double(*memory) / (1 << 30)));
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
