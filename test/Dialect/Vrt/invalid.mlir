// RUN: veomni-opt %s -split-input-file -verify-diagnostics

// vrt.kernel is checked against its row of runtime/program/KernelTable.def.

func.func @unknown(%x: memref<4xf32>) {
  // expected-error @+1 {{no kernel 'frobnicate' in the kernel table}}
  vrt.kernel frobnicate ins(%x : memref<4xf32>) outs(%x : memref<4xf32>)
  return
}

// -----

func.func @inputs(%x: memref<4xf32>) {
  // expected-error @+1 {{'add' takes 2 inputs, not 1}}
  vrt.kernel add ins(%x : memref<4xf32>) outs(%x : memref<4xf32>)
  return
}

// -----

func.func @optional_input(%x: memref<2x4xf32>, %w: memref<4xf32>) {
  // expected-error @+1 {{'layer_norm' takes 2 to 3 inputs, not 4}}
  vrt.kernel layer_norm ins(%x, %w, %w, %w : memref<2x4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>) outs(%x : memref<2x4xf32>) {epsilon = 1.0e-5 : f64}
  return
}

// -----

func.func @outputs(%x: memref<4x8xf32>) {
  // expected-error @+1 {{'moe_topk' takes 2 outputs, not 1}}
  vrt.kernel moe_topk ins(%x : memref<4x8xf32>) outs(%x : memref<4x8xf32>) {k = 2 : i64}
  return
}

// -----

func.func @missing_attribute(%x: memref<2x4xf32>) {
  // expected-error @+1 {{'softmax' needs 'dim' as an integer}}
  vrt.kernel softmax ins(%x : memref<2x4xf32>) outs(%x : memref<2x4xf32>)
  return
}

// -----

func.func @attribute_type(%x: memref<2x4xf32>) {
  // expected-error @+1 {{'reduce_sum' needs 'dims' as an array<i64>}}
  vrt.kernel reduce_sum ins(%x : memref<2x4xf32>) outs(%x : memref<2x4xf32>) {dims = 1 : i64}
  return
}

// -----

func.func @unknown_attribute(%x: memref<4xf32>) {
  // expected-error @+1 {{'exp' has no attribute 'approximation'}}
  vrt.kernel exp ins(%x : memref<4xf32>) outs(%x : memref<4xf32>) {approximation = 1 : i64}
  return
}
