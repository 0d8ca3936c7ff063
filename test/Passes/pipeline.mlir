// RUN: veomni-opt %s -split-input-file --veomni-pipeline="stages=2 micro-batches=4" -verify-diagnostics | FileCheck %s
// RUN: veomni-opt %s -split-input-file --veomni-pipeline="stages=2 micro-batches=4 schedule=zb-h1" -verify-diagnostics | FileCheck %s --check-prefix=ZB

// A 2-stage pipeline. Four equal layers and an LM head worth four of them:
// balancing puts layers 0-2 on stage 0 and layer 3 with the head on stage
// 1 (3 units against 5; a 2/2 split would be 2 against 6). Stage 0 sends
// the residual stream on; stage 1 receives it and returns the loss. Each
// chunk takes only the parameters and inputs it reads.
// CHECK-LABEL: module attributes {dist.pipeline = {
// CHECK-SAME: actions = {{\[\[}}"F(mb0, chunk 0)", "send_act(mb0, chunk 0, stage 1)", "F(mb1, chunk 0)", "send_act(mb1, chunk 0, stage 1)", "recv_grad(mb0, chunk 0, stage 1)", "B(mb0, chunk 0)", "F(mb2, chunk 0)"
// CHECK-SAME: ["recv_act(mb0, chunk 1, stage 0)", "F(mb0, chunk 1)", "B(mb0, chunk 1)", "send_grad(mb0, chunk 1, stage 0)", "recv_act(mb1, chunk 1, stage 0)"
// CHECK-SAME: bubble = 2.000000e-01
// CHECK-SAME: first_layers = [0, 3]
// CHECK-SAME: micro_batches = 4
// CHECK-SAME: peak_activations = [2, 1]
// CHECK-SAME: schedule = "1f1b", stages = 2
// CHECK: func.func @forward_chunk0(%[[EMB:.*]]: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight"}, %[[IDS:.*]]: tensor<2x4xi32> {veomni.input = "input_ids"}, %{{.*}}: tensor<8x8xf32> {veomni.param = "model.layers.0.mlp.weight"}, %{{.*}}: tensor<8x8xf32> {veomni.param = "model.layers.1.mlp.weight"}, %{{.*}}: tensor<8x8xf32> {veomni.param = "model.layers.2.mlp.weight"})
// CHECK-SAME: attributes {dist.chunk = 0 : i64, dist.stage = 0 : i64, veomni.role = #veomni<function_role forward_chunk>}
// CHECK: veomni.gather %[[EMB]][%[[IDS]]]
// CHECK-COUNT-3: veomni.matmul
// CHECK: %[[X:.*]] = veomni.add
// CHECK-NEXT: dist.send %[[X]] mesh = @mesh axis = "pp" peer = 1 : tensor<2x4x8xf32>
// CHECK-NEXT: return
// The backward recomputes the chunk, receives the cotangent of what it
// sent, and returns its parameters' gradients.
// CHECK: func.func @forward_chunk0_backward({{.*}}) -> (tensor<32x8xf32> {veomni.grad = "model.embed_tokens.weight", veomni.role = #veomni<result_role gradient>}, tensor<8x8xf32> {veomni.grad = "model.layers.0.mlp.weight", veomni.role = #veomni<result_role gradient>}, tensor<8x8xf32> {veomni.grad = "model.layers.1.mlp.weight", veomni.role = #veomni<result_role gradient>}, tensor<8x8xf32> {veomni.grad = "model.layers.2.mlp.weight", veomni.role = #veomni<result_role gradient>})
// CHECK: dist.recv mesh = @mesh axis = "pp" peer = 1 : tensor<2x4x8xf32>
// CHECK: veomni.scatter_add
// CHECK: func.func @forward_chunk1(%{{.*}}: tensor<8x8xf32> {veomni.param = "model.layers.3.mlp.weight"}, %{{.*}}: tensor<32x8xf32> {veomni.param = "lm_head.weight"}, %{{.*}}: tensor<2x4xi32> {veomni.input = "labels"}) -> tensor<f32>
// CHECK-SAME: attributes {dist.chunk = 1 : i64, dist.stage = 1 : i64, veomni.role = #veomni<function_role forward_chunk>}
// CHECK-NEXT: %[[R:.*]] = dist.recv mesh = @mesh axis = "pp" peer = 0 : tensor<2x4x8xf32>
// CHECK-NEXT: veomni.matmul %[[R]]
// CHECK: veomni.cross_entropy
// CHECK-NEXT: return
// The last chunk's backward takes the activation its stage received and
// kept, seeds the loss with one, and sends the activation's cotangent back.
// CHECK: func.func @forward_chunk1_backward({{.*}}, %[[KEPT:.*]]: tensor<2x4x8xf32> {veomni.input = "activation.0", veomni.role = #veomni<argument_role activation>}) -> (tensor<8x8xf32> {veomni.grad = "model.layers.3.mlp.weight", veomni.role = #veomni<result_role gradient>}, tensor<32x8xf32> {veomni.grad = "lm_head.weight", veomni.role = #veomni<result_role gradient>})
// CHECK: veomni.cross_entropy_grad
// CHECK: dist.send %{{.*}} mesh = @mesh axis = "pp" peer = 0 : tensor<2x4x8xf32>
// CHECK-NOT: func.func @forward(

// ZB-H1 splits each backward into its input (BI) and weight (BW) parts:
// the input part receives, computes and sends back the cotangent; the
// weight part takes what it needs of the input part's values and returns
// the gradients. The first chunk sends nothing back, so its input part is
// the receive alone.
// ZB: actions = {{\[\[}}"F(mb0, chunk 0)", "send_act(mb0, chunk 0, stage 1)", "F(mb1, chunk 0)", "send_act(mb1, chunk 0, stage 1)", "recv_grad(mb0, chunk 0, stage 1)", "BI(mb0, chunk 0)", "BW(mb0, chunk 0)"
// ZB-SAME: schedule = "zb-h1"
// ZB: func.func @forward_chunk0_backward_input({{.*}}) -> (tensor<2x4x8xf32> {veomni.output = "stash.0", veomni.role = #veomni<result_role stash>})
// ZB-NEXT: %[[C:.*]] = dist.recv mesh = @mesh axis = "pp" peer = 1 : tensor<2x4x8xf32>
// ZB-NEXT: return %[[C]]
// ZB: func.func @forward_chunk0_backward_weight({{.*}}, %{{.*}}: tensor<2x4x8xf32> {veomni.input = "stash.0", veomni.role = #veomni<argument_role stash>}) -> (tensor<32x8xf32> {veomni.grad = "model.embed_tokens.weight", veomni.role = #veomni<result_role gradient>}, {{.*}})
// ZB-NOT: dist.{{(recv|send)}}
// ZB: veomni.scatter_add
// ZB: func.func @forward_chunk1_backward_input(
// ZB: veomni.cross_entropy_grad
// ZB: dist.send {{.*}} peer = 0
// ZB: func.func @forward_chunk1_backward_weight(
// ZB-NOT: dist.send
// ZB: return
dist.mesh @mesh = <["pp" = 2]>
func.func @forward(
    %emb: tensor<32x8xf32> {veomni.param = "model.embed_tokens.weight"},
    %w0: tensor<8x8xf32> {veomni.param = "model.layers.0.mlp.weight"},
    %w1: tensor<8x8xf32> {veomni.param = "model.layers.1.mlp.weight"},
    %w2: tensor<8x8xf32> {veomni.param = "model.layers.2.mlp.weight"},
    %w3: tensor<8x8xf32> {veomni.param = "model.layers.3.mlp.weight"},
    %head: tensor<32x8xf32> {veomni.param = "lm_head.weight"},
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
  %logits = veomni.matmul %x3, %head {transpose_rhs} : tensor<2x4x8xf32>, tensor<32x8xf32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  %loss = veomni.cross_entropy %logits, %labels : tensor<2x4x32xf32>, tensor<2x4xi32> loc(fused<#veomni.module<lm_head>>["lm_head"])
  return %loss : tensor<f32>
}

// -----

// More chunks than layers cannot be balanced.
// expected-error @+1 {{veomni-pipeline: cannot split 1 decoder layers into 2 chunks (2 stages x 1)}}
module {
  dist.mesh @mesh = <["pp" = 2]>
  func.func @forward(%x: tensor<2x8xf32>, %w: tensor<8x8xf32>) -> tensor<2x8xf32> {
    %y = veomni.matmul %x, %w : tensor<2x8xf32>, tensor<8x8xf32> loc(fused<#veomni.module<mlp, layer = 0>>["model.layers.0.mlp"])
    return %y : tensor<2x8xf32>
  }
}

// -----

// The mesh's pp axis is the number of stages.
// expected-error @+1 {{veomni-pipeline: needs one dist.mesh with a "pp" axis of size 2 (veomni-apply-recipe declares it)}}
module {
  dist.mesh @mesh = <["pp" = 4]>
  func.func @forward(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
    return %x : tensor<2x8xf32>
  }
}
