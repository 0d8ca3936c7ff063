// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Elementwise ops and casts: every dimension passes through.
// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<4x8xf16>, %b: tensor<4x8xf16>, %x: tensor<2x16x64xf32>) {
  // CHECK: veomni.add {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j], [i, j]) -> ([i, j]) {i=4, j=8}>
  %0 = veomni.add %a, %b : tensor<4x8xf16>
  // CHECK: veomni.exp {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j]) -> ([i, j]) {i=4, j=8}>
  %1 = veomni.exp %0 : tensor<4x8xf16>
  // CHECK: veomni.cast {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j]) -> ([i, j]) {i=4, j=8}>
  %2 = veomni.cast %1 : tensor<4x8xf16> to tensor<4x8xf32>
  // CHECK: veomni.gelu_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, j, k]) -> ([i, j, k]) {i=2, j=16, k=64}>
  %3 = veomni.gelu_grad %x, %x {approximation = #veomni<gelu_approximation tanh>} : tensor<2x16x64xf32>
  return
}
