//===- Devices.cpp - the backends this build has --------------------------===//
//
// The one place that names backends: tools and tests ask for a device by
// name, the executor only ever sees the Device interface.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cpu/CpuDevice.h"
#include "runtime/device/Device.h"
#ifdef VEOMNI_HAVE_CUDA
#include "runtime/backends/cuda/CudaDevice.h"
#endif

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace veomni::rt {

namespace {
#ifdef VEOMNI_HAVE_CUDA
constexpr const char *kBackends = "cpu, cuda";
#else
constexpr const char *kBackends = "cpu";
#endif
} // namespace

absl::StatusOr<std::unique_ptr<Device>>
CreateDevice(absl::string_view backend) {
  if (backend == "cpu")
    return std::make_unique<cpu::CpuDevice>();
  if (backend == "cuda" || absl::StartsWith(backend, "cuda:")) {
    int ordinal = 0;
    if (backend.size() > 4 &&
        (!absl::SimpleAtoi(backend.substr(5), &ordinal) || ordinal < 0))
      return absl::InvalidArgumentError(absl::StrCat(
          "device '", backend, "': expected cuda or cuda:N, N >= 0"));
#ifdef VEOMNI_HAVE_CUDA
    return cuda::CreateCudaDevice(ordinal);
#else
    return absl::NotFoundError(
        absl::StrCat("device '", backend,
                     "': this build has no CUDA "
                     "backend (nvcc was not found when it was configured)"));
#endif
  }
  return absl::NotFoundError(absl::StrCat(
      "no backend '", backend, "' in this build (it has: ", kBackends, ")"));
}

} // namespace veomni::rt
