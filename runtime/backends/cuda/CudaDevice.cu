//===- CudaDevice.cu - CUDA devices and library versions ------------------===//

#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/backends/cuda/CudaStatus.h"

#include <vector>

namespace veomni::rt::cuda {

namespace {
__global__ void fillKernel(float *out, int n, float base) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = base + static_cast<float>(i);
}
} // namespace

LibraryVersions GetLibraryVersions() {
  LibraryVersions v;
  if (cudaRuntimeGetVersion(&v.cudaRuntime) != cudaSuccess)
    v.cudaRuntime = 0;
  v.cublasLt = cublasLtGetVersion();
  if (ncclGetVersion(&v.nccl) != ncclSuccess)
    v.nccl = 0;
  return v;
}

absl::StatusOr<std::vector<DeviceInfo>> ListDevices() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError(); // clear the sticky error
    return std::vector<DeviceInfo>{};
  }
  VEOMNI_CUDA_CHECK(err);
  std::vector<DeviceInfo> devices;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop;
    VEOMNI_CUDA_CHECK(cudaGetDeviceProperties(&prop, d));
    devices.push_back({d, prop.name, prop.major, prop.minor,
                       prop.totalGlobalMem, prop.multiProcessorCount});
  }
  return devices;
}

absl::Status SelfTest(int device) {
  constexpr int n = 1000; // not a multiple of the block size, on purpose
  VEOMNI_CUDA_CHECK(cudaSetDevice(device));
  float *buf = nullptr;
  VEOMNI_CUDA_CHECK(cudaMalloc(&buf, n * sizeof(float)));
  fillKernel<<<(n + 255) / 256, 256>>>(buf, n, 0.5f);
  std::vector<float> host(n);
  absl::Status status = [&]() -> absl::Status {
    VEOMNI_CUDA_CHECK(cudaGetLastError());
    VEOMNI_CUDA_CHECK(cudaMemcpy(host.data(), buf, n * sizeof(float),
                                 cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }();
  cudaFree(buf);
  VEOMNI_RETURN_IF_ERROR(status);
  for (int i = 0; i < n; ++i)
    if (host[i] != 0.5f + static_cast<float>(i))
      return absl::InternalError(
          absl::StrCat("fill kernel wrote ", host[i], " at index ", i));
  return absl::OkStatus();
}

} // namespace veomni::rt::cuda
