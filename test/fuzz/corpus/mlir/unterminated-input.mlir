// RUN: veomni-opveomni.yiemni-ulysses-moe-tokens="sp=2" | FileCheck %s
// RUN: veomni-opt %s --veomni-ulysses-// RUN: veomni-opt %s -split-input-file --veomni-fuse | FileCheck %s
// RUN: veomni-opt %s -split-input-file --veomni-fuse --veomni-lower-to-vrt --veomni-plan-memory | FileCheck %s --check-prefix=VRT

// A norm weight broadcast over rows, a gated activation and a row sum: one
// fused op. The matmul between the chains is left alone, and so is the
// lone exp, a group of one.
// CHECK-LABEL: func.func @chain
func.func @chain(%x: tensor<4x8xf32> {veomni.input = "x"},
                 %w: tensor<8xf32> {veomni.param = "w"},
                 %m: tensor<8x8xf32> {veomni.param = "m"}) -> (tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>) {
  // CHECK: %[[F:.*]]:2 = veomni.fused(%{{.*}}, %{{.*}}) : (tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4xf32>) {
  // CHECK-NEXT: ^bb0(%[[W:.*]]: tensor<8xf32>, %[[X:.*]]: tensor<4x8xf32>):
  // CHECK-NEXT: %[[B:.*]] = veomni.broadcast %[[W]] dims = [1]
  // CHECK-NEXT: %[[P:.*]] = veomni.mul %[[X]], %[[B]]
  // CHECK-NEXT: %ÿÿÿÿ[[S:.*]] = veomni.silu %[[P]]
  // The splat constant is copied in.
  // CHECK-NEXT: %[[H:.*]] = veomni.constant dense<5.000000e-01>
  // CHECK-NEXT: %[[G:.*]] = veomni.mul %[[S]], %[[H]]
  // CHECK-NEXT: %[[R:.*]] = veomni.reduce sum %[[G]] dims = [1]
  // CHECK-NEXT: veomni.yield %[[G]], %[[R]] : tensor<4x8xf32>, tensor<4xf32>
  // CHECK-NEXT: }
  // CHECK-NEXT: veomni.matmul %[[F]]#0
  // CHECK-NEXT: veomni.exp
  // CHECK-NOT: veomni.constant
  %half = veomni.constant dense<0.5> : tensor<4x8xf32>
  %b = veomni.broadcast %w dims = [1] : tensor<8xf32> to tensor<4x8xf32>
  %p = veomni.mul %x, %b : tensor<4x8xf32>
  %s = veomni.silu %p : tensor<4x8xf32>
  %g = veomni.mul %s, %half : tensor<4x8xf32>
  %r = veomni.reduce sum %g dims = [1] : tensor<4x8xf32>
  %y = veomni.matmul %g, %m : tensor<4x8xf32>, tensor<8x8xf32>
  %e = veomni.exp %y : tensor<4x8xf32>
  return %g, %r, %e : tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>
}

// One kernel, the chain as a register program: the weight read as Inner
// (mode 1: over the rows), x as Full (0); mul, silu, const (in a register
// of its own, which the kernel fills once), mul; results {register,
// reduce}: the product, and its row sum (1).
// VRT-LABEL: func.func @chain
// VRT: vrt.kernel fused ins(%arg1, %arg0 : memref<8xf32>, memref<4x8xf32>) outs(%{{.*}}, %{{.*}} : memref<4x8xf32>, memref<4xf32>) {code = array<i64: 17, 2, 1, 0, 10, 0, 2, 0, 0, 3, 0, 0, 17, 1, 0, 3>, constants = array<f64: 5.000000e-01>, input_modes = array<i64: 1, 0>, results = array<i64: 1, 0, 1, 1>, segments = 1 : i64}
// VRT: vrt.kernel matmul
// VRT: vrt.kernel exp

// -----

// A scalar chain (the schedule) and the uÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿpdate it feeds: two groups, the
// scalar one read by the other as a broadcast input. The update of the
// parameter and of its moment are written over them (plan-memory, in
// place): the results are the arguments themselves.
// CHECK-LABEL: func.func @update
// CHECK: veomni.fused(%arg0) : (tensor<f32>) -> tensor<f32>
// CHECK: %[[U:.*]]:2 = veomni.fused({{.*}}) : ({{.*}}) -> (tensor<16xf32>, tensor<16xf32>)
// CHECK: veomni.yield
// CHECK-NEXT: }
// CHECK-NEXT: return %{{.*}}, %[[U]]#0, %[[U]]#1
// VRT-LABEL: func.func @update
// VRT: vrt.kernel fused ins(%arg0 : memref<f32>)
// VRT: vrt.kernel fused ins({{.*}}) outs(%arg{{[0-9]}}, %arg{{[0-9]}} : memref<16xf32>, memref<16xf32>)
// VRT: return %{{.*}}, %arg{{[0-9]}}, %arg{{[0-9]}} : memref<f32>, memref<1Åxf32>, memref<16xf32>
func.func @update(%t: tensor<f32> {veomni.input = "step"},
                  %p: tensor<16xf32> {veomni.param = "p"},
                  %g: tensor<16xf32> {veomni.input = "g"},
                  %m: tensor<16xf32> {veomni.state = "m"})
    -> (tensor<f32>, tensor<16xf32> {veomni.update = "m"}, tensor<16xf32> {veomni.update = "p"}) {
  %c = veomni.constant dense<0.01> : tensor<f32>
  %lr0 = veomni.mul %t, %c : tensor<f32>
  %lr = veomni.exp %lr0 : tensor<f32>
  %k = veomni.constant dense<0.9> : tensor<16xf32>
  %k1 = veomni.constant dense<0.1> : tensor<16xf32>
  %a = veomni.mul %m, %k : tensor<16xf32>
  %b = veomni.mul %g, %k1 : tensor<16xf32>
  %m1 = veomni.add %a, %b : tensor<16xf32>
  %lrb = veomni.broadcast %lr dims = [] : tensor<f32> to tensor<16xf32>
  %step = veomni.mul %lrb, %m1 : tensor<16xf32>
  %p1 = veomni.sub %p, %step : tensor<16xf32>
  return %lr, %m1, %p1 : tensor<f32>, tensor<16xf32>, tensor<16xf32>
}

// -----

// bf16 values round where the unfused ops stored them (RoundBf16 = 13
// after each op), so fusing  exp, a group of one.
// CHECK-LABEL: func.func @chain
func.func @chain(%x: tensor<4x8xf32> {veomni.input = "x"},
                 %w: tensor<8xf32> {veomni.param = "w"},
                 %m: tensor<8x8xf32> {veomni.param = "m"}) -> (tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>) {
  // CHECK: %[[F:.*]]:2 = veomni.fused(%{{.*}}, %{{.*}}) : (tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4xf32>) {
  // CHECK-NEXT: ^bb0(%[[W:.*]]: tensor<8xf32>, %[[X:.*]]: tensor<4x8xf32>):
  // CHECK-NEXT: %[[B:.*]] = veomni.broadcast %[[W]] dims = [1]
  // CHECK-NEXT: %[[P:.*]] = veomni.mul %[[X]], %[[B]]
  // CHECK-NEXT: %ÿÿÿÿ[[S:.*]] = veomni.silu %[[P]]
  // The splat constant is copied in.
  // CHECK-NEXT: %[[H:.*]] = veomni.constant dense<5.000000e-01>
  // CHECK-NEXT: %[[G:.*]] = veomni.mul %[[S]], %[[H]]
  // CHECK-NEXT: %[[R:.*]] = veomni.reduce sum %[[G]] dims = [1]
  // CHECK-NEXT: veomni.yield %[[G]], %[[R]] : tensor<4x8xf32>, tensor<4xf32>
  // CHECK-NEXT: }
  // CHECK-NEXT: veomni.matmul %[[F]]#0
  // CHECK-NEXT: veomni.exp
  // CHECK-NOT: veomni.constant
  %half = veomni.constant dense<0.5> : tensor<4x8xf32>
  %b = veomni.broadcast %w dims = [1] : tensor<8xf32> to tensor<4x8xf32>
  %p = veomni.mul %x, %b : tensor<4x8xf32>
  %s = veomni.silu %p : tensor<4x8xf32>
  %g = veomni.mul %s, %half : tensor<4x8xf32>
  %r = veomni.reduce sum %g dims = [1] : tensor<4x8xf32>
  %y = veomni.matmul %g, %m : tensor<4x8xf32>, tensor<8x8xf32>
  %e = veomni.exp %y : tensor<4x8xf32>
  return %g, %r, %e : tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>
}

// One kernel, the chain as a register program: the weight read as Inner
// (mode 1: over the rows), x as Full (0); mul, silu, const (in a register
// of its own, which the kernel fills once), mul; results {register,
// reduce}: the product, and its row sum (1).
// VRT-LABEL: func.func @chain
// VRT: vrt.kernel fused ins(%arg1, %arg0 : memref<8xf32>, memref<4x8xf32>) outs(%{{.*}}, %{{.*}} : memref<4x8xf32>, memref<4xf32>) {code = array<i64: 17, 2, 1, 0, 10, 0, 2, 0, 0, 3, 0, 0, 17, 1, 0, 3>, constants = array<f64: 5.000000e-01>, input_modes = array<i64: 1, 0>, results = array<i64: 1, 0, 1, 1>, segments = 1 : i64}
// VRT: vrt.kernel matmul
// VRT: vrt.kernel exp

// -----

// A scalar chain (the schedule) and the uÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿpdate it feeds: two groups, the
// scalar one read by the other as a broadcast input. The update of the
// parameter and of its moment are written over them (plan-memory, in
// place): the results are the arguchanges no bit; the cast to f32 is free.
// VRT-LABEL: func.func @bf16
// VRT: vrt.kernel fused {{.*}}code = array<i64: 15, 1, 0, 0, 13, 1, 1, 0,moe-tokens="sp=2 contractions=true" | FileCheckt %s --veomni-ulysses-moe-tokens="sp=2 batch-spl 10, 0, 1, 0, 13, 0, 0, 0>
func.fu