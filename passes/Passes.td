//===- Passes.td - every veomni pass -----------------------*- tablegen -*-===//

#ifndef VEOMNI_PASSES_TD
#define VEOMNI_PASSES_TD

include "mlir/Pass/PassBase.td"

def ApplyRecipe : Pass<"veomni-apply-recipe", "::mlir::ModuleOp"> {
  let summary = "Declare the recipe's mesh and shard parameters and inputs by the family's plan";
  let description = [{
    Adds `dist.mesh @mesh` with the axes dp_replicate, dp_shard, tp, sp, ep
    and pp, and gives every parameter (by its `veomni.placement`) and batch
    input a `dist.sharding` on its global shape: column/vocab splits on tp
    on dim 0, row splits on dim 1, experts on ep, FSDP (ZeRO-3) on dp_shard,
    sp and (for non-experts under expert parallelism) ep
    where it divides, batches on the data-parallel axes and sequences on sp,
    encoder packs (`veomni.pack_dim`) over as many of those axes as divide.
    A size that does not divide is an error naming the argument, the
    dimension and the axes.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
  let options = [
    Option<"dpReplicate", "dp-replicate", "int64_t", "1", "HSDP replicas">,
    Option<"dpShard", "dp-shard", "int64_t", "1", "FSDP shards">,
    Option<"tp", "tp", "int64_t", "1", "Tensor parallel">,
    Option<"sp", "sp", "int64_t", "1", "Ulysses sequence parallel">,
    Option<"ep", "ep", "int64_t", "1", "Expert parallel">,
    Option<"pp", "pp", "int64_t", "1", "Pipeline stages">,
  ];
}

def PropagateSharding : Pass<"veomni-propagate-sharding", "::mlir::ModuleOp"> {
  let summary = "Give every tensor a layout over the mesh from the seeded shardings";
  let description = [{
    Shardy-style propagation over the whole function (forward, backward
    and optimizer alike) through each op's sharding rule, by priority
    rounds, sweeping forward and backward to a fixed point; deterministic.
    Every op gets `dist.sharding = [...]` (one `#dist.sharding` per result),
    every argument and result a `dist.sharding`. See PropagateSharding.cpp.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
}

def PrintShardingRules
    : Pass<"veomni-print-sharding-rules", "::mlir::ModuleOp"> {
  let summary = "Attach each op's sharding rule as veomni.sharding_rule";
  let description = [{
    For reading and FileChecking the rules propagation and partitioning use:
    every op with results gets `veomni.sharding_rule =
    #veomni.sharding_rule<...>`. An op with results and no rule is an error
    unless it is marked `dist.replicated`, as in propagation.
  }];
}

def Partition : Pass<"veomni-partition", "::mlir::ModuleOp"> {
  let summary = "Insert the collectives the layouts need and rewrite to per-rank shapes";
  let description = [{
    After veomni-propagate-sharding. For each op, its rule and the layouts
    of its tensors give one split per factor; every operand is resharded
    to what that split needs and every result from what the op computes
    (partial sums included) to its propagated layout, each reshard the
    cheapest collective sequence (all-reduce, reduce-scatter, all-gather,
    all-to-all, local split). Types become device-local; the program is
    one SPMD program whatever the number of ranks. A split that does not
    divide is an error naming the tensor and the axis.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
}

def Pipeline : Pass<"veomni-pipeline", "::mlir::ModuleOp"> {
  let summary = "Split the forward function into pipeline chunks and schedule them";
  let description = [{
    Decoder layers are split into stages x chunks-per-stage contiguous
    chunks balanced by FLOPs (embeddings and towers with the first, the LM
    head and loss with the last). Each chunk becomes @<func>_chunk<g> on
    stage g % stages, receiving and sending what crosses its cuts with
    dist.recv / dist.send along the mesh's "pp" axis. The module gets
    `dist.pipeline`: the per-stage action lists of the schedule (1f1b,
    interleaved or zb-h1, whose backward is split into input and weight
    parts), the first layer of each chunk, and the simulated bubble and
    activations held per stage. See Pipeline.cpp.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
  let options = [
    Option<"funcName", "func", "std::string", /*default=*/"\"forward\"",
           "The function to split">,
    Option<"stages", "stages", "int64_t", /*default=*/"2",
           "Pipeline stages (the mesh's pp size)">,
    Option<"chunksPerStage", "chunks-per-stage", "int64_t", /*default=*/"1",
           "Model chunks per stage (interleaved schedules)">,
    Option<"microBatches", "micro-batches", "int64_t", /*default=*/"4",
           "Micro-batches per step">,
    Option<"schedule", "schedule", "std::string", /*default=*/"\"1f1b\"",
           "1f1b, interleaved or zb-h1">,
    Option<"routerLoads", "router-loads", "bool", /*default=*/"false",
           "A choice bias's backward returns its routers' token counts "
           "(the auxiliary-loss-free rule), marked veomni.router_bias">,
  ];
}

def Lora : Pass<"veomni-lora", "::mlir::ModuleOp"> {
  let summary = "LoRA adapters beside frozen base weights (train.lora)";
  let description = [{
    PEFT's LoRA: each Linear (matmul with a rank-2 `<module>.weight`
    parameter, transpose_rhs) whose module a target names gets parameters
    `<module>.lora_A.weight` [r, in] and `<module>.lora_B.weight` [out, r]
    (`veomni.adapter`) and computes x W^T + (x A^T) B^T alpha / r; every
    other parameter is frozen. Targets are PEFT's target_modules: a module
    name or its part after a dot (`q_proj`), a glob, or `all-linear`. A
    target that names no Linear is an error naming it. See Lora.cpp.
  }];
  let options = [
    Option<"funcName", "func", "std::string", /*default=*/"\"forward\"",
           "The function to adapt">,
    ListOption<"targets", "targets", "std::string",
               "PEFT target_modules: names, globs or all-linear">,
    ListOption<"targetParameters", "target-parameters", "std::string",
               "PEFT target_parameters: MoE experts' fused parameters and "
               "routers' weights (mlp.experts.gate_up_proj)">,
    Option<"rank", "rank", "int64_t", /*default=*/"8", "The adapters' rank r">,
    Option<"alpha", "alpha", "double", /*default=*/"16",
           "lora_alpha: the update is scaled by alpha / r">,
    Option<"rslora", "rslora", "bool", /*default=*/"false",
           "use_rslora: scaled by alpha / sqrt(r) instead">,
  ];
}

def Freeze : Pass<"veomni-freeze", "::mlir::ModuleOp"> {
  let summary = "Mark the parameters that do not train (train.freeze)";
  let description = [{
    Marks every parameter whose Hugging Face name matches one of
    `patterns` `veomni.frozen`. A pattern is a glob (`*`, `?`, `[...]`)
    matched against the whole name or any part of it after a dot, so
    `visual.*` freezes `model.visual.blocks.0.attn.qkv.weight` and
    `*.embed_tokens.weight` the embedding. A pattern that matches no
    parameter is an error naming it (a typo would otherwise train
    everything), as is freezing every parameter.
  }];
  let options = [
    Option<"funcName", "func", "std::string", /*default=*/"\"forward\"",
           "The function whose parameters to freeze">,
    ListOption<"patterns", "patterns", "std::string",
               "Globs over parameter names">,
  ];
}

def Autodiff : Pass<"veomni-autodiff", "::mlir::ModuleOp"> {
  let summary = "Append the backward pass: gradients of the loss for every parameter";
  let description = [{
    The function's first result is the loss. Walking the ops in reverse,
    each op's VJP rule (VJPOpInterface) turns its results' cotangents into
    its operands' (added up where a value has several uses). The function
    then also returns, after its original results, the gradient of every
    parameter (a `veomni.param` argument), in argument order, each result
    marked `veomni.grad = "<HF name>"`. A parameter the loss does not reach
    gets zeros. An op on the path to the loss without a rule is an error
    naming it. A frozen parameter (`veomni.frozen`, veomni-freeze) gets no
    gradient, and cotangents flow only into values a trainable parameter
    reaches: what only frozen parameters and inputs compute (a frozen
    vision tower) has no backward.
  }];
  let options = [
    Option<"funcName", "func", "std::string", /*default=*/"\"forward\"",
           "The function to differentiate">,
  ];
}

def RepeatKVHeads : Pass<"veomni-repeat-kv-heads", "::mlir::ModuleOp"> {
  let summary = "Repeat the key and value heads up to the sequence-parallel degree";
  let description = [{
    Ulysses moves a split sequence onto the attention heads. When sp
    exceeds the key/value heads (Qwen3-30B-A3B has 4, and 160K-token runs
    want sp 8), the kv heads cannot take the split and the attention would
    run whole on every rank. As VeOmni does, this pass repeats each kv head
    sp / Hkv times (a broadcast and a reshape, before autodiff, so the
    backward sums the copies' cotangents): query head h still reads the
    copies of its kv head, and the heads split sp ways. It applies where sp
    is a multiple of Hkv and divides the query heads; elsewhere the
    attention is left as it is.
  }];
  let options = [
    Option<"sp", "sp", "int64_t", "1", "Ulysses sequence parallel">,
  ];
}

def UlyssesMoETokens : Pass<"veomni-ulysses-moe-tokens", "::mlir::ModuleOp"> {
  let summary = "Order MoE token rows so that Ulysses ranks keep their split";
  let description = [{
    A MoE block flattens its tokens [B, S, H] -> [B * S, H]. With the
    sequence split over sp and more than one sequence per rank, no
    contiguous split of B * S is what each rank holds, so the partitioner
    would gather the sequence and every sp rank would route and multiply
    all of it. A MoE block does not depend on the order of its rows, so
    this pass flattens them sp-major instead: [B, S, H] -> [B, sp, S / sp,
    H] -> [sp, B, S / sp, H] -> [sp * B * S / sp, H], whose split over
    (sp, data-parallel axes) is contiguous, and puts the rows back in order
    where the block reshapes them to [B, S, ...]. Before autodiff, so the
    backward follows; only with sp > 1.

    With `contractions` (after autodiff) it does the same for the sums over
    rows that weight gradients are: a matmul contracting two [B, S, *]
    tensors flattened to rows (dW = X^T dY) reads both sp-major, so the
    ranks contract their own rows and the partial sums are reduced, instead
    of gathering both over sp and repeating the product on every sp rank.
  }];
  let options = [
    Option<"sp", "sp", "int64_t", "1", "Ulysses sequence parallel">,
    Option<"contractions", "contractions", "bool", /*default=*/"false",
           "Reorder the rows of weight-gradient contractions instead of MoE "
           "blocks">,
    Option<"batchSplit", "batch-split", "int64_t", /*default=*/"1",
           "Ranks the batch is split over (dp_replicate x dp_shard x ep): "
           "with one sequence per rank the rows are one block already and "
           "nothing is reordered">,
  ];
}

def Remat : Pass<"veomni-remat", "::mlir::ModuleOp"> {
  let summary = "Recompute activations in the backward pass instead of keeping them";
  let description = [{
    After veomni-autodiff, the backward pass reads forward values, which
    stay alive from the forward pass to their last backward use. This pass
    recomputes some of them right before the backward pass needs them, so
    the forward copies die early and the planned peak memory falls:
    `none` keeps everything; `selective` recomputes the cheap ops and keeps
    what matmuls, grouped matmuls, attention and convolutions produce;
    `full` keeps only each decoder layer's input (activation
    checkpointing per layer) and recomputes the rest of the layer.
    Recomputation is exact: the values are bit-identical.
  }];
  let options = [
    Option<"policy", "policy", "std::string", /*default=*/"\"selective\"",
           "none, selective or full">,
  ];
}

def Optimizer : Pass<"veomni-optimizer", "::mlir::ModuleOp"> {
  let summary = "AdamW with fp32 states, gradient clipping and the schedule, in the IR";
  let description = [{
    Turns a differentiated step (veomni-autodiff) into a training step: new
    arguments `step` and, per parameter, its AdamW moments and (for
    non-f32 parameters) an f32 master copy; results the loss, the gradient
    norm, the learning rate and every updated parameter and state, marked
    `veomni.update = "<argument>"`. Matrices are weight-decayed; norms and
    biases are not. See Optimizer.cpp for the exact update.
  }];
  let options = [
    Option<"funcName", "func", "std::string", /*default=*/"\"forward\"",
           "The function to turn into a training step">,
    Option<"lr", "lr", "double", /*default=*/"1e-3", "Peak learning rate">,
    Option<"beta1", "beta1", "double", /*default=*/"0.9", "AdamW beta1">,
    Option<"beta2", "beta2", "double", /*default=*/"0.95", "AdamW beta2">,
    Option<"epsilon", "eps", "double", /*default=*/"1e-8", "AdamW epsilon">,
    Option<"weightDecay", "weight-decay", "double", /*default=*/"0.1",
           "Decoupled weight decay of matrices">,
    Option<"maxGradNorm", "max-grad-norm", "double", /*default=*/"1.0",
           "Global-norm clipping threshold (0: no clipping)">,
    Option<"warmupSteps", "warmup-steps", "int64_t", /*default=*/"0",
           "Linear warmup steps">,
    Option<"totalSteps", "total-steps", "int64_t", /*default=*/"1000",
           "Steps of the whole run, for the cosine decay">,
    Option<"minLrRatio", "min-lr-ratio", "double", /*default=*/"0.0",
           "The cosine decays to lr * min-lr-ratio">,
    Option<"accumulationSteps", "accumulation-steps", "int64_t",
           /*default=*/"1",
           "Micro-batches per optimizer step (gradient accumulation)">,
    Option<"routerBiasRate", "router-bias-rate", "double", /*default=*/"0.0",
           "DeepSeek-V3's auxiliary-loss-free balancing: each choice bias of "
           "a veomni.moe_group_topk moves by this times sign(mean load - "
           "load) a step (0: trained as any parameter, i.e. unchanged)">,
    Option<"externalNorm", "external-norm", "bool", /*default=*/"false",
           "Clip by the squared norm given as an input (`grad_norm_sq`, a "
           "pipeline's norm over all stages) instead of the function's own "
           "gradients' norm; the step returns no loss">,
  ];
}

def Fuse : Pass<"veomni-fuse", "::mlir::ModuleOp"> {
  let summary = "Turn chains of elementwise ops into veomni.fused ops";
  let description = [{
    Right before veomni-lower-to-vrt. Elementwise ops (unary, binary,
    casts) over one iteration domain, the broadcasts that feed them, the
    reshapes between them and trailing reductions at their end become one
    `veomni.fused` op, which lowers to one `fused` kernel: each input read
    once, each result written once, no intermediate in memory. A group
    closes when an op outside it reads one of its values, so the fused op
    takes the place of its last member. Groups of one op stay as they are.
  }];
}

def FuseLoss : Pass<"veomni-fuse-loss", "::mlir::ModuleOp"> {
  let summary = "The LM head, cross entropy and their VJP as one chunked op";
  let description = [{
    After partitioning, before veomni-fuse. Where one function holds
    `logits = matmul(hidden, weight^T)`, the `cross_entropy` of the logits,
    its `cross_entropy_grad` with a cotangent defined before the matmul,
    and the two matmuls of the VJP (`dlogits weight` and
    `dlogits^T hidden`), and nothing else reads the logits or their
    cotangent, the five become one `veomni.linear_cross_entropy`. Its
    kernel computes chunks of `chunk` tokens at a time, so neither the
    logits nor their cotangent is ever whole: the memory plan holds a
    `[chunk, V]` f32 workspace instead of two `[tokens, V]` tensors
    (`[chunk + H, V]` for a bf16 or f16 head, fused only where that is
    still smaller). A cross entropy split over the vocabulary (tensor
    parallelism) is left as it is. An FSDP- or sp-sharded head gathers its weight once
    instead of twice: the backward's all-gather goes, and `veomni plan`
    counts the traffic of the fused step.
  }];
  let options = [
    Option<"chunk", "chunk", "int64_t", /*default=*/"0",
           "tokens per chunk (0: as many as a 64 MiB workspace holds, at least 256)">
  ];
}

def Prefetch : Pass<"veomni-prefetch", "::mlir::ModuleOp"> {
  let summary = "Issue the all-gathers of parameters ahead of their use";
  let description = [{
    After veomni-partition. The partitioner places an FSDP all-gather of a
    parameter shard right before the op that reads it, so the kernels wait
    for it at once. This pass issues the k-th all-gather of a function
    argument right before the first reader of the (k - distance)-th: while
    one layer computes, the next layer's weights arrive (on the
    collectives' own thread, docs/runtime.md). Gathers keep their order
    among themselves; the memory plan sees the gathered weights live that
    much longer.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
  let options = [
    Option<"distance", "distance", "int64_t", /*default=*/"1",
           "How many gathers ahead to issue each one (0: leave them)">,
  ];
}

def StageUpdate : Pass<"veomni-stage-update", "::mlir::ModuleOp"> {
  let summary = "Give each pipeline stage its update and gradient-norm functions";
  let description = [{
    After veomni-pipeline. For each stage s, `@stage<s>_update` takes the
    parameters the stage's chunks read and, per parameter, the gradient
    its backwards summed over the micro-batches (f32, role `gradient`), and
    returns their mean as gradients (`veomni.grad`), for veomni-optimizer
    with external-norm to turn into the stage's AdamW step.
    `@stage<s>_grad_norm` returns the stage's share of the squared norm of
    the mean gradient: parameters read on several stages (a tied LM head)
    count on the first of them only, so the shares add up to the one-rank
    norm. Each gradient argument is laid out like its parameter.
  }];
  let dependentDialects = ["::mlir::dist::DistDialect"];
  let options = [
    Option<"microBatches", "micro-batches", "int64_t", /*default=*/"1",
           "Micro-batches whose gradients a step sums">,
  ];
}

def PipelineBoundaries
    : Pass<"veomni-pipeline-boundaries", "::mlir::ModuleOp"> {
  let summary = "Turn pipeline sends and receives into results and arguments";
  let description = [{
    After veomni-partition, for a runtime that drives a pipeline's
    schedule itself: in each chunk function, every `dist.recv` on the pp
    axis becomes a new argument (role `activation` in a forward, `cotangent`
    in a backward) and every `dist.send` a new result (`activation` or
    `cotangent`), in their program order, which is the order the other
    side lists them in. The runner sends and receives them between stages
    as the schedule's action list says, and keeps a forward's activations
    for its backward. A received integer cotangent (an index has no
    gradient) becomes zeros.
  }];
}

def LowerToVrt : Pass<"veomni-lower-to-vrt", "::mlir::ModuleOp"> {
  let summary = "Bufferize veomni tensors and turn each op into a kernel call";
  let description = [{
    Every tensor becomes a buffer (a static memref): function arguments in
    place, op results as `vrt.alloc`, constants as `vrt.constant`, and a
    reshape as a `vrt.view` of its input's bytes. Every other veomni op
    becomes a `vrt.kernel` writing into the allocs of its results, with the
    op's attributes. Buffers get no offsets here (veomni-plan-memory).
  }];
  let dependentDialects = ["::mlir::vrt::VrtDialect"];
}

def PlanMemory : Pass<"veomni-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Give every buffer a static offset in one arena";
  let description = [{
    Arguments (parameters, then batch inputs) and constants are laid out
    first; every `vrt.alloc` then gets the lowest 64-byte aligned offset that
    overlaps no buffer alive at the same time (greedy, largest first), so
    the arena's size is known before the program runs. An elementwise
    kernel writes in place into an input that dies there and has its type.
    Sets `vrt.arena_bytes` on the function, an `vrt.offset` on each
    argument and an `offset` on each alloc and constant.
  }];
  let options = [
    Option<"inPlace", "in-place", "bool", /*default=*/"true",
           "Let elementwise kernels overwrite an input that dies there">,
  ];
}

#endif // VEOMNI_PASSES_TD
