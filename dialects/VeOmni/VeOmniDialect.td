//===- VeOmniDialect.td - the veomni dialect ---------------*- tablegen -*-===//
//
// The dialect a model is imported into: tensor ops at the granularity of a
// kernel, global shapes, no parallelism.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_DIALECT_TD
#define VEOMNI_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def VeOmni_Dialect : Dialect {
  let name = "veomni";
  let cppNamespace = "::mlir::veomni";
  let summary = "Model-level tensor ops with global shapes and no parallelism";
  let description = [{
    Every op works on statically shaped ranked tensors of f32, bf16 or f16
    (integer tensors carry token ids, labels, positions and expert indices).
    Shapes are global: sharding is added later by the dist dialect. Function
    arguments that are model parameters carry their Hugging Face tensor name
    in the `veomni.param` argument attribute.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
  let hasConstantMaterializer = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let hasOperationAttrVerify = 1;
  let useDefaultAttributePrinterParser = 1;
  // Attributes stay in the attribute dictionary: the shape inference run by
  // the parser then sees the attr-dict (properties are not filled yet there).
  let usePropertiesForAttributes = 0;
  let extraClassDeclaration = [{
    /// Argument attribute naming a parameter by its Hugging Face tensor name.
    static constexpr ::llvm::StringLiteral kParamAttrName = "veomni.param";
    /// Argument attribute naming a batch input (tokens, labels, positions...).
    static constexpr ::llvm::StringLiteral kInputAttrName = "veomni.input";
    /// Argument attribute naming training state (optimizer moments, masters).
    static constexpr ::llvm::StringLiteral kStateAttrName = "veomni.state";
    /// Argument attribute: the parameter's place in the family's parallel
    /// plan ("tp:column", "tp:row", "tp:vocab", "ep:experts", "replicated").
    static constexpr ::llvm::StringLiteral kPlacementAttrName =
        "veomni.placement";
    /// The role of a function (FunctionRoleAttr), an argument
    /// (ArgumentRoleAttr) or a result (ResultRoleAttr).
    static constexpr ::llvm::StringLiteral kRoleAttrName = "veomni.role";
    /// Argument attribute: how a parameter starts when no weights are given
    /// ("normal", "ones" or "zeros"; absent: "normal"), declared by the
    /// importer where it uses the parameter as a norm weight or a bias.
    static constexpr ::llvm::StringLiteral kInitAttrName = "veomni.init";
    /// Argument attribute: state that starts as a copy of the parameter
    /// named (f32 master weights), declared by veomni-optimizer.
    static constexpr ::llvm::StringLiteral kInitFromAttrName =
        "veomni.init_from";
    /// Argument attribute: the parameter an optimizer state belongs to
    /// (moments, masters, accumulators), declared by veomni-optimizer; the
    /// state takes its parameter's layout.
    static constexpr ::llvm::StringLiteral kStateOfAttrName =
        "veomni.state_of";
    /// Argument attribute (unit) on a group router's choice bias whose
    /// pipeline backward returns the router's token counts and whose
    /// stage update follows the auxiliary-loss-free rule, declared by
    /// veomni-pipeline with router-loads.
    static constexpr ::llvm::StringLiteral kRouterBiasAttrName =
        "veomni.router_bias";
    /// Argument attribute (unit) on a parameter that does not train
    /// (train.freeze, declared by veomni-freeze): veomni-autodiff gives it
    /// no gradient and differentiates nothing only it depends on, and
    /// veomni-optimizer gives it no state.
    static constexpr ::llvm::StringLiteral kFrozenAttrName = "veomni.frozen";
    /// Argument attribute (unit) on a LoRA adapter parameter
    /// (`<module>.lora_A.weight`, `.lora_B.weight`), declared by
    /// veomni-lora: checkpoints save adapters in PEFT's layout, and weights
    /// that lack them leave them as initialised.
    static constexpr ::llvm::StringLiteral kAdapterAttrName = "veomni.adapter";
    /// Argument attribute (unit) on a MoE router's weight, which
    /// transformers 5 holds in a router module of its own rather than an
    /// nn.Linear: PEFT adapts it through target_parameters
    /// (`mlp.gate.weight`), never through target_modules.
    static constexpr ::llvm::StringLiteral kRouterAttrName = "veomni.router";
    /// Op attribute on a grouped matmul that computes (columns of) a MoE
    /// expert parameter's product, as transformers 5 fuses it
    /// ({param = "<HF name>", order, column, in}): the parameter's name
    /// (`...mlp.experts.gate_up_proj`), its place among its module's
    /// parameters as torch registers them, the first output column this
    /// matmul computes and the input's feature count (the input may carry
    /// more columns, a bias's ones). Declared by the importer, read by
    /// veomni-lora.
    static constexpr ::llvm::StringLiteral kExpertsAttrName = "veomni.experts";
    /// Argument attribute on a token-aligned batch input: which of its
    /// dimensions are the batch and the sequence (array<i64: b, s>),
    /// declared by the importer; data parallelism splits the first, sequence
    /// parallelism the second. Inputs without it (image patches, mel
    /// frames) are packed across the batch and stay whole.
    static constexpr ::llvm::StringLiteral kTokenDimsAttrName =
        "veomni.token_dims";
    /// Argument attribute on an encoder input packed across the batch
    /// (image patches, mel frames, their positions and segments): the
    /// dimension that enumerates the packed rows (an i64), declared by the
    /// importer. Data parallelism splits it, so that each rank runs the
    /// encoders on its share of the pack.
    static constexpr ::llvm::StringLiteral kPackDimAttrName =
        "veomni.pack_dim";
  }];
}

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def VeOmni_FloatElement : AnyTypeOf<[F32, BF16, F16]>;
def VeOmni_IndexElement : AnyTypeOf<[I32, I64]>;

def VeOmni_FloatTensor : StaticShapeTensorOf<[F32, BF16, F16]>;
def VeOmni_IndexTensor : StaticShapeTensorOf<[I32, I64]>;
def VeOmni_AnyTensor : StaticShapeTensorOf<[F32, BF16, F16, I1, I32, I64]>;

#endif // VEOMNI_DIALECT_TD
