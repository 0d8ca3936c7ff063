//===- VeOmniOps.td - veomni op definitions ----------------*- tablegen -*-===//
//
// Shape rules live in VeOmniShapes.cpp: every op whose result type follows
// from its operands implements inferReturnTypes there, and that one function
// is both the builder's type inference and the verifier's shape check.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_OPS_TD
#define VEOMNI_OPS_TD

include "VeOmniDialect.td"
include "VeOmniAttrs.td"
include "VeOmniInterfaces.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class VeOmni_Op<string mnemonic, list<Trait> traits = []>
    : Op<VeOmni_Dialect, mnemonic, traits>;

// Ops with a backward rule (VeOmniVJP.cpp).
defvar VJP = DeclareOpInterfaceMethods<VeOmni_VJPOpInterface>;

// An op whose result types are computed from its operands and attributes.
class VeOmni_InferredOp<string mnemonic, list<Trait> traits = []>
    : VeOmni_Op<mnemonic, traits # [Pure, InferTypeOpAdaptor]>;

//===----------------------------------------------------------------------===//
// Constants
//===----------------------------------------------------------------------===//

def VeOmni_ConstantOp : VeOmni_InferredOp<"constant", [ConstantLike, VJP]> {
  let summary = "A tensor constant";
  let description = [{
    ```mlir
    %zero = veomni.constant dense<0.0> : tensor<4x8xbf16>
    ```
  }];
  let arguments = (ins ElementsAttr:$value);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = "attr-dict $value";
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

def VeOmni_MatmulOp : VeOmni_InferredOp<"matmul", [VJP]> {
  let summary = "Batched matrix multiply with optional transposes";
  let description = [{
    `lhs` is `[batch..., M, K]` (`[batch..., K, M]` with `transpose_lhs`),
    `rhs` is `[batch..., K, N]` (`[batch..., N, K]` with `transpose_rhs`) or
    rank 2, in which case it is shared by every batch. The result is
    `[batch..., M, N]`. A linear layer `x @ W^T` with HF weight `[out, in]`:

    ```mlir
    %y = veomni.matmul %x, %w {transpose_rhs}
        : tensor<2x16x64xf32>, tensor<128x64xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$lhs, VeOmni_FloatTensor:$rhs,
                       UnitAttr:$transpose_lhs, UnitAttr:$transpose_rhs);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)
  }];
  let hasCanonicalizer = 1;
}

def VeOmni_GroupedMatmulOp : VeOmni_InferredOp<"grouped_matmul", [VJP]> {
  let summary = "One matmul per expert over contiguous row groups";
  let description = [{
    `input` is `[N, K]` with rows sorted by group; `group_sizes[e]` rows use
    `weight[e]`, which is `[E, K, M]` (`[E, M, K]` with `transpose_weight`,
    the Hugging Face `[out, in]` layout). The result is `[N, M]`. The group
    sizes are known only at run time; their sum must be N.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       VeOmni_IndexTensor:$group_sizes,
                       UnitAttr:$transpose_weight);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `,` $group_sizes attr-dict `:` type($input) `,`
    type($weight) `,` type($group_sizes)
  }];
}

def VeOmni_Conv1DOp : VeOmni_InferredOp<"conv1d", [VJP]> {
  let summary = "1-D convolution (Whisper's audio frontend)";
  let description = [{
    `input` `[B, Cin, L]`, `weight` `[Cout, Cin, K]`, optional `bias`
    `[Cout]`; the result is `[B, Cout, (L + 2*padding - K) / stride + 1]`.
    Vision patch embedding needs no op of its own: Qwen2-VL's Conv3d has
    stride equal to its kernel over pre-flattened patches, which is a
    reshape of the weight and a matmul.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       Optional<VeOmni_FloatTensor>:$bias,
                       DefaultValuedAttr<I64Attr, "1">:$stride,
                       DefaultValuedAttr<I64Attr, "0">:$padding);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)?
  }];
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

// Result type = operand type; ODS derives inferReturnTypes from the trait.
class VeOmni_UnaryOp<string mnemonic, string what, list<Trait> traits = []>
    : VeOmni_Op<mnemonic, traits # [Pure, Elementwise, SameOperandsAndResultType,
                                    InferTypeOpInterface]> {
  let summary = "Elementwise " # what;
  let arguments = (ins VeOmni_FloatTensor:$input);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def VeOmni_NegOp : VeOmni_UnaryOp<"neg", "negation", [Involution, VJP]>;
def VeOmni_ExpOp : VeOmni_UnaryOp<"exp", "exponential", [VJP]>;
def VeOmni_LogOp : VeOmni_UnaryOp<"log", "natural logarithm", [VJP]>;
def VeOmni_SqrtOp : VeOmni_UnaryOp<"sqrt", "square root", [VJP]>;
def VeOmni_RsqrtOp : VeOmni_UnaryOp<"rsqrt", "reciprocal square root", [VJP]>;
def VeOmni_SinOp : VeOmni_UnaryOp<"sin", "sine", [VJP]>;
def VeOmni_CosOp : VeOmni_UnaryOp<"cos", "cosine", [VJP]>;
def VeOmni_TanhOp : VeOmni_UnaryOp<"tanh", "hyperbolic tangent", [VJP]>;
def VeOmni_SigmoidOp : VeOmni_UnaryOp<"sigmoid", "logistic sigmoid", [VJP]>;
def VeOmni_SiluOp : VeOmni_UnaryOp<"silu", "x * sigmoid(x)", [VJP]>;
def VeOmni_IsFiniteOp : VeOmni_UnaryOp<"is_finite",
    "test: 1 where x is finite, 0 where it is NaN or infinite">;

def VeOmni_GeluOp : VeOmni_UnaryOp<"gelu", "GELU", [VJP]> {
  let description = [{
    Exact (erf) GELU, or the tanh approximation (`gelu_pytorch_tanh`).
  }];
  let arguments = (ins VeOmni_FloatTensor:$input,
      DefaultValuedAttr<VeOmni_GeluApproxAttr,
                        "::mlir::veomni::GeluApproximation::None">:$approximation);
}

def VeOmni_ClampOp : VeOmni_UnaryOp<"clamp", "clamp to [min, max]", [VJP]> {
  let description = [{
    `min(max(x, min), max)`; either bound may be absent (no limit). Its VJP
    passes the cotangent where `min <= x <= max`, as torch's clamp does.
    gpt-oss's clamped SwiGLU uses it.

    ```mlir
    %y = veomni.clamp %x {max = 7.0 : f64, min = -7.0 : f64} : tensor<4x8xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, OptionalAttr<F64Attr>:$min,
                       OptionalAttr<F64Attr>:$max);
  let hasVerifier = 1;
}

class VeOmni_BinaryOp<string mnemonic, string what, list<Trait> traits = []>
    : VeOmni_InferredOp<mnemonic, traits # [Elementwise]> {
  let summary = "Elementwise " # what # " of two tensors of one type";
  let description = [{
    Both operands have the same type; broadcasting is explicit
    (`veomni.broadcast`), so that shardings and gradients stay simple.
  }];
  let arguments = (ins VeOmni_FloatTensor:$lhs, VeOmni_FloatTensor:$rhs);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` custom<BinaryTypes>(type($lhs), type($rhs))
  }];
  let hasFolder = 1;
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(::mlir::MLIRContext *,
        std::optional<::mlir::Location> loc, Adaptor adaptor,
        ::llvm::SmallVectorImpl<::mlir::Type> &types) {
      return ::mlir::veomni::inferBinaryType(
          loc, getOperationName().drop_front(sizeof("veomni.") - 1),
          adaptor.getLhs().getType(), adaptor.getRhs().getType(), types);
    }
  }];
}

def VeOmni_AddOp : VeOmni_BinaryOp<"add", "sum", [Commutative, VJP]>;
def VeOmni_SubOp : VeOmni_BinaryOp<"sub", "difference", [VJP]>;
def VeOmni_MulOp : VeOmni_BinaryOp<"mul", "product", [Commutative, VJP]>;
def VeOmni_DivOp : VeOmni_BinaryOp<"div", "quotient", [VJP]>;
def VeOmni_MulNoNanOp : VeOmni_BinaryOp<"mul_no_nan",
    "product that is 0 where rhs is 0, even where lhs is NaN or infinite"> {
  let description = [{
    `lhs * rhs`, but 0 wherever `rhs` is 0 (NaN * 0 is NaN, this is 0). The
    optimizer blends an update with the old value through it, so that a
    step whose gradients are not finite leaves no trace. No derivative.
  }];
}

def VeOmni_CastOp : VeOmni_Op<"cast", [Pure, Elementwise, VJP]> {
  let summary = "Element type conversion (f32, bf16, f16; integers to floats)";
  let arguments = (ins VeOmni_AnyTensor:$input);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

def VeOmni_ReduceOp : VeOmni_InferredOp<"reduce", [VJP]> {
  let summary = "Sum, max or mean over a sorted set of dimensions";
  let description = [{
    ```mlir
    %s = veomni.reduce sum %x dims = [1] keep_dims : tensor<4x8xf32>
    ```
  }];
  let arguments = (ins VeOmni_ReduceKind:$kind, VeOmni_FloatTensor:$input,
                       DenseI64ArrayAttr:$dims, UnitAttr:$keep_dims);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $kind $input `dims` `=` $dims (`keep_dims` $keep_dims^)? attr-dict `:`
    type($input)
  }];
}

def VeOmni_SoftmaxOp : VeOmni_InferredOp<"softmax", [VJP]> {
  let summary = "Softmax along one dimension (computed in f32)";
  let arguments = (ins VeOmni_FloatTensor:$input, I64Attr:$dim);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = "$input `dim` `=` $dim attr-dict `:` type($input)";
}

def VeOmni_RMSNormOp : VeOmni_InferredOp<"rms_norm", [VJP]> {
  let summary = "RMS normalisation over the last dimension, times a weight";
  let description = [{
    `x * rsqrt(mean(x^2, -1) + epsilon) * weight`, statistics in f32;
    `weight` is `[D]` for input `[..., D]`.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       F64Attr:$epsilon);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` type($input) `,` type($weight)
  }];
}

def VeOmni_LayerNormOp : VeOmni_InferredOp<"layer_norm", [VJP]> {
  let summary = "Layer normalisation over the last dimension";
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       Optional<VeOmni_FloatTensor>:$bias, F64Attr:$epsilon);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)?
  }];
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

def VeOmni_BroadcastOp : VeOmni_Op<"broadcast", [Pure, VJP]> {
  let summary = "Broadcast into a larger shape";
  let description = [{
    Operand dimension `i` becomes result dimension `dims[i]` (strictly
    increasing); its size is either the result's or 1.
  }];
  let arguments = (ins VeOmni_AnyTensor:$input, DenseI64ArrayAttr:$dims);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = [{
    $input `dims` `=` $dims attr-dict `:` type($input) `to` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def VeOmni_ReshapeOp : VeOmni_Op<"reshape", [Pure, VJP]> {
  let summary = "Reshape to a type of the same element count";
  let arguments = (ins VeOmni_AnyTensor:$input);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def VeOmni_TransposeOp : VeOmni_InferredOp<"transpose", [VJP]> {
  let summary = "Permute dimensions: result dim i is input dim perm[i]";
  let arguments = (ins VeOmni_AnyTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = "$input `perm` `=` $perm attr-dict `:` type($input)";
  let hasFolder = 1;
}

def VeOmni_SliceOp : VeOmni_InferredOp<"slice", [VJP]> {
  let summary = "Strided static slice";
  let description = [{
    Dimension `i` keeps `start[i], start[i] + step[i], ...` below `limit[i]`.
  }];
  let arguments = (ins VeOmni_AnyTensor:$input, DenseI64ArrayAttr:$start,
                       DenseI64ArrayAttr:$limit, DenseI64ArrayAttr:$step);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = [{
    $input `start` `=` $start `limit` `=` $limit `step` `=` $step attr-dict
    `:` type($input)
  }];
  let hasFolder = 1;
}

def VeOmni_ConcatOp : VeOmni_InferredOp<"concat", [VJP]> {
  let summary = "Concatenate along one dimension";
  let arguments = (ins Variadic<VeOmni_AnyTensor>:$inputs, I64Attr:$dim);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = "$inputs `dim` `=` $dim attr-dict `:` type($inputs)";
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

def VeOmni_GatherOp : VeOmni_InferredOp<"gather", [VJP]> {
  let summary = "Gather slices along one axis (embedding lookup at axis 0)";
  let description = [{
    The result is `source.shape[:axis] + indices.shape + source.shape[axis+1:]`.
    An embedding lookup of token ids `[B, S]` in a table `[V, H]`:

    ```mlir
    %h = veomni.gather %table[%ids] axis = 0
        : tensor<1000x64xf32>, tensor<2x16xi32>
    ```
  }];
  let arguments = (ins VeOmni_AnyTensor:$source, VeOmni_IndexTensor:$indices,
                       DefaultValuedAttr<I64Attr, "0">:$axis);
  let results = (outs VeOmni_AnyTensor:$result);
  let assemblyFormat = [{
    $source `[` $indices `]` `axis` `=` $axis attr-dict `:` type($source) `,`
    type($indices)
  }];
}

def VeOmni_ScatterAddOp : VeOmni_InferredOp<"scatter_add", [VJP]> {
  let summary = "Add slices into a tensor along one axis (gather's adjoint)";
  let description = [{
    `updates` has the shape `gather(dest, indices, axis)` would have; each
    slice is added into `dest` at its index, duplicates accumulating.
  }];
  let arguments = (ins VeOmni_FloatTensor:$dest, VeOmni_IndexTensor:$indices,
                       VeOmni_FloatTensor:$updates,
                       DefaultValuedAttr<I64Attr, "0">:$axis);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $updates `into` $dest `[` $indices `]` `axis` `=` $axis attr-dict `:`
    type($updates) `,` type($dest) `,` type($indices)
  }];
}

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

def VeOmni_RopeOp : VeOmni_InferredOp<"rope", [VJP]> {
  let summary = "Rotary position embedding (1-D, or multimodal sections)";
  let description = [{
    `input` is `[B, S, H, D]` with D even, rotated in halves (HF
    `rotate_half`). Frequency `j < D/2` is `inv_freq[j]` when given (the
    frontend bakes rope scaling into it), else `theta^(-2j/D)`; its angle is
    `positions[k][b][s] * freq` where section `k` owns `j`.

    Without `mrope_section`, `positions` is `[B, S]`. With it (Qwen2-VL's
    temporal/height/width rope, or a vision tower's 2-D rope), `positions` is
    `[N, B, S]` for N sections whose sizes sum to D/2. cos and sin are scaled
    by `attention_scaling` (YaRN). With `inverse` the rotation is by the
    negated angle: the transpose of the forward map, which is its VJP.

    With `mrope_interleaved` (Qwen3-VL's interleaved MRoPE) the N sections
    take frequencies round-robin instead of in runs: frequency j belongs to
    section k >= 1 when j % N == k and j < N * mrope_section[k], else to
    section 0.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_IndexTensor:$positions,
                       F64Attr:$theta,
                       OptionalAttr<DenseI64ArrayAttr>:$mrope_section,
                       OptionalAttr<DenseF32ArrayAttr>:$inv_freq,
                       DefaultValuedAttr<F64Attr, "1.0">:$attention_scaling,
                       UnitAttr:$inverse, UnitAttr:$mrope_interleaved);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions attr-dict `:` type($input) `,` type($positions)
  }];
}

def VeOmni_AttentionOp : VeOmni_InferredOp<"attention", [VJP]> {
  let summary = "Scaled dot-product attention (GQA, packed, windows, sinks)";
  let description = [{
    `query` `[B, S, Hq, D]`, `key` `[B, Skv, Hkv, D]`, `value`
    `[B, Skv, Hkv, Dv]`, with Hkv dividing Hq (grouped-query attention);
    the result is `[B, S, Hq, Dv]`. With `segment_ids` `[B, S]` (packed
    sequences, or a vision tower's per-image or per-window blocks) a query
    attends only to keys of its own segment. `causal` masks later keys.
    `segment_ids` `[2, B, S]` (causal only) adds bidirectional blocks in
    plane 1: a run of equal non-zero ids within one segment sees itself
    whole, later keys included (Gemma 3's image tokens); 0 marks tokens
    outside any block.

    `window` W > 0 (causal only) is a sliding window: query i sees keys
    j with i - W < j <= i, as transformers' sliding_window. `sinks` `[Hq]`
    (gpt-oss) are one more logit per head in every query's softmax whose
    value is zero: the probabilities of the keys sum to less than one.

    The optional operands are told apart by element type, as the runtime
    does: at most one integer `segment_ids`, then at most one float
    `sinks` (getSegmentIds, getSinks).

    ```mlir
    %o = veomni.attention %q, %k, %v sinks %s {causal, scale = 0.125 : f64,
        window = 128 : i64} : tensor<1x256x8x64xf32>, tensor<1x256x2x64xf32>,
        tensor<1x256x2x64xf32> sinks tensor<8xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$query, VeOmni_FloatTensor:$key,
                       VeOmni_FloatTensor:$value,
                       Variadic<VeOmni_AnyTensor>:$optionals,
                       UnitAttr:$causal, F64Attr:$scale,
                       DefaultValuedAttr<I64Attr, "0">:$window);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value custom<AttentionOptionals>($optionals)
    attr-dict `:` custom<AttentionTypes>(type($query), type($key),
    type($value), type($optionals))
  }];
  let extraClassDeclaration = [{
    /// The packed-sequence segment ids, or null.
    Value getSegmentIds() { return attentionSegmentIds(getOptionals()); }
    /// The sink logits, or null.
    Value getSinks() { return attentionSinks(getOptionals()); }
  }];
}

def VeOmni_CrossEntropyOp : VeOmni_InferredOp<"cross_entropy", [VJP]> {
  let summary = "Softmax cross entropy with an ignore index (loss in f32)";
  let description = [{
    `logits` `[..., V]`, `labels` `[...]`. Labels equal to `ignore_index`
    contribute nothing; `mean` divides by the count of the others. The
    result is `tensor<f32>`, or f32 of the labels' shape for `none`.
  }];
  let arguments = (ins VeOmni_FloatTensor:$logits, VeOmni_IndexTensor:$labels,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                       DefaultValuedAttr<VeOmni_LossReductionAttr,
                           "::mlir::veomni::LossReduction::Mean">:$reduction);
  let results = (outs StaticShapeTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $logits `,` $labels attr-dict `:` type($logits) `,` type($labels)
  }];
}

//===----------------------------------------------------------------------===//
// Gradients: the VJPs that are not compositions of forward ops
//===----------------------------------------------------------------------===//

def VeOmni_RMSNormGradOp : VeOmni_InferredOp<"rms_norm_grad",
    [AllTypesMatch<["input", "grad"]>]> {
  let summary = "VJP of rms_norm: input and weight cotangents";
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       VeOmni_FloatTensor:$grad, F64Attr:$epsilon);
  let results = (outs VeOmni_FloatTensor:$input_grad,
                      VeOmni_FloatTensor:$weight_grad);
  let assemblyFormat = [{
    $input `,` $weight `,` $grad attr-dict `:` type($input) `,` type($weight)
  }];
}

def VeOmni_AttentionGradOp : VeOmni_InferredOp<"attention_grad"> {
  let summary = "VJP of attention: query, key, value (and sinks) cotangents";
  let description = [{
    Recomputes the attention probabilities (no saved state), then gives the
    cotangents of query, key and value for the cotangent `grad` of the
    output. Key and value cotangents sum over the query heads sharing them.
    With `sinks`, a fourth result is theirs: `-sum over b, i of p_sink *
    (dO . O)` per head. Optional operands as attention's.
  }];
  let arguments = (ins VeOmni_FloatTensor:$query, VeOmni_FloatTensor:$key,
                       VeOmni_FloatTensor:$value,
                       Variadic<VeOmni_AnyTensor>:$optionals,
                       VeOmni_FloatTensor:$grad, UnitAttr:$causal,
                       F64Attr:$scale, DefaultValuedAttr<I64Attr, "0">:$window);
  let results = (outs VeOmni_FloatTensor:$query_grad,
                      VeOmni_FloatTensor:$key_grad,
                      VeOmni_FloatTensor:$value_grad,
                      Optional<VeOmni_FloatTensor>:$sinks_grad);
  let assemblyFormat = [{
    $query `,` $key `,` $value custom<AttentionOptionals>($optionals)
    `grad` $grad attr-dict `:` custom<AttentionGradTypes>(type($query),
    type($key), type($value), type($grad), type($optionals))
  }];
  let extraClassDeclaration = [{
    Value getSegmentIds() { return attentionSegmentIds(getOptionals()); }
    Value getSinks() { return attentionSinks(getOptionals()); }
  }];
}

def VeOmni_CrossEntropyGradOp : VeOmni_InferredOp<"cross_entropy_grad"> {
  let summary = "VJP of cross_entropy: the logits' cotangent";
  let arguments = (ins VeOmni_FloatTensor:$logits, VeOmni_IndexTensor:$labels,
                       StaticShapeTensorOf<[F32]>:$grad,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                       DefaultValuedAttr<VeOmni_LossReductionAttr,
                           "::mlir::veomni::LossReduction::Mean">:$reduction);
  let results = (outs VeOmni_FloatTensor:$logits_grad);
  let assemblyFormat = [{
    $logits `,` $labels `,` $grad attr-dict `:` type($logits) `,`
    type($labels) `,` type($grad)
  }];
}

def VeOmni_ClampGradOp : VeOmni_Op<"clamp_grad", [Pure, Elementwise,
    SameOperandsAndResultType, InferTypeOpInterface]> {
  let summary = "VJP of clamp: grad where min <= input <= max, else 0";
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$grad,
                       OptionalAttr<F64Attr>:$min, OptionalAttr<F64Attr>:$max);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` type($input)";
}

def VeOmni_GeluGradOp : VeOmni_InferredOp<"gelu_grad",
    [AllTypesMatch<["input", "grad"]>]> {
  let summary = "VJP of gelu: grad * gelu'(input)";
  let description = [{
    Exact: `gelu'(x) = Phi(x) + x exp(-x^2/2) / sqrt(2 pi)`; with
    `approximation = tanh` the derivative of the tanh form.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$grad,
      DefaultValuedAttr<VeOmni_GeluApproxAttr,
                        "::mlir::veomni::GeluApproximation::None">:$approximation);
  let results = (outs VeOmni_FloatTensor:$input_grad);
  let assemblyFormat = "$input `,` $grad attr-dict `:` type($input)";
}

def VeOmni_LayerNormGradOp : VeOmni_InferredOp<"layer_norm_grad",
    [AllTypesMatch<["input", "grad"]>]> {
  let summary = "VJP of layer_norm: input, weight and (bias) cotangents";
  let description = [{
    Recomputes the statistics of each row. `bias` is only there to say
    that the forward op had one: `bias_grad` is present exactly when it is.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       Optional<VeOmni_FloatTensor>:$bias,
                       VeOmni_FloatTensor:$grad, F64Attr:$epsilon);
  let results = (outs VeOmni_FloatTensor:$input_grad,
                      VeOmni_FloatTensor:$weight_grad,
                      Optional<VeOmni_FloatTensor>:$bias_grad);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? `grad` $grad attr-dict `:` type($input)
    `,` type($weight) (`,` type($bias)^)?
  }];
}

def VeOmni_SliceGradOp : VeOmni_Op<"slice_grad", [Pure]> {
  let summary = "VJP of slice: the cotangent scattered into zeros";
  let description = [{
    The result has the type of the sliced input: zero everywhere but at the
    positions the slice with these `start`, `limit` and `step` reads, which
    hold `grad`.

    ```mlir
    %dx = veomni.slice_grad %g start = [0, 1] limit = [4, 8] step = [1, 2]
        : tensor<4x4xf32> to tensor<4x8xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$grad, DenseI64ArrayAttr:$start,
                       DenseI64ArrayAttr:$limit, DenseI64ArrayAttr:$step);
  let results = (outs VeOmni_FloatTensor:$input_grad);
  let assemblyFormat = [{
    $grad `start` `=` $start `limit` `=` $limit `step` `=` $step attr-dict
    `:` type($grad) `to` type($input_grad)
  }];
  let hasVerifier = 1;
}

def VeOmni_Conv1DGradOp : VeOmni_InferredOp<"conv1d_grad"> {
  let summary = "VJP of conv1d: input, weight and (bias) cotangents";
  let description = [{
    `bias` is only there to say that the forward op had one: `bias_grad`
    (the sum of `grad` over batch and positions) is present exactly when it
    is.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       Optional<VeOmni_FloatTensor>:$bias,
                       VeOmni_FloatTensor:$grad,
                       DefaultValuedAttr<I64Attr, "1">:$stride,
                       DefaultValuedAttr<I64Attr, "0">:$padding);
  let results = (outs VeOmni_FloatTensor:$input_grad,
                      VeOmni_FloatTensor:$weight_grad,
                      Optional<VeOmni_FloatTensor>:$bias_grad);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? `grad` $grad attr-dict `:` type($input)
    `,` type($weight) `,` type($grad) (`,` type($bias)^)?
  }];
}

def VeOmni_GroupedMatmulWeightGradOp
    : VeOmni_InferredOp<"grouped_matmul_weight_grad"> {
  let summary = "VJP of grouped_matmul for its weight";
  let description = [{
    Per expert e with rows `X_e` of `input` and `G_e` of `grad`:
    `weight_grad[e] = X_e^T G_e` (`[K, M]`), or `G_e^T X_e` (`[M, K]`)
    with `transpose_weight`; experts without rows get zeros. `weight` only
    gives the result its type. (The input's cotangent is a grouped_matmul
    of `grad` with the other transpose flag.)
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weight,
                       VeOmni_IndexTensor:$group_sizes,
                       VeOmni_FloatTensor:$grad, UnitAttr:$transpose_weight);
  let results = (outs VeOmni_FloatTensor:$weight_grad);
  let assemblyFormat = [{
    $input `,` $weight `,` $group_sizes `grad` $grad attr-dict `:`
    type($input) `,` type($weight) `,` type($group_sizes) `,` type($grad)
  }];
}

def VeOmni_MoETopKGradOp : VeOmni_InferredOp<"moe_topk_grad"> {
  let summary = "VJP of moe_topk: the logits' cotangent from the weights'";
  let description = [{
    Recomputes the softmax `p` and the selection `S` (the expert indices get
    no cotangent). Without `normalize` (`w_j = p_{S_j}`), the cotangent of p
    is `grad` at S and zero elsewhere, taken through the softmax. With it,
    `w_j` is the softmax over the selected logits only, so
    `logits_grad[S_j] = w_j (grad_j - sum_i grad_i w_i)` and zero elsewhere.
  }];
  let arguments = (ins VeOmni_FloatTensor:$logits, VeOmni_FloatTensor:$grad,
                       I64Attr:$k, UnitAttr:$normalize);
  let results = (outs VeOmni_FloatTensor:$logits_grad);
  let assemblyFormat = [{
    $logits `,` $grad attr-dict `:` type($logits) `,` type($grad)
  }];
}

def VeOmni_MoEGroupTopKGradOp : VeOmni_InferredOp<"moe_group_topk_grad"> {
  let summary = "VJP of moe_group_topk: the scores' cotangent";
  let description = [{
    Recomputes the choice; the cotangent reaches the chosen scores only:
    `scale * g_j` without `normalize`, else `scale * (g_j / D - <g, s_S> /
    D^2)` with `D = sum_S s + 1e-20`. The bias gets none.
  }];
  let arguments = (ins VeOmni_FloatTensor:$scores, VeOmni_FloatTensor:$bias,
                       VeOmni_FloatTensor:$grad, I64Attr:$k,
                       DefaultValuedAttr<I64Attr, "1">:$groups,
                       DefaultValuedAttr<I64Attr, "1">:$topk_groups,
                       UnitAttr:$normalize,
                       DefaultValuedAttr<F64Attr, "1.0">:$scale);
  let results = (outs VeOmni_FloatTensor:$scores_grad);
  let assemblyFormat = [{
    $scores `,` $bias `,` $grad attr-dict `:` type($scores) `,` type($bias)
    `,` type($grad)
  }];
}

def VeOmni_MoECombineGradOp : VeOmni_InferredOp<"moe_combine_grad"> {
  let summary = "VJP of moe_combine: input and weights cotangents";
  let description = [{
    For the row r of copy (t, j): `input_grad[r] = weights[t, j] * grad[t]`
    and `weights_grad[t, j] = dot(grad[t], input[r])`.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weights,
                       VeOmni_IndexTensor:$indices, VeOmni_FloatTensor:$grad);
  let results = (outs VeOmni_FloatTensor:$input_grad,
                      VeOmni_FloatTensor:$weights_grad);
  let assemblyFormat = [{
    $input `,` $weights `,` $indices `grad` $grad attr-dict `:` type($input)
    `,` type($weights) `,` type($indices) `,` type($grad)
  }];
}

def VeOmni_ReduceMaxGradOp : VeOmni_InferredOp<"reduce_max_grad"> {
  let summary = "VJP of a max reduction: grad at the first maximum";
  let description = [{
    Each element of `grad` goes to the first (row-major) maximum of the
    elements of `input` it reduced (the first NaN, when there is one); the
    rest of the result is zero.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$grad,
                       DenseI64ArrayAttr:$dims, UnitAttr:$keep_dims);
  let results = (outs VeOmni_FloatTensor:$input_grad);
  let assemblyFormat = [{
    $input `,` $grad `dims` `=` $dims (`keep_dims` $keep_dims^)? attr-dict `:`
    type($input) `,` type($grad)
  }];
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def VeOmni_MoETopKOp : VeOmni_InferredOp<"moe_topk", [VJP]> {
  let summary = "Router: softmax over experts, top-k, optional renormalise";
  let description = [{
    `logits` `[T, E]` give `weights` `[T, k]` (logits' element type) and
    expert `indices` `[T, k]` (i32). With `normalize` (HF
    `norm_topk_prob`) the k weights of a token sum to one.
  }];
  let arguments = (ins VeOmni_FloatTensor:$logits, I64Attr:$k,
                       UnitAttr:$normalize);
  let results = (outs VeOmni_FloatTensor:$weights,
                      StaticShapeTensorOf<[I32]>:$indices);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
}

def VeOmni_MoEGroupTopKOp : VeOmni_InferredOp<"moe_group_topk", [VJP]> {
  let summary = "Router over scores: group-limited top-k with a selection bias";
  let description = [{
    DeepSeek-V3's router. `scores` `[T, E]` (the router's sigmoids) and
    `bias` `[E]` (e_score_correction_bias, used for the choice only) give
    `weights` `[T, k]` (scores' element type) and expert `indices` `[T, k]`
    (i32). A token chooses on `scores + bias`: the E experts form `groups`
    equal groups, a group scores the sum of its two best choices (its only
    one when a group holds one expert), the `topk_groups` best groups stay,
    and the k best experts of those are taken (ties: the lower index). The
    weights are the chosen experts' scores (without the bias), divided by
    their sum + 1e-20 with `normalize`, times `scale`
    (routed_scaling_factor).

    ```mlir
    %w, %i = veomni.moe_group_topk %s, %b {k = 8 : i64, groups = 8 : i64,
        topk_groups = 4 : i64, normalize, scale = 2.5 : f64}
        : tensor<4096x256xf32>, tensor<256xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$scores, VeOmni_FloatTensor:$bias,
                       I64Attr:$k, DefaultValuedAttr<I64Attr, "1">:$groups,
                       DefaultValuedAttr<I64Attr, "1">:$topk_groups,
                       UnitAttr:$normalize,
                       DefaultValuedAttr<F64Attr, "1.0">:$scale);
  let results = (outs VeOmni_FloatTensor:$weights,
                      StaticShapeTensorOf<[I32]>:$indices);
  let assemblyFormat = [{
    $scores `,` $bias attr-dict `:` type($scores) `,` type($bias)
  }];
}

def VeOmni_MoEDispatchOp : VeOmni_InferredOp<"moe_dispatch", [VJP]> {
  let summary = "Permute token copies into expert order";
  let description = [{
    `input` `[T, H]` and the router's `indices` `[T, k]` give `output`
    `[T*k, H]`, the k copies of every token sorted stably by expert, and
    `group_sizes` `[num_experts]` (i32), the rows each expert received.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_IndexTensor:$indices,
                       I64Attr:$num_experts);
  let results = (outs VeOmni_FloatTensor:$output,
                      StaticShapeTensorOf<[I32]>:$group_sizes);
  let assemblyFormat = [{
    $input `,` $indices attr-dict `:` type($input) `,` type($indices)
  }];
}

def VeOmni_MoECombineOp : VeOmni_InferredOp<"moe_combine", [VJP]> {
  let summary = "Un-permute expert outputs and sum them with router weights";
  let description = [{
    The inverse of `moe_dispatch` for the same `indices` `[T, k]`:
    `input` `[T*k, H]` in expert order becomes `[T, H]`, each token the
    weighted sum of its k expert outputs.
  }];
  let arguments = (ins VeOmni_FloatTensor:$input, VeOmni_FloatTensor:$weights,
                       VeOmni_IndexTensor:$indices);
  let results = (outs VeOmni_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weights `,` $indices attr-dict `:` type($input) `,`
    type($weights) `,` type($indices)
  }];
}

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

def VeOmni_FusedOp : VeOmni_Op<"fused", [IsolatedFromAbove, SingleBlock,
                                         RecursiveMemoryEffects]> {
  let summary = "Elementwise ops that run as one kernel";
  let description = [{
    Written by `veomni-fuse` just before lowering: the body is a chain of
    elementwise ops (unary, binary, cast, broadcast, reshape, splat
    constants) over one iteration domain, with reductions over trailing
    dimensions as its last steps. The block's arguments are the inputs;
    `veomni.yield` gives the results, which are all the values the rest
    of the function reads. It lowers to one `fused` kernel that reads each
    input once (runtime/program/Fused.h).

    ```mlir
    %r = veomni.fused(%x, %w) : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%a: tensor<4x8xf32>, %b: tensor<8xf32>):
      %0 = veomni.broadcast %b dims = [1] : tensor<8xf32> to tensor<4x8xf32>
      %1 = veomni.mul %a, %0 : tensor<4x8xf32>
      %2 = veomni.silu %1 : tensor<4x8xf32>
      veomni.yield %2 : tensor<4x8xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<VeOmni_AnyTensor>:$inputs);
  let results = (outs Variadic<VeOmni_AnyTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    `(` $inputs `)` attr-dict `:` functional-type($inputs, $results) $body
  }];
  let hasVerifier = 1;
}

def VeOmni_LinearCrossEntropyOp : VeOmni_Op<"linear_cross_entropy", [Pure]> {
  let summary = "LM head, cross entropy and their VJP over chunks of tokens";
  let description = [{
    Written by `veomni-fuse-loss` just before lowering, in place of
    `logits = matmul(hidden, weight^T)`, its `cross_entropy` and
    `cross_entropy_grad` (cotangent `grad`) and the two matmuls of the
    VJP. `hidden` `[..., H]`, `weight` `[V, H]`, `labels` `[...]`.
    Results: the loss (as `cross_entropy` gives it), the cotangents of
    `hidden` and `weight`, and `workspace`, `[chunk, V]` f32: the kernel
    holds the logits of `chunk` tokens at a time, never all `[..., V]` of
    them. For a bf16 or f16 head the workspace is `[chunk + H, V]`: its
    last `H` rows hold the weight cotangent's f32 sum.

    ```mlir
    %loss, %dh, %dw, %ws = veomni.linear_cross_entropy %h, %w, %labels, %g
        : tensor<2x64x64xf32>, tensor<512x64xf32>, tensor<2x64xi32>,
          tensor<f32> -> tensor<f32>, tensor<2x64x64xf32>, tensor<512x64xf32>,
          tensor<32x512xf32>
    ```
  }];
  let arguments = (ins VeOmni_FloatTensor:$hidden, VeOmni_FloatTensor:$weight,
                       VeOmni_IndexTensor:$labels,
                       StaticShapeTensorOf<[F32]>:$grad,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index,
                       DefaultValuedAttr<VeOmni_LossReductionAttr,
                           "::mlir::veomni::LossReduction::Mean">:$reduction);
  let results = (outs StaticShapeTensorOf<[F32]>:$loss,
                      VeOmni_FloatTensor:$hidden_grad,
                      VeOmni_FloatTensor:$weight_grad,
                      StaticShapeTensorOf<[F32]>:$workspace);
  let assemblyFormat = [{
    $hidden `,` $weight `,` $labels `,` $grad attr-dict `:` type($hidden) `,`
    type($weight) `,` type($labels) `,` type($grad) `->` type($loss) `,`
    type($hidden_grad) `,` type($weight_grad) `,` type($workspace)
  }];
  let hasVerifier = 1;
}

def VeOmni_YieldOp : VeOmni_Op<"yield", [Pure, Terminator,
                                         HasParent<"FusedOp">]> {
  let summary = "The results of a veomni.fused body";
  let arguments = (ins Variadic<VeOmni_AnyTensor>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
}

#endif // VEOMNI_OPS_TD
