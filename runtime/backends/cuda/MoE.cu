//===- MoE.cu - router top-k, dispatch, combine and their VJPs ------------===//
//
// The expert row order (copy j of token t goes to row r, copies stable-
// sorted by expert, as cpu::detail::ExpertOrder) in three steps: per-chunk
// counts per expert, one ordered scan of them, and each chunk placing its
// copies in order. Top-k ranks the softmax probabilities (f64, rounded
// once) as the CPU backend does: larger first, lower expert on ties, NaN
// last.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;

constexpr int kChunks = launch::kMoEChunks;

__global__ void ChunkCounts(Buf indices, int64_t experts, int64_t *counts,
                            int *error) {
  const int64_t n = indices.numel;
  const int64_t chunk = (n + kChunks - 1) / kChunks;
  const int64_t begin = blockIdx.x * chunk, end = min(n, begin + chunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    int64_t e = LoadIndex(indices.data, indices.type, i);
    if (e < 0 || e >= experts) {
      Report(error, launch::kIndexOutOfRange);
      continue;
    }
    atomicAdd(reinterpret_cast<unsigned long long *>(counts) +
                  blockIdx.x * experts + e,
              1ull);
  }
}

/// totals[e] = the copies of expert e over all chunks; one thread an expert.
__global__ void ExpertTotals(const int64_t *counts, int64_t experts,
                             int64_t *totals) {
  VEOMNI_GRID_LOOP(e, experts) {
    int64_t n = 0;
    for (int c = 0; c < kChunks; ++c)
      n += counts[c * experts + e];
    totals[e] = n;
  }
}

/// totals -> each expert's first row (exclusive scan, one thread: there are
/// at most max(copies, 1024) experts here); groupSizes when given.
__global__ void ScanTotals(int64_t *totals, int64_t experts, Buf groupSizes) {
  if (threadIdx.x != 0 || blockIdx.x != 0)
    return;
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    int64_t n = totals[e];
    if (groupSizes.data) {
      if (groupSizes.type == launch::I32)
        static_cast<int32_t *>(groupSizes.data)[e] = static_cast<int32_t>(n);
      else
        static_cast<int64_t *>(groupSizes.data)[e] = n;
    }
    totals[e] = row;
    row += n;
  }
}

/// counts [kChunks, experts] -> each (chunk, expert)'s first row, chunks
/// in order within an expert; one thread an expert.
__global__ void ChunkStarts(int64_t *counts, int64_t experts,
                            const int64_t *starts) {
  VEOMNI_GRID_LOOP(e, experts) {
    int64_t row = starts[e];
    for (int c = 0; c < kChunks; ++c) {
      int64_t n = counts[c * experts + e];
      counts[c * experts + e] = row;
      row += n;
    }
  }
}

/// Expert ids too large to count: row[i] = the copies with a smaller id,
/// plus the earlier ones with the same id (a stable sort by id).
__global__ void RankRows(Buf indices, int64_t *rows) {
  const int64_t n = indices.numel;
  VEOMNI_GRID_LOOP(i, n) {
    int64_t id = LoadIndex(indices.data, indices.type, i), r = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t o = LoadIndex(indices.data, indices.type, j);
      r += o < id || (o == id && j < i);
    }
    rows[i] = r;
  }
}

__global__ void PlaceRows(Buf indices, int64_t experts, int64_t *next,
                          int64_t *rows) {
  if (threadIdx.x != 0)
    return;
  const int64_t n = indices.numel;
  const int64_t chunk = (n + kChunks - 1) / kChunks;
  const int64_t begin = blockIdx.x * chunk, end = min(n, begin + chunk);
  for (int64_t i = begin; i < end; ++i) {
    int64_t e = LoadIndex(indices.data, indices.type, i);
    rows[i] = e >= 0 && e < experts ? next[blockIdx.x * experts + e]++ : 0;
  }
}

__global__ void MaxIndexKernel(Buf indices, int64_t *out, int *error) {
  int64_t m = -1;
  for (int64_t i = threadIdx.x; i < indices.numel; i += blockDim.x) {
    int64_t v = LoadIndex(indices.data, indices.type, i);
    if (v < 0)
      Report(error, launch::kIndexOutOfRange);
    m = max(m, v);
  }
  __shared__ long long partial[1024];
  partial[threadIdx.x] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int t = 1; t < blockDim.x; ++t)
      m = max(m, static_cast<int64_t>(partial[t]));
    *out = m;
  }
}

/// Token t's probabilities (f64 softmax, rounded once) into p and its top
/// k into chosen (ordered), as MoETopK ranks them. One thread; `taken`
/// holds experts / 32 words.
__device__ inline void TopK(Buf logits, int64_t t, int64_t experts, int64_t k,
                            float *p, int *chosen, uint32_t *taken) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < experts; ++i)
    mx = fmax(mx, static_cast<double>(
                      Load(logits.data, logits.type, t * experts + i)));
  double sum = 0;
  for (int64_t i = 0; i < experts; ++i)
    sum += exp(
        static_cast<double>(Load(logits.data, logits.type, t * experts + i)) -
        mx);
  for (int64_t i = 0; i < experts; ++i)
    p[i] =
        static_cast<float>(exp(static_cast<double>(Load(
                                   logits.data, logits.type, t * experts + i)) -
                               mx) /
                           sum);
  for (int64_t w = 0; w < (experts + 31) / 32; ++w)
    taken[w] = 0;
  for (int64_t j = 0; j < k; ++j) {
    int best = -1;
    float bestKey = 0;
    for (int i = 0; i < experts; ++i) {
      if (taken[i >> 5] & (1u << (i & 31)))
        continue;
      float key = isnan(p[i]) ? -INFINITY : p[i];
      if (best < 0 || key > bestKey) {
        best = i;
        bestKey = key;
      }
    }
    taken[best >> 5] |= 1u << (best & 31);
    chosen[j] = best;
  }
}

/// Shared memory of one token's ranking: p, chosen and the taken bits.
inline size_t TopKShared(int64_t experts, int64_t k) {
  return sizeof(float) * experts + sizeof(int) * k +
         sizeof(uint32_t) * ((experts + 31) / 32);
}

/// One block per token; its thread 0 ranks (the experts are few), in
/// shared memory rather than per-thread local arrays.
__global__ void TopKKernel(Buf logits, Buf weights, Buf indices, int64_t tokens,
                           int64_t experts, int64_t k, bool normalize) {
  extern __shared__ float shared[];
  float *p = shared;
  int *chosen = reinterpret_cast<int *>(p + experts);
  uint32_t *taken = reinterpret_cast<uint32_t *>(chosen + k);
  if (threadIdx.x != 0)
    return;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    TopK(logits, t, experts, k, p, chosen, taken);
    double total = 0;
    for (int64_t j = 0; j < k; ++j)
      total += p[chosen[j]];
    for (int64_t j = 0; j < k; ++j) {
      float w =
          normalize ? static_cast<float>(p[chosen[j]] / total) : p[chosen[j]];
      Store(weights.data, weights.type, t * k + j, w);
      if (indices.type == launch::I32)
        static_cast<int32_t *>(indices.data)[t * k + j] = chosen[j];
      else
        static_cast<int64_t *>(indices.data)[t * k + j] = chosen[j];
    }
  }
}

__global__ void TopKGradKernel(Buf logits, Buf dweights, Buf dlogits,
                               int64_t tokens, int64_t experts, int64_t k,
                               bool normalize) {
  extern __shared__ float shared[];
  float *p = shared;
  int *chosen = reinterpret_cast<int *>(p + experts);
  uint32_t *taken = reinterpret_cast<uint32_t *>(chosen + k);
  if (threadIdx.x != 0)
    return;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    TopK(logits, t, experts, k, p, chosen, taken);
    for (int64_t i = 0; i < experts; ++i)
      Store(dlogits.data, dlogits.type, t * experts + i, 0.0f);
    if (normalize) {
      double total = 0, dot = 0;
      for (int64_t j = 0; j < k; ++j)
        total += p[chosen[j]];
      for (int64_t j = 0; j < k; ++j)
        dot +=
            static_cast<double>(Load(dweights.data, dweights.type, t * k + j)) *
            (p[chosen[j]] / total);
      for (int64_t j = 0; j < k; ++j)
        Store(dlogits.data, dlogits.type, t * experts + chosen[j],
              static_cast<float>(
                  p[chosen[j]] / total *
                  (Load(dweights.data, dweights.type, t * k + j) - dot)));
    } else {
      double dot = 0;
      for (int64_t j = 0; j < k; ++j)
        dot +=
            static_cast<double>(Load(dweights.data, dweights.type, t * k + j)) *
            p[chosen[j]];
      for (int64_t i = 0; i < experts; ++i)
        Store(dlogits.data, dlogits.type, t * experts + i,
              static_cast<float>(-p[i] * dot));
      for (int64_t j = 0; j < k; ++j)
        Store(dlogits.data, dlogits.type, t * experts + chosen[j],
              static_cast<float>(
                  p[chosen[j]] *
                  (Load(dweights.data, dweights.type, t * k + j) - dot)));
    }
  }
}

__global__ void DispatchKernel(Buf input, const int64_t *rows, Buf out,
                               int64_t k, int64_t hidden) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t i = e / hidden, h = e % hidden; // copy i = t * k + j
    Store(out.data, out.type, rows[i] * hidden + h,
          Load(input.data, input.type, (i / k) * hidden + h));
  }
}

__global__ void CombineKernel(Buf input, Buf weights, const int64_t *rows,
                              Buf out, int64_t k, int64_t hidden) {
  VEOMNI_GRID_LOOP(e, out.numel) {
    int64_t t = e / hidden, h = e % hidden;
    float acc = 0;
    for (int64_t j = 0; j < k; ++j)
      acc += Load(weights.data, weights.type, t * k + j) *
             Load(input.data, input.type, rows[t * k + j] * hidden + h);
    Store(out.data, out.type, e, acc);
  }
}

/// One block per copy (t, j): dinput[row] = w dout[t], dweights[t, j] =
/// dot(dout[t], input[row]).
__global__ void CombineGradKernel(Buf input, Buf weights, const int64_t *rows,
                                  Buf dout, Buf dinput, Buf dweights,
                                  int64_t copies, int64_t k, int64_t hidden) {
  for (int64_t c = blockIdx.x; c < copies; c += gridDim.x) {
    int64_t t = c / k, r = rows[c];
    float w = Load(weights.data, weights.type, c);
    double dot = 0; // in f64, as the CPU sums it
    for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
      float g = Load(dout.data, dout.type, t * hidden + h);
      Store(dinput.data, dinput.type, r * hidden + h, w * g);
      dot += g * Load(input.data, input.type, r * hidden + h);
    }
    dot = BlockSum(dot);
    if (threadIdx.x == 0)
      Store(dweights.data, dweights.type, c, static_cast<float>(dot));
    __syncthreads();
  }
}

} // namespace

namespace launch {

cudaError_t ExpertRows(cudaStream_t s, Buf indices, int64_t experts,
                       int64_t *rows, Buf groupSizes, int64_t *counts) {
  // counts holds kChunks x experts, then experts more: the totals.
  int64_t *totals = counts + static_cast<int64_t>(kChunks) * experts;
  if (cudaError_t e =
          cudaMemsetAsync(counts, 0, sizeof(int64_t) * kChunks * experts, s);
      e != cudaSuccess)
    return e;
  if (indices.numel > 0)
    ChunkCounts<<<kChunks, dev::kThreads, 0, s>>>(indices, experts, counts,
                                                  ErrorWord());
  ExpertTotals<<<dev::Blocks(experts), dev::kThreads, 0, s>>>(counts, experts,
                                                              totals);
  ScanTotals<<<1, 1, 0, s>>>(totals, experts, groupSizes);
  ChunkStarts<<<dev::Blocks(experts), dev::kThreads, 0, s>>>(counts, experts,
                                                             totals);
  if (indices.numel > 0)
    PlaceRows<<<kChunks, 1, 0, s>>>(indices, experts, counts, rows);
  return cudaGetLastError();
}

cudaError_t RankRows(cudaStream_t s, Buf indices, int64_t *rows) {
  if (indices.numel == 0)
    return cudaSuccess;
  ::veomni::rt::cuda::
      RankRows<<<dev::Blocks(indices.numel), dev::kThreads, 0, s>>>(indices,
                                                                    rows);
  return cudaGetLastError();
}

/// Shared memory of one token's group choice: choices, group scores,
/// chosen and the eligible bits.
inline size_t GroupTopKShared(int64_t experts, int64_t k, int64_t groups) {
  return sizeof(float) * (experts + groups) + sizeof(int) * k +
         sizeof(uint32_t) * ((experts + 31) / 32);
}

/// One block per token; thread 0 chooses as cpu::MoEGroupChoice does
/// (NaN last, larger first, the lower index on ties), then writes the
/// weights and indices (forward) or the scores' cotangent (dweights set).
__global__ void GroupTopKKernel(Buf scores, Buf bias, Buf weights, Buf indices,
                                Buf dweights, Buf dscores, int64_t tokens,
                                int64_t experts, int64_t k, int64_t groups,
                                int64_t topkGroups, bool normalize,
                                float scale) {
  extern __shared__ unsigned char shared[];
  float *c = reinterpret_cast<float *>(shared);
  float *gs = c + experts;
  int *chosen = reinterpret_cast<int *>(gs + groups);
  uint32_t *eligible = reinterpret_cast<uint32_t *>(chosen + k);
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x == 0) {
      for (int64_t i = 0; i < experts; ++i) {
        float v = Load(scores.data, scores.type, t * experts + i) +
                  Load(bias.data, bias.type, i);
        c[i] = isnan(v) ? -INFINITY : v;
      }
      int64_t per = experts / groups, words = (experts + 31) / 32;
      for (int64_t w = 0; w < words; ++w)
        eligible[w] = groups == 1 ? 0xffffffffu : 0u;
      if (groups > 1) {
        for (int64_t g = 0; g < groups; ++g) {
          float best = -INFINITY, second = -INFINITY;
          for (int64_t i = g * per; i < (g + 1) * per; ++i) {
            if (c[i] > best) {
              second = best;
              best = c[i];
            } else if (c[i] > second) {
              second = c[i];
            }
          }
          gs[g] = per > 1 ? best + second : best;
        }
        for (int64_t round = 0; round < topkGroups; ++round) {
          int64_t best = -1;
          for (int64_t g = 0; g < groups; ++g)
            if (gs[g] != INFINITY && (best < 0 || gs[g] > gs[best]))
              best = g;
          gs[best] = INFINITY; // taken
          for (int64_t i = best * per; i < (best + 1) * per; ++i)
            eligible[i >> 5] |= 1u << (i & 31);
        }
      }
      for (int64_t j = 0; j < k; ++j) {
        int best = -1;
        for (int i = 0; i < experts; ++i)
          if ((eligible[i >> 5] & (1u << (i & 31))) &&
              (best < 0 || c[i] > c[best]))
            best = i;
        eligible[best >> 5] &= ~(1u << (best & 31));
        chosen[j] = best;
      }
      double sum = 1e-20, dot = 0;
      for (int64_t j = 0; j < k; ++j) {
        float s = Load(scores.data, scores.type, t * experts + chosen[j]);
        sum += s;
        if (dweights.data)
          dot += double(Load(dweights.data, dweights.type, t * k + j)) * s;
      }
      if (!dweights.data) {
        for (int64_t j = 0; j < k; ++j) {
          float s = Load(scores.data, scores.type, t * experts + chosen[j]);
          Store(weights.data, weights.type, t * k + j,
                float((normalize ? s / sum : s) * scale));
          if (indices.type == launch::I32)
            static_cast<int32_t *>(indices.data)[t * k + j] = chosen[j];
          else
            static_cast<int64_t *>(indices.data)[t * k + j] = chosen[j];
        }
      } else {
        for (int64_t i = 0; i < experts; ++i)
          Store(dscores.data, dscores.type, t * experts + i, 0.0f);
        for (int64_t j = 0; j < k; ++j) {
          double g = Load(dweights.data, dweights.type, t * k + j);
          double d =
              normalize ? scale * (g / sum - dot / (sum * sum)) : scale * g;
          Store(dscores.data, dscores.type, t * experts + chosen[j], float(d));
        }
      }
    }
    __syncthreads();
  }
}

cudaError_t MaxIndex(cudaStream_t s, Buf indices, int64_t *out) {
  MaxIndexKernel<<<1, 1024, 0, s>>>(indices, out, ErrorWord());
  return cudaGetLastError();
}

cudaError_t MoETopK(cudaStream_t s, Buf logits, Buf weights, Buf indices,
                    int64_t tokens, int64_t experts, int64_t k,
                    bool normalize) {
  if (tokens == 0)
    return cudaSuccess;
  TopKKernel<<<dev::Blocks(tokens, 1), 32, TopKShared(experts, k), s>>>(
      logits, weights, indices, tokens, experts, k, normalize);
  return cudaGetLastError();
}

cudaError_t MoETopKGrad(cudaStream_t s, Buf logits, Buf dweights, Buf dlogits,
                        int64_t tokens, int64_t experts, int64_t k,
                        bool normalize) {
  if (tokens == 0)
    return cudaSuccess;
  TopKGradKernel<<<dev::Blocks(tokens, 1), 32, TopKShared(experts, k), s>>>(
      logits, dweights, dlogits, tokens, experts, k, normalize);
  return cudaGetLastError();
}

cudaError_t MoEGroupTopK(cudaStream_t s, Buf scores, Buf bias, Buf weights,
                         Buf indices, Buf dweights, Buf dscores, int64_t tokens,
                         int64_t experts, int64_t k, int64_t groups,
                         int64_t topkGroups, bool normalize, float scale) {
  if (tokens == 0)
    return cudaSuccess;
  GroupTopKKernel<<<dev::Blocks(tokens, 1), 32,
                    GroupTopKShared(experts, k, groups), s>>>(
      scores, bias, weights, indices, dweights, dscores, tokens, experts, k,
      groups, topkGroups, normalize, scale);
  return cudaGetLastError();
}

cudaError_t MoEDispatch(cudaStream_t s, Buf input, const int64_t *rows, Buf out,
                        int64_t k, int64_t hidden) {
  if (out.numel == 0)
    return cudaSuccess;
  DispatchKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(
      input, rows, out, k, hidden);
  return cudaGetLastError();
}

cudaError_t MoECombine(cudaStream_t s, Buf input, Buf weights,
                       const int64_t *rows, Buf out, int64_t k,
                       int64_t hidden) {
  if (out.numel == 0)
    return cudaSuccess;
  CombineKernel<<<dev::Blocks(out.numel), dev::kThreads, 0, s>>>(
      input, weights, rows, out, k, hidden);
  return cudaGetLastError();
}

cudaError_t MoECombineGrad(cudaStream_t s, Buf input, Buf weights,
                           const int64_t *rows, Buf dout, Buf dinput,
                           Buf dweights, int64_t k, int64_t hidden) {
  int64_t copies = weights.numel;
  if (copies == 0)
    return cudaSuccess;
  CombineGradKernel<<<dev::Blocks(copies, 1), dev::kThreads, 0, s>>>(
      input, weights, rows, dout, dinput, dweights, copies, k, hidden);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
