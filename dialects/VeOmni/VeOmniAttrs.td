//===- VeOmniAttrs.td - veomni enums and attributes --------*- tablegen -*-===//

#ifndef VEOMNI_ATTRS_TD
#define VEOMNI_ATTRS_TD

include "VeOmniDialect.td"
include "mlir/IR/EnumAttr.td"

def VeOmni_ReduceKind : I32EnumAttr<"ReduceKind", "reduction", [
    I32EnumAttrCase<"Sum", 0, "sum">,
    I32EnumAttrCase<"Max", 1, "max">,
    I32EnumAttrCase<"Mean", 2, "mean">]> {
  // A specialised attribute so that it prints as a bare keyword in
  // `veomni.reduce sum ...`.
  let cppNamespace = "::mlir::veomni";
}

def VeOmni_LossReduction : I32EnumAttr<"LossReduction", "loss reduction", [
    I32EnumAttrCase<"Mean", 0, "mean">,
    I32EnumAttrCase<"Sum", 1, "sum">,
    I32EnumAttrCase<"None", 2, "none">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_LossReductionAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_LossReduction, "loss_reduction">;

def VeOmni_GeluApprox : I32EnumAttr<"GeluApproximation", "gelu approximation", [
    I32EnumAttrCase<"None", 0, "none">,
    I32EnumAttrCase<"Tanh", 1, "tanh">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_GeluApproxAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_GeluApprox, "gelu_approximation">;

// Roles: what a function, an argument or a result is for. Passes, the
// translator and the runtime decide with these, never with a name (names
// are for people and checkpoints). All three sit under `veomni.role`.
def VeOmni_FunctionRole : I32EnumAttr<"FunctionRole", "function role", [
    I32EnumAttrCase<"Forward", 0, "forward">,
    I32EnumAttrCase<"Gradients", 1, "gradients">,
    I32EnumAttrCase<"TrainStep", 2, "train_step">,
    I32EnumAttrCase<"ForwardChunk", 3, "forward_chunk">,
    I32EnumAttrCase<"BackwardChunk", 4, "backward_chunk">,
    I32EnumAttrCase<"BackwardInput", 5, "backward_input">,
    I32EnumAttrCase<"BackwardWeight", 6, "backward_weight">,
    I32EnumAttrCase<"StageUpdate", 7, "stage_update">,
    I32EnumAttrCase<"StageGradNorm", 8, "stage_grad_norm">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_FunctionRoleAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_FunctionRole, "function_role">;

// The numbering is the program format's (program.fbs ArgumentRole).
def VeOmni_ArgumentRole : I32EnumAttr<"ArgumentRole", "argument role", [
    I32EnumAttrCase<"Parameter", 0, "parameter">,
    I32EnumAttrCase<"BatchInput", 1, "batch_input">,
    I32EnumAttrCase<"Step", 2, "step">,
    I32EnumAttrCase<"Apply", 3, "apply">,
    I32EnumAttrCase<"OptimizerState", 4, "optimizer_state">,
    I32EnumAttrCase<"MasterWeight", 5, "master_weight">,
    I32EnumAttrCase<"GradAccumulator", 6, "grad_accumulator">,
    I32EnumAttrCase<"Gradient", 7, "gradient">,
    I32EnumAttrCase<"GradNormSquared", 8, "grad_norm_squared">,
    I32EnumAttrCase<"Activation", 9, "activation">,
    I32EnumAttrCase<"Cotangent", 10, "cotangent">,
    I32EnumAttrCase<"Stash", 11, "stash">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_ArgumentRoleAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_ArgumentRole, "argument_role">;

// The numbering is the program format's (program.fbs OutputRole).
def VeOmni_ResultRole : I32EnumAttr<"ResultRole", "result role", [
    I32EnumAttrCase<"Other", 0, "other">,
    I32EnumAttrCase<"Loss", 1, "loss">,
    I32EnumAttrCase<"Logits", 2, "logits">,
    I32EnumAttrCase<"GradNorm", 3, "grad_norm">,
    I32EnumAttrCase<"LearningRate", 4, "learning_rate">,
    I32EnumAttrCase<"Gradient", 5, "gradient">,
    I32EnumAttrCase<"Update", 6, "update">,
    I32EnumAttrCase<"Activation", 7, "activation">,
    I32EnumAttrCase<"Cotangent", 8, "cotangent">,
    I32EnumAttrCase<"Stash", 9, "stash">,
    I32EnumAttrCase<"GradNormSquared", 10, "grad_norm_squared">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}
def VeOmni_ResultRoleAttr
    : EnumAttr<VeOmni_Dialect, VeOmni_ResultRole, "result_role">;

def VeOmni_ModuleKind : I32EnumAttr<"ModuleKind", "model module kind", [
    I32EnumAttrCase<"Other", 0, "other">,
    I32EnumAttrCase<"Embedding", 1, "embedding">,
    I32EnumAttrCase<"InputNorm", 2, "input_norm">,
    I32EnumAttrCase<"Attention", 3, "attention">,
    I32EnumAttrCase<"PostAttentionNorm", 4, "post_attention_norm">,
    I32EnumAttrCase<"Mlp", 5, "mlp">,
    I32EnumAttrCase<"FinalNorm", 6, "final_norm">,
    I32EnumAttrCase<"LmHead", 7, "lm_head">,
    I32EnumAttrCase<"VisionPatchEmbed", 8, "vision_patch_embed">,
    I32EnumAttrCase<"VisionBlock", 9, "vision_block">,
    I32EnumAttrCase<"VisionMerger", 10, "vision_merger">,
    I32EnumAttrCase<"AudioConv", 11, "audio_conv">,
    I32EnumAttrCase<"AudioPosition", 12, "audio_position">,
    I32EnumAttrCase<"AudioBlock", 13, "audio_block">,
    I32EnumAttrCase<"AudioProj", 14, "audio_proj">,
    I32EnumAttrCase<"Optimizer", 15, "optimizer">]> {
  let cppNamespace = "::mlir::veomni";
  let genSpecializedAttr = 0;
}

def VeOmni_ModuleAttr : AttrDef<VeOmni_Dialect, "Module"> {
  let mnemonic = "module";
  let summary = "Which part of the model an op computes";
  let description = [{
    Set by the importer on every op it builds, as the metadata of the op's
    location (`loc(fused<#veomni.module<attention, layer = 3>>["model.layers.
    3.self_attn"])`): locations are what canonicalize, CSE and every pass
    carry over to the ops they create, so the module survives the whole
    pipeline while the name stays for people. `layer` is the index of the
    repeated block (decoder layer, vision block, audio layer), -1 outside
    them; `backward` marks the ops autodiff built for this module's VJP.
    Passes decide with it (pipeline stages, remat), never with the name.
  }];
  let parameters = (ins "::mlir::veomni::ModuleKind":$kind,
                        "int64_t":$layer, "bool":$backward);
  let hasCustomAssemblyFormat = 1;
  let extraClassDeclaration = [{
    /// A module inside decoder layer `getLayer()`.
    bool isDecoderLayer() const;
    /// A module inside a repeated block of any tower.
    bool isBlock() const { return getLayer() >= 0; }
    /// The same module, of the backward pass.
    ModuleAttr asBackward() const;
  }];
}

def VeOmni_ShardingRuleAttr : AttrDef<VeOmni_Dialect, "ShardingRule"> {
  let mnemonic = "sharding_rule";
  let summary = "An op's sharding rule, in factor form";
  let description = [{
    What ShardingRuleOpInterface returns, as an attribute that prints and
    parses (in the manner of Shardy's `#sdy.op_sharding_rule`):

    ```mlir
    #veomni.sharding_rule<([i, k], [j, k]) -> ([i, j]) {i=4, j=16, k=8}
                          reduction={k}>
    ```

    Each tensor lists its dimensions, each the product of its factors
    (`i*j`, or `1` for a size-1 dimension no factor covers). Factors are
    pass-through unless listed as `reduction`, `need_replication`,
    `internal` or `expert`; `per_shard` lists results that are per shard,
    `type_only` operands read only for their type, and `relocate` the
    need-replication factors whose split moves onto another (`k->h`).
    `veomni-opt --veomni-print-sharding-rules` attaches each op's rule as
    `veomni.sharding_rule`.
  }];
  // Tensors are stored flat: [count, then per tensor: rank, then per
  // dimension: factor count, factors...].
  let parameters = (ins ArrayRefParameter<"int64_t">:$factorSizes,
                        ArrayRefParameter<"int64_t">:$factorKinds,
                        ArrayRefParameter<"int64_t">:$operands,
                        ArrayRefParameter<"int64_t">:$results,
                        ArrayRefParameter<"int64_t">:$perShardResults,
                        ArrayRefParameter<"int64_t">:$typeOnlyOperands,
                        ArrayRefParameter<"int64_t">:$relocations);
  let hasCustomAssemblyFormat = 1;
  let extraClassDeclaration = [{
    static ShardingRuleAttr get(::mlir::MLIRContext *context,
                                const ShardingRule &rule);
    /// The rule as the passes use it.
    ShardingRule getRule() const;
  }];
}

#endif // VEOMNI_ATTRS_TD
