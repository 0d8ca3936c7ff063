//===- CudaStatus.h - CUDA, cuBLASLt and NCCL call checking -----*- C++ -*-===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_CUDASTATUS_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_CUDASTATUS_H

#include "runtime/support/Status.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

/// Returns an absl::Status from the enclosing function when a CUDA runtime
/// call fails.
#define VEOMNI_CUDA_CHECK(call)                                                \
  do {                                                                         \
    cudaError_t _veomni_err = (call);                                          \
    if (_veomni_err != cudaSuccess)                                            \
      return ::veomni::rt::CallError(::absl::StatusCode::kInternal, #call,     \
                                     __FILE__, __LINE__,                       \
                                     cudaGetErrorString(_veomni_err));         \
  } while (0)

#define VEOMNI_CUBLAS_CHECK(call)                                              \
  do {                                                                         \
    cublasStatus_t _veomni_err = (call);                                       \
    if (_veomni_err != CUBLAS_STATUS_SUCCESS)                                  \
      return ::veomni::rt::CallError(::absl::StatusCode::kInternal, #call,     \
                                     __FILE__, __LINE__,                       \
                                     cublasLtGetStatusString(_veomni_err));    \
  } while (0)

#define VEOMNI_NCCL_CHECK(call)                                                \
  do {                                                                         \
    ncclResult_t _veomni_err = (call);                                         \
    if (_veomni_err != ncclSuccess)                                            \
      return ::veomni::rt::CallError(::absl::StatusCode::kInternal, #call,     \
                                     __FILE__, __LINE__,                       \
                                     ncclGetErrorString(_veomni_err));         \
  } while (0)

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_CUDASTATUS_H
