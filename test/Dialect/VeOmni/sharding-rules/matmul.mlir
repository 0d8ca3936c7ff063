// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Matmuls: batch and free dimensions pass through, the contraction is a
// reduction (its split leaves partial sums); a grouped matmul's experts are
// an expert factor and its group sizes stay whole.
// CHECK-LABEL: func.func @matmul
func.func @matmul(%x: tensor<2x16x64xf32>, %w: tensor<128x64xf32>, %b: tensor<2x64x32xf32>, %xt: tensor<2x64x16xf32>) {
  // CHECK: veomni.matmul {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [l, k]) -> ([i, j, l]) {i=2, j=16, k=64, l=128} reduction={k}>
  %0 = veomni.matmul %x, %w {transpose_rhs} : tensor<2x16x64xf32>, tensor<128x64xf32>
  // CHECK: veomni.matmul {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, k, l]) -> ([i, j, l]) {i=2, j=16, k=64, l=32} reduction={k}>
  %1 = veomni.matmul %x, %b : tensor<2x16x64xf32>, tensor<2x64x32xf32>
  // CHECK: veomni.matmul {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, k, j], [i, k, l]) -> ([i, j, l]) {i=2, j=16, k=64, l=32} reduction={k}>
  %2 = veomni.matmul %xt, %b {transpose_lhs} : tensor<2x64x16xf32>, tensor<2x64x32xf32>
  return
}
// CHECK-LABEL: func.func @grouped
func.func @grouped(%x: tensor<12x64xbf16>, %w: tensor<4x32x64xbf16>, %g: tensor<4xi32>, %gg: tensor<12x32xbf16>) {
  // CHECK: veomni.grouped_matmul {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([j, k], [i, l, k], [m]) -> ([j, l]) {i=4, j=12, k=64, l=32, m=4} reduction={k} need_replication={m} expert={i}>
  %0 = veomni.grouped_matmul %x, %w, %g {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>
  // CHECK: veomni.grouped_matmul_weight_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([j, k], [i, l, k], [m], [j, l]) -> ([i, l, k]) {i=4, j=12, k=64, l=32, m=4} reduction={j} need_replication={m} expert={i} type_only={1}>
  %1 = veomni.grouped_matmul_weight_grad %x, %w, %g grad %gg {transpose_weight} : tensor<12x64xbf16>, tensor<4x32x64xbf16>, tensor<4xi32>, tensor<12x32xbf16>
  return
}
