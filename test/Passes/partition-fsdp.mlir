// RUN: veomni-opt %s --veomni-autodiff=func=linear --canonicalize --veomni-propagate-sharding --veomni-partition | FileCheck %s

// FSDP (ZeRO-3) on a linear layer, forward and backward from one
// propagation: the weight is stored split over dp_shard and all-gathered
// before use, the batch stays split, the loss is summed over dp, and the
// weight's gradient, laid out like the weight, is a reduce-scatter.
// CHECK-LABEL: func.func @linear
// CHECK-SAME: (%[[W:.*]]: tensor<8x16xf32> {dist.slice = #dist.sharding<@mesh, [{"dp_shard"}, {}]>, veomni.param = "w"}, %[[X:.*]]: tensor<2x16xf32> {dist.slice = #dist.sharding<@mesh, [{"dp_shard"}, {}]>, veomni.input = "x"}) -> (tensor<f32> {dist.slice = #dist.sharding<@mesh, []>}, tensor<8x16xf32> {dist.slice = #dist.sharding<@mesh, [{"dp_shard"}, {}]>, veomni.grad = "w", veomni.role = #veomni<result_role gradient>})
// CHECK: %[[WF:.*]] = dist.all_gather %[[W]] mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<8x16xf32> -> tensor<32x16xf32>
// CHECK-NEXT: %[[Y:.*]] = veomni.matmul %[[X]], %[[WF]] {transpose_rhs} : tensor<2x16xf32>, tensor<32x16xf32>
// CHECK-NEXT: %[[S:.*]] = veomni.reduce sum %[[Y]] dims = [0, 1] : tensor<2x32xf32>
// CHECK-NEXT: %[[LOSS:.*]] = dist.all_reduce %[[S]] mesh = @mesh axes = ["dp_shard"] : tensor<f32>
// CHECK-NEXT: %[[G:.*]] = veomni.matmul %[[X]], %{{.*}} {transpose_lhs} : tensor<2x16xf32>, tensor<2x32xf32>
// CHECK-NEXT: %[[GS:.*]] = dist.reduce_scatter %[[G]] mesh = @mesh axes = ["dp_shard"] dim = 1 : tensor<16x32xf32> -> tensor<16x8xf32>
// CHECK-NEXT: %[[GT:.*]] = veomni.transpose %[[GS]] perm = [1, 0] : tensor<16x8xf32>
// CHECK-NEXT: return %[[LOSS]], %[[GT]] : tensor<f32>, tensor<8x16xf32>
dist.mesh @mesh = <["dp_shard" = 4]>
func.func @linear(
    %w: tensor<32x16xf32> {veomni.param = "w", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p1, {}]>},
    %x: tensor<8x16xf32> {veomni.input = "x", dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>}) -> tensor<f32> {
  %y = veomni.matmul %x, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %l = veomni.reduce sum %y dims = [0, 1] : tensor<8x32xf32>
  return %l : tensor<f32>
}
