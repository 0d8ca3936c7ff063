// RUN: veomni-opt %s | veomni-opt | FileCheck %s
// RUN: veomni-opt %s -mlir-print-op-generic | veomni-opt | FileCheck %s

// Every dist op and attribute, printed, parsed back and printed again.

// CHECK: dist.mesh @mesh = <["dp_replicate" = 1, "dp_shard" = 4, "tp" = 2, "sp" = 2]>
dist.mesh @mesh = <["dp_replicate" = 1, "dp_shard" = 4, "tp" = 2, "sp" = 2]>
// CHECK: dist.mesh @stages = <["pp" = 4, "ep" = 2]>
dist.mesh @stages = <["pp" = 4, "ep" = 2]>

// CHECK-LABEL: func.func @shardings
// CHECK-SAME: dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {}, {"tp", "sp"}], partial = ["dp_replicate"]>
// CHECK-SAME: dist.sharding = #dist.sharding<@mesh, [{"dp_shard", ?}p0, {?}p2, {}]>
func.func @shardings(
    %x: tensor<8x3x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {}, {"tp", "sp"}], partial = ["dp_replicate"]>})
    -> (tensor<8x3x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", ?}p0, {?}p2, {}]>}) {
  // CHECK: %[[C:.*]] = dist.sharding_constraint %{{.*}} <@mesh, [{"dp_shard"}, {}, {"tp"}], partial = ["sp"]> : tensor<8x3x16xf32>
  %0 = dist.sharding_constraint %x <@mesh, [{"dp_shard"}, {}, {"tp"}], partial = ["sp"]> : tensor<8x3x16xf32>
  // CHECK: dist.sharding_constraint %[[C]] <@mesh, [{}, {}, {}]> : tensor<8x3x16xf32>
  %1 = dist.sharding_constraint %0 <@mesh, [{}, {}, {}]> : tensor<8x3x16xf32>
  return %1 : tensor<8x3x16xf32>
}

// CHECK-LABEL: func.func @dynamic_dims_are_not_checked
// CHECK: dist.sharding_constraint %{{.*}} <@mesh, [{"tp"}]> : tensor<?xbf16>
func.func @dynamic_dims_are_not_checked(%x: tensor<?xbf16>) -> tensor<?xbf16> {
  %0 = dist.sharding_constraint %x <@mesh, [{"tp"}]> : tensor<?xbf16>
  return %0 : tensor<?xbf16>
}

// CHECK-LABEL: func.func @collectives
func.func @collectives(%x: tensor<8x2xf32>) {
  // CHECK: %[[G:.*]] = dist.all_gather %{{.*}} mesh = @mesh axes = ["tp"] dim = 1 : tensor<8x2xf32> -> tensor<8x4xf32>
  %0 = dist.all_gather %x mesh = @mesh axes = ["tp"] dim = 1 : tensor<8x2xf32> -> tensor<8x4xf32>
  // CHECK: dist.all_gather %{{.*}} mesh = @mesh axes = ["tp", "sp"] dim = 0 : tensor<8x2xf32> -> tensor<32x2xf32>
  %1 = dist.all_gather %x mesh = @mesh axes = ["tp", "sp"] dim = 0 : tensor<8x2xf32> -> tensor<32x2xf32>
  // CHECK: dist.reduce_scatter %[[G]] mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<8x4xf32> -> tensor<2x4xf32>
  %2 = dist.reduce_scatter %0 mesh = @mesh axes = ["dp_shard"] dim = 0 : tensor<8x4xf32> -> tensor<2x4xf32>
  // CHECK: dist.all_reduce %{{.*}} mesh = @mesh axes = ["tp", "dp_shard"] : tensor<8x2xf32>
  %3 = dist.all_reduce %x mesh = @mesh axes = ["tp", "dp_shard"] : tensor<8x2xf32>
  // CHECK: dist.all_to_all %{{.*}} mesh = @mesh axes = ["tp"] split_dim = 0 concat_dim = 1 : tensor<8x2xf32> -> tensor<4x4xf32>
  %4 = dist.all_to_all %x mesh = @mesh axes = ["tp"] split_dim = 0 concat_dim = 1 : tensor<8x2xf32> -> tensor<4x4xf32>
  // CHECK: dist.all_to_all %{{.*}} mesh = @mesh axes = ["dp_shard"] split_dim = 0 concat_dim = 0 : tensor<8x2xf32> -> tensor<8x2xf32>
  %5 = dist.all_to_all %x mesh = @mesh axes = ["dp_shard"] split_dim = 0 concat_dim = 0 : tensor<8x2xf32> -> tensor<8x2xf32>
  // CHECK: dist.broadcast %{{.*}} mesh = @mesh axes = ["dp_shard"] root = 3 : tensor<8x2xf32>
  %6 = dist.broadcast %x mesh = @mesh axes = ["dp_shard"] root = 3 : tensor<8x2xf32>
  return
}

// CHECK-LABEL: func.func @pipeline
func.func @pipeline(%x: tensor<4x8xbf16>) -> tensor<4x8xbf16> {
  // CHECK: dist.permute %{{.*}} mesh = @stages axes = ["pp"] pairs = [0 -> 1, 1 -> 2, 2 -> 3, 3 -> 0] : tensor<4x8xbf16>
  %0 = dist.permute %x mesh = @stages axes = ["pp"] pairs = [0 -> 1, 1 -> 2, 2 -> 3, 3 -> 0] : tensor<4x8xbf16>
  // CHECK: dist.permute %{{.*}} mesh = @stages axes = ["pp", "ep"] pairs = [] : tensor<4x8xbf16>
  %1 = dist.permute %x mesh = @stages axes = ["pp", "ep"] pairs = [] : tensor<4x8xbf16>
  // CHECK: dist.send %{{.*}} mesh = @stages axis = "pp" peer = 1 : tensor<4x8xbf16>
  dist.send %0 mesh = @stages axis = "pp" peer = 1 : tensor<4x8xbf16>
  // CHECK: %[[R:.*]] = dist.recv mesh = @stages axis = "pp" peer = 3 : tensor<4x8xbf16>
  %2 = dist.recv mesh = @stages axis = "pp" peer = 3 : tensor<4x8xbf16>
  // CHECK: return %[[R]]
  return %2 : tensor<4x8xbf16>
}

// Standalone forms of the attributes.
// CHECK-LABEL: func.func @attributes
// CHECK-SAME: axis = #dist.axis<"x" = 2>
// CHECK-SAME: dim = #dist.dim<{"x", ?}p3>
// CHECK-SAME: mesh = #dist.mesh<["x" = 2]>
func.func @attributes() attributes {
    mesh = #dist.mesh<["x" = 2]>, axis = #dist.axis<"x" = 2>,
    dim = #dist.dim<{"x", ?}p3>} {
  return
}
