//===- CudaBackend.cpp - the CUDA device: arena, stream, copies -----------===//

#include "runtime/backends/cuda/Context.h"
#include "runtime/backends/cuda/CudaDevice.h"
#include "runtime/backends/cuda/CudaStatus.h"
#include "runtime/backends/cuda/Launch.h"

#include "absl/strings/str_cat.h"

namespace veomni::rt::cuda {

namespace {
Context *current = nullptr;
int *errorWord = nullptr;

/// cuBLASLt's workspace: what its heuristics ask for on Hopper.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

class CudaDevice final : public Device {
public:
  explicit CudaDevice(int ordinal) : name_(absl::StrCat("cuda:", ordinal)) {
    ctx_.ordinal = ordinal;
  }
  ~CudaDevice() override {
    if (current == &ctx_) {
      SetCurrentContext(nullptr);
      launch::SetErrorWord(nullptr);
    }
    if (ctx_.stream)
      cudaStreamSynchronize(ctx_.stream);
    cudaFree(arena_);
    cudaFree(error_);
    cudaFree(ctx_.workspace);
    if (ctx_.lt)
      cublasLtDestroy(ctx_.lt);
    if (ctx_.stream)
      cudaStreamDestroy(ctx_.stream);
  }

  absl::Status Init() {
    VEOMNI_CUDA_CHECK(cudaSetDevice(ctx_.ordinal));
    VEOMNI_CUDA_CHECK(
        cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
    VEOMNI_CUBLAS_CHECK(cublasLtCreate(&ctx_.lt));
    VEOMNI_CUDA_CHECK(cudaMalloc(&ctx_.workspace, kWorkspaceBytes));
    ctx_.workspaceBytes = kWorkspaceBytes;
    VEOMNI_CUDA_CHECK(cudaMalloc(&error_, sizeof(int)));
    VEOMNI_CUDA_CHECK(cudaMemsetAsync(error_, 0, sizeof(int), ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    SetCurrentContext(&ctx_);
    launch::SetErrorWord(error_);
    return absl::OkStatus();
  }

  absl::string_view Name() const override { return name_; }

  absl::Status AllocateArena(uint64_t bytes) override {
    if (arena_)
      return absl::FailedPreconditionError("the arena is already allocated");
    cudaError_t e = cudaMalloc(&arena_, bytes > 0 ? bytes : 256);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free = 0, total = 0;
      cudaMemGetInfo(&free, &total);
      return absl::ResourceExhaustedError(absl::StrCat(
          name_, ": cannot allocate an arena of ", bytes, " bytes (", free,
          " of ", total, " free): ", cudaGetErrorString(e)));
    }
    VEOMNI_CUDA_CHECK(cudaMemsetAsync(arena_, 0, bytes, ctx_.stream));
    bytes_ = bytes;
    return Synchronize();
  }
  uint8_t *Arena() const override { return arena_; }
  bool HostAccessible() const override { return false; }

  absl::Status CopyIn(uint64_t offset, const void *src,
                      uint64_t bytes) override {
    VEOMNI_RETURN_IF_ERROR(CheckRange(offset, bytes));
    // Synchronous: the caller's host memory may be reused right after.
    VEOMNI_CUDA_CHECK(cudaMemcpyAsync(arena_ + offset, src, bytes,
                                      cudaMemcpyHostToDevice, ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    return absl::OkStatus();
  }
  absl::Status CopyOut(uint64_t offset, void *dst,
                       uint64_t bytes) const override {
    VEOMNI_RETURN_IF_ERROR(CheckRange(offset, bytes));
    VEOMNI_CUDA_CHECK(cudaMemcpyAsync(dst, arena_ + offset, bytes,
                                      cudaMemcpyDeviceToHost, ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    return absl::OkStatus();
  }
  absl::Status CopyWithin(uint64_t dst, uint64_t src, uint64_t bytes) override {
    VEOMNI_RETURN_IF_ERROR(CheckRange(dst, bytes));
    VEOMNI_RETURN_IF_ERROR(CheckRange(src, bytes));
    if (dst == src || bytes == 0)
      return absl::OkStatus();
    // cudaMemcpy does not promise overlapping ranges; go through scratch.
    bool overlap = dst < src + bytes && src < dst + bytes;
    if (!overlap) {
      VEOMNI_CUDA_CHECK(cudaMemcpyAsync(arena_ + dst, arena_ + src, bytes,
                                        cudaMemcpyDeviceToDevice, ctx_.stream));
      return absl::OkStatus();
    }
    Scratch tmp(ctx_, static_cast<int64_t>((bytes + 3) / 4));
    VEOMNI_CUDA_CHECK(tmp.status());
    VEOMNI_CUDA_CHECK(cudaMemcpyAsync(tmp.get(), arena_ + src, bytes,
                                      cudaMemcpyDeviceToDevice, ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaMemcpyAsync(arena_ + dst, tmp.get(), bytes,
                                      cudaMemcpyDeviceToDevice, ctx_.stream));
    return absl::OkStatus();
  }
  const KernelRegistry &Kernels() const override { return CudaKernels(); }

  absl::Status Synchronize() override {
    VEOMNI_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaGetLastError());
    int code = 0;
    VEOMNI_CUDA_CHECK(cudaMemcpyAsync(&code, error_, sizeof(int),
                                      cudaMemcpyDeviceToHost, ctx_.stream));
    VEOMNI_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    if (code == launch::kNoError)
      return absl::OkStatus();
    // Cleared in stream order, before any kernel queued after this call.
    VEOMNI_CUDA_CHECK(cudaMemsetAsync(error_, 0, sizeof(int), ctx_.stream));
    switch (code) {
    case launch::kIndexOutOfRange:
      return absl::InvalidArgumentError(
          "gather or scatter_add: an index lies outside its table");
    case launch::kLabelOutOfRange:
      return absl::InvalidArgumentError(
          "cross_entropy: a label lies outside [0, vocabulary) and is not "
          "the ignore index");
    default:
      return absl::InternalError(
          absl::StrCat("a kernel reported error ", code));
    }
  }

private:
  absl::Status CheckRange(uint64_t offset, uint64_t bytes) const {
    if (offset > bytes_ || bytes > bytes_ - offset)
      return absl::OutOfRangeError(absl::StrCat("[", offset, ", +", bytes,
                                                ") lies outside the arena of ",
                                                bytes_, " bytes"));
    return absl::OkStatus();
  }

  std::string name_;
  Context ctx_;
  uint8_t *arena_ = nullptr;
  uint64_t bytes_ = 0;
  int *error_ = nullptr;
};

} // namespace

Context *CurrentContext() { return current; }
void SetCurrentContext(Context *c) { current = c; }

namespace launch {
void SetErrorWord(int *word) { errorWord = word; }
int *ErrorWord() { return errorWord; }
} // namespace launch

absl::StatusOr<std::unique_ptr<Device>> CreateCudaDevice(int ordinal) {
  VEOMNI_ASSIGN_OR_RETURN(std::vector<DeviceInfo> devices, ListDevices());
  if (ordinal < 0 || ordinal >= static_cast<int>(devices.size()))
    return absl::NotFoundError(
        devices.empty()
            ? std::string("no CUDA device on this machine")
            : absl::StrCat("no CUDA device ", ordinal, " (this machine has ",
                           devices.size(), ")"));
  if (CurrentContext())
    return absl::FailedPreconditionError(
        "a CUDA device is open already: one per process");
  auto device = std::make_unique<CudaDevice>(ordinal);
  VEOMNI_RETURN_IF_ERROR(device->Init());
  return device;
}

} // namespace veomni::rt::cuda
