// RUN: veomni-opt %s -split-input-file --veomni-lower-to-vrt -verify-diagnostics | FileCheck %s

// Every tensor becomes a buffer; ops become kernel calls writing into
// fresh allocs; a reshape is a view; constants are constant buffers.

// CHECK-LABEL: func.func @mlp
// CHECK-SAME: (%[[X:.*]]: memref<2x8xf32> {veomni.input = "x"}, %[[W:.*]]: memref<16x8xf32> {veomni.param = "w"}) -> memref<2x4x4xf32>
func.func @mlp(%x: tensor<2x8xf32> {veomni.input = "x"},
               %w: tensor<16x8xf32> {veomni.param = "w"}) -> tensor<2x4x4xf32> {
  // CHECK: %[[Y:.*]] = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel matmul ins(%[[X]], %[[W]] : memref<2x8xf32>, memref<16x8xf32>) outs(%[[Y]] : memref<2x16xf32>) {transpose_rhs}
  %y = veomni.matmul %x, %w {transpose_rhs} : tensor<2x8xf32>, tensor<16x8xf32>
  // A splat is filled at run time; other constants are stored.
  // CHECK: %[[C:.*]] = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel fill outs(%[[C]] : memref<2x16xf32>) {value = 2.000000e+00 : f64}
  %c = veomni.constant dense<2.0> : tensor<2x16xf32>
  // CHECK: %[[T:.*]] = vrt.constant dense<{{\[}}1.000000e+00, 2.000000e+00]> : tensor<2xf32> : memref<2xf32>
  %t = veomni.constant dense<[1.0, 2.0]> : tensor<2xf32>
  // CHECK: %[[M:.*]] = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel mul ins(%[[Y]], %[[C]] : memref<2x16xf32>, memref<2x16xf32>) outs(%[[M]] : memref<2x16xf32>)
  %m = veomni.mul %y, %c : tensor<2x16xf32>
  // CHECK: %[[S:.*]] = vrt.alloc : memref<2x16xf32>
  // CHECK: vrt.kernel gelu_tanh ins(%[[M]] : memref<2x16xf32>) outs(%[[S]] : memref<2x16xf32>){{$}}
  %s = veomni.gelu %m {approximation = #veomni<gelu_approximation tanh>} : tensor<2x16xf32>
  // CHECK: %[[V:.*]] = vrt.view %[[S]] : memref<2x16xf32> to memref<2x4x4xf32>
  // CHECK: return %[[V]] : memref<2x4x4xf32>
  %r = veomni.reshape %s : tensor<2x16xf32> to tensor<2x4x4xf32>
  return %r : tensor<2x4x4xf32>
}

// -----

// Ops with two results get two allocs.
// CHECK-LABEL: func.func @router
func.func @router(%l: tensor<4x8xf32>) -> tensor<4x2xf32> {
  // CHECK: %[[W:.*]] = vrt.alloc : memref<4x2xf32>
  // CHECK: %[[I:.*]] = vrt.alloc : memref<4x2xi32>
  // CHECK: vrt.kernel moe_topk ins(%{{.*}} : memref<4x8xf32>) outs(%[[W]], %[[I]] : memref<4x2xf32>, memref<4x2xi32>) {k = 2 : i64}
  %w, %i = veomni.moe_topk %l {k = 2} : tensor<4x8xf32>
  return %w : tensor<4x2xf32>
}

// -----

// An argument returned as it is gets copied into a buffer of the program.
// CHECK-LABEL: func.func @returns_argument
// CHECK-SAME: (%[[X:.*]]: memref<4xf32>)
func.func @returns_argument(%x: tensor<4xf32>) -> tensor<4xf32> {
  // CHECK: %[[B:.*]] = vrt.alloc : memref<4xf32>
  // CHECK: vrt.kernel copy ins(%[[X]] : memref<4xf32>) outs(%[[B]] : memref<4xf32>)
  // CHECK: return %[[B]]
  return %x : tensor<4xf32>
}

// -----

// Every attribute of the kernel's row is written out: the op's own, with
// enumerations as their numbers, or the row's default.
// CHECK-LABEL: func.func @table_attributes
func.func @table_attributes(%l: tensor<2x16x10xf32>, %y: tensor<2x16xi64>)
    -> (tensor<f32>, tensor<2x16xf32>) {
  // CHECK: vrt.kernel cross_entropy {{.*}} {ignore_index = -100 : i64, reduction = 0 : i64, token_group = -1 : i64, vocab_group = -1 : i64}
  %m = veomni.cross_entropy %l, %y : tensor<2x16x10xf32>, tensor<2x16xi64>
  // CHECK: vrt.kernel cross_entropy {{.*}} {ignore_index = -1 : i64, reduction = 2 : i64, token_group = -1 : i64, vocab_group = -1 : i64}
  %n = veomni.cross_entropy %l, %y {ignore_index = -1, reduction = #veomni<loss_reduction none>} : tensor<2x16x10xf32>, tensor<2x16xi64>
  return %m, %n : tensor<f32>, tensor<2x16xf32>
}

// -----

// Collectives become kernels on comm groups, which the module lists by
// their axes; a permute (no runtime kernel yet) keeps its buffers for
// memory planning as a vrt.collective, which translation refuses.
// CHECK-LABEL: module attributes {vrt.comm_groups = {{\[}}["tp"], ["dp", "tp"]]}
dist.mesh @mesh = <["dp"=2, "tp"=2]>
// CHECK-LABEL: func.func @collective
func.func @collective(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<16xf32>, tensor<4xf32>, tensor<4xf32>) {
  // CHECK: %[[E:.*]] = vrt.alloc : memref<4xf32>
  // CHECK: %[[R:.*]] = vrt.alloc : memref<4xf32>
  // CHECK: vrt.kernel all_reduce ins(%[[E]] : memref<4xf32>) outs(%[[R]] : memref<4xf32>) {group = 0 : i64}
  // CHECK: vrt.kernel all_gather {{.*}} {dim = 0 : i64, group = 1 : i64}
  // CHECK: vrt.kernel all_reduce {{.*}} {group = 0 : i64}
  // CHECK: vrt.collective "dist.permute"
  %e = veomni.exp %x : tensor<4xf32>
  %r = dist.all_reduce %e mesh = @mesh axes = ["tp"] : tensor<4xf32>
  %g = dist.all_gather %x mesh = @mesh axes = ["dp", "tp"] dim = 0 : tensor<4xf32> -> tensor<16xf32>
  %r2 = dist.all_reduce %x mesh = @mesh axes = ["tp"] : tensor<4xf32>
  %p = dist.permute %x mesh = @mesh axes = ["tp"] pairs = [0 -> 1, 1 -> 0] : tensor<4xf32>
  return %r, %g, %r2, %p : tensor<4xf32>, tensor<16xf32>, tensor<4xf32>, tensor<4xf32>
}

// -----

// A token-split cross entropy counts its tokens over a comm group; a
// vocab-split one combines its rows' statistics over another.
// CHECK-LABEL: module attributes {vrt.comm_groups = {{\[}}["dp"]]}
dist.mesh @mesh = <["dp"=2]>
// CHECK-LABEL: func.func @communicates_inside
func.func @communicates_inside(%l: tensor<2x4x8xf32>, %y: tensor<2x4xi32>) -> (tensor<f32>, tensor<f32>) {
  // CHECK: vrt.kernel cross_entropy {{.*}} {ignore_index = -100 : i64, reduction = 0 : i64, token_group = 0 : i64, vocab_group = -1 : i64}
  %c = veomni.cross_entropy %l, %y {dist.token_axes = ["dp"]} : tensor<2x4x8xf32>, tensor<2x4xi32>
  // CHECK: vrt.kernel cross_entropy {{.*}} {ignore_index = -100 : i64, reduction = 0 : i64, token_group = -1 : i64, vocab_group = 0 : i64}
  %v = veomni.cross_entropy %l, %y {dist.vocab_axes = ["dp"]} : tensor<2x4x8xf32>, tensor<2x4xi32>
  return %c, %v : tensor<f32>, tensor<f32>
}
