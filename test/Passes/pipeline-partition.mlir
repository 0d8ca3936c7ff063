// RUN: veomni-opt %s --veomni-pipeline="stages=2 micro-batches=2" --veomni-propagate-sharding --veomni-partition | FileCheck %s
// RUN: veomni-opt %s --veomni-pipeline="stages=2 micro-batches=2 schedule=zb-h1" --veomni-propagate-sharding --veomni-partition | FileCheck %s --check-prefix=ZB

// Pipeline and data parallelism together: each stage's chunks are
// propagated and partitioned like any step. What crosses the cut keeps the
// layout the sending forward gave it on every side: the batch split over
// dp_shard when sent, received, kept for the backward, and when its
// cotangent goes back.
// The LM head is tied to the embedding: both stages read it, and both end
// their step by summing its gradient parts.
// CHECK: "sum_grad(model.embed_tokens.weight, stages 0, 1)"]
// CHECK-SAME: "sum_grad(model.embed_tokens.weight, stages 0, 1)"]]
// CHECK-SAME: tied_params = ["model.embed_tokens.weight"]
// CHECK-LABEL: func.func @forward_chunk0
// CHECK: dist.send %{{.*}} mesh = @mesh axis = "pp" peer = 1 : tensor<1x4x8xf32>
// CHECK-LABEL: func.func @forward_chunk0_backward
// CHECK: dist.recv mesh = @mesh axis = "pp" peer = 1 : tensor<1x4x8xf32>
// The FSDP gradient: partial over the batch, reduce-scattered.
// CHECK: dist.reduce_scatter {{.*}} axes = ["dp_shard"]
// CHECK-LABEL: func.func @forward_chunk1(
// CHECK: dist.recv mesh = @mesh axis = "pp" peer = 0 : tensor<1x4x8xf32>
// CHECK: dist.all_reduce {{.*}} axes = ["dp_shard"] : tensor<f32>
// CHECK-LABEL: func.func @forward_chunk1_backward(
// CHECK-SAME: %{{.*}}: tensor<1x4x8xf32> {{{.*}}}) -> (tensor<4x8xf32> {dist.slice = {{.*}}, veomni.grad = "model.layers.1.mlp.weight", veomni.role = #veomni<result_role gradient>}
// CHECK: dist.send %{{.*}} mesh = @mesh axis = "pp" peer = 0 : tensor<1x4x8xf32>
dist.mesh @mesh = <["dp_shard" = 2, "pp" = 2]>
func.func @forward(
    %emb: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p1, {}]>},
    %w0: tensor<8x8xf32> {veomni.param = "model.layers.0.mlp.weight", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p1, {}]>},
    %w1: tensor<8x8xf32> {veomni.param = "model.layers.1.mlp.weight", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p1, {}]>},
    %ids: tensor<2x4xi32> {veomni.input = "input_ids", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>},
    %labels: tensor<2x4xi32> {veomni.input = "labels", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>}) -> tensor<f32> {
  %x = veomni.gather %emb[%ids] axis = 0 : tensor<32x8xf32>, tensor<2x4xi32> loc(fused<#veomni.module<embedding>>["model.embed_tokens"])
  %h0 = veomni.matmul %x, %w0 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 0>>["model.layers.0.mlp"])
  %x0 = veomni.add %x, %h0 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 0>>["model.layers.0.mlp"])
  %h1 = veomni.matmul %x0, %w1 {transpose_rhs} : tensor<2x4x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 1>>["model.layers.1.mlp"])
  %x1 = veomni.add %x0, %h1 : tensor<2x4x8xf32> loc(fused<#veomni.module<mlp, layer = 1>>["model.layers.1.mlp"])
  %logits = veomni.matmul %x1, %emb {transpose_rhs} : tensor<2x4x8xf32>, tensor<32x8xf32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  %loss = veomni.cross_entropy %logits, %labels : tensor<2x4x32xf32>, tensor<2x4xi32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  return %loss : tensor<f32>
}

// ZB-H1: what the input half hands the weight half keeps its layout (here
// the batch split over dp_shard on both sides).
// ZB: func.func @forward_chunk1_backward_input({{.*}}) -> (tensor<1x4x8xf32> {{{.*}}}, tensor<1x4x32xf32> {{{.*}}}, tensor<1x4x8xf32> {{{.*}}})
// ZB: func.func @forward_chunk1_backward_weight({{.*}}, %{{.*}}: tensor<1x4x8xf32> {{{.*}}}, %{{.*}}: tensor<1x4x8xf32> {{{.*}}}, %{{.*}}: tensor<1x4x32xf32> {{{.*}}}, %{{.*}}: tensor<1x4x8xf32> {{{.*}}}) -> (tensor<4x8xf32> {dist.slice = {{.*}}, veomni.grad = "model.layers.1.mlp.weight", veomni.role = #veomni<result_role gradient>}, tensor<16x8xf32> {dist.slice = {{.*}}, veomni.grad = "model.embed_tokens.weight", veomni.role = #veomni<result_role gradient>})
