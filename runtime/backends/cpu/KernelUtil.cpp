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
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace veomni::rt::cpu::detail {

GemmLibrary PickGemmLibrary(const char *asked, bool avx512,
                            const std::string &openblasCore) {
  std::string how = asked ? asked : "auto";
  if (how == "onednn")
    return GemmLibrary::OneDnn;
  if (how == "openblas")
    return GemmLibrary::OpenBlas;
  if (how != "auto")
    std::fprintf(stderr,
                 "veomni: warning: VEOMNI_GEMM=%s is not auto, openblas or "
                 "onednn; using auto\n",
                 asked);
  // AVX-512: oneDNN's JIT kernels were the faster on every such CPU
  // measured (Zen 4: 208 against 189 GFLOP/s; an Intel CPU whose model
  // OpenBLAS did not know: 300 against 64).
  if (avx512)
    return GemmLibrary::OneDnn;
  // AVX2: OpenBLAS where it runs the kernel tuned for this core.
  for (const char *tuned : {"Haswell", "Zen"})
    if (openblasCore == tuned)
      return GemmLibrary::OpenBlas;
  return GemmLibrary::OneDnn;
}

#ifdef VEOMNI_HAVE_DNNL
namespace {
/// Whether oneDNN's ISA includes every feature of `isa`. The ISA values are
/// bit sets, not a ladder: avx2_vnni (0x407) is numerically above
/// avx512_core (0x27) and has no AVX-512.
bool HasIsa(dnnl_cpu_isa_t isa) {
  const unsigned found = dnnl_get_effective_cpu_isa();
  return (found & static_cast<unsigned>(isa)) == static_cast<unsigned>(isa);
}
} // namespace
#endif

GemmLibrary ChosenGemmLibrary() {
  static const GemmLibrary chosen = [] {
#ifdef VEOMNI_HAVE_DNNL
    return PickGemmLibrary(std::getenv("VEOMNI_GEMM"),
                           HasIsa(dnnl_cpu_isa_avx512_core),
                           openblas_get_corename());
#else
    return GemmLibrary::OpenBlas;
#endif
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

bool Bf16GemmAvailable() {
#ifdef VEOMNI_HAVE_DNNL
  return HasIsa(dnnl_cpu_isa_avx512_core);
#else
  return false;
#endif
}

bool Bf16GemmNative() {
  static const bool native = [] {
#ifdef VEOMNI_HAVE_DNNL
    const char *asked = std::getenv("VEOMNI_BF16_GEMM");
    std::string how = asked ? asked : "";
    if (how == "onednn")
      return Bf16GemmAvailable();
    if (how == "f32")
      return false;
    if (!how.empty())
      std::fprintf(stderr,
                   "veomni: warning: VEOMNI_BF16_GEMM=%s is not onednn or "
                   "f32; deciding by the CPU\n",
                   asked);
    return HasIsa(dnnl_cpu_isa_avx512_core_bf16);
#else
    return false;
#endif
  }();
  return native;
}

#ifdef VEOMNI_HAVE_DNNL
namespace {

/// One oneDNN matmul per shape, made on first use (JIT compilation costs
/// milliseconds) and kept for the process.
struct Bf16Matmul {
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_desc_t a, b, c;
};

struct Bf16Engine {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  std::mutex mutex;
  std::map<std::vector<int64_t>, Bf16Matmul> matmuls;
  Bf16Engine() {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) !=
            dnnl_success)
      engine = nullptr;
  }
};

Bf16Engine &Engine() {
  static Bf16Engine *e = new Bf16Engine(); // lives as long as the process
  return *e;
}

} // namespace
#endif

bool Bf16Gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
              const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb,
              void *c, DType cType, int64_t ldc) {
#ifdef VEOMNI_HAVE_DNNL
  if (cType != DType::F32 && cType != DType::BF16)
    return false;
  if (m == 0 || n == 0)
    return true;
  Bf16Engine &e = Engine();
  if (!e.engine || k == 0)
    return false;
  std::lock_guard<std::mutex> lock(e.mutex);
  std::vector<int64_t> key = {
      transA, transB, m, n, k, lda, ldb, ldc, static_cast<int64_t>(cType)};
  auto it = e.matmuls.find(key);
  if (it == e.matmuls.end()) {
    Bf16Matmul mm;
    dnnl_dims_t ad = {m, k}, as = {transA ? 1 : lda, transA ? lda : 1};
    dnnl_dims_t bd = {k, n}, bs = {transB ? 1 : ldb, transB ? ldb : 1};
    dnnl_dims_t cd = {m, n}, cs = {ldc, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = nullptr;
    bool ok = dnnl_memory_desc_init_by_strides(&mm.a, 2, ad, dnnl_bf16, as) ==
                  dnnl_success &&
              dnnl_memory_desc_init_by_strides(&mm.b, 2, bd, dnnl_bf16, bs) ==
                  dnnl_success &&
              dnnl_memory_desc_init_by_strides(
                  &mm.c, 2, cd, cType == DType::F32 ? dnnl_f32 : dnnl_bf16,
                  cs) == dnnl_success &&
              dnnl_matmul_desc_init(&desc, &mm.a, &mm.b, nullptr, &mm.c) ==
                  dnnl_success &&
              dnnl_primitive_desc_create(&pd, &desc, nullptr, e.engine,
                                         nullptr) == dnnl_success &&
              dnnl_primitive_create(&mm.primitive, pd) == dnnl_success;
    if (pd)
      dnnl_primitive_desc_destroy(pd);
    if (!ok)
      mm.primitive = nullptr; // remembered: not tried again
    it = e.matmuls.emplace(key, mm).first;
  }
  Bf16Matmul &mm = it->second;
  if (!mm.primitive)
    return false;
  dnnl_memory_t ma = nullptr, mb = nullptr, mc = nullptr;
  bool ok = dnnl_memory_create(&ma, &mm.a, e.engine,
                               const_cast<uint16_t *>(a)) == dnnl_success &&
            dnnl_memory_create(&mb, &mm.b, e.engine,
                               const_cast<uint16_t *>(b)) == dnnl_success &&
            dnnl_memory_create(&mc, &mm.c, e.engine, c) == dnnl_success;
  if (ok) {
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    ok = dnnl_primitive_execute(mm.primitive, e.stream, 3, args) ==
             dnnl_success &&
         dnnl_stream_wait(e.stream) == dnnl_success;
  }
  for (dnnl_memory_t mem : {ma, mb, mc})
    if (mem)
      dnnl_memory_destroy(mem);
  return ok;
#else
  (void)transA, (void)transB, (void)m, (void)n, (void)k, (void)a, (void)lda;
  (void)b, (void)ldb, (void)c, (void)cType, (void)ldc;
  return false;
#endif
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
