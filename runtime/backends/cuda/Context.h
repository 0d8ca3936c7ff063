//===- Context.h - what the CUDA kernels run with ---------------*- C++ -*-===//
//
// Internal to the CUDA backend's host code: the stream, cuBLASLt handle and
// workspace of the CudaDevice that is running kernels (one per process),
// and stream-ordered f32 scratch for kernels that need some.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_CONTEXT_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_CONTEXT_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace veomni::rt::cuda {

struct Context {
  int ordinal = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
};

/// The running device's context; null before a CudaDevice exists.
Context *CurrentContext();
void SetCurrentContext(Context *c);

/// f32 scratch of `n` elements on the context's stream, freed in stream
/// order when it goes out of scope.
class Scratch {
public:
  Scratch(const Context &c, int64_t n) : stream_(c.stream) {
    if (n > 0)
      status_ =
          cudaMallocAsync(reinterpret_cast<void **>(&p_),
                          static_cast<size_t>(n) * sizeof(float), stream_);
  }
  ~Scratch() {
    if (p_)
      cudaFreeAsync(p_, stream_);
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  float *get() const { return p_; }
  cudaError_t status() const { return status_; }

private:
  cudaStream_t stream_;
  float *p_ = nullptr;
  cudaError_t status_ = cudaSuccess;
};

} // namespace veomni::rt::cuda

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_CONTEXT_H
