//===- Kernels.h - CPU kernels: fast paths and references -------*- C++ -*-===//
//
// One function per veomni op, with the op's semantics (see
// dialects/VeOmni/VeOmniOps.td), filed by topic (Matmul.cpp, Conv.cpp,
// Elementwise.cpp, Norms.cpp, Attention.cpp, Rope.cpp, Loss.cpp, MoE.cpp,
// Shape.cpp), forward and backward together. Every kernel exists twice,
// with the same signature: here, in veomni::rt::cpu (the fast path the CPU
// backend runs: OpenBLAS for matmuls, f32 specialisations, blocking), and
// in veomni::rt::cpu::ref (a naive loop nest, written for obviousness, in
// the test-only library test/unit/runtime/reference/) that tests compare
// against.
//
// Contract of every kernel:
// - Views are row-major and contiguous; `out` views are preallocated with
//   their final shapes. A kernel checks every shape, element type and index
//   it relies on (program files and data are untrusted input) and returns
//   InvalidArgument naming the kernel and the offending view, never crashing
//   and never writing out of bounds.
// - Floats are computed in f32 (accumulations too, or wider); values stored
//   to bf16/f16 round to nearest even. Integer tensors (ids, positions,
//   labels, expert indices) may be i32 or i64.
// - Outputs do not alias inputs, except where a kernel says it may run in
//   place (the elementwise kernels: out may be the same memory as an input
//   of the same type).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CPU_KERNELS_H
#define VEOMNI_RUNTIME_BACKENDS_CPU_KERNELS_H

#include "runtime/core/Tensor.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace veomni::rt::cpu {

enum class UnaryKind {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Sin,
  Cos,
  Tanh,
  Sigmoid,
  Silu,     ///< x * sigmoid(x)
  Gelu,     ///< 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh, ///< 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  IsFinite, ///< 1 where x is finite, 0 where it is NaN or infinite
};
/// MulNoNan: x * y, and 0 where y == 0 even if x is NaN or infinite.
enum class BinaryKind { Add, Sub, Mul, Div, MulNoNan };
enum class ReduceKind { Sum, Max, Mean };
enum class LossReduction { Mean, Sum, None };

struct RopeConfig {
  double theta = 10000.0;
  /// Empty: one section, positions [B, S]. Else positions [N, B, S].
  absl::Span<const int64_t> mropeSection;
  /// Empty: frequency j is (float)(1 / theta^(2j / D)).
  absl::Span<const float> invFreq;
  double attentionScaling = 1.0;
  /// Qwen3-VL: frequency j is section k >= 1's when j % N == k and
  /// j < N * mropeSection[k], else section 0's.
  bool mropeInterleaved = false;
};

// One declaration list, aligned by hand.
// clang-format off
#define VEOMNI_CPU_KERNELS                                                     \
  /** out[..., M, N] = lhs[..., M, K] @ rhs[..., K, N]; rhs may be rank 2   \
   * (shared by every batch); transposes swap the last two dims. */         \
  absl::Status Matmul(const TensorView &lhs, const TensorView &rhs,         \
                      const TensorView &out, bool transposeLhs,             \
                      bool transposeRhs);                                   \
  /** input [N, K] rows grouped by groupSizes [E] (sum N, each >= 0);       \
   * weight [E, K, M], or [E, M, K] with transposeWeight; out [N, M]. */    \
  absl::Status GroupedMatmul(const TensorView &input,                       \
                             const TensorView &weight,                      \
                             const TensorView &groupSizes,                  \
                             const TensorView &out, bool transposeWeight);  \
  /** out[b,o,t] = bias[o] + sum_{c,k} w[o,c,k] x[b,c,t*stride+k-padding],  \
   * zero outside the input. bias may be null. */                           \
  absl::Status Conv1D(const TensorView &input, const TensorView &weight,    \
                      const TensorView *bias, const TensorView &out,        \
                      int64_t stride, int64_t padding);                     \
  /** Elementwise; in-place safe. */                                        \
  absl::Status Unary(UnaryKind kind, const TensorView &in,                  \
                     const TensorView &out);                                \
  /** Elementwise on equal shapes; in-place safe. */                        \
  absl::Status Binary(BinaryKind kind, const TensorView &lhs,               \
                      const TensorView &rhs, const TensorView &out);        \
  /** Element type conversion, same shape: float<->float, int->float,       \
   * int<->int. In-place safe when sizes match. */                          \
  absl::Status Cast(const TensorView &in, const TensorView &out);           \
  /** Over sorted `dims`; out has them removed (or size 1). */              \
  absl::Status Reduce(ReduceKind kind, const TensorView &in,                \
                      const TensorView &out, absl::Span<const int64_t> dims); \
  absl::Status Softmax(const TensorView &in, const TensorView &out,         \
                       int64_t dim);                                        \
  /** As HF: n = x * rsqrt(mean(x^2) + eps) in f32, rounded to x's type,    \
   * then out = weight * n. */                                              \
  absl::Status RmsNorm(const TensorView &in, const TensorView &weight,      \
                       const TensorView &out, double epsilon);              \
  /** (x - mean) / sqrt(biased var + eps) * weight (+ bias), last dim. */   \
  absl::Status LayerNorm(const TensorView &in, const TensorView &weight,    \
                         const TensorView *bias, const TensorView &out,     \
                         double epsilon);                                   \
  /** Operand dim i -> result dim dims[i]; size-1 operand dims repeat. */   \
  absl::Status Broadcast(const TensorView &in, const TensorView &out,       \
                         absl::Span<const int64_t> dims);                   \
  /** out dim i = in dim perm[i]. */                                        \
  absl::Status Transpose(const TensorView &in, const TensorView &out,       \
                         absl::Span<const int64_t> perm);                   \
  absl::Status Slice(const TensorView &in, const TensorView &out,           \
                     absl::Span<const int64_t> start,                       \
                     absl::Span<const int64_t> limit,                       \
                     absl::Span<const int64_t> step);                       \
  absl::Status Concat(absl::Span<const TensorView> inputs,                  \
                      const TensorView &out, int64_t dim);                  \
  /** out = source[:axis] x indices x source[axis+1:]; index range checked.\
   * With total > 0, source is rows [offset, offset + its size) of a table  \
   * of `total` rows split over ranks: indices lie in [0, total), and those \
   * outside this slice give zeros (the ranks' results are partial sums). */\
  absl::Status Gather(const TensorView &source, const TensorView &indices,  \
                      const TensorView &out, int64_t axis,                  \
                      int64_t offset = 0, int64_t total = 0);               \
  /** out = dest, then updates added at indices along axis (duplicates     \
   * accumulate). out may alias dest. With total > 0, dest is rows          \
   * [offset, offset + its size) of `total`: updates elsewhere are other    \
   * ranks'. */                                                             \
  absl::Status ScatterAdd(const TensorView &dest, const TensorView &indices, \
                          const TensorView &updates, const TensorView &out, \
                          int64_t axis, int64_t offset = 0,                 \
                          int64_t total = 0);                               \
  /** in [B, S, H, D], rotate-half rope; see RopeConfig and the op docs. */  \
  absl::Status Rope(const TensorView &in, const TensorView &positions,      \
                    const TensorView &out, const RopeConfig &attrs);         \
  /** q [B,S,Hq,D], k [B,Skv,Hkv,D], v [B,Skv,Hkv,Dv] -> out [B,S,Hq,Dv];    \
   * query head h reads kv head h / (Hq/Hkv); segments [B,S] or null;       \
   * [2,B,S] (causal): plane 1's runs of equal non-zero ids within a        \
   * segment also see each other's later keys (Gemma 3's images);          \
   * window > 0 (causal): query i sees keys i - window < j <= i; sinks      \
   * [Hq] or null: one more logit per head, of value zero. A row with no    \
   * visible key is zero. */                                                \
  absl::Status Attention(const TensorView &q, const TensorView &k,          \
                         const TensorView &v, const TensorView *segments,   \
                         const TensorView &out, bool causal, double scale,  \
                         int64_t window = 0,                                \
                         const TensorView *sinks = nullptr);                \
  /** logits [..., V], labels [...]; loss per row = logsumexp - logit of    \
   * the label; ignoreIndex rows count 0 and are not counted; Mean divides  \
   * by the counted rows (0 when none). out f32: [] or labels' shape. A     \
   * label outside [0, V) that is not ignoreIndex is an error. */           \
  absl::Status CrossEntropy(const TensorView &logits,                       \
                            const TensorView &labels, const TensorView &out, \
                            int64_t ignoreIndex, LossReduction reduction);  \
  /** logits [T, E] -> softmax in f32 -> the k largest, descending (ties:   \
   * lower expert first) -> weights [T, k] (renormalised to sum 1 with      \
   * normalize) and indices [T, k] i32. */                                  \
  absl::Status MoETopK(const TensorView &logits, const TensorView &weights, \
                       const TensorView &indices, int64_t k, bool normalize); \
  /** input [T, H], indices [T, k] -> out [T*k, H]: copy (t, j) of token t   \
   * at row r, rows sorted stably by expert (ties by t*k+j); groupSizes [E]  \
   * i32 counts rows per expert. Expert ids outside [0, E) are errors. */   \
  absl::Status MoEDispatch(const TensorView &input, const TensorView &indices, \
                           const TensorView &out, const TensorView &groupSizes, \
                           int64_t numExperts);                             \
  /** Inverse of MoEDispatch for the same indices: out[t] =                 \
   * sum_j weights[t, j] * input[row of (t, j)]. */                         \
  absl::Status MoECombine(const TensorView &input, const TensorView &weights, \
                          const TensorView &indices, const TensorView &out); \
                                                                            \
  /* Gradients (the VJPs that are not compositions of forward kernels). */  \
                                                                            \
  /** The transpose of Rope: rotation by -angle, scaled by                  \
   * attentionScaling; dy, dx [B, S, H, D]. */                              \
  absl::Status RopeInverse(const TensorView &dy, const TensorView &positions, \
                           const TensorView &dx, const RopeConfig &attrs);   \
  /** For y = weight * round(x * r), r = rsqrt(mean(x^2) + eps) (RmsNorm):  \
   * dweight = sum over rows of dy * x * r; with dn = dy * weight,          \
   * dx = r * dn - x * r^3 * mean(dn * x). All in f32. */                   \
  absl::Status RmsNormGrad(const TensorView &x, const TensorView &weight,   \
                           const TensorView &dy, const TensorView &dx,      \
                           const TensorView &dweight, double epsilon);      \
  /** Attention's VJP: recomputes P = softmax(scale * q k^T, masked) and     \
   * gives dq, dk, dv (shapes of q, k, v); dk and dv sum over the query     \
   * heads that share a kv head. With sinks, dsinks [Hq] = -sum over rows   \
   * of p_sink * delta, delta = sum_j P_j dP_j. */                          \
  absl::Status AttentionGrad(const TensorView &q, const TensorView &k,      \
                             const TensorView &v, const TensorView *segments, \
                             const TensorView &dout, const TensorView &dq,  \
                             const TensorView &dk, const TensorView &dv,    \
                             bool causal, double scale, int64_t window = 0, \
                             const TensorView *sinks = nullptr,             \
                             const TensorView *dsinks = nullptr);           \
  /** dlogits = (softmax(logits) - onehot(label)) * g per row, g = dloss    \
   * (Sum), dloss / counted rows (Mean) or dloss[row] (None); ignored rows  \
   * get 0. dloss is f32, [] or labels' shape. */                           \
  absl::Status CrossEntropyGrad(const TensorView &logits,                   \
                                const TensorView &labels,                   \
                                const TensorView &dloss,                    \
                                const TensorView &dlogits,                  \
                                int64_t ignoreIndex, LossReduction reduction); \
  /** out = min(max(in, lo), hi) (f32 bounds). In-place safe. */           \
  absl::Status Clamp(const TensorView &in, const TensorView &out, double lo, \
                     double hi);                                            \
  /** dx = dy where lo <= x <= hi, else 0. In-place safe. */                \
  absl::Status ClampGrad(const TensorView &x, const TensorView &dy,         \
                         const TensorView &dx, double lo, double hi);       \
  /** dx = dy * gelu'(x): Phi(x) + x phi(x) exact, or the derivative of the \
   * tanh form. In-place safe. */                                           \
  absl::Status GeluGrad(const TensorView &x, const TensorView &dy,          \
                        const TensorView &dx, bool tanhApproximation);      \
  /** LayerNorm's VJP, statistics as LayerNorm computes them: with          \
   * n = (x - mean) r, r = 1 / sqrt(var + eps) and dn = dy * weight,        \
   * dx = r (dn - mean(dn) - n mean(dn n)); dweight = sum over rows of      \
   * dy n; dbias (when not null) = sum over rows of dy. */                  \
  absl::Status LayerNormGrad(const TensorView &x, const TensorView &weight, \
                             const TensorView &dy, const TensorView &dx,    \
                             const TensorView &dweight,                     \
                             const TensorView *dbias, double epsilon);      \
  /** Slice's VJP: dx (the sliced input's shape, dy's type) is zero but at  \
   * the positions Slice reads, which get dy. */                            \
  absl::Status SliceGrad(const TensorView &dy, const TensorView &dx,        \
                         absl::Span<const int64_t> start,                   \
                         absl::Span<const int64_t> limit,                   \
                         absl::Span<const int64_t> step);                   \
  /** Conv1D's VJP for dout [B, Cout, Lout]: dinput, dweight and (when not  \
   * null) dbias, the shapes of input, weight and [Cout]. */                \
  absl::Status Conv1DGrad(const TensorView &input, const TensorView &weight, \
                          const TensorView &dout, const TensorView &dinput, \
                          const TensorView &dweight, const TensorView *dbias, \
                          int64_t stride, int64_t padding);                 \
  /** GroupedMatmul's weight VJP: dweight[e] = input_e^T dout_e [K, M], or  \
   * dout_e^T input_e [M, K] with transposeWeight, over the rows of group   \
   * e; experts without rows get zeros. */                                  \
  absl::Status GroupedMatmulWeightGrad(                                     \
      const TensorView &input, const TensorView &groupSizes,                \
      const TensorView &dout, const TensorView &dweight,                    \
      bool transposeWeight);                                                \
  /** MoETopK's VJP: recomputes softmax p and the top k as MoETopK; for     \
   * dweights [T, k], dlogits [T, E] is p (c - sum(c p)) with c = dweights  \
   * at the chosen experts, 0 elsewhere; with normalize, w (dw - sum(dw w)) \
   * at the chosen experts and 0 elsewhere. */                              \
  absl::Status MoETopKGrad(const TensorView &logits,                        \
                           const TensorView &dweights,                      \
                           const TensorView &dlogits, int64_t k,            \
                           bool normalize);                                 \
  /** scores [T, E], bias [E] -> weights [T, k], indices [T, k] i32: the    \
   * choice of moe_group_topk (see the op), weights = chosen scores,        \
   * / (their sum + 1e-20) with normalize, * scale. */                      \
  absl::Status MoEGroupTopK(const TensorView &scores, const TensorView &bias, \
                            const TensorView &weights,                      \
                            const TensorView &indices, int64_t k,           \
                            int64_t groups, int64_t topkGroups,             \
                            bool normalize, double scale);                  \
  /** Its VJP: dscores [T, E], nonzero at the chosen experts only. */       \
  absl::Status MoEGroupTopKGrad(const TensorView &scores,                   \
                                const TensorView &bias,                     \
                                const TensorView &dweights,                 \
                                const TensorView &dscores, int64_t k,       \
                                int64_t groups, int64_t topkGroups,         \
                                bool normalize, double scale);              \
  /** MoECombine's VJP, rows ordered as MoECombine orders them: for copy    \
   * (t, j) at row r, dinput[r] = weights[t, j] dout[t] and                 \
   * dweights[t, j] = dot(dout[t], input[r]). */                            \
  absl::Status MoECombineGrad(const TensorView &input,                      \
                              const TensorView &weights,                    \
                              const TensorView &indices,                    \
                              const TensorView &dout,                       \
                              const TensorView &dinput,                     \
                              const TensorView &dweights);                  \
  /** Reduce Max's VJP: dy (Reduce's output shape) goes to the first        \
   * row-major maximum of each reduced group (its first NaN if any); the    \
   * rest of dx is zero. */                                                 \
  absl::Status ReduceMaxGrad(const TensorView &in, const TensorView &dy,    \
                             const TensorView &dx,                          \
                             absl::Span<const int64_t> dims);

VEOMNI_CPU_KERNELS
// clang-format on

/// The program of a `fused` kernel (runtime/program/Fused.h).
struct FusedProgram {
  absl::Span<const int64_t> code;
  absl::Span<const double> constants;
  absl::Span<const int64_t> inputModes, results;
  int64_t segments = 1;
};
/// Runs `program` over `ins` and `outs` (Fused.cpp). Every index, register
/// and size is checked first. An output may be the memory of an input read
/// in Full mode (in place), never of another. Its reference is the chain of
/// unfused kernels it replaces (test/unit/runtime/FusedTest.cpp).
absl::Status Fused(absl::Span<const TensorView> ins,
                   absl::Span<const TensorView> outs,
                   const FusedProgram &program);
/// A checked segment of a fused call: its domain of n elements, and the
/// rows its reduced outputs hold (0 without reductions).
struct FusedSegment {
  int64_t n = 0, rows = 0;
};
/// Every check Fused makes, without running it (other backends share
/// them): the program, and each segment's views. Fills `segments` (one
/// per program.segments) when not null.
absl::Status CheckFused(absl::Span<const TensorView> ins,
                        absl::Span<const TensorView> outs,
                        const FusedProgram &program,
                        FusedSegment *segments = nullptr);

/// The LM head, its cross entropy and their VJP (veomni-fuse-loss): hidden
/// [..., H], weight [V, H], labels [...], dloss [] -> loss [] (Mean or Sum,
/// as CrossEntropy), dhidden (hidden's shape), dweight [V, H], computed
/// `chunk` tokens at a time in the f32 workspace: logits = hidden weight^T,
/// the loss, dlogits in place (CrossEntropyGrad's formula), dhidden rows =
/// dlogits weight, dweight += dlogits^T hidden. f32: workspace [chunk, V],
/// and with one chunk bit for bit the unfused kernels. bf16 or f16 (hidden,
/// weight and the results of one type): workspace [chunk + H, V], its last
/// H rows dweight's f32 sum; logits and dlogits rounded as the unfused
/// kernels store them, weight widened in panels. With more chunks dweight
/// sums its chunks in order. Its reference is that chain of unfused kernels
/// (test/unit/runtime/LossKernelsTest.cpp).
absl::Status
LinearCrossEntropy(const TensorView &hidden, const TensorView &weight,
                   const TensorView &labels, const TensorView &dloss,
                   const TensorView &loss, const TensorView &dhidden,
                   const TensorView &dweight, const TensorView &workspace,
                   int64_t ignoreIndex, LossReduction reduction);

/// Keys per tile of Attention and AttentionGrad (tests and benchmarks). A
/// query block whose visible keys fit one tile is computed exactly as
/// softmax then P V; longer ones go tile by tile with a running maximum
/// and sum (flash-style), so no block ever holds more than rows x tile
/// scores. 0 restores the default (one tile up to kAttentionOneTileKeys
/// keys, then kAttentionKeyTile).
void SetAttentionKeyTile(int64_t keys);
inline constexpr int64_t kAttentionOneTileKeys = 2048;
inline constexpr int64_t kAttentionKeyTile = 1024;

/// LinearCrossEntropy's checks of its views (not of the labels' values),
/// shared with the other backends: the tokens a chunk holds.
absl::StatusOr<int64_t>
CheckLinearCrossEntropy(const TensorView &hidden, const TensorView &weight,
                        const TensorView &labels, const TensorView &dloss,
                        const TensorView &loss, const TensorView &dhidden,
                        const TensorView &dweight, const TensorView &workspace,
                        LossReduction reduction);

// VEOMNI_CPU_KERNELS stays defined: the test-only reference kernels
// (test/unit/runtime/reference/Reference.h) declare the same list.

} // namespace veomni::rt::cpu

#endif // VEOMNI_RUNTIME_BACKENDS_CPU_KERNELS_H
