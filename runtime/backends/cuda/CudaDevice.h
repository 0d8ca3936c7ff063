//===- CudaDevice.h - CUDA devices and library versions ---------*- C++ -*-===//
//
// The CUDA backend's device: one arena in device memory, a stream the
// kernels run on in program order, a cuBLASLt handle and workspace, and the
// error word kernels report bad data through (launch::ErrorCode), read at
// Synchronize. Also what is installed and which devices this process sees.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_CUDADEVICE_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_CUDADEVICE_H

#include "runtime/device/Device.h"

#include "absl/status/statusor.h"

#include <cstddef>
#include <string>
#include <vector>

namespace veomni::rt::cuda {

struct LibraryVersions {
  int cudaRuntime = 0; ///< e.g. 13000 for CUDA 13.0
  size_t cublasLt = 0; ///< e.g. 130100 for cuBLASLt 13.1
  int nccl = 0;        ///< e.g. 22809 for NCCL 2.28.9
};

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int computeMajor = 0, computeMinor = 0;
  size_t totalMemoryBytes = 0;
  int multiprocessors = 0;
};

/// Every kernel this backend has, as it runs them (Dispatch.cpp).
const KernelRegistry &CudaKernels();

/// A Device on GPU `ordinal`: NotFound when there is no such device.
absl::StatusOr<std::unique_ptr<Device>> CreateCudaDevice(int ordinal);

/// Versions of the libraries this binary was linked against; needs no GPU.
LibraryVersions GetLibraryVersions();

/// Every visible device. No driver or no device gives an empty list, not an
/// error: a CPU-only machine is an ordinary place to run.
absl::StatusOr<std::vector<DeviceInfo>> ListDevices();

/// Runs a fill kernel on `device` and reads the values back: the smallest
/// end-to-end check that kernels launch and memory moves.
absl::Status SelfTest(int device);

} // namespace veomni::rt::cuda

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_CUDADEVICE_H
