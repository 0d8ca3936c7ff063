//===- Launch.h - the CUDA kernels' launchers, in plain C++ ------*- C++
//-*-===//
//
// The boundary between the CUDA backend's host code (Dispatch.cpp checks
// every view as the CPU backend does, with the same messages) and its
// device code (the .cu files of this folder, which see no Abseil): plain
// structs and one launcher per kernel. A launcher enqueues on `stream` and
// returns the launch's cudaError_t. Data-dependent errors (an index or a
// label out of range) cannot be seen on the host: kernels record them in
// the device's error word (ErrorCode), which CudaDevice::Synchronize
// reports.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_BACKENDS_CUDA_LAUNCH_H
#define VEOMNI_RUNTIME_BACKENDS_CUDA_LAUNCH_H

#include <cuda_runtime_api.h>

#include <cstdint>

namespace veomni::rt::cuda::launch {

/// Element types, numbered as rt::DType.
enum Type : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4 };

/// A device buffer: its elements, their type and count.
struct Buf {
  void *data = nullptr;
  int type = F32;
  int64_t numel = 0;
};

constexpr int kMaxRank = 8;
struct Dims {
  int rank = 0;
  int64_t d[kMaxRank] = {};
};

/// What a kernel found wrong in its data; the first one is kept.
enum ErrorCode : int {
  kNoError = 0,
  kIndexOutOfRange = 1, ///< gather / scatter_add index outside its table
  kLabelOutOfRange = 2, ///< cross entropy label outside [0, V)
};

/// The error word kernels write into (device memory, set by CudaDevice).
void SetErrorWord(int *word);
int *ErrorWord();

// Elementwise (Elementwise.cu). `kind` numbers as cpu::UnaryKind /
// cpu::BinaryKind.
cudaError_t Fill(cudaStream_t s, Buf out, double value);
cudaError_t Cast(cudaStream_t s, Buf in, Buf out);
cudaError_t Unary(cudaStream_t s, int kind, Buf in, Buf out);
cudaError_t Binary(cudaStream_t s, int kind, Buf lhs, Buf rhs, Buf out);
cudaError_t GeluGrad(cudaStream_t s, Buf x, Buf dy, Buf dx, bool tanhForm);
/// out = clamp(x, lo, hi); with dy (data non-null) dy where lo <= x <= hi.
cudaError_t Clamp(cudaStream_t s, Buf x, Buf dy, Buf out, float lo, float hi);

// Shapes (Shape.cu).
/// out (shape `outShape`) from in (shape `inShape`): operand dim i is
/// result dim dims[i]; size-1 operand dims repeat.
cudaError_t Broadcast(cudaStream_t s, Buf in, Dims inShape, Buf out,
                      Dims outShape, Dims dims);
/// out dim i = in dim perm[i].
cudaError_t Transpose(cudaStream_t s, Buf in, Dims inShape, Buf out, Dims perm);
/// Over sorted `dims` of in; kind 0 sum, 1 max, 2 mean (as cpu::ReduceKind).
cudaError_t Reduce(cudaStream_t s, int kind, Buf in, Dims inShape, Dims dims,
                   Buf out);
/// Softmax of in viewed as [outer, n, inner] along n.
cudaError_t Softmax(cudaStream_t s, Buf in, Buf out, int64_t outer, int64_t n,
                    int64_t inner);
/// source viewed as [outer, rows, inner]; out [outer, n, inner]; row
/// index - offset outside [0, rows) gives zeros; index outside [0, bound)
/// is an error.
cudaError_t Gather(cudaStream_t s, Buf source, Buf indices, Buf out,
                   int64_t outer, int64_t rows, int64_t inner, int64_t offset,
                   int64_t bound);
/// out = dest, then updates [outer, n, inner] added at the rows indices
/// name (in index order, summed in f32 and rounded once per row).
cudaError_t ScatterAdd(cudaStream_t s, Buf dest, Buf indices, Buf updates,
                       Buf out, int64_t outer, int64_t rows, int64_t inner,
                       int64_t offset, int64_t bound);

// Norms (Norms.cu); rows of length n.
cudaError_t RmsNorm(cudaStream_t s, Buf in, Buf weight, Buf out, int64_t rows,
                    int64_t n, double epsilon);
cudaError_t RmsNormGrad(cudaStream_t s, Buf x, Buf weight, Buf dy, Buf dx,
                        Buf dweight, int64_t rows, int64_t n, double epsilon);

// Rope (Rope.cu): in [tokens, heads, d]; positions [sections, tokens].
constexpr int kMaxRopeHalf = 512;
struct RopeTable {
  int half = 0;
  float scaling = 1.0f;
  float freq[kMaxRopeHalf];
  int16_t section[kMaxRopeHalf];
};
cudaError_t Rope(cudaStream_t s, Buf in, Buf positions, Buf out, int64_t tokens,
                 int64_t heads, const RopeTable &table, bool inverse);

// Attention (Attention.cu): q [b, s, hq, d], k [b, skv, hkv, d],
// v [b, skv, hkv, dv]; segments [b, s] or data null; sinks [hq] or data
// null; window 0 or the sliding window (causal).
struct AttentionShape {
  int64_t batch, s, skv, hq, hkv, d, dv;
  bool causal;
  float scale;
  int64_t window;
  bool blocks; ///< segments [2, B, S]: plane 1 holds bidirectional blocks
};
constexpr int kMaxHeadDim = 512;
cudaError_t Attention(cudaStream_t s, const AttentionShape &a, Buf q, Buf k,
                      Buf v, Buf segments, Buf sinks, Buf out);
/// dk, dv and dsinks accumulate in the f32 scratch dkAcc, dvAcc, dsinkAcc
/// (sizes of k, v, sinks; dsinks data null without sinks).
cudaError_t AttentionGrad(cudaStream_t s, const AttentionShape &a, Buf q, Buf k,
                          Buf v, Buf segments, Buf sinks, Buf dout, Buf dq,
                          Buf dk, Buf dv, Buf dsinks, float *dkAcc,
                          float *dvAcc, float *dsinkAcc);

// Losses (Loss.cu): logits [rows, V]; labels [rows]. reduction as
// cpu::LossReduction (0 mean, 1 sum, 2 none). `scratch` holds rows + 2
// floats (8-byte aligned).
cudaError_t CrossEntropy(cudaStream_t s, Buf logits, Buf labels, Buf out,
                         int64_t rows, int64_t vocab, int64_t ignoreIndex,
                         int reduction, float *scratch);
cudaError_t CrossEntropyGrad(cudaStream_t s, Buf logits, Buf labels, Buf dloss,
                             Buf dlogits, int64_t rows, int64_t vocab,
                             int64_t ignoreIndex, int reduction,
                             float *scratch);

// The fused LM head and loss (Loss.cu; Dispatch.cpp runs its GEMMs):
// per-row losses of f32 logits [rows, vocab] into losses[rows]; dlogits
// over the logits in place (count: the counted rows, an f64 from
// CountLabels); the sum or mean of losses into out.
cudaError_t CountLabels(cudaStream_t s, Buf labels, int64_t rows,
                        int64_t ignoreIndex, double *count);
cudaError_t LossRows(cudaStream_t s, float *logits, Buf labels, float *losses,
                     int64_t rows, int64_t vocab, int64_t ignoreIndex);
cudaError_t LossGradRows(cudaStream_t s, float *logits, Buf labels, Buf dloss,
                         const double *count, int64_t rows, int64_t vocab,
                         int64_t ignoreIndex, int reduction);
cudaError_t SumLosses(cudaStream_t s, const float *losses, Buf labels, Buf out,
                      int64_t rows, int64_t ignoreIndex, bool mean);
/// x[0, n) rounded to bf16 or f16 (`type`) precision, in place.
cudaError_t RoundInPlace(cudaStream_t s, float *x, int64_t n, int type);

// MoE (MoE.cu). rows[t * k + j]: the row of copy j of token t, stable-
// sorted by expert (ids outside [0, experts) are errors); `counts` is
// scratch of (kMoEChunks + 1) x experts int64; groupSizes (data may be
// null) gets the rows of each expert. RankRows: the same order for ids too
// large to count (quadratic: only hostile programs have such ids).
constexpr int kMoEChunks = 256;
/// Router top-k ranks a token in 48 KiB of shared memory: p (experts
/// floats), the chosen (k ints) and a bit per expert.
constexpr int64_t kTopKSharedBytes = 48 << 10;
cudaError_t ExpertRows(cudaStream_t s, Buf indices, int64_t experts,
                       int64_t *rows, Buf groupSizes, int64_t *counts);
cudaError_t RankRows(cudaStream_t s, Buf indices, int64_t *rows);
/// *out = the largest index (negative ones are errors); one int64.
cudaError_t MaxIndex(cudaStream_t s, Buf indices, int64_t *out);
/// moe_group_topk: the forward (weights, indices; dweights data null) or
/// its VJP (dscores from dweights; weights, indices null).
cudaError_t MoEGroupTopK(cudaStream_t s, Buf scores, Buf bias, Buf weights,
                         Buf indices, Buf dweights, Buf dscores, int64_t tokens,
                         int64_t experts, int64_t k, int64_t groups,
                         int64_t topkGroups, bool normalize, float scale);
cudaError_t MoETopK(cudaStream_t s, Buf logits, Buf weights, Buf indices,
                    int64_t tokens, int64_t experts, int64_t k, bool normalize);
cudaError_t MoETopKGrad(cudaStream_t s, Buf logits, Buf dweights, Buf dlogits,
                        int64_t tokens, int64_t experts, int64_t k,
                        bool normalize);
cudaError_t MoEDispatch(cudaStream_t s, Buf input, const int64_t *rows, Buf out,
                        int64_t k, int64_t hidden);
cudaError_t MoECombine(cudaStream_t s, Buf input, Buf weights,
                       const int64_t *rows, Buf out, int64_t k, int64_t hidden);
cudaError_t MoECombineGrad(cudaStream_t s, Buf input, Buf weights,
                           const int64_t *rows, Buf dout, Buf dinput,
                           Buf dweights, int64_t k, int64_t hidden);

// Misc.cu: layer_norm (bias data may be null), its VJP (`stats`: 2 x rows
// floats of scratch; dbias data may be null), strided copies (slice,
// slice's VJP, concat), reduce_max's VJP, conv1d and its VJP.
cudaError_t LayerNorm(cudaStream_t s, Buf in, Buf weight, Buf bias, Buf out,
                      int64_t rows, int64_t d, double epsilon);
cudaError_t LayerNormGrad(cudaStream_t s, Buf x, Buf weight, Buf dy, Buf dx,
                          Buf dweight, Buf dbias, int64_t rows, int64_t d,
                          double epsilon, float *stats);
cudaError_t StridedCopy(cudaStream_t s, Buf src, int64_t srcBase,
                        Dims srcStride, Buf dst, int64_t dstBase,
                        Dims dstStride, Dims shape);
cudaError_t ReduceMaxGrad(cudaStream_t s, Buf in, Dims shape, Dims dims, Buf dy,
                          Buf dx);
cudaError_t Conv1D(cudaStream_t s, Buf x, Buf w, Buf bias, Buf out,
                   int64_t batch, int64_t cin, int64_t len, int64_t cout,
                   int64_t kw, int64_t lout, int64_t stride, int64_t padding);
cudaError_t Conv1DGrad(cudaStream_t s, Buf x, Buf w, Buf dout, Buf dx, Buf dw,
                       Buf db, int64_t batch, int64_t cin, int64_t len,
                       int64_t cout, int64_t kw, int64_t lout, int64_t stride,
                       int64_t padding);

// Fused (Fused.cu): one segment of a `fused` kernel (runtime/program/
// Fused.h), checked on the host by cpu::CheckFused. The program travels in
// the kernel's parameters, so it has limits (Dispatch.cpp refuses longer
// programs by name).
constexpr int kFusedMaxCode = 1024; ///< integers: 256 instructions
constexpr int kFusedMaxConstants = 128;
constexpr int kFusedMaxIns = 16, kFusedMaxOuts = 8;
struct FusedCall {
  int numCode = 0, numIns = 0, numOuts = 0;
  int16_t code[kFusedMaxCode];
  float constants[kFusedMaxConstants];
  Buf ins[kFusedMaxIns];
  int8_t modes[kFusedMaxIns];
  Buf outs[kFusedMaxOuts];
  int8_t resultRegister[kFusedMaxOuts], resultReduce[kFusedMaxOuts];
  int64_t n = 0, rows = 0; ///< the domain; rows of the reduced outputs
};
/// `scratch`: f64 partials, 2 x kFusedPartials x outputs, when rows == 1.
constexpr int kFusedPartials = 1024;
cudaError_t Fused(cudaStream_t s, const FusedCall &call, double *scratch);

} // namespace veomni::rt::cuda::launch

#endif // VEOMNI_RUNTIME_BACKENDS_CUDA_LAUNCH_H
