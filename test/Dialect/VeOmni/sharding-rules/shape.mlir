// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Shape ops: dimensions map through broadcast, reshape (split into
// factors), transpose, slice, concat; a gather's table rows are a
// reduction (ids outside a shard contribute zeros), its ids pass through.
// CHECK-LABEL: func.func @shapes
func.func @shapes(%x: tensor<2x16x64xf32>, %y: tensor<2x4x64xf32>, %v: tensor<64xf32>, %table: tensor<1000x64xf32>, %ids: tensor<2x16xi32>) {
  // CHECK: veomni.broadcast {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([k]) -> ([i, j, k]) {i=2, j=16, k=64}>
  %0 = veomni.broadcast %v dims = [2] : tensor<64xf32> to tensor<2x16x64xf32>
  // CHECK: veomni.reshape {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k*l]) -> ([i, j, k, l]) {i=2, j=16, k=4, l=16}>
  %1 = veomni.reshape %x : tensor<2x16x64xf32> to tensor<2x16x4x16xf32>
  // CHECK: veomni.transpose {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k, l]) -> ([i, k, j, l]) {i=2, j=16, k=4, l=16}>
  %2 = veomni.transpose %1 perm = [0, 2, 1, 3] : tensor<2x16x4x16xf32>
  // CHECK: veomni.slice {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l]) -> ([i, k, l]) {i=2, j=16, k=8, l=64} need_replication={j, k}>
  %3 = veomni.slice %x start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x16x64xf32>
  // CHECK: veomni.concat {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, k, j], [i, l, j]) -> ([i, m, j]) {i=2, j=64, k=16, l=4, m=20} need_replication={k, l, m}>
  %4 = veomni.concat %x, %y dim = 1 : tensor<2x16x64xf32>, tensor<2x4x64xf32>
  // CHECK: veomni.gather {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([k, l], [i, j]) -> ([i, j, l]) {i=2, j=16, k=1000, l=64} reduction={k}>
  %5 = veomni.gather %table[%ids] axis = 0 : tensor<1000x64xf32>, tensor<2x16xi32>
  // CHECK: veomni.scatter_add {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([k, l], [i, j], [i, j, l]) -> ([k, l]) {i=2, j=16, k=1000, l=64}>
  %6 = veomni.scatter_add %x into %table[%ids] axis = 0 : tensor<2x16x64xf32>, tensor<1000x64xf32>, tensor<2x16xi32>
  // CHECK: veomni.slice_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, k, l]) -> ([i, j, l]) {i=2, j=16, k=8, l=64} need_replication={j, k}>
  %7 = veomni.slice_grad %3 start = [0, 1, 0] limit = [2, 16, 64] step = [1, 2, 1] : tensor<2x8x64xf32> to tensor<2x16x64xf32>
  return
}
