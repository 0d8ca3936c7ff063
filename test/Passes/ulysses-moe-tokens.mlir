// RUN: veomni-opt %s --veomni-ulysses-moe-tokens="sp=2" | FileCheck %s
// RUN: veomni-opt %s --veomni-ulysses-moe-tokens="sp=2 contractions=true" | FileCheck %s --check-prefix=DW
// RUN: veomni-opt %s --veomni-ulysses-moe-tokens="sp=1" | FileCheck %s --check-prefix=NONE
// One sequence per rank (the batch of 2 split 2 ways): nothing to do.
// RUN: veomni-opt %s --veomni-ulysses-moe-tokens="sp=2 batch-split=2" | FileCheck %s --check-prefix=NONE
// RUN: veomni-opt %s --veomni-ulysses-moe-tokens="sp=2 batch-split=2 contractions=true" | FileCheck %s --check-prefix=NONE

// A MoE block over [B=2, S=8] tokens: its rows are flattened sp-major
// ([B, sp, S/sp] -> [sp, B, S/sp]), so that each Ulysses rank's rows are
// one block, and put back in order where the block's result becomes
// [B, S, H] again.
// CHECK-LABEL: func.func @moe
// CHECK: %[[S:.*]] = veomni.reshape %arg0 : tensor<2x8x4xf32> to tensor<2x2x4x4xf32>
// CHECK-NEXT: %[[T:.*]] = veomni.transpose %[[S]] perm = [1, 0, 2, 3]
// CHECK-NEXT: %[[ROWS:.*]] = veomni.reshape %[[T]] : tensor<2x2x4x4xf32> to tensor<16x4xf32>
// CHECK-NEXT: veomni.matmul %[[ROWS]], %arg1
// CHECK: veomni.moe_dispatch %[[ROWS]]
// CHECK: %[[C:.*]] = veomni.moe_combine
// CHECK-NEXT: %[[B:.*]] = veomni.reshape %[[C]] : tensor<16x4xf32> to tensor<2x2x4x4xf32>
// CHECK-NEXT: %[[U:.*]] = veomni.transpose %[[B]] perm = [1, 0, 2, 3]
// CHECK-NEXT: veomni.reshape %[[U]] : tensor<2x2x4x4xf32> to tensor<2x8x4xf32>
// NONE-NOT: veomni.transpose
func.func @moe(%x: tensor<2x8x4xf32>, %router: tensor<4x4xf32>, %w: tensor<4x6x4xf32>) -> tensor<2x8x4xf32> {
  %flat = veomni.reshape %x : tensor<2x8x4xf32> to tensor<16x4xf32>
  %logits = veomni.matmul %flat, %router {transpose_rhs} : tensor<16x4xf32>, tensor<4x4xf32>
  %weights, %indices = veomni.moe_topk %logits {k = 2 : i64} : tensor<16x4xf32>
  %sorted, %groups = veomni.moe_dispatch %flat, %indices {num_experts = 4 : i64} : tensor<16x4xf32>, tensor<16x2xi32>
  %h = veomni.grouped_matmul %sorted, %w, %groups {transpose_weight} : tensor<32x4xf32>, tensor<4x6x4xf32>, tensor<4xi32>
  %y = veomni.grouped_matmul %h, %w, %groups : tensor<32x6xf32>, tensor<4x6x4xf32>, tensor<4xi32>
  %c = veomni.moe_combine %y, %weights, %indices : tensor<32x4xf32>, tensor<16x2xf32>, tensor<16x2xi32>
  %out = veomni.reshape %c : tensor<16x4xf32> to tensor<2x8x4xf32>
  return %out : tensor<2x8x4xf32>
}

// A weight gradient dW = X^T dY over rows flattened from [B, S, *]: both
// sides read sp-major, so each rank contracts its own rows.
// DW-LABEL: func.func @weight_grad
// DW: %[[XS:.*]] = veomni.reshape %arg0 : tensor<2x8x4xf32> to tensor<2x2x4x4xf32>
// DW-NEXT: %[[XT:.*]] = veomni.transpose %[[XS]] perm = [1, 0, 2, 3]
// DW-NEXT: %[[X:.*]] = veomni.reshape %[[XT]] : tensor<2x2x4x4xf32> to tensor<16x4xf32>
// DW-NEXT: %[[GS:.*]] = veomni.reshape %arg1 : tensor<2x8x6xf32> to tensor<2x2x4x6xf32>
// DW-NEXT: %[[GT:.*]] = veomni.transpose %[[GS]] perm = [1, 0, 2, 3]
// DW-NEXT: %[[G:.*]] = veomni.reshape %[[GT]] : tensor<2x2x4x6xf32> to tensor<16x6xf32>
// DW-NEXT: veomni.matmul %[[X]], %[[G]] {transpose_lhs}
func.func @weight_grad(%x: tensor<2x8x4xf32>, %dy: tensor<2x8x6xf32>) -> tensor<4x6xf32> {
  %xr = veomni.reshape %x : tensor<2x8x4xf32> to tensor<16x4xf32>
  %gr = veomni.reshape %dy : tensor<2x8x6xf32> to tensor<16x6xf32>
  %dw = veomni.matmul %xr, %gr {transpose_lhs} : tensor<16x4xf32>, tensor<16x6xf32>
  return %dw : tensor<4x6xf32>
}
