// RUN: veomni-opt %s -split-input-file --veomni-lower-to-vrt --veomni-plan-memory | FileCheck %s
// RUN: veomni-opt %s -split-input-file --veomni-lower-to-vrt --veomni-plan-memory=in-place=false | FileCheck %s --check-prefix=NOINPLACE

// Arguments first (64-byte aligned), then buffers whose lifetimes do not
// overlap share bytes.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: %{{.*}}: memref<64xf32> {veomni.input = "x", vrt.offset = 0 : i64}
// CHECK-SAME: %{{.*}}: memref<64xf32> {veomni.param = "w", vrt.offset = 256 : i64}
// CHECK-SAME: vrt.activation_bytes = 512 : i64, vrt.arena_bytes = 1024 : i64
func.func @chain(%x: tensor<64xf32> {veomni.input = "x"},
                 %w: tensor<64xf32> {veomni.param = "w"}) -> tensor<64xf32> {
  // a = x * w; b = exp(a) in place; c = b * x in place of b: one buffer...
  // CHECK: %[[A:.*]] = vrt.alloc {offset = 512 : i64} : memref<64xf32>
  // CHECK: vrt.kernel mul ins(%arg0, %arg1 : {{.*}}) outs(%[[A]] :
  // CHECK: vrt.kernel exp ins(%[[A]] : memref<64xf32>) outs(%[[A]] :
  // CHECK: vrt.kernel mul ins(%[[A]], %arg0 : {{.*}}) outs(%[[A]] :
  // ... then d = softmax(c) cannot run in place and takes the second buffer.
  // CHECK: %[[D:.*]] = vrt.alloc {offset = 768 : i64} : memref<64xf32>
  // CHECK: vrt.kernel softmax ins(%[[A]] : memref<64xf32>) outs(%[[D]] :
  // CHECK: return %[[D]]
  // Without in-place updates: four buffers, alternating between two slots.
  // NOINPLACE-LABEL: func.func @chain
  // NOINPLACE-SAME: vrt.activation_bytes = 512 : i64
  // NOINPLACE: vrt.alloc {offset = 512 : i64}
  // NOINPLACE: vrt.alloc {offset = 768 : i64}
  // NOINPLACE: vrt.alloc {offset = 512 : i64}
  // NOINPLACE: vrt.alloc {offset = 768 : i64}
  %a = veomni.mul %x, %w : tensor<64xf32>
  %b = veomni.exp %a : tensor<64xf32>
  %c = veomni.mul %b, %x : tensor<64xf32>
  %d = veomni.softmax %c dim = 0 : tensor<64xf32>
  return %d : tensor<64xf32>
}

// -----

// A buffer still read later (through a view) is not reused while alive:
// tanh cannot write over `a`, which add reads; add, where `a` dies, may.
// CHECK-LABEL: func.func @live_ranges
// CHECK-SAME: vrt.activation_bytes = 512 : i64
func.func @live_ranges(%x: tensor<4x16xf32> {veomni.input = "x"}) -> tensor<4x16xf32> {
  // CHECK: %[[A:.*]] = vrt.alloc {offset = 256 : i64} : memref<4x16xf32>
  // CHECK: vrt.kernel exp ins(%arg0 {{.*}} outs(%[[A]]
  // CHECK: %[[V:.*]] = vrt.view %[[A]]
  // CHECK: %[[B:.*]] = vrt.alloc {offset = 512 : i64} : memref<64xf32>
  // CHECK: vrt.kernel tanh ins(%[[V]] {{.*}} outs(%[[B]]
  // CHECK: %[[BV:.*]] = vrt.view %[[B]]
  // CHECK: vrt.kernel add ins(%[[A]], %[[BV]] {{.*}} outs(%[[A]]
  // CHECK: return %[[A]]
  %a = veomni.exp %x : tensor<4x16xf32>
  %v = veomni.reshape %a : tensor<4x16xf32> to tensor<64xf32>
  %b = veomni.tanh %v : tensor<64xf32>
  %bv = veomni.reshape %b : tensor<64xf32> to tensor<4x16xf32>
  %c = veomni.add %a, %bv : tensor<4x16xf32>
  return %c : tensor<4x16xf32>
}
