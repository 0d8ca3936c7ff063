// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// conv1d: batch and output channels pass through, input channels are a
// reduction, the time axis and the kernel stay whole.
// CHECK-LABEL: func.func @conv1d
func.func @conv1d(%x: tensor<2x8x30xf32>, %w: tensor<4x8x3xf32>, %g: tensor<2x4x15xf32>) {
  // CHECK: veomni.conv1d {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l], [k, j, m]) -> ([i, k, n]) {i=2, j=8, k=4, l=30, m=3, n=15} reduction={j} need_replication={l, m, n}>
  %0 = veomni.conv1d %x, %w {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>
  // CHECK: veomni.conv1d_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l], [k, j, m], [i, k, n]) -> ([i, j, l], [k, j, m]) {i=2, j=8, k=4, l=30, m=3, n=15} reduction={j} need_replication={l, m, n}>
  %1:2 = veomni.conv1d_grad %x, %w grad %g {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>
  return
}

// With a bias the input channels stay whole: split, each rank's partial sum
// would carry the whole bias (and a bias cotangent, which does not involve
// them, would read as partial sums).
// CHECK-LABEL: func.func @conv1d_bias
func.func @conv1d_bias(%x: tensor<2x8x30xf32>, %w: tensor<4x8x3xf32>, %b: tensor<4xf32>, %g: tensor<2x4x15xf32>) {
  // CHECK: veomni.conv1d {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l], [k, j, m], [k]) -> ([i, k, n]) {i=2, j=8, k=4, l=30, m=3, n=15} need_replication={j, l, m, n}>
  %0 = veomni.conv1d %x, %w, %b {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<4xf32>
  // CHECK: veomni.conv1d_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l], [k, j, m], [k], [i, k, n]) -> ([i, j, l], [k, j, m], [k]) {i=2, j=8, k=4, l=30, m=3, n=15} need_replication={j, l, m, n}>
  %1:3 = veomni.conv1d_grad %x, %w, %b grad %g {stride = 2, padding = 1} : tensor<2x8x30xf32>, tensor<4x8x3xf32>, tensor<2x4x15xf32>, tensor<4xf32>
  return
}
