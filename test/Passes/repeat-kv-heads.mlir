// RUN: veomni-opt %s --veomni-repeat-kv-heads=sp=4 | FileCheck %s

// 2 kv heads and sp 4: each kv head is repeated twice, so query head h
// (group of 2) reads copy h / 1 of kv head h / 2, and the heads split 4
// ways.
// CHECK-LABEL: func.func @gqa
func.func @gqa(%q: tensor<1x8x4x16xf32>, %k: tensor<1x8x2x16xf32>, %v: tensor<1x8x2x16xf32>) -> tensor<1x8x4x16xf32> {
  // CHECK: %[[K1:.*]] = veomni.reshape %{{.*}} : tensor<1x8x2x16xf32> to tensor<1x8x2x1x16xf32>
  // CHECK: %[[K2:.*]] = veomni.broadcast %[[K1]] dims = [0, 1, 2, 3, 4] : tensor<1x8x2x1x16xf32> to tensor<1x8x2x2x16xf32>
  // CHECK: %[[K:.*]] = veomni.reshape %[[K2]] : tensor<1x8x2x2x16xf32> to tensor<1x8x4x16xf32>
  // CHECK: veomni.attention %{{.*}}, %[[K]], %{{.*}} {causal, scale = 2.500000e-01 : f64} : tensor<1x8x4x16xf32>, tensor<1x8x4x16xf32>, tensor<1x8x4x16xf32>
  %o = veomni.attention %q, %k, %v {causal, scale = 0.25} : tensor<1x8x4x16xf32>, tensor<1x8x2x16xf32>, tensor<1x8x2x16xf32>
  return %o : tensor<1x8x4x16xf32>
}

// Where sp does not divide the query heads, or the kv heads suffice, the
// attention is left alone.
// CHECK-LABEL: func.func @enough_heads
func.func @enough_heads(%q: tensor<1x8x8x16xf32>, %k: tensor<1x8x4x16xf32>) -> tensor<1x8x8x16xf32> {
  // CHECK-NOT: veomni.broadcast
  // CHECK: veomni.attention %{{.*}}, %{{.*}}, %{{.*}} {scale = 2.500000e-01 : f64} : tensor<1x8x8x16xf32>, tensor<1x8x4x16xf32>, tensor<1x8x4x16xf32>
  %o = veomni.attention %q, %k, %k {scale = 0.25} : tensor<1x8x8x16xf32>, tensor<1x8x4x16xf32>, tensor<1x8x4x16xf32>
  return %o : tensor<1x8x8x16xf32>
}
