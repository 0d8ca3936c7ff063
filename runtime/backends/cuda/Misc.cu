//===- Misc.cu - layer_norm, slices, concat, conv1d, reduce_max's VJP -----===//
//
// The kinds the vision and audio encoders add. Layer norm's statistics are
// the CPU backend's (f64 sums, two passes); its weight and bias gradients
// sum over rows per column in f64. Slices and concat are strided copies;
// conv1d is one thread per output (or gradient) element.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;
using launch::Dims;

/// Row r's mean and 1 / sqrt(var + eps), as LayerNorm computes them.
__device__ inline void RowStats(Buf x, int64_t base, int64_t d, double eps,
                                float *mean, float *rstd) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    s += Load(x.data, x.type, base + i);
  float m = static_cast<float>(BlockSum(s) / static_cast<double>(d));
  double ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float y = Load(x.data, x.type, base + i) - m;
    ss += static_cast<double>(y) * y;
  }
  double var = BlockSum(ss) / static_cast<double>(d);
  *mean = m;
  *rstd = static_cast<float>(1.0 / sqrt(var + eps));
}

__global__ void LayerNormKernel(Buf in, Buf weight, Buf bias, Buf out,
                                int64_t rows, int64_t d, double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float mean, rstd;
    RowStats(in, r * d, d, eps, &mean, &rstd);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float y = (Load(in.data, in.type, r * d + i) - mean) * rstd *
                Load(weight.data, weight.type, i);
      if (bias.data)
        y += Load(bias.data, bias.type, i);
      Store(out.data, out.type, r * d + i, y);
    }
    __syncthreads();
  }
}

__global__ void LayerNormGradRows(Buf x, Buf weight, Buf dy, Buf dx,
                                  float *stats, int64_t rows, int64_t d,
                                  double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float mean, rstd;
    RowStats(x, r * d, d, eps, &mean, &rstd);
    double sdn = 0, sdnn = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float n = (Load(x.data, x.type, r * d + i) - mean) * rstd;
      float dn =
          Load(dy.data, dy.type, r * d + i) * Load(weight.data, weight.type, i);
      sdn += dn;
      float t = dn * n; // rounded to f32 as the CPU's product is
      sdnn += t;
    }
    float meanDn = static_cast<float>(BlockSum(sdn) / static_cast<double>(d));
    float meanDnN = static_cast<float>(BlockSum(sdnn) / static_cast<double>(d));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float n = (Load(x.data, x.type, r * d + i) - mean) * rstd;
      float dn =
          Load(dy.data, dy.type, r * d + i) * Load(weight.data, weight.type, i);
      Store(dx.data, dx.type, r * d + i, rstd * (dn - meanDn - n * meanDnN));
    }
    if (threadIdx.x == 0) {
      stats[2 * r] = mean;
      stats[2 * r + 1] = rstd;
    }
    __syncthreads();
  }
}

__global__ void LayerNormGradColumns(Buf x, Buf dy, const float *stats,
                                     Buf dweight, Buf dbias, int64_t rows,
                                     int64_t d) {
  VEOMNI_GRID_LOOP(i, d) {
    double dw = 0, db = 0;
    for (int64_t r = 0; r < rows; ++r) {
      float g = Load(dy.data, dy.type, r * d + i);
      float n =
          (Load(x.data, x.type, r * d + i) - stats[2 * r]) * stats[2 * r + 1];
      dw += static_cast<double>(g) * n;
      db += g;
    }
    Store(dweight.data, dweight.type, i, static_cast<float>(dw));
    if (dbias.data)
      Store(dbias.data, dbias.type, i, static_cast<float>(db));
  }
}

/// dst[dstBase + sum idx dstStride] = src[srcBase + sum idx srcStride] over
/// `shape`.
__global__ void StridedCopyKernel(Buf src, int64_t srcBase, Dims srcStride,
                                  Buf dst, int64_t dstBase, Dims dstStride,
                                  Dims shape, int64_t n) {
  VEOMNI_GRID_LOOP(e, n) {
    int64_t rest = e, s = srcBase, t = dstBase;
    for (int i = shape.rank - 1; i >= 0; --i) {
      int64_t idx = rest % shape.d[i];
      rest /= shape.d[i];
      s += idx * srcStride.d[i];
      t += idx * dstStride.d[i];
    }
    // Bits, not values: integers and NaN payloads survive (both sides
    // have one type).
    switch (src.type) {
    case launch::BF16:
    case launch::F16:
      static_cast<uint16_t *>(dst.data)[t] =
          static_cast<const uint16_t *>(src.data)[s];
      break;
    case launch::I64:
      static_cast<uint64_t *>(dst.data)[t] =
          static_cast<const uint64_t *>(src.data)[s];
      break;
    default:
      static_cast<uint32_t *>(dst.data)[t] =
          static_cast<const uint32_t *>(src.data)[s];
    }
  }
}

/// One thread per group of the kept dims: dy goes to the group's first
/// row-major maximum (its first NaN if any).
__global__ void ReduceMaxGradKernel(Buf in, Dims shape, Dims reduced, Buf dy,
                                    Buf dx, int64_t groups) {
  int64_t stride[launch::kMaxRank];
  int64_t s = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    stride[i] = s;
    s *= shape.d[i];
  }
  bool isReduced[launch::kMaxRank] = {};
  int64_t count = 1;
  for (int i = 0; i < reduced.rank; ++i) {
    isReduced[reduced.d[i]] = true;
    count *= shape.d[reduced.d[i]];
  }
  VEOMNI_GRID_LOOP(g, groups) {
    int64_t base = 0, rest = g;
    for (int i = shape.rank - 1; i >= 0; --i) {
      if (isReduced[i])
        continue;
      base += (rest % shape.d[i]) * stride[i];
      rest /= shape.d[i];
    }
    int64_t best = -1;
    float mx = 0;
    for (int64_t r = 0; r < count; ++r) {
      int64_t off = base, rr = r;
      for (int i = shape.rank - 1; i >= 0; --i) {
        if (!isReduced[i])
          continue;
        off += (rr % shape.d[i]) * stride[i];
        rr /= shape.d[i];
      }
      float v = Load(in.data, in.type, off);
      if (best < 0 || (!isnan(mx) && (isnan(v) || v > mx))) {
        best = off;
        mx = v;
      }
    }
    if (best >= 0)
      Store(dx.data, dx.type, best, Load(dy.data, dy.type, g));
  }
}

struct ConvShape {
  int64_t batch, cin, len, cout, kw, lout, stride, padding;
};

__global__ void Conv1DKernel(Buf x, Buf w, Buf bias, Buf out, ConvShape c) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t t = e % c.lout, o = (e / c.lout) % c.cout,
            b = e / (c.lout * c.cout);
    double acc = bias.data ? Load(bias.data, bias.type, o) : 0.0;
    for (int64_t ch = 0; ch < c.cin; ++ch)
      for (int64_t k = 0; k < c.kw; ++k) {
        int64_t i = t * c.stride + k - c.padding;
        if (i >= 0 && i < c.len)
          acc += static_cast<double>(
                     Load(w.data, w.type, (o * c.cin + ch) * c.kw + k)) *
                 Load(x.data, x.type, (b * c.cin + ch) * c.len + i);
      }
    Store(out.data, out.type, e, static_cast<float>(acc));
  }
}

__global__ void Conv1DGradInput(Buf w, Buf dout, Buf dx, ConvShape c) {
  VEOMNI_GRID_LOOP(e, dx.numel) {
    int64_t i = e % c.len, ch = (e / c.len) % c.cin, b = e / (c.len * c.cin);
    double acc = 0;
    for (int64_t o = 0; o < c.cout; ++o)
      for (int64_t k = 0; k < c.kw; ++k) {
        int64_t num = i + c.padding - k;
        if (num < 0 || num % c.stride)
          continue;
        int64_t t = num / c.stride;
        if (t < c.lout)
          acc += static_cast<double>(
                     Load(w.data, w.type, (o * c.cin + ch) * c.kw + k)) *
                 Load(dout.data, dout.type, (b * c.cout + o) * c.lout + t);
      }
    Store(dx.data, dx.type, e, static_cast<float>(acc));
  }
}

__global__ void Conv1DGradWeight(Buf x, Buf dout, Buf dw, Buf db, ConvShape c) {
  VEOMNI_GRID_LOOP(e, dw.numel) {
    int64_t k = e % c.kw, ch = (e / c.kw) % c.cin, o = e / (c.kw * c.cin);
    double acc = 0, bacc = 0;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t t = 0; t < c.lout; ++t) {
        float g = Load(dout.data, dout.type, (b * c.cout + o) * c.lout + t);
        int64_t i = t * c.stride + k - c.padding;
        if (i >= 0 && i < c.len)
          acc += static_cast<double>(g) *
                 Load(x.data, x.type, (b * c.cin + ch) * c.len + i);
        bacc += g;
      }
    Store(dw.data, dw.type, e, static_cast<float>(acc));
    if (db.data && ch == 0 && k == 0)
      Store(db.data, db.type, o, static_cast<float>(bacc));
  }
}

} // namespace

namespace launch {

cudaError_t LayerNorm(cudaStream_t s, Buf in, Buf weight, Buf bias, Buf out,
                      int64_t rows, int64_t d, double epsilon) {
  if (rows == 0 || d == 0)
    return cudaSuccess;
  LayerNormKernel<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
      in, weight, bias, out, rows, d, epsilon);
  return cudaGetLastError();
}

cudaError_t LayerNormGrad(cudaStream_t s, Buf x, Buf weight, Buf dy, Buf dx,
                          Buf dweight, Buf dbias, int64_t rows, int64_t d,
                          double epsilon, float *stats) {
  if (d == 0)
    return cudaSuccess;
  if (rows > 0)
    LayerNormGradRows<<<dev::Blocks(rows, 1), dev::kThreads, 0, s>>>(
        x, weight, dy, dx, stats, rows, d, epsilon);
  LayerNormGradColumns<<<dev::Blocks(d), dev::kThreads, 0, s>>>(
      x, dy, stats, dweight, dbias, rows, d);
  return cudaGetLastError();
}

cudaError_t StridedCopy(cudaStream_t s, Buf src, int64_t srcBase,
                        Dims srcStride, Buf dst, int64_t dstBase,
                        Dims dstStride, Dims shape) {
  int64_t n = 1;
  for (int i = 0; i < shape.rank; ++i)
    n *= shape.d[i];
  if (n == 0)
    return cudaSuccess;
  StridedCopyKernel<<<dev::Blocks(n), dev::kThreads, 0, s>>>(
      src, srcBase, srcStride, dst, dstBase, dstStride, shape, n);
  return cudaGetLastError();
}

cudaError_t ReduceMaxGrad(cudaStream_t s, Buf in, Dims shape, Dims dims, Buf dy,
                          Buf dx) {
  if (cudaError_t e = Fill(s, dx, 0.0); e != cudaSuccess)
    return e;
  if (dy.numel == 0 || in.numel == 0)
    return cudaSuccess;
  ReduceMaxGradKernel<<<dev::Blocks(dy.numel), dev::kThreads, 0, s>>>(
      in, shape, dims, dy, dx, dy.numel);
  return cudaGetLastError();
}

cudaError_t Conv1D(cudaStream_t s, Buf x, Buf w, Buf bias, Buf out,
                   int64_t batch, int64_t cin, int64_t len, int64_t cout,
                   int64_t kw, int64_t lout, int64_t stride, int64_t padding) {
  if (out.numel == 0)
    return cudaSuccess;
  ConvShape c{batch, cin, len, cout, kw, lout, stride, padding};
  Conv1DKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(x, w, bias, out,
                                                                c);
  return cudaGetLastError();
}

cudaError_t Conv1DGrad(cudaStream_t s, Buf x, Buf w, Buf dout, Buf dx, Buf dw,
                       Buf db, int64_t batch, int64_t cin, int64_t len,
                       int64_t cout, int64_t kw, int64_t lout, int64_t stride,
                       int64_t padding) {
  ConvShape c{batch, cin, len, cout, kw, lout, stride, padding};
  if (dx.numel)
    Conv1DGradInput<<<dev::Blocks(dx.numel), dev::kThreads, 0, s>>>(w, dout, dx,
                                                                    c);
  if (dw.numel)
    Conv1DGradWeight<<<dev::Blocks(dw.numel), dev::kThreads, 0, s>>>(x, dout,
                                                                     dw, db, c);
  else if (db.data)
    if (cudaError_t e = Fill(s, db, 0.0); e != cudaSuccess)
      return e;
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
