//===- KernelUtil.cpp - shared helpers of the fast CPU kernels ------------===//

#include "runtime/backends/cpu/KernelUtil.h"

#include "runtime/backends/cpu/VecMath.h"

#include <cblas.h>
#ifdef VEOMNI_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace veomni::rt::cpu::detail {

GemmLibrary ChosenGemmLibrary() {
  static const GemmLibrary chosen = [] {
#ifdef VEOMNI_HAVE_DNNL
    const char *asked = std::getenv("VEOMNI_GEMM");
    std::string how = asked ? asked : "openblas";
    if (how == "onednn")
      return GemmLibrary::OneDnn;
    if (how == "auto") {
      const std::string core = openblas_get_corename();
      for (const char *tuned :
           {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
        if (core == tuned)
          return GemmLibrary::OpenBlas;
      return GemmLibrary::OneDnn;
    }
    if (how != "openblas")
      std::fprintf(stderr,
                   "veomni: warning: VEOMNI_GEMM=%s is not openblas, onednn "
                   "or auto; using openblas\n",
                   asked);
#endif
    return GemmLibrary::OpenBlas;
  }();
  return chosen;
}

std::string GemmLibraryName() {
  if (ChosenGemmLibrary() == GemmLibrary::OneDnn) {
#ifdef VEOMNI_HAVE_DNNL
    const dnnl_version_t *v = dnnl_version();
    return "onednn " + std::to_string(v->major) + "." +
           std::to_string(v->minor);
#endif
  }
  return std::string("openblas (") + openblas_get_corename() + ")";
}

void BlasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b,
              int64_t ldb, float beta, float *c, int64_t ldc) {
  BlasGemm(ChosenGemmLibrary(), transA, transB, m, n, k, alpha, a, lda, b, ldb,
           beta, c, ldc);
}

void BlasGemm(GemmLibrary library, bool transA, bool transB, int64_t m,
              int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0)
    return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      float *row = c + i * ldc;
      if (beta == 0.0f)
        std::fill_n(row, n, 0.0f);
      else if (beta != 1.0f)
        vec::Scale(row, beta, row, n);
    }
    return;
  }
#ifdef VEOMNI_HAVE_DNNL
  if (library == GemmLibrary::OneDnn) {
    // Sizes were checked by the caller; oneDNN reports no other error for
    // valid row-major operands.
    (void)dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a,
                     lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  (void)library;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
              transB ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

absl::Status CheckView(absl::string_view kernel, absl::string_view name,
                       const TensorView &v) {
  if (static_cast<uint8_t>(v.dtype) > static_cast<uint8_t>(DType::I64))
    return Invalid(kernel, name, " has unknown element type ",
                   static_cast<int>(v.dtype));
  // Byte offsets must stay far from int64 overflow: 2^59 elements of up to
  // 8 bytes.
  constexpr int64_t kMaxElements = int64_t{1} << 59;
  int64_t n = 1;
  for (int64_t d : v.shape) {
    if (d < 0)
      return BadView(kernel, name, v, "has a negative dimension");
    if (d != 0 && n > kMaxElements / d)
      return BadView(kernel, name, v, "has too many elements");
    n *= d;
  }
  if (n > 0 && v.data == nullptr)
    return BadView(kernel, name, v, "has no data");
  return absl::OkStatus();
}

absl::Status CheckRank(absl::string_view kernel, absl::string_view name,
                       const TensorView &v, int64_t rank) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, name, v));
  if (v.rank() != rank)
    return BadView(kernel, name, v, "must have rank ", rank);
  return absl::OkStatus();
}

absl::Status CheckFloat(absl::string_view kernel, absl::string_view name,
                        const TensorView &v) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, name, v));
  if (!IsFloat(v.dtype))
    return BadView(kernel, name, v, "must be f32, bf16 or f16");
  return absl::OkStatus();
}

absl::Status CheckInteger(absl::string_view kernel, absl::string_view name,
                          const TensorView &v) {
  VEOMNI_RETURN_IF_ERROR(CheckView(kernel, name, v));
  if (v.dtype != DType::I32 && v.dtype != DType::I64)
    return BadView(kernel, name, v, "must be i32 or i64");
  return absl::OkStatus();
}

absl::Status CheckSameType(absl::string_view kernel, absl::string_view name,
                           const TensorView &v, absl::string_view refName,
                           const TensorView &ref) {
  if (v.dtype != ref.dtype)
    return BadView(kernel, name, v, "must have the element type of ", refName,
                   " ", ref.ToString());
  return absl::OkStatus();
}

absl::Status CheckShape(absl::string_view kernel, absl::string_view name,
                        const TensorView &v, absl::Span<const int64_t> shape) {
  if (absl::Span<const int64_t>(v.shape) != shape)
    return BadView(kernel, name, v, "must have shape ", ShapeString(shape));
  return absl::OkStatus();
}

int64_t Product(absl::Span<const int64_t> shape, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t i = begin; i < end; ++i)
    n *= shape[i];
  return n;
}

absl::Status CheckIndices(absl::string_view kernel, absl::string_view name,
                          const TensorView &v, int64_t bound) {
  int64_t n = v.numel();
  // One unsigned comparison catches negative values too.
  auto scan = [&](const auto *p) -> int64_t {
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<uint64_t>(p[i]) >= static_cast<uint64_t>(bound))
        return i;
    return -1;
  };
  int64_t bad = v.dtype == DType::I32
                    ? scan(static_cast<const int32_t *>(v.data))
                    : scan(static_cast<const int64_t *>(v.data));
  if (bad >= 0)
    return BadView(kernel, name, v, "element ", bad, " = ", IndexAt(v, bad),
                   " is outside [0, ", bound, ")");
  return absl::OkStatus();
}

void LoadF32(const TensorView &v, int64_t offset, int64_t n, float *dst) {
  switch (v.dtype) {
  case DType::F32:
    std::memmove(dst, static_cast<const float *>(v.data) + offset,
                 n * sizeof(float));
    return;
  case DType::BF16:
    vec::Bf16ToF32(static_cast<const uint16_t *>(v.data) + offset, dst, n);
    return;
  case DType::F16:
    vec::F16ToF32(static_cast<const uint16_t *>(v.data) + offset, dst, n);
    return;
  case DType::I32: {
    const int32_t *p = static_cast<const int32_t *>(v.data) + offset;
    for (int64_t i = 0; i < n; ++i)
      dst[i] = static_cast<float>(p[i]);
    return;
  }
  case DType::I64: {
    const int64_t *p = static_cast<const int64_t *>(v.data) + offset;
    for (int64_t i = 0; i < n; ++i)
      dst[i] = static_cast<float>(p[i]);
    return;
  }
  }
}

void StoreF32(const float *src, const TensorView &v, int64_t offset,
              int64_t n) {
  switch (v.dtype) {
  case DType::F32:
    std::memmove(static_cast<float *>(v.data) + offset, src, n * sizeof(float));
    return;
  case DType::BF16:
    vec::F32ToBf16(src, static_cast<uint16_t *>(v.data) + offset, n);
    return;
  case DType::F16:
    vec::F32ToF16(src, static_cast<uint16_t *>(v.data) + offset, n);
    return;
  default: // integer destinations are rejected before any store
    return;
  }
}

void ParallelFor(int64_t n, double work,
                 const std::function<void(int64_t, int64_t)> &fn) {
  // Below ~4 MFLOP a thread start (tens of microseconds) is not worth it.
  constexpr double kMinWorkPerThread = 4e6;
  static const int64_t cores = [] {
    int64_t n = std::max<int64_t>(1, std::thread::hardware_concurrency());
    if (const char *cap = std::getenv("VEOMNI_CPU_THREADS"))
      n = std::clamp<int64_t>(std::atoll(cap), 1, n);
    return n;
  }();
  int64_t threads = std::min<int64_t>(
      {cores, n,
       static_cast<int64_t>(std::min(work / kMinWorkPerThread, 1e6))});
  if (threads <= 1) {
    if (n > 0)
      fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  int64_t begin = 0;
  for (int64_t t = 0; t < threads; ++t) {
    int64_t end = begin + (n - begin) / (threads - t);
    if (t + 1 == threads) {
      fn(begin, end); // the last slice runs on the calling thread
    } else {
      try {
        pool.emplace_back(fn, begin, end);
      } catch (const std::system_error &) {
        fn(begin, end); // no thread to be had: run it here
      }
    }
    begin = end;
  }
  for (std::thread &t : pool)
    t.join();
}

namespace {

/// Whole-tensor conversions are memory-bound; large ones are split over
/// threads in chunk-aligned slices.
template <typename F> void ConvertInSlices(int64_t n, const F &convert) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  ParallelFor(chunks, kMemoryBoundWork * static_cast<double>(n),
              [&](int64_t c0, int64_t c1) {
                int64_t begin = c0 * kChunk, end = std::min(n, c1 * kChunk);
                convert(begin, end - begin);
              });
}

} // namespace

F32Input::F32Input(const TensorView &v) {
  if (v.dtype == DType::F32) {
    ptr_ = static_cast<const float *>(v.data);
    return;
  }
  int64_t n = v.numel();
  copy_ = Scratch(n);
  float *dst = copy_.get();
  ConvertInSlices(n, [&](int64_t offset, int64_t len) {
    LoadF32(v, offset, len, dst + offset);
  });
  ptr_ = copy_.get();
}

F32Output::F32Output(const TensorView &v) : view_(v) {
  if (v.dtype == DType::F32) {
    ptr_ = static_cast<float *>(v.data);
    return;
  }
  copy_ = Scratch(v.numel());
  ptr_ = copy_.get();
}

void F32Output::Commit() {
  if (!copy_)
    return;
  const float *src = copy_.get();
  ConvertInSlices(view_.numel(), [&](int64_t offset, int64_t len) {
    StoreF32(src + offset, view_, offset, len);
  });
}

} // namespace veomni::rt::cpu::detail
