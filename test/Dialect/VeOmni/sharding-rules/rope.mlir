// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Rope: batch, sequence and heads pass through; the rotated head dimension
// stays whole; positions follow batch and sequence.
// CHECK-LABEL: func.func @rope
func.func @rope(%q: tensor<2x16x8x64xbf16>, %pos: tensor<2x16xi32>, %mpos: tensor<3x2x16xi64>) {
  // CHECK: veomni.rope {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k, l], [i, j]) -> ([i, j, k, l]) {i=2, j=16, k=8, l=64} need_replication={l}>
  %0 = veomni.rope %q, %pos {theta = 1.0e6 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16xi32>
  // CHECK: veomni.rope {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k, l], [m, i, j]) -> ([i, j, k, l]) {i=2, j=16, k=8, l=64, m=3} need_replication={l, m}>
  %1 = veomni.rope %q, %mpos {theta = 1.0e4 : f64, mrope_section = array<i64: 8, 12, 12>} : tensor<2x16x8x64xbf16>, tensor<3x2x16xi64>
  // CHECK: veomni.rope {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k, l], [i, j]) -> ([i, j, k, l]) {i=2, j=16, k=8, l=64} need_replication={l}>
  %2 = veomni.rope %q, %pos {theta = 1.0e4 : f64, inverse} : tensor<2x16x8x64xbf16>, tensor<2x16xi32>
  return
}
