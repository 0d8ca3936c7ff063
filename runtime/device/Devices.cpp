//===- Devices.cpp - the backends this build has --------------------------===//
//
// The one place that names backends: tools and tests ask for a device by
// name, the executor only ever sees the Device interface.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/CpuDevice.h"
#include "runtime/device/Device.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt {

absl::StatusOr<std::unique_ptr<Device>>
CreateDevice(absl::string_view backend) {
  if (backend == "cpu")
    return std::make_unique<cpu::CpuDevice>();
  return absl::NotFoundError(
      absl::StrCat("no backend '", backend, "' in this build (it has: cpu)"));
}

} // namespace veomni::rt
