//===- Shape.cu - broadcast, transpose, reductions, softmax, gather -------===//
//
// Index arithmetic per output element (ranks up to launch::kMaxRank).
// Reductions give each output element one block and sum in f64, as the
// CPU backend does; scatter_add adds each column's updates in index order
// on one thread, so its sums are the CPU backend's, bit for bit in f32.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;
using launch::Dims;

/// Row-major strides of `shape`.
__device__ inline void Strides(const Dims &shape, int64_t *stride) {
  int64_t s = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    stride[i] = s;
    s *= shape.d[i];
  }
}

__global__ void BroadcastKernel(Buf in, Dims inShape, Buf out, Dims outShape,
                                Dims dims) {
  int64_t inStride[launch::kMaxRank], outStride[launch::kMaxRank];
  Strides(inShape, inStride);
  Strides(outShape, outStride);
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t src = 0;
    for (int i = 0; i < inShape.rank; ++i) {
      int r = static_cast<int>(dims.d[i]);
      int64_t idx = (e / outStride[r]) % outShape.d[r];
      if (inShape.d[i] != 1)
        src += idx * inStride[i];
    }
    Store(out.data, out.type, e, Load(in.data, in.type, src));
  }
}

__global__ void TransposeKernel(Buf in, Dims inShape, Buf out, Dims perm) {
  int64_t inStride[launch::kMaxRank], outShape[launch::kMaxRank];
  Strides(inShape, inStride);
  for (int i = 0; i < inShape.rank; ++i)
    outShape[i] = inShape.d[perm.d[i]];
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t rest = e, src = 0;
    for (int i = inShape.rank - 1; i >= 0; --i) {
      int64_t idx = rest % outShape[i];
      rest /= outShape[i];
      src += idx * inStride[perm.d[i]];
    }
    Store(out.data, out.type, e, Load(in.data, in.type, src));
  }
}

/// One block per output element: the kept dims' index is blockIdx.x, the
/// reduced elements are spread over the threads.
__global__ void ReduceKernel(int kind, Buf in, Dims inShape, Dims reduced,
                             Buf out) {
  int64_t stride[launch::kMaxRank];
  Strides(inShape, stride);
  bool isReduced[launch::kMaxRank] = {};
  int64_t count = 1;
  for (int i = 0; i < reduced.rank; ++i) {
    isReduced[reduced.d[i]] = true;
    count *= inShape.d[reduced.d[i]];
  }
  for (int64_t o = blockIdx.x; o < out.numel; o += gridDim.x) {
    // The input offset of output o's first element.
    int64_t base = 0, rest = o;
    for (int i = inShape.rank - 1; i >= 0; --i) {
      if (isReduced[i])
        continue;
      base += (rest % inShape.d[i]) * stride[i];
      rest /= inShape.d[i];
    }
    double sum = 0;
    float mx = -INFINITY;
    for (int64_t r = threadIdx.x; r < count; r += blockDim.x) {
      int64_t off = base, rr = r;
      for (int i = inShape.rank - 1; i >= 0; --i) {
        if (!isReduced[i])
          continue;
        off += (rr % inShape.d[i]) * stride[i];
        rr /= inShape.d[i];
      }
      float v = Load(in.data, in.type, off);
      sum += v;
      if (!isnan(mx) && (isnan(v) || v > mx))
        mx = v;
    }
    float result;
    if (kind == 1) {
      // NaN wins: a block max that sees one keeps it.
      __shared__ int sawNan;
      if (threadIdx.x == 0)
        sawNan = 0;
      __syncthreads();
      if (isnan(mx))
        sawNan = 1;
      __syncthreads();
      result = sawNan ? NAN : BlockMax(mx);
    } else {
      double total = BlockSum(sum);
      // A mean over nothing is 0 / 0 = NaN, as on the CPU.
      result = static_cast<float>(kind == 2 ? total / static_cast<double>(count)
                                            : total);
    }
    if (threadIdx.x == 0)
      Store(out.data, out.type, o, result);
    __syncthreads();
  }
}

/// One block per (outer, inner) column of n elements.
__global__ void SoftmaxKernel(Buf in, Buf out, int64_t outer, int64_t n,
                              int64_t inner) {
  for (int64_t col = blockIdx.x; col < outer * inner; col += gridDim.x) {
    int64_t o = col / inner, c = col % inner;
    int64_t base = o * n * inner + c;
    float mx = -INFINITY;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x)
      mx = fmaxf(mx, Load(in.data, in.type, base + r * inner));
    mx = BlockMax(mx);
    float sum = 0;
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x)
      sum += expf(Load(in.data, in.type, base + r * inner) - mx);
    sum = BlockSum(sum);
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x)
      Store(out.data, out.type, base + r * inner,
            expf(Load(in.data, in.type, base + r * inner) - mx) / sum);
    __syncthreads();
  }
}

__device__ inline void CopyElement(const void *src, int64_t i, void *dst,
                                   int64_t j, int type) {
  if (type == launch::I64)
    static_cast<int64_t *>(dst)[j] = static_cast<const int64_t *>(src)[i];
  else if (type == launch::F32 || type == launch::I32)
    static_cast<int32_t *>(dst)[j] = static_cast<const int32_t *>(src)[i];
  else
    static_cast<uint16_t *>(dst)[j] = static_cast<const uint16_t *>(src)[i];
}

__global__ void GatherKernel(Buf source, Buf indices, Buf out, int64_t rows,
                             int64_t inner, int64_t offset, int64_t bound,
                             int *error) {
  int64_t n = indices.numel;
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t j = e % inner, i = (e / inner) % n, o = e / (inner * n);
    int64_t idx = LoadIndex(indices.data, indices.type, i);
    if (idx < 0 || idx >= bound)
      Report(error, launch::kIndexOutOfRange);
    int64_t r = idx - offset;
    if (idx >= 0 && idx < bound && r >= 0 && r < rows)
      CopyElement(source.data, (o * rows + r) * inner + j, out.data, e,
                  source.type);
    else if (source.type == launch::I64)
      static_cast<int64_t *>(out.data)[e] = 0;
    else if (source.type == launch::F32 || source.type == launch::I32)
      static_cast<int32_t *>(out.data)[e] = 0;
    else
      static_cast<uint16_t *>(out.data)[e] = 0;
  }
}

/// acc [outer, rows, inner] f32 += updates at the indexed rows; one thread
/// per (outer, column), in index order.
__global__ void ScatterAddKernel(float *acc, Buf indices, Buf updates,
                                 int64_t outer, int64_t rows, int64_t inner,
                                 int64_t offset, int64_t bound, int *error) {
  int64_t n = indices.numel;
  VEOMNI_GRID_LOOP(e, outer * inner) {
    int64_t o = e / inner, j = e % inner;
    for (int64_t i = 0; i < n; ++i) {
      int64_t idx = LoadIndex(indices.data, indices.type, i);
      if (idx < 0 || idx >= bound) {
        Report(error, launch::kIndexOutOfRange);
        continue;
      }
      int64_t r = idx - offset;
      if (r < 0 || r >= rows)
        continue; // another rank's row
      acc[(o * rows + r) * inner + j] +=
          Load(updates.data, updates.type, (o * n + i) * inner + j);
    }
  }
}

__global__ void ToF32(Buf in, float *out) {
  VEOMNI_GRID_LOOP(e, in.numel) { out[e] = Load(in.data, in.type, e); }
}
__global__ void FromF32(const float *in, Buf out) {
  VEOMNI_GRID_LOOP(e, out.numel) { Store(out.data, out.type, e, in[e]); }
}

} // namespace

namespace launch {

cudaError_t Broadcast(cudaStream_t s, Buf in, Dims inShape, Buf out,
                      Dims outShape, Dims dims) {
  if (out.numel == 0)
    return cudaSuccess;
  BroadcastKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(
      in, inShape, out, outShape, dims);
  return cudaGetLastError();
}

cudaError_t Transpose(cudaStream_t s, Buf in, Dims inShape, Buf out,
                      Dims perm) {
  if (out.numel == 0)
    return cudaSuccess;
  TransposeKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(in, inShape,
                                                                   out, perm);
  return cudaGetLastError();
}

cudaError_t Reduce(cudaStream_t s, int kind, Buf in, Dims inShape, Dims dims,
                   Buf out) {
  if (out.numel == 0)
    return cudaSuccess;
  ReduceKernel<<<dev::Blocks(out.numel, 1), dev::kThreads, 0, s>>>(
      kind, in, inShape, dims, out);
  return cudaGetLastError();
}

cudaError_t Softmax(cudaStream_t s, Buf in, Buf out, int64_t outer, int64_t n,
                    int64_t inner) {
  if (out.numel == 0)
    return cudaSuccess;
  SoftmaxKernel<<<dev::Blocks(outer * inner, 1), dev::kThreads, 0, s>>>(
      in, out, outer, n, inner);
  return cudaGetLastError();
}

cudaError_t Gather(cudaStream_t s, Buf source, Buf indices, Buf out,
                   int64_t outer, int64_t rows, int64_t inner, int64_t offset,
                   int64_t bound) {
  (void)outer;
  if (out.numel == 0)
    return cudaSuccess;
  GatherKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(
      source, indices, out, rows, inner, offset, bound, ErrorWord());
  return cudaGetLastError();
}

cudaError_t ScatterAdd(cudaStream_t s, Buf dest, Buf indices, Buf updates,
                       Buf out, int64_t outer, int64_t rows, int64_t inner,
                       int64_t offset, int64_t bound) {
  if (out.numel == 0)
    return cudaSuccess;
  // The sums run in f32: in out itself when it is f32, else in scratch
  // rounded into out once.
  float *acc = nullptr;
  bool direct = out.type == launch::F32;
  if (direct) {
    acc = static_cast<float *>(out.data);
  } else if (cudaError_t e = cudaMallocAsync(reinterpret_cast<void **>(&acc),
                                             out.numel * sizeof(float), s);
             e != cudaSuccess) {
    return e;
  }
  ToF32<<<dev::Blocks(dest.numel), dev::kThreads, 0, s>>>(dest, acc);
  if (indices.numel > 0 && inner > 0)
    ScatterAddKernel<<<dev::Blocks(outer * inner), dev::kThreads, 0, s>>>(
        acc, indices, updates, outer, rows, inner, offset, bound, ErrorWord());
  if (!direct) {
    FromF32<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(acc, out);
    cudaFreeAsync(acc, s);
  }
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
