// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Cross entropy: rows pass through (a mean is a sum of per-row parts), the
// vocabulary is internal (a split vocabulary combines its own maxima and
// sums).
// CHECK-LABEL: func.func @loss
func.func @loss(%logits: tensor<2x16x100xf32>, %labels: tensor<2x16xi64>, %dl: tensor<f32>) {
  // CHECK: veomni.cross_entropy {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, j]) -> ([]) {i=2, j=16, k=100} internal={k}>
  %0 = veomni.cross_entropy %logits, %labels : tensor<2x16x100xf32>, tensor<2x16xi64>
  // CHECK: veomni.cross_entropy {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, j]) -> ([i, j]) {i=2, j=16, k=100} internal={k}>
  %1 = veomni.cross_entropy %logits, %labels {reduction = #veomni<loss_reduction none>} : tensor<2x16x100xf32>, tensor<2x16xi64>
  // CHECK: veomni.cross_entropy_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k], [i, j], []) -> ([i, j, k]) {i=2, j=16, k=100} internal={k}>
  %2 = veomni.cross_entropy_grad %logits, %labels, %dl : tensor<2x16x100xf32>, tensor<2x16xi64>, tensor<f32>
  return
}
