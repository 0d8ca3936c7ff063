// RUN: veomni-opt %s | veomni-opt | FileCheck %s

// Kernels round-trip by their kernel-table mnemonic, with every attribute
// of their row.

// CHECK-LABEL: func.func @kernels
func.func @kernels(%x: memref<2x8xf32>, %w: memref<16x8xf32>,
                   %p: memref<1x2xi64>) -> memref<2x16xf32> {
  %y = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel matmul ins(%{{.*}}, %{{.*}} : memref<2x8xf32>, memref<16x8xf32>) outs(%{{.*}} : memref<2x16xf32>) {transpose_rhs}
  vrt.kernel matmul ins(%x, %w : memref<2x8xf32>, memref<16x8xf32>)
      outs(%y : memref<2x16xf32>) {transpose_rhs}
  %s = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel softmax {{.*}} {dim = 1 : i64}
  vrt.kernel softmax ins(%y : memref<2x16xf32>) outs(%s : memref<2x16xf32>)
      {dim = 1 : i64}
  %v = vrt.view %s : memref<2x16xf32> to memref<1x2x4x4xf32>
  %r = vrt.alloc : memref<1x2x4x4xf32>
  // CHECK: vrt.kernel rope_inverse {{.*}} {attention_scaling = 1.000000e+00 : f64, inv_freq = array<f64>, mrope_section = array<i64>, theta = 1.000000e+04 : f64}
  vrt.kernel rope_inverse ins(%v, %p : memref<1x2x4x4xf32>, memref<1x2xi64>)
      outs(%r : memref<1x2x4x4xf32>)
      {attention_scaling = 1.0 : f64, inv_freq = array<f64>,
       mrope_section = array<i64>, theta = 10000.0 : f64}
  %f = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel fill outs(%{{.*}} : memref<2x16xf32>) {value = 0.000000e+00 : f64}
  vrt.kernel fill outs(%f : memref<2x16xf32>) {value = 0.0 : f64}
  return %y : memref<2x16xf32>
}

// A kernel kind as an attribute of its own.
// CHECK-LABEL: func.func @kind
// CHECK-SAME: test.kind = #vrt.kernel<grouped_matmul_weight_grad>
func.func @kind() attributes {test.kind = #vrt.kernel<grouped_matmul_weight_grad>} {
  return
}
