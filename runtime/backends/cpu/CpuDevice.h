//===- CpuDevice.h - the CPU backend ----------------------------*- C++ -*-===//
//
// The reference backend: the arena is host memory (64-byte aligned), kernels
// run synchronously on the calling thread (OpenBLAS and the vector loops of
// this folder), copies are memcpy.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_CPUDEVICE_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_CPUDEVICE_H

#include "runtime/device/Device.h"

#include <optional>

namespace veomni::rt::cpu {

/// Every kernel of the table, as this backend runs it.
const KernelRegistry &CpuKernels();

/// This machine's memory, or its cgroup's limit or VEOMNI_MEMORY_BYTES
/// where lower; nullopt when none is known.
std::optional<uint64_t> MachineMemoryBytes();

class CpuDevice final : public Device {
public:
  CpuDevice() = default;
  ~CpuDevice() override;
  absl::string_view Name() const override { return "cpu"; }
  absl::Status AllocateArena(uint64_t bytes) override;
  uint8_t *Arena() const override { return arena_; }
  bool HostAccessible() const override { return true; }
  absl::Status CopyIn(uint64_t offset, const void *src,
                      uint64_t bytes) override;
  absl::Status CopyOut(uint64_t offset, void *dst,
                       uint64_t bytes) const override;
  absl::Status CopyWithin(uint64_t dst, uint64_t src, uint64_t bytes) override;
  const KernelRegistry &Kernels() const override { return CpuKernels(); }

private:
  absl::Status CheckRange(uint64_t offset, uint64_t bytes) const;
  uint8_t *arena_ = nullptr;
  uint64_t bytes_ = 0;
};

} // namespace veomni::rt::cpu

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_CPUDEVICE_H
