// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// MoE: tokens pass through the router, its expert choice stays whole;
// dispatch sorts rows by expert, so its rows stay whole; combine sums each
// token's k copies.
// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<32x64xf32>, %router: tensor<32x8xf32>, %w: tensor<32x2xf32>, %i: tensor<32x2xi32>, %rows: tensor<64x64xf32>, %gout: tensor<32x64xf32>) {
  // CHECK: veomni.moe_topk {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j]) -> ([i, k], [i, k]) {i=32, j=8, k=2} need_replication={j, k}>
  %0:2 = veomni.moe_topk %router {k = 2, normalize} : tensor<32x8xf32>
  // CHECK: veomni.moe_dispatch {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j], [i, k]) -> ([i*k, j], [l]) {i=32, j=64, k=2, l=8} need_replication={k, l} per_shard={1}>
  %1:2 = veomni.moe_dispatch %x, %i {num_experts = 8} : tensor<32x64xf32>, tensor<32x2xi32>
  // CHECK: veomni.moe_combine {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i*k, j], [i, k], [i, k]) -> ([i, j]) {i=32, j=64, k=2} need_replication={k}>
  %2 = veomni.moe_combine %rows, %w, %i : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x2xi32>
  // CHECK: veomni.moe_topk_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j], [i, k]) -> ([i, j]) {i=32, j=8, k=2} need_replication={j, k}>
  %3 = veomni.moe_topk_grad %router, %w {k = 2, normalize} : tensor<32x8xf32>, tensor<32x2xf32>
  // CHECK: veomni.moe_combine_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i*k, j], [i, k], [i, k], [i, j]) -> ([i*k, j], [i, k]) {i=32, j=64, k=2} need_replication={k}>
  %4:2 = veomni.moe_combine_grad %rows, %w, %i grad %gout : tensor<64x64xf32>, tensor<32x2xf32>, tensor<32x2xi32>, tensor<32x64xf32>
  return
}
