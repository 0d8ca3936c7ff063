// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Norms: the normalised (last) dimension must stay whole; the others pass
// through. Weight gradients sum over the rows, which are reductions there.
// CHECK-LABEL: func.func @norms
func.func @norms(%x: tensor<2x16x64xf32>, %w: tensor<64xf32>, %b: tensor<64xf32>) {
  // CHECK: veomni.rms_norm {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [k]) -> ([i, j, k]) {i=2, j=16, k=64} need_replication={k}>
  %0 = veomni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // CHECK: veomni.layer_norm {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [k], [k]) -> ([i, j, k]) {i=2, j=16, k=64} need_replication={k}>
  %1 = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  // CHECK: veomni.rms_norm_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [k], [i, j, k]) -> ([i, j, k], [k]) {i=2, j=16, k=64} need_replication={k}>
  %2:2 = veomni.rms_norm_grad %x, %w, %x {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>
  // CHECK: veomni.layer_norm_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [k], [k], [i, j, k]) -> ([i, j, k], [k], [k]) {i=2, j=16, k=64} need_replication={k}>
  %3:3 = veomni.layer_norm_grad %x, %w, %w grad %x {epsilon = 1.0e-5 : f64} : tensor<2x16x64xf32>, tensor<64xf32>, tensor<64xf32>
  return
}
