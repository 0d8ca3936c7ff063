//===- CudaDevice.h - CUDA devices and library versions ---------*- C++ -*-===//
//
// The first piece of the CUDA backend: what is installed and which devices
// this process sees. The executor picks its device from here.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_CUDADEVICE_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_CUDADEVICE_H

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
