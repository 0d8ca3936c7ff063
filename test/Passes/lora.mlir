// RUN: veomni-opt %s --veomni-lora="targets=q_proj rank=2 alpha=4" | FileCheck %s
// RUN: not veomni-opt %s --veomni-lora="targets=k_proj" 2>&1 | FileCheck %s --check-prefix=NONE

// PEFT's LoRA on the Linear of module "model.layers.0.self_attn.q_proj":
// A [r, in] (lora_a init) and B [out, r] (zeros) after the arguments, the
// base weight and every other parameter frozen; the column-parallel
// weight's B takes its split, A stays whole. The output is
// x W^T + (x A^T) B^T * alpha / r. The tied embedding, which a gather reads
// too, is no Linear.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: %[[W:[^:]*]]: tensor<8x16xf32> {veomni.frozen, veomni.param = "model.layers.0.self_attn.q_proj.weight", veomni.placement = "tp:column"}
// CHECK-SAME: %[[E:[^:]*]]: tensor<32x16xf32> {veomni.frozen, veomni.param = "model.embed_tokens.weight"}
// CHECK-SAME: %[[A:[^:]*]]: tensor<2x16xf32> {veomni.adapter, veomni.init = "lora_a", veomni.param = "model.layers.0.self_attn.q_proj.lora_A.weight", veomni.placement = "replicated"}
// CHECK-SAME: %[[B:[^:]*]]: tensor<8x2xf32> {veomni.adapter, veomni.init = "zeros", veomni.param = "model.layers.0.self_attn.q_proj.lora_B.weight", veomni.placement = "tp:column"}
// CHECK: %[[Y:.*]] = veomni.matmul %[[X:.*]], %[[W]] {transpose_rhs}
// CHECK-NEXT: %[[D:.*]] = veomni.matmul %[[X]], %[[A]] {transpose_rhs} : tensor<4x16xf32>, tensor<2x16xf32>
// CHECK-NEXT: %[[U:.*]] = veomni.matmul %[[D]], %[[B]] {transpose_rhs} : tensor<4x2xf32>, tensor<8x2xf32>
// CHECK-NEXT: %[[S:.*]] = veomni.constant dense<2.000000e+00> : tensor<4x8xf32>
// CHECK-NEXT: %[[M:.*]] = veomni.mul %[[U]], %[[S]]
// CHECK-NEXT: %[[O:.*]] = veomni.add %[[Y]], %[[M]]
// CHECK-NEXT: veomni.reduce sum %[[O]]
// NONE: train.lora.targets: 'k_proj' names no Linear layer (modules are Hugging Face's, such as 'model.layers.0.self_attn.q_proj')
func.func @forward(
    %w: tensor<8x16xf32> {veomni.param = "model.layers.0.self_attn.q_proj.weight", veomni.placement = "tp:column"},
    %e: tensor<32x16xf32> {veomni.param = "model.embed_tokens.weight"},
    %ids: tensor<4xi32> {veomni.input = "input_ids"}) -> tensor<f32> {
  %x = veomni.gather %e[%ids] axis = 0 : tensor<32x16xf32>, tensor<4xi32>
  %y = veomni.matmul %x, %w {transpose_rhs} : tensor<4x16xf32>, tensor<8x16xf32>
  %l = veomni.reduce sum %y dims = [0, 1] : tensor<4x8xf32>
  %h = veomni.matmul %x, %e {transpose_rhs} : tensor<4x16xf32>, tensor<32x16xf32>
  %k = veomni.reduce sum %h dims = [0, 1] : tensor<4x32xf32>
  %t = veomni.add %l, %k : tensor<f32>
  return %t : tensor<f32>
}
