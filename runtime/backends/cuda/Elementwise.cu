//===- Elementwise.cu - fills, casts, unary and binary kernels ------------===//
//
// One thread per element, grid-stride; every value goes through f32, as
// on the CPU backend (the math functions are CUDA's, so results agree to
// the last bits or so, not bit for bit).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;

__global__ void FillKernel(Buf out, float f, long long i) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    if (out.type == launch::I32)
      static_cast<int32_t *>(out.data)[e] = static_cast<int32_t>(i);
    else if (out.type == launch::I64)
      static_cast<int64_t *>(out.data)[e] = i;
    else
      Store(out.data, out.type, e, f);
  }
}

__global__ void CastKernel(Buf in, Buf out) {
  bool intIn = in.type == launch::I32 || in.type == launch::I64;
  bool intOut = out.type == launch::I32 || out.type == launch::I64;
  VEOMNI_GRID_LOOP(e, out.numel) {
    if (intIn && intOut) {
      int64_t v = LoadIndex(in.data, in.type, e);
      if (out.type == launch::I32)
        static_cast<int32_t *>(out.data)[e] = static_cast<int32_t>(v);
      else
        static_cast<int64_t *>(out.data)[e] = v;
    } else if (intIn) {
      Store(out.data, out.type, e,
            static_cast<float>(LoadIndex(in.data, in.type, e)));
    } else {
      Store(out.data, out.type, e, Load(in.data, in.type, e));
    }
  }
}

__global__ void UnaryKernel(int kind, Buf in, Buf out) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    Store(out.data, out.type, e, ApplyUnary(kind, Load(in.data, in.type, e)));
  }
}

__global__ void BinaryKernel(int kind, Buf lhs, Buf rhs, Buf out) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    float a = Load(lhs.data, lhs.type, e), b = Load(rhs.data, rhs.type, e);
    float r = kind == 0   ? a + b
              : kind == 1 ? a - b
              : kind == 2 ? a * b
              : kind == 3 ? a / b
                          : (b == 0.0f ? 0.0f : a * b); // MulNoNan
    Store(out.data, out.type, e, r);
  }
}

__global__ void ClampKernel(Buf x, Buf dy, Buf out, float lo, float hi) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    float v = Load(x.data, x.type, e);
    float r = dy.data ? (v >= lo && v <= hi ? Load(dy.data, dy.type, e) : 0.0f)
                      : fminf(fmaxf(v, lo), hi);
    Store(out.data, out.type, e, r);
  }
}

__global__ void GeluGradKernel(Buf x, Buf dy, Buf dx, bool tanhForm) {
  VEOMNI_GRID_LOOP(e, dx.numel) {
    float v = Load(x.data, x.type, e), g = Load(dy.data, dy.type, e), d;
    if (tanhForm) {
      const float c = 0.7978845608028654f;
      float u = c * (v + 0.044715f * v * v * v);
      float t = tanhf(u);
      d = 0.5f * (1.0f + t) +
          0.5f * v * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * v * v);
    } else {
      float phi = 0.3989422804014327f * expf(-0.5f * v * v);
      d = 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * phi;
    }
    Store(dx.data, dx.type, e, g * d);
  }
}

__global__ void RoundKernel(float *x, int64_t n, int type) {
  VEOMNI_GRID_LOOP(e, n) {
    x[e] = type == launch::BF16 ? __bfloat162float(__float2bfloat16_rn(x[e]))
                                : __half2float(__float2half_rn(x[e]));
  }
}

} // namespace

namespace launch {

cudaError_t RoundInPlace(cudaStream_t s, float *x, int64_t n, int type) {
  if (n == 0 || type == F32)
    return cudaSuccess;
  RoundKernel<<<dev::Blocks(n), dev::kThreads, 0, s>>>(x, n, type);
  return cudaGetLastError();
}

cudaError_t Fill(cudaStream_t s, Buf out, double value) {
  if (out.numel == 0)
    return cudaSuccess;
  // Integer fills only: converting inf or NaN to an integer is undefined.
  bool integer = out.type == launch::I32 || out.type == launch::I64;
  FillKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(
      out, static_cast<float>(value),
      integer ? static_cast<long long>(value) : 0);
  return cudaGetLastError();
}

cudaError_t Cast(cudaStream_t s, Buf in, Buf out) {
  if (out.numel == 0)
    return cudaSuccess;
  CastKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(in, out);
  return cudaGetLastError();
}

cudaError_t Unary(cudaStream_t s, int kind, Buf in, Buf out) {
  if (out.numel == 0)
    return cudaSuccess;
  UnaryKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(kind, in, out);
  return cudaGetLastError();
}

cudaError_t Binary(cudaStream_t s, int kind, Buf lhs, Buf rhs, Buf out) {
  if (out.numel == 0)
    return cudaSuccess;
  BinaryKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(kind, lhs, rhs,
                                                                out);
  return cudaGetLastError();
}

cudaError_t Clamp(cudaStream_t s, Buf x, Buf dy, Buf out, float lo, float hi) {
  if (out.numel == 0)
    return cudaSuccess;
  ClampKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(x, dy, out, lo,
                                                               hi);
  return cudaGetLastError();
}

cudaError_t GeluGrad(cudaStream_t s, Buf x, Buf dy, Buf dx, bool tanhForm) {
  if (dx.numel == 0)
    return cudaSuccess;
  GeluGradKernel<<<dev::Blocks(dx.numel), dev::kThreads, 0, s>>>(x, dy, dx,
                                                                 tanhForm);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
