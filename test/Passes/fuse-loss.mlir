// RUN: veomni-opt %s -split-input-file --veomni-fuse-loss | FileCheck %s
// RUN: veomni-opt %s -split-input-file --veomni-fuse-loss=chunk=16 | FileCheck %s --check-prefix=CHUNK
// RUN: veomni-opt %s -split-input-file --veomni-fuse-loss --veomni-lower-to-vrt --veomni-plan-memory | FileCheck %s --check-prefix=VRT

// The LM head, its loss and the VJP's matmuls (dh = dlogits W, and
// dW = dlogits^T h through reshapes to 2-D): one op. Its workspace holds
// every token here (a 64 MiB workspace holds 32768 rows of 512 logits),
// or 16 with chunk=16. Neither [4, 64, 512] tensor is left.
// CHECK-LABEL: func.func @lm_head
// CHECK: %[[SEED:.*]] = veomni.constant dense<1.000000e+00> : tensor<f32>
// CHECK: %{{.*}}, %[[DH:.*]], %[[DW:.*]], %{{.*}} = veomni.linear_cross_entropy %arg0, %arg1, %arg2, %[[SEED]] : tensor<4x64x64xf32>, tensor<512x64xf32>, tensor<4x64xi32>, tensor<f32> -> tensor<f32>, tensor<4x64x64xf32>, tensor<512x64xf32>, tensor<256x512xf32>
// CHECK-NOT: veomni.matmul
// CHECK-NOT: cross_entropy
// CHECK-NOT: 4x64x512
// CHECK: return
// CHUNK-LABEL: func.func @lm_head
// CHUNK: veomni.linear_cross_entropy {{.*}} tensor<16x512xf32>
// VRT-LABEL: func.func @lm_head
// VRT: %[[WS:.*]] = vrt.alloc {{.*}} : memref<256x512xf32>
// VRT-NEXT: vrt.kernel linear_cross_entropy ins({{.*}}) outs({{.*}}, %[[WS]] : {{.*}}) {ignore_index = -100 : i64, reduction = 0 : i64, token_group = -1 : i64}
// VRT-NEXT: return
func.func @lm_head(%h: tensor<4x64x64xf32> {veomni.input = "h"},
                   %w: tensor<512x64xf32> {veomni.param = "w"},
                   %y: tensor<4x64xi32> {veomni.input = "labels"})
    -> (tensor<f32>, tensor<4x64x64xf32>, tensor<512x64xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<4x64x64xf32>, tensor<512x64xf32>
  %loss = veomni.cross_entropy %logits, %y : tensor<4x64x512xf32>, tensor<4x64xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<4x64x512xf32>, tensor<4x64xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<4x64x512xf32>, tensor<512x64xf32>
  %h2 = veomni.reshape %h : tensor<4x64x64xf32> to tensor<256x64xf32>
  %dl2 = veomni.reshape %dl : tensor<4x64x512xf32> to tensor<256x512xf32>
  %dw = veomni.matmul %dl2, %h2 {transpose_lhs} : tensor<256x512xf32>, tensor<256x64xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<4x64x64xf32>, tensor<512x64xf32>
}

// -----

// The logits are also a result (veomni compile --logits): left alone.
// CHECK-LABEL: func.func @logits_returned
// CHECK-NOT: linear_cross_entropy
// CHECK: veomni.cross_entropy_grad
func.func @logits_returned(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>, tensor<8x32xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %loss = veomni.cross_entropy %logits, %y : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xf32>, tensor<32x16xf32>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dw, %logits : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>, tensor<8x32xf32>
}

// -----

// 2-D hidden, no reshapes: fused. A vocabulary split over ranks
// (dist.vocab_axes) and a backward that reads another weight are left
// alone, and so is a bf16 head whose workspace (with the weight
// gradient's f32 sum, H more rows) would hold more than its logits.
// CHECK-LABEL: func.func @flat
// CHECK: veomni.linear_cross_entropy {{.*}} tensor<8x32xf32>
func.func @flat(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %loss = veomni.cross_entropy %logits, %y {reduction = #veomni<loss_reduction sum>} : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed {reduction = #veomni<loss_reduction sum>} : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xf32>, tensor<32x16xf32>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>
}

// CHECK-LABEL: func.func @bf16
// CHECK-NOT: linear_cross_entropy
func.func @bf16(%h: tensor<8x16xbf16>, %w: tensor<32x16xbf16>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xbf16>, tensor<32x16xbf16>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xbf16>, tensor<32x16xbf16>
  %loss = veomni.cross_entropy %logits, %y : tensor<8x32xbf16>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<8x32xbf16>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xbf16>, tensor<32x16xbf16>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xbf16>, tensor<8x16xbf16>
  return %loss, %dh, %dw : tensor<f32>, tensor<8x16xbf16>, tensor<32x16xbf16>
}

// CHECK-LABEL: func.func @vocab_split
// CHECK-NOT: linear_cross_entropy
func.func @vocab_split(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %loss = veomni.cross_entropy %logits, %y {dist.vocab_axes = ["tp"]} : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed {dist.vocab_axes = ["tp"]} : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xf32>, tensor<32x16xf32>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>
}

// CHECK-LABEL: func.func @other_weight
// CHECK-NOT: linear_cross_entropy
func.func @other_weight(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %v: tensor<32x16xf32>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %loss = veomni.cross_entropy %logits, %y : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %v : tensor<8x32xf32>, tensor<32x16xf32>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>
}

// -----

// An FSDP-sharded head gathers its weight for the forward and again for
// the backward: the fused op takes the first, the second goes. Under
// sequence parallelism dW's operands reach it through the same reshapes and
// transposes of their token rows (a reordering dW does not see): fused.
// CHECK-LABEL: func.func @fsdp_sp
// CHECK: %[[W:.*]] = dist.all_gather %arg1
// CHECK-NOT: dist.all_gather
// CHECK: veomni.linear_cross_entropy %arg0, %[[W]], %arg2
// CHECK-NOT: veomni.transpose
// CHECK: return
module {
  dist.mesh @mesh = <["dp_shard" = 2, "sp" = 2]>
  func.func @fsdp_sp(%h: tensor<4x2x8xf32>, %ws: tensor<16x8xf32>, %y: tensor<4x2xi32>)
      -> (tensor<f32>, tensor<4x2x8xf32>, tensor<32x8xf32>) {
    %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
    %w1 = dist.all_gather %ws mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<16x8xf32> -> tensor<32x8xf32>
    %w2 = dist.all_gather %ws mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<16x8xf32> -> tensor<32x8xf32>
    %logits = veomni.matmul %h, %w1 {transpose_rhs} : tensor<4x2x8xf32>, tensor<32x8xf32>
    %loss = veomni.cross_entropy %logits, %y {dist.token_axes = ["dp_shard", "sp"]} : tensor<4x2x32xf32>, tensor<4x2xi32>
    %dl = veomni.cross_entropy_grad %logits, %y, %seed {dist.token_axes = ["dp_shard", "sp"]} : tensor<4x2x32xf32>, tensor<4x2xi32>, tensor<f32>
    %dh = veomni.matmul %dl, %w2 : tensor<4x2x32xf32>, tensor<32x8xf32>
    %a1 = veomni.reshape %dl : tensor<4x2x32xf32> to tensor<4x1x2x32xf32>
    %a2 = veomni.transpose %a1 perm = [1, 0, 2, 3] : tensor<4x1x2x32xf32>
    %a3 = veomni.reshape %a2 : tensor<1x4x2x32xf32> to tensor<8x32xf32>
    %b1 = veomni.reshape %h : tensor<4x2x8xf32> to tensor<4x1x2x8xf32>
    %b2 = veomni.transpose %b1 perm = [1, 0, 2, 3] : tensor<4x1x2x8xf32>
    %b3 = veomni.reshape %b2 : tensor<1x4x2x8xf32> to tensor<8x8xf32>
    %dw = veomni.matmul %a3, %b3 {transpose_lhs} : tensor<8x32xf32>, tensor<8x8xf32>
    return %loss, %dh, %dw : tensor<f32>, tensor<4x2x8xf32>, tensor<32x8xf32>
  }
}

// -----

// dW's operands reordered differently: not dlogits^T h, left alone.
// CHECK-LABEL: func.func @other_order
// CHECK-NOT: linear_cross_entropy
func.func @other_order(%h: tensor<4x2x8xf32>, %w: tensor<32x8xf32>, %y: tensor<4x2xi32>)
    -> (tensor<f32>, tensor<4x2x8xf32>, tensor<32x8xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<4x2x8xf32>, tensor<32x8xf32>
  %loss = veomni.cross_entropy %logits, %y : tensor<4x2x32xf32>, tensor<4x2xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<4x2x32xf32>, tensor<4x2xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<4x2x32xf32>, tensor<32x8xf32>
  %a2 = veomni.transpose %dl perm = [1, 0, 2] : tensor<4x2x32xf32>
  %a3 = veomni.reshape %a2 : tensor<2x4x32xf32> to tensor<8x32xf32>
  %b3 = veomni.reshape %h : tensor<4x2x8xf32> to tensor<8x8xf32>
  %dw = veomni.matmul %a3, %b3 {transpose_lhs} : tensor<8x32xf32>, tensor<8x8xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<4x2x8xf32>, tensor<32x8xf32>
}

// -----

// A bf16 head over more tokens than a chunk and H together: fused with
// chunk=16, its workspace [16 + 8, 32] f32 (the last 8 rows the weight
// gradient's f32 sum) smaller than the two [64, 32] bf16 tensors. With the
// default chunk (every token) it would hold more: left alone.
// CHECK-LABEL: func.func @bf16_long
// CHECK-NOT: linear_cross_entropy
// CHUNK-LABEL: func.func @bf16_long
// CHUNK: veomni.linear_cross_entropy {{.*}} -> tensor<f32>, tensor<64x8xbf16>, tensor<32x8xbf16>, tensor<24x32xf32>
func.func @bf16_long(%h: tensor<64x8xbf16>, %w: tensor<32x8xbf16>, %y: tensor<64xi32>)
    -> (tensor<f32>, tensor<64x8xbf16>, tensor<32x8xbf16>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<64x8xbf16>, tensor<32x8xbf16>
  %loss = veomni.cross_entropy %logits, %y : tensor<64x32xbf16>, tensor<64xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<64x32xbf16>, tensor<64xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<64x32xbf16>, tensor<32x8xbf16>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<64x32xbf16>, tensor<64x8xbf16>
  return %loss, %dh, %dw : tensor<f32>, tensor<64x8xbf16>, tensor<32x8xbf16>
}

// -----

// Labels made after the forward matmul (the fused op would read them
// before they exist), and views of dW's operands that split the last
// dimension (no longer dlogits^T h): left alone.
// CHECK-LABEL: func.func @late_labels
// CHECK-NOT: linear_cross_entropy
func.func @late_labels(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %y: tensor<2x4xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %y2 = veomni.reshape %y : tensor<2x4xi32> to tensor<8xi32>
  %loss = veomni.cross_entropy %logits, %y2 : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y2, %seed : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xf32>, tensor<32x16xf32>
  %dw = veomni.matmul %dl, %h {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dw : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>
}

// -----

// CHECK-LABEL: func.func @split_last
// CHECK-NOT: linear_cross_entropy
func.func @split_last(%h: tensor<8x16xf32>, %w: tensor<32x16xf32>, %y: tensor<8xi32>)
    -> (tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>) {
  %seed = veomni.constant dense<1.000000e+00> : tensor<f32>
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %loss = veomni.cross_entropy %logits, %y : tensor<8x32xf32>, tensor<8xi32>
  %dl = veomni.cross_entropy_grad %logits, %y, %seed : tensor<8x32xf32>, tensor<8xi32>, tensor<f32>
  %dh = veomni.matmul %dl, %w : tensor<8x32xf32>, tensor<32x16xf32>
  %a1 = veomni.reshape %dl : tensor<8x32xf32> to tensor<8x2x16xf32>
  %a2 = veomni.transpose %a1 perm = [1, 0, 2] : tensor<8x2x16xf32>
  %a3 = veomni.reshape %a2 : tensor<2x8x16xf32> to tensor<8x32xf32>
  %b1 = veomni.reshape %h : tensor<8x16xf32> to tensor<8x2x8xf32>
  %b2 = veomni.transpose %b1 perm = [1, 0, 2] : tensor<8x2x8xf32>
  %b3 = veomni.reshape %b2 : tensor<2x8x8xf32> to tensor<8x16xf32>
  %dwf = veomni.matmul %a3, %b3 {transpose_lhs} : tensor<8x32xf32>, tensor<8x16xf32>
  return %loss, %dh, %dwf : tensor<f32>, tensor<8x16xf32>, tensor<32x16xf32>
}
