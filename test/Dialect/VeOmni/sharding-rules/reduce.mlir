// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Reductions: reduced dimensions are reductions (partial sums, or maxima
// that must stay whole), kept ones pass through.
// CHECK-LABEL: func.func @reduce
func.func @reduce(%x: tensor<2x16x64xf32>, %mg: tensor<2x64xf32>) {
  // CHECK: veomni.reduce {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k]) -> ([i, 1, k]) {i=2, j=16, k=64} reduction={j}>
  %0 = veomni.reduce sum %x dims = [1] keep_dims : tensor<2x16x64xf32>
  // CHECK: veomni.reduce {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k]) -> ([j]) {i=2, j=16, k=64} need_replication={i, k}>
  %1 = veomni.reduce max %x dims = [0, 2] : tensor<2x16x64xf32>
  // CHECK: veomni.reduce {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k]) -> ([i, j]) {i=2, j=16, k=64} need_replication={k}>
  %2 = veomni.reduce mean %x dims = [2] : tensor<2x16x64xf32>
  // CHECK: veomni.reduce_max_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, k]) -> ([i, j, k]) {i=2, j=16, k=64} need_replication={j}>
  %3 = veomni.reduce_max_grad %x, %mg dims = [1] : tensor<2x16x64xf32>, tensor<2x64xf32>
  return
}
