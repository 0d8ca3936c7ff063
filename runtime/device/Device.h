//===- Device.h - the backend interface -------------------------*- C++ -*-===//
//
// A device owns one arena and runs kernels on views of it. The executor,
// the trainer and io/ talk to a Device only; a backend (runtime/backends/
// <name>/) implements one, with a KernelRegistry filled from the kernel
// table. Views handed to Run point into the device's address space, which
// the host may not be able to read: host code copies with CopyIn/CopyOut
// (Executor::Read / Write wrap them).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DEVICE_DEVICE_H
#define VEOMNI_RUNTIME_DEVICE_DEVICE_H

#include "runtime/core/Tensor.h"
#include "runtime/program/Kernel.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

#include <array>
#include <memory>

namespace veomni::rt {

using KernelIns = absl::Span<const TensorView>;
using KernelOuts = absl::Span<const TensorView>;
/// The optional operands of attention and attention_grad, ins
/// [first, end): integer segment ids and float sinks, told apart by their
/// element types (each at most once, segments first).
struct AttentionOptionals {
  const TensorView *segments = nullptr, *sinks = nullptr;
};
inline absl::StatusOr<AttentionOptionals>
AttentionOptionalsOf(KernelIns in, size_t first, size_t end) {
  AttentionOptionals o;
  for (size_t i = first; i < end && i < in.size(); ++i) {
    bool integer = !IsFloat(in[i].dtype);
    if (integer && !o.segments && !o.sinks)
      o.segments = &in[i];
    else if (!integer && !o.sinks)
      o.sinks = &in[i];
    else
      return absl::InvalidArgumentError(
          "attention: optional operands must be at most one integer segment "
          "ids tensor, then at most one float sinks tensor");
  }
  return o;
}

/// One backend's implementation of one kernel kind, attributes undecoded.
using KernelFn = absl::Status (*)(const KernelDesc &, KernelIns, KernelOuts);

/// Which function runs each kernel kind on one backend.
class KernelRegistry {
public:
  /// Registers `Impl`, taking the kind's typed attributes
  /// (`absl::Status Impl(KernelIns, KernelOuts, const <Kind>Attrs &)`).
  template <KernelKind K,
            absl::Status (*Impl)(KernelIns, KernelOuts,
                                 const typename AttrsOf<K>::type &)>
  void Register() {
    fns_[static_cast<uint16_t>(K)] = [](const KernelDesc &k, KernelIns in,
                                        KernelOuts out) {
      return Impl(in, out, AttrsOf<K>::Decode(k));
    };
  }
  /// The function for `kind`, or null when the backend has none.
  KernelFn Find(KernelKind kind) const {
    return fns_[static_cast<uint16_t>(kind)];
  }

private:
  std::array<KernelFn, kernel_table::kNumKernelKinds> fns_{};
};

class Device {
public:
  virtual ~Device() = default;
  /// "cpu", "cuda:0".
  virtual absl::string_view Name() const = 0;
  /// Allocates the arena of exactly `bytes`, zero-filled. Called once.
  virtual absl::Status AllocateArena(uint64_t bytes) = 0;
  /// The arena's first byte, in the device's address space.
  virtual uint8_t *Arena() const = 0;
  /// Whether host code may dereference arena pointers (the CPU backend).
  virtual bool HostAccessible() const = 0;
  virtual absl::Status CopyIn(uint64_t offset, const void *src,
                              uint64_t bytes) = 0;
  virtual absl::Status CopyOut(uint64_t offset, void *dst,
                               uint64_t bytes) const = 0;
  /// Copies `bytes` from arena offset `src` to `dst` (ranges may overlap).
  virtual absl::Status CopyWithin(uint64_t dst, uint64_t src,
                                  uint64_t bytes) = 0;
  /// Every kernel this device can run.
  virtual const KernelRegistry &Kernels() const = 0;
  /// Waits for the kernels started so far (a no-op where Run is
  /// synchronous).
  virtual absl::Status Synchronize() { return absl::OkStatus(); }
};

/// A device of the backend called `backend` ("cpu"), or NotFound listing
/// the backends this build has.
absl::StatusOr<std::unique_ptr<Device>> CreateDevice(absl::string_view backend);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DEVICE_DEVICE_H
