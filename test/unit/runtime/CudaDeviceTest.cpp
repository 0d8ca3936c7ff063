#include "runtime/backends/cuda/CudaDevice.h"

#include <gtest/gtest.h>

namespace veomni::rt::cuda {
namespace {

// Runs without a GPU: the versions come from the linked libraries.
TEST(CudaDevice, LinkedLibrariesAreTheSupportedVersions) {
  LibraryVersions v = GetLibraryVersions();
  EXPECT_GE(v.cudaRuntime, 13000) << "CUDA 13 or newer is required";
  EXPECT_GE(v.nccl, 22800) << "NCCL 2.28 or newer is required";
  EXPECT_GE(v.cublasLt, 130000u) << "cuBLASLt from CUDA 13 is required";
}

TEST(CudaDevice, FillKernelRunsOnEveryDevice) {
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (devices->empty())
    GTEST_SKIP() << "no CUDA device on this machine (GPU test)";
  for (const DeviceInfo &d : *devices) {
    EXPECT_GT(d.totalMemoryBytes, 0u) << d.name;
    absl::Status s = SelfTest(d.ordinal);
    EXPECT_TRUE(s.ok()) << d.name << ": " << s;
  }
}

} // namespace
} // namespace veomni::rt::cuda
