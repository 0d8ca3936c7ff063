//===- KernelUtil.h - shared helpers of the fast CPU kernels ----*- C++ -*-===//
//
// Argument checks that build the "<Kernel>: <view> <type> ..." messages, and
// f32 staging of bf16/f16 views: kernels compute in f32, reading f32 views in
// place and converting the others once, in bulk.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_KERNELUTIL_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_KERNELUTIL_H

#include "runtime/core/Tensor.h"
#include "runtime/support/Status.h" // VEOMNI_RETURN_IF_ERROR

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

namespace veomni::rt::cpu::detail {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// "<kernel>: <args...>" as InvalidArgument.
template <typename... Args>
absl::Status Invalid(absl::string_view kernel, const Args &...args) {
  return absl::InvalidArgumentError(absl::StrCat(kernel, ": ", args...));
}

/// "<kernel>: <name> <view> <what...>": the message form for a bad operand.
template <typename... Args>
absl::Status BadView(absl::string_view kernel, absl::string_view name,
                     const TensorView &view, const Args &...what) {
  return absl::InvalidArgumentError(
      absl::StrCat(kernel, ": ", name, " ", view.ToString(), " ", what...));
}

inline std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, "x"), "]");
}

/// Views come from untrusted program files: a known element type, no
/// negative dimension, an element count that cannot overflow, and memory
/// behind any non-empty view.
absl::Status CheckView(absl::string_view kernel, absl::string_view name,
                       const TensorView &v);
/// CheckView plus rank == `rank`.
absl::Status CheckRank(absl::string_view kernel, absl::string_view name,
                       const TensorView &v, int64_t rank);
/// CheckView plus f32, bf16 or f16.
absl::Status CheckFloat(absl::string_view kernel, absl::string_view name,
                        const TensorView &v);
/// CheckView plus i32 or i64.
absl::Status CheckInteger(absl::string_view kernel, absl::string_view name,
                          const TensorView &v);
/// v has the element type of `ref` (named refName in the message).
absl::Status CheckSameType(absl::string_view kernel, absl::string_view name,
                           const TensorView &v, absl::string_view refName,
                           const TensorView &ref);
/// v has exactly `shape`.
absl::Status CheckShape(absl::string_view kernel, absl::string_view name,
                        const TensorView &v, absl::Span<const int64_t> shape);

/// Product of shape[begin, end).
int64_t Product(absl::Span<const int64_t> shape, int64_t begin, int64_t end);

/// Reads a rank-1 or any-shape integer view's element i (i32 or i64).
inline int64_t IndexAt(const TensorView &v, int64_t i) {
  return v.dtype == DType::I32 ? static_cast<const int32_t *>(v.data)[i]
                               : static_cast<const int64_t *>(v.data)[i];
}

/// Checks that every element of an integer view lies in [0, bound).
absl::Status CheckIndices(absl::string_view kernel, absl::string_view name,
                          const TensorView &v, int64_t bound);

/// Uninitialised f32 scratch (std::vector would zero it first).
inline std::unique_ptr<float[]> Scratch(int64_t n) {
  return std::unique_ptr<float[]>(new float[n > 0 ? n : 1]);
}

/// dst[0, n) = elements [offset, offset + n) of a float or integer view.
void LoadF32(const TensorView &v, int64_t offset, int64_t n, float *dst);
/// Elements [offset, offset + n) of a float view = src[0, n), rounded to
/// nearest even for bf16/f16.
void StoreF32(const float *src, const TensorView &v, int64_t offset, int64_t n);

/// A read-only f32 image of a float view: its own memory when it is f32,
/// otherwise a converted copy.
class F32Input {
public:
  explicit F32Input(const TensorView &v);
  const float *data() const { return ptr_; }

private:
  std::unique_ptr<float[]> copy_;
  const float *ptr_;
};

/// An f32 destination for a float view: f32 views are written in place;
/// others go to scratch that Commit() rounds into the view.
class F32Output {
public:
  explicit F32Output(const TensorView &v);
  float *data() { return ptr_; }
  void Commit();

private:
  const TensorView &view_;
  std::unique_ptr<float[]> copy_;
  float *ptr_;
};

/// A float view's rows of length `len`: f32 views are read in place, others
/// are converted into a reusable buffer.
class RowReader {
public:
  RowReader(const TensorView &v, int64_t len) : view_(v), len_(len) {
    if (v.dtype != DType::F32)
      buf_ = Scratch(len);
  }
  const float *Row(int64_t r) {
    if (!buf_)
      return static_cast<const float *>(view_.data) + r * len_;
    LoadF32(view_, r * len_, len_, buf_.get());
    return buf_.get();
  }

private:
  const TensorView &view_;
  int64_t len_;
  std::unique_ptr<float[]> buf_;
};

/// Rows of an output view: f32 views are written in place, others through a
/// buffer rounded by Done().
class RowWriter {
public:
  RowWriter(const TensorView &v, int64_t len) : view_(v), len_(len) {
    if (v.dtype != DType::F32)
      buf_ = Scratch(len);
  }
  float *Row(int64_t r) {
    row_ = r;
    return buf_ ? buf_.get() : static_cast<float *>(view_.data) + r * len_;
  }
  void Done() {
    if (buf_)
      StoreF32(buf_.get(), view_, row_ * len_, len_);
  }

private:
  const TensorView &view_;
  int64_t len_, row_ = 0;
  std::unique_ptr<float[]> buf_;
};

/// BLAS takes 32-bit sizes and leading dimensions.
inline bool FitsBlas(int64_t v) { return v <= INT_MAX; }

/// The f32 GEMM libraries the CPU backend can call.
enum class GemmLibrary { OpenBlas, OneDnn };

/// The library every GEMM of this process uses, decided once and the same
/// for every run on a machine (so a resumed run computes as the run it
/// continues): VEOMNI_GEMM=auto (the default), openblas or onednn. auto
/// takes oneDNN, which JIT-compiles for the ISA it finds, on AVX-512 CPUs
/// (faster on each one measured, by 10% on Zen 4 and 4.7x on an Intel CPU
/// whose model Debian's OpenBLAS did not know), and on AVX2 CPUs OpenBLAS
/// where it runs its Haswell or Zen kernel, oneDNN where it fell back to an
/// older core's. Without oneDNN in the build, OpenBLAS.
GemmLibrary ChosenGemmLibrary();
/// The rule of ChosenGemmLibrary, for a VEOMNI_GEMM value (or null), whether
/// oneDNN finds AVX-512, and the core OpenBLAS runs.
GemmLibrary PickGemmLibrary(const char *asked, bool avx512,
                            const std::string &openblasCore);
/// "openblas (Zen)" or "onednn 2.6": for reports.
std::string GemmLibraryName();

/// c[m, n] = alpha * op(a) op(b) + beta * c (row-major) through the chosen
/// library (or `library`), with the empty sizes that BLAS implementations
/// treat differently handled here: nothing for m or n == 0, c = beta * c
/// for k == 0. Sizes must pass FitsBlas.
void BlasGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b,
              int64_t ldb, float beta, float *c, int64_t ldc);
void BlasGemm(GemmLibrary library, bool transA, bool transB, int64_t m,
              int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/// Whether GEMMs of two bf16 operands go through oneDNN's matmul primitive
/// (Bf16Gemm) instead of widening both to f32: where the CPU multiplies
/// bf16 natively (oneDNN finds AVX-512 BF16 or AMX), decided once.
/// VEOMNI_BF16_GEMM=onednn forces it (tests, benchmarks), =f32 forbids it.
/// Both give f32 accumulation of exact bf16 products; only the summation
/// order differs.
bool Bf16GemmNative();
/// Whether Bf16Gemm can run here: the build has oneDNN (libdnnl-dev) and
/// the CPU has at least AVX-512 (oneDNN 2.6 has no bf16 matmul for AVX2
/// CPUs, where Bf16Gemm returns false and callers widen to f32).
bool Bf16GemmAvailable();
/// c[m, n] = op(a) op(b) with a and b bf16 (row-major, leading dimensions
/// as BlasGemm), c f32 or bf16 (`cType`; rounded to nearest even),
/// accumulated in f32, through oneDNN's matmul. False when it cannot (no
/// oneDNN in the build, or it refused the shapes): the caller widens.
bool Bf16Gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
              const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb,
              void *c, DType cType, int64_t ldc);

/// Runs fn(begin, end) over contiguous slices of [0, n) on up to one thread
/// per core (the caller's included; VEOMNI_CPU_THREADS caps the count), or
/// inline when `work` (a rough count of flops) is too small to pay for
/// starting threads. For kernels that do not call into OpenBLAS, whose own
/// threads would compete.
void ParallelFor(int64_t n, double work,
                 const std::function<void(int64_t, int64_t)> &fn);
/// `work` per element for memory-bound loops: threads pay off from about a
/// million elements, where one core no longer saturates memory bandwidth.
constexpr double kMemoryBoundWork = 8.0;

/// Chunk length for elementwise loops that stage through stack buffers:
/// small enough for L1, long enough to amortise the per-chunk dispatch.
constexpr int64_t kChunk = 2048;

/// The checks RmsNormGrad and LayerNormGrad share: x of rank >= 1 with last
/// dimension `d`, weight and dweight [d], dy and dx the shape of x, all
/// float.
inline absl::Status CheckNormGrad(absl::string_view K, const TensorView &x,
                                  const TensorView &weight,
                                  const TensorView &dy, const TensorView &dx,
                                  const TensorView &dweight, int64_t &d) {
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "x", x));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckView(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "x", x));
  if (x.rank() < 1)
    return BadView(K, "x", x, "must have rank >= 1");
  d = x.dim(x.rank() - 1);
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "weight", weight, 1));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "weight", weight));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "weight", weight, {d}));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dy", dy));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dy", dy, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dx", dx));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dx", dx, x.shape));
  VEOMNI_RETURN_IF_ERROR(CheckRank(K, "dweight", dweight, 1));
  VEOMNI_RETURN_IF_ERROR(CheckFloat(K, "dweight", dweight));
  VEOMNI_RETURN_IF_ERROR(CheckShape(K, "dweight", dweight, {d}));
  return absl::OkStatus();
}

/// One im2col tile of a 1-D convolution, shared by Conv1D and its weight
/// gradient: col[(c, tap), t] = x[c, (t0 + t) * stride + tap - padding] for
/// t in [0, nt), zero where that position falls outside the `len` inputs of
/// each of the `cin` channels of `xb`.
inline void Im2ColTile(const float *xb, int64_t cin, int64_t len, int64_t kw,
                       int64_t stride, int64_t padding, int64_t t0, int64_t nt,
                       float *col) {
  for (int64_t c = 0; c < cin; ++c) {
    const float *xc = xb + c * len;
    for (int64_t tap = 0; tap < kw; ++tap) {
      float *dst = col + (c * kw + tap) * nt;
      // Input position of output t is t * stride + tap - padding; the
      // in-range outputs form one run [lo, hi).
      int64_t shift = tap - padding;
      int64_t lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
      int64_t hi = len - shift <= 0 ? 0 : (len - shift + stride - 1) / stride;
      lo = std::clamp<int64_t>(lo - t0, 0, nt);
      hi = std::clamp<int64_t>(hi - t0, lo, nt);
      std::fill(dst, dst + lo, 0.0f);
      for (int64_t t = lo; t < hi; ++t)
        dst[t] = xc[(t0 + t) * stride + shift];
      std::fill(dst + hi, dst + nt, 0.0f);
    }
  }
}

} // namespace veomni::rt::cpu::detail

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_KERNELUTIL_H
