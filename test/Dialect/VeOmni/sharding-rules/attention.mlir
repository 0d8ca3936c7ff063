// RUN: veomni-opt %s --veomni-print-sharding-rules | FileCheck %s

// Attention: batch and heads pass through (query heads as kv heads times
// their group); the key sequence and the head dimension stay whole, and a
// split query sequence moves onto the heads (Ulysses).
// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<2x16x8x64xbf16>, %k: tensor<2x16x2x64xbf16>, %v: tensor<2x16x2x64xbf16>, %seg: tensor<2x16xi32>, %sinks: tensor<8xbf16>, %blocks: tensor<2x2x16xi32>) {
  // CHECK: veomni.attention {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], [i, k, l, o]) -> ([i, j, l*m, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=64} need_replication={j, k, n} relocate={j->l, j->m, k->l}>
  %0 = veomni.attention %q, %k, %v {causal, scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>
  // CHECK: veomni.attention {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], [i, k, l, o], [i, j]) -> ([i, j, l*m, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=64} need_replication={j, k, n} relocate={j->l, j->m, k->l}>
  %1 = veomni.attention %q, %k, %v segments %seg {scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16xi32>
  // Sinks are per query head; their cotangent sums over batch and sequence.
  // CHECK: veomni.attention {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], [i, k, l, o], [l*m]) -> ([i, j, l*m, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=64} need_replication={j, k, n} relocate={j->l, j->m, k->l}>
  %3 = veomni.attention %q, %k, %v sinks %sinks {causal, scale = 0.125 : f64, window = 4 : i64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16> sinks tensor<8xbf16>
  // CHECK: veomni.attention_grad {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], [i, k, l, o], [l*m], [i, j, l*m, o]) -> ([i, j, l*m, n], [i, k, l, n], [i, k, l, o], [l*m]) {i=2, j=16, k=16, l=2, m=4, n=64, o=64} need_replication={j, k, n} relocate={j->l, j->m, k->l}>
  %dq, %dk, %dv, %ds = veomni.attention_grad %q, %k, %v sinks %sinks grad %0 {causal, scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x8x64xbf16> sinks tensor<8xbf16>
  // Segments with bidirectional blocks [2, B, S]: the plane stays whole.
  // CHECK: veomni.attention {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, l*m, n], [i, k, l, n], [i, k, l, o], [p, i, j]) -> ([i, j, l*m, o]) {i=2, j=16, k=16, l=2, m=4, n=64, o=64, p=2} need_replication={j, k, n, p} relocate={j->l, j->m, k->l}>
  %4 = veomni.attention %q, %k, %v segments %blocks {causal, scale = 0.125 : f64} : tensor<2x16x8x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x16x2x64xbf16>, tensor<2x2x16xi32>
  // CHECK: veomni.softmax {{.*}}veomni.sharding_rule = #veomni.sharding_rule<([i, j, k, l]) -> ([i, j, k, l]) {i=2, j=16, k=8, l=64} need_replication={l}>
  %2 = veomni.softmax %0 dim = 3 : tensor<2x16x8x64xbf16>
  return
}
