// RUN: veomni-opt %s --veomni-pipeline="stages=2 micro-batches=4" --veomni-stage-update="micro-batches=4" --veomni-pipeline-boundaries | FileCheck %s
// RUN: veomni-opt %s --veomni-pipeline="stages=2 micro-batches=4" --veomni-stage-update="micro-batches=4" --veomni-optimizer="func=stage1_update external-norm=true" | FileCheck %s --check-prefix=ADAM

// The pipeline of pipeline.mlir with the LM head tied to the embedding:
// stage 0 reads the embedding, stage 1 the head, both the same parameter.

// veomni-pipeline-boundaries: what a chunk sends becomes a result and what
// it receives an argument, named by position, so that the runtime moves
// them as the schedule says.
// CHECK: func.func @forward_chunk0({{.*}}) -> (tensor<2x4x8xf32> {veomni.output = "activation.0", veomni.role = #veomni<result_role activation>})
// CHECK-NOT: dist.send
// CHECK: return
// CHECK: func.func @forward_chunk0_backward({{.*}}, %{{.*}}: tensor<2x4x8xf32> {veomni.input = "cotangent.0", veomni.role = #veomni<argument_role cotangent>}) ->
// CHECK-NOT: dist.recv
// CHECK: func.func @forward_chunk1(%{{.*}}: tensor<8x8xf32> {veomni.param = "model.layers.3.mlp.weight"}, %{{.*}}: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight"}, %{{.*}}: tensor<2x4xi32> {veomni.input = "labels"}, %{{.*}}: tensor<2x4x8xf32> {veomni.input = "activation.0", veomni.role = #veomni<argument_role activation>}) -> tensor<f32>
// CHECK-NOT: dist.recv
// CHECK: func.func @forward_chunk1_backward({{.*}}) -> ({{.*}}, tensor<2x4x8xf32> {veomni.output = "cotangent.0", veomni.role = #veomni<result_role cotangent>})
// CHECK-NOT: dist.send

// veomni-stage-update: each stage's update takes its parameters and their
// summed gradients (f32, laid out like the parameter), and returns the
// mean over the 4 micro-batches as gradients.
// CHECK: func.func @stage0_update(%{{.*}}: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight"}, {{.*}}, %[[G:.*]]: tensor<32x8xf32> {veomni.role = #veomni<argument_role gradient>, veomni.state = "grad.model.embed_tokens.weight", veomni.state_of = "model.embed_tokens.weight"}, {{.*}}) -> (tensor<f32>, tensor<32x8xf32> {veomni.grad = "model.embed_tokens.weight"}, {{.*}}) attributes {dist.stage = 0 : i64, veomni.role = #veomni<function_role stage_update>}
// CHECK: %[[Q:.*]] = veomni.constant dense<2.500000e-01> : tensor<32x8xf32>
// CHECK-NEXT: veomni.mul %[[G]], %[[Q]]
// The tied embedding counts in the norm of its first stage only.
// CHECK: func.func @stage0_grad_norm(%{{.*}}: tensor<32x8xf32> {{{.*}}veomni.state = "grad.model.embed_tokens.weight"
// CHECK-SAME: -> (tensor<f32> {veomni.output = "grad_norm_sq", veomni.role = #veomni<result_role grad_norm_squared>})
// CHECK: func.func @stage1_update({{.*}}grad.model.embed_tokens.weight
// CHECK: func.func @stage1_grad_norm(%{{.*}}: tensor<8x8xf32> {{{.*}}veomni.state = "grad.model.layers.3.mlp.weight"{{.*}}}) -> (tensor<f32>

// veomni-optimizer with external-norm: AdamW on the stage's parameters,
// clipped by the squared norm the runtime sums over the stages; no loss.
// ADAM: func.func @stage1_update({{.*}}, %{{.*}}: tensor<f32> {veomni.input = "step", veomni.role = #veomni<argument_role step>}, %{{.*}}: tensor<f32> {veomni.input = "grad_norm_sq", veomni.role = #veomni<argument_role grad_norm_squared>}
// ADAM-SAME: -> (tensor<f32> {veomni.output = "grad_norm", veomni.role = #veomni<result_role grad_norm>}, tensor<f32> {veomni.output = "lr", veomni.role = #veomni<result_role learning_rate>}, tensor<8x8xf32> {veomni.role = #veomni<result_role update>, veomni.update = "optimizer.exp_avg.model.layers.3.mlp.weight"}
// ADAM-SAME: veomni.role = #veomni<function_role stage_update>

dist.mesh @mesh = <["pp" = 2]>
func.func @forward(
    %emb: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight"},
    %w0: tensor<8x8xf32> {veomni.param = "model.layers.0.mlp.weight"},
    %w1: tensor<8x8xf32> {veomni.param = "model.layers.1.mlp.weight"},
    %w2: tensor<8x8xf32> {veomni.param = "model.layers.2.mlp.weight"},
    %w3: tensor<8x8xf32> {veomni.param = "model.layers.3.mlp.weight"},
    %ids: tensor<2x4xi32> {veomni.input = "input_ids"},
    %labels: tensor<2x4xi32> {veomni.input = "labels"}) -> tensor<f32> {
  %x = veomni.gather %emb[%ids] axis = 0 : tensor<32x8xf32>, tensor<2x4xi32> loc(fused<#veomni.module<embedding>>["model.embed_tokens"])
  %h0 = veomni.matmul %x, %w0 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 0>>["model.layers.0.mlp"])
  %x0 = veomni.add %x, %h0 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 0>>["model.layers.0.mlp"])
  %h1 = veomni.matmul %x0, %w1 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 1>>["model.layers.1.mlp"])
  %x1 = veomni.add %x0, %h1 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 1>>["model.layers.1.mlp"])
  %h2 = veomni.matmul %x1, %w2 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 2>>["model.layers.2.mlp"])
  %x2 = veomni.add %x1, %h2 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 2>>["model.layers.2.mlp"])
  %h3 = veomni.matmul %x2, %w3 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 3>>["model.layers.3.mlp"])
  %x3 = veomni.add %x2, %h3 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 3>>["model.layers.3.mlp"])
  %logits = veomni.matmul %x3, %emb {transpose_rhs} : tensor<2x4x8xf32>, tensor<32x8xf32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  %loss = veomni.cross_entropy %logits, %labels : tensor<2x4x32xf32>, tensor<2x4xi32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  return %loss : tensor<f32>
}

