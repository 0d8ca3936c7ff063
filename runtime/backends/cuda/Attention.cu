//===- Attention.cu - attention and its VJP -------------------------------===//
//
// One warp per (batch, query head, query row): the row's q and its output
// accumulator live in the lanes' registers (head dimensions up to
// launch::kMaxHeadDim), keys stream one at a time with a running maximum
// and sum (the online softmax), so nothing of size S x S exists. The VJP
// recomputes the row's probabilities in two passes (statistics and
// delta = sum_j P dP, then the products) and accumulates dk and dv with f32
// atomics. A sliding window starts a row's keys at i - window + 1, a
// bidirectional block ends them at the block's end (LastKey); a
// sink starts its softmax statistics as one more logit (m = sink, l = 1)
// that adds nothing to the output. This is the reference-speed form: correct
// for every shape the CPU kernel takes; tiled tensor-core kernels come next
// (issue 16).
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;
using launch::AttentionShape;

constexpr int kPerLane = launch::kMaxHeadDim / 32;

struct Row {
  int64_t b, h, i, g;
};

__device__ inline Row RowOf(const AttentionShape &a, int64_t w) {
  Row r;
  r.i = w % a.s;
  r.h = (w / a.s) % a.hq;
  r.b = w / (a.s * a.hq);
  r.g = r.h / (a.hq / a.hkv);
  return r;
}

/// The first key row `r` may see (its window's start).
__device__ inline int64_t FirstKey(const AttentionShape &a, const Row &r) {
  return a.window > 0 && r.i - a.window + 1 > 0 ? r.i - a.window + 1 : 0;
}

/// The sink logit of head h, or -inf without sinks.
__device__ inline float SinkOf(Buf sinks, int64_t h) {
  return sinks.data ? Load(sinks.data, sinks.type, h) : -INFINITY;
}

/// The last key row `r` may see causally: itself, or with bidirectional
/// blocks (segments [2, B, S]) the end of its run of equal non-zero block
/// ids within its segment.
__device__ inline int64_t LastKey(const AttentionShape &a, Buf segments,
                                  const Row &r) {
  int64_t last = r.i;
  if (!a.blocks)
    return last;
  const int64_t plane = a.batch * a.s, row = r.b * a.s;
  int64_t id = LoadIndex(segments.data, segments.type, plane + row + r.i);
  int64_t seg = LoadIndex(segments.data, segments.type, row + r.i);
  while (id != 0 && last + 1 < a.s &&
         LoadIndex(segments.data, segments.type, plane + row + last + 1) ==
             id &&
         LoadIndex(segments.data, segments.type, row + last + 1) == seg)
    ++last;
  return last;
}

/// Whether key j (at most the row's causal end) shares the row's segment.
__device__ inline bool Visible(const AttentionShape &a, Buf segments,
                               const Row &r, int64_t j) {
  if (segments.data &&
      LoadIndex(segments.data, segments.type, r.b * a.s + j) !=
          LoadIndex(segments.data, segments.type, r.b * a.s + r.i))
    return false;
  return true;
}

/// sum over the head dimension of x (in lanes' registers) . row `off` of t.
__device__ inline float Dot(const float *x, Buf t, int64_t off, int64_t d) {
  float p = 0;
  int lane = threadIdx.x & 31;
  for (int u = 0; u < kPerLane; ++u) {
    int64_t e = lane + 32 * u;
    if (e < d)
      p += x[u] * Load(t.data, t.type, off + e);
  }
  return WarpSum(p);
}

__global__ void AttentionKernel(AttentionShape a, Buf q, Buf k, Buf v,
                                Buf segments, Buf sinks, Buf out) {
  int lane = threadIdx.x & 31;
  int64_t warps = a.batch * a.hq * a.s;
  // Grid-stride over rows; a warp's lanes share w, so shuffles stay
  // convergent.
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
       w < warps; w += (int64_t(gridDim.x) * blockDim.x) >> 5) {
    Row r = RowOf(a, w);
    float qv[kPerLane], acc[kPerLane];
    int64_t qOff = ((r.b * a.s + r.i) * a.hq + r.h) * a.d;
    for (int u = 0; u < kPerLane; ++u) {
      int64_t e = lane + 32 * u;
      qv[u] = e < a.d ? Load(q.data, q.type, qOff + e) : 0.0f;
      acc[u] = 0.0f;
    }
    float m = SinkOf(sinks, r.h), l = sinks.data ? 1.0f : 0.0f;
    int64_t end = a.causal ? LastKey(a, segments, r) + 1 : a.skv;
    for (int64_t j = FirstKey(a, r); j < end; ++j) {
      if (!Visible(a, segments, r, j))
        continue;
      int64_t kvRow = (r.b * a.skv + j) * a.hkv + r.g;
      float sc = a.scale * Dot(qv, k, kvRow * a.d, a.d);
      float mNew = fmaxf(m, sc);
      float alpha = expf(m - mNew), p = expf(sc - mNew);
      l = l * alpha + p;
      for (int u = 0; u < kPerLane; ++u) {
        int64_t e = lane + 32 * u;
        if (e < a.dv)
          acc[u] = acc[u] * alpha + p * Load(v.data, v.type, kvRow * a.dv + e);
      }
      m = mNew;
    }
    int64_t oOff = ((r.b * a.s + r.i) * a.hq + r.h) * a.dv;
    for (int u = 0; u < kPerLane; ++u) {
      int64_t e = lane + 32 * u;
      if (e < a.dv)
        Store(out.data, out.type, oOff + e, l > 0.0f ? acc[u] / l : 0.0f);
    }
  }
}

__global__ void AttentionGradKernel(AttentionShape a, Buf q, Buf k, Buf v,
                                    Buf segments, Buf sinks, Buf dout, Buf dq,
                                    float *dkAcc, float *dvAcc,
                                    float *dsinkAcc) {
  int lane = threadIdx.x & 31;
  int64_t warps = a.batch * a.hq * a.s;
  // Grid-stride over rows; a warp's lanes share w, so shuffles stay
  // convergent.
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
       w < warps; w += (int64_t(gridDim.x) * blockDim.x) >> 5) {
    Row r = RowOf(a, w);
    float qv[kPerLane], dov[kPerLane], dqv[kPerLane];
    int64_t qOff = ((r.b * a.s + r.i) * a.hq + r.h) * a.d;
    int64_t oOff = ((r.b * a.s + r.i) * a.hq + r.h) * a.dv;
    for (int u = 0; u < kPerLane; ++u) {
      int64_t e = lane + 32 * u;
      qv[u] = e < a.d ? Load(q.data, q.type, qOff + e) : 0.0f;
      dov[u] = e < a.dv ? Load(dout.data, dout.type, oOff + e) : 0.0f;
      dqv[u] = 0.0f;
    }
    int64_t end = a.causal ? LastKey(a, segments, r) + 1 : a.skv;
    // Pass 1: the row's maximum, sum and sum_j exp(s_j - m) dP_j.
    const float sink = SinkOf(sinks, r.h);
    float m = sink, l = sinks.data ? 1.0f : 0.0f, t = 0.0f;
    const int64_t first = FirstKey(a, r);
    for (int64_t j = first; j < end; ++j) {
      if (!Visible(a, segments, r, j))
        continue;
      int64_t kvRow = (r.b * a.skv + j) * a.hkv + r.g;
      float sc = a.scale * Dot(qv, k, kvRow * a.d, a.d);
      float dp = Dot(dov, v, kvRow * a.dv, a.dv);
      float mNew = fmaxf(m, sc);
      float alpha = expf(m - mNew), p = expf(sc - mNew);
      l = l * alpha + p;
      t = t * alpha + p * dp;
      m = mNew;
    }
    if (l > 0.0f) {
      float delta = t / l, inv = 1.0f / l;
      // The sink's probability times (0 - delta): its value is zero.
      if (sinks.data && lane == 0)
        atomicAdd(dsinkAcc + r.h, -expf(sink - m) * inv * delta);
      // Pass 2: dS = P (dP - delta); dq += scale dS k; dk += scale dS q;
      // dv += P dO.
      for (int64_t j = first; j < end; ++j) {
        if (!Visible(a, segments, r, j))
          continue;
        int64_t kvRow = (r.b * a.skv + j) * a.hkv + r.g;
        float sc = a.scale * Dot(qv, k, kvRow * a.d, a.d);
        float dp = Dot(dov, v, kvRow * a.dv, a.dv);
        float p = expf(sc - m) * inv;
        float ds = p * (dp - delta) * a.scale;
        for (int u = 0; u < kPerLane; ++u) {
          int64_t e = lane + 32 * u;
          if (e < a.d) {
            dqv[u] += ds * Load(k.data, k.type, kvRow * a.d + e);
            atomicAdd(dkAcc + kvRow * a.d + e, ds * qv[u]);
          }
          if (e < a.dv)
            atomicAdd(dvAcc + kvRow * a.dv + e, p * dov[u]);
        }
      }
    }
    for (int u = 0; u < kPerLane; ++u) {
      int64_t e = lane + 32 * u;
      if (e < a.d)
        Store(dq.data, dq.type, qOff + e, dqv[u]);
    }
  }
}

__global__ void FromF32(const float *in, Buf out) {
  VEOMNI_GRID_LOOP(e, out.numel) { Store(out.data, out.type, e, in[e]); }
}

} // namespace

namespace launch {

cudaError_t Attention(cudaStream_t s, const AttentionShape &a, Buf q, Buf k,
                      Buf v, Buf segments, Buf sinks, Buf out) {
  int64_t warps = a.batch * a.hq * a.s;
  if (warps == 0 || a.dv == 0)
    return cudaSuccess;
  AttentionKernel<<<dev::Blocks(warps * 32), dev::kThreads, 0, s>>>(
      a, q, k, v, segments, sinks, out);
  return cudaGetLastError();
}

cudaError_t AttentionGrad(cudaStream_t s, const AttentionShape &a, Buf q, Buf k,
                          Buf v, Buf segments, Buf sinks, Buf dout, Buf dq,
                          Buf dk, Buf dv, Buf dsinks, float *dkAcc,
                          float *dvAcc, float *dsinkAcc) {
  if (dsinks.numel)
    cudaMemsetAsync(dsinkAcc, 0, dsinks.numel * sizeof(float), s);
  if (dk.numel)
    cudaMemsetAsync(dkAcc, 0, dk.numel * sizeof(float), s);
  if (dv.numel)
    cudaMemsetAsync(dvAcc, 0, dv.numel * sizeof(float), s);
  int64_t warps = a.batch * a.hq * a.s;
  if (warps > 0)
    AttentionGradKernel<<<dev::Blocks(warps * 32), dev::kThreads, 0, s>>>(
        a, q, k, v, segments, sinks, dout, dq, dkAcc, dvAcc, dsinkAcc);
  if (dk.numel)
    FromF32<<<dev::Blocks(dk.numel), dev::kThreads, 0, s>>>(dkAcc, dk);
  if (dv.numel)
    FromF32<<<dev::Blocks(dv.numel), dev::kThreads, 0, s>>>(dvAcc, dv);
  if (dsinks.numel)
    FromF32<<<dev::Blocks(dsinks.numel), dev::kThreads, 0, s>>>(dsinkAcc,
                                                                dsinks);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
