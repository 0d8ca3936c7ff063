//===- Rope.cu - rotate-half rope and its transpose -----------------------===//
//
// One thread per (token, head, j < d/2) pair of elements; the frequency
// and section tables come from the host (Dispatch.cpp builds them as the
// CPU backend does), in the kernel's parameters.
//
//===----------------------------------------------------------------------===//

#include "runtime/backends/cuda/DeviceUtil.cuh"

namespace veomni::rt::cuda {
namespace {

using namespace dev;

__global__ void RopeKernel(Buf in, Buf positions, Buf out, int64_t tokens,
                           int64_t heads, launch::RopeTable table,
                           bool inverse) {
  const int64_t half = table.half, d = 2 * half;
  VEOMNI_GRID_LOOP(e, tokens * heads * half) {
    int64_t j = e % half, th = e / half, t = th / heads;
    float pos = static_cast<float>(LoadIndex(positions.data, positions.type,
                                             table.section[j] * tokens + t));
    float angle = pos * table.freq[j];
    float c = cosf(angle) * table.scaling, sn = sinf(angle) * table.scaling;
    int64_t base = th * d;
    float x0 = Load(in.data, in.type, base + j);
    float x1 = Load(in.data, in.type, base + j + half);
    float y0, y1;
    if (inverse) {
      y0 = x0 * c + x1 * sn;
      y1 = x1 * c - x0 * sn;
    } else {
      y0 = x0 * c - x1 * sn;
      y1 = x1 * c + x0 * sn;
    }
    Store(out.data, out.type, base + j, y0);
    Store(out.data, out.type, base + j + half, y1);
  }
}

} // namespace

namespace launch {

cudaError_t Rope(cudaStream_t s, Buf in, Buf positions, Buf out, int64_t tokens,
                 int64_t heads, const RopeTable &table, bool inverse) {
  int64_t n = tokens * heads * table.half;
  if (n == 0)
    return cudaSuccess;
  RopeKernel<<<dev::Blocks(n), dev::kThreads, 0, s>>>(
      in, positions, out, tokens, heads, table, inverse);
  return cudaGetLastError();
}

} // namespace launch
} // namespace veomni::rt::cuda
