// RUN: veomni-opt %s -split-input-file -canonicalize | FileCheck %s

// CHECK-LABEL: func.func @matmul_absorbs_transposes
// CHECK-SAME: (%[[X:.*]]: tensor<2x64x16xf32>, %[[W:.*]]: tensor<128x64xf32>)
func.func @matmul_absorbs_transposes(%x: tensor<2x64x16xf32>, %w: tensor<128x64xf32>) -> tensor<2x16x128xf32> {
  // CHECK-NOT: veomni.transpose
  // CHECK: %[[Y:.*]] = veomni.matmul %[[X]], %[[W]] {transpose_lhs, transpose_rhs} : tensor<2x64x16xf32>, tensor<128x64xf32>
  // CHECK: return %[[Y]]
  %xt = veomni.transpose %x perm = [0, 2, 1] : tensor<2x64x16xf32>
  %wt = veomni.transpose %w perm = [1, 0] : tensor<128x64xf32>
  %y = veomni.matmul %xt, %wt : tensor<2x16x64xf32>, tensor<64x128xf32>
  return %y : tensor<2x16x128xf32>
}

// -----

// A transpose of batch dimensions is not a matmul flag: it stays.
// CHECK-LABEL: func.func @matmul_keeps_batch_transpose
func.func @matmul_keeps_batch_transpose(%x: tensor<4x2x16x64xf32>, %w: tensor<64x8xf32>) -> tensor<2x4x16x8xf32> {
  // CHECK: veomni.transpose
  // CHECK: veomni.matmul %{{.*}}, %{{.*}} : tensor<2x4x16x64xf32>, tensor<64x8xf32>
  %xt = veomni.transpose %x perm = [1, 0, 2, 3] : tensor<4x2x16x64xf32>
  %y = veomni.matmul %xt, %w : tensor<2x4x16x64xf32>, tensor<64x8xf32>
  return %y : tensor<2x4x16x8xf32>
}

// -----

// CHECK-LABEL: func.func @identities
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>)
func.func @identities(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %zero = veomni.constant dense<0.0> : tensor<4x8xf32>
  %one = veomni.constant dense<1.0> : tensor<4x8xf32>
  %a = veomni.add %x, %zero : tensor<4x8xf32>
  %b = veomni.add %zero, %x : tensor<4x8xf32>
  %c = veomni.sub %x, %zero : tensor<4x8xf32>
  %d = veomni.mul %one, %x : tensor<4x8xf32>
  %e = veomni.div %x, %one : tensor<4x8xf32>
  // CHECK-NOT: veomni.
  // CHECK: return %[[X]], %[[X]], %[[X]], %[[X]], %[[X]]
  return %a, %b, %c, %d, %e : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// Not identities: x - 0 is, 0 - x is not; x * 2 is not.
// CHECK-LABEL: func.func @not_identities
func.func @not_identities(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %zero = veomni.constant dense<0.0> : tensor<4x8xf32>
  %two = veomni.constant dense<2.0> : tensor<4x8xf32>
  // CHECK: veomni.sub
  // CHECK: veomni.mul
  %a = veomni.sub %zero, %x : tensor<4x8xf32>
  %b = veomni.mul %x, %two : tensor<4x8xf32>
  return %a, %b : tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func.func @double_negation
// CHECK-SAME: (%[[X:.*]]: tensor<4xbf16>)
func.func @double_negation(%x: tensor<4xbf16>) -> tensor<4xbf16> {
  // CHECK-NEXT: return %[[X]]
  %a = veomni.neg %x : tensor<4xbf16>
  %b = veomni.neg %a : tensor<4xbf16>
  return %b : tensor<4xbf16>
}

// -----

// CHECK-LABEL: func.func @shape_ops
// CHECK-SAME: (%[[X:.*]]: tensor<2x3x4xf32>)
func.func @shape_ops(%x: tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>) {
  %r = veomni.reshape %x : tensor<2x3x4xf32> to tensor<2x3x4xf32>
  %t = veomni.transpose %x perm = [0, 1, 2] : tensor<2x3x4xf32>
  %s = veomni.slice %x start = [0, 0, 0] limit = [2, 3, 4] step = [1, 1, 1] : tensor<2x3x4xf32>
  %c = veomni.concat %x dim = 1 : tensor<2x3x4xf32>
  %k = veomni.cast %x : tensor<2x3x4xf32> to tensor<2x3x4xf32>
  %b = veomni.broadcast %x dims = [0, 1, 2] : tensor<2x3x4xf32> to tensor<2x3x4xf32>
  // CHECK-NEXT: return %[[X]], %[[X]], %[[X]], %[[X]], %[[X]], %[[X]]
  return %r, %t, %s, %c, %k, %b : tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>
}

// -----

// CHECK-LABEL: func.func @compose_reshapes_and_transposes
// CHECK-SAME: (%[[X:.*]]: tensor<2x3x4xf32>)
func.func @compose_reshapes_and_transposes(%x: tensor<2x3x4xf32>) -> (tensor<24xf32>, tensor<3x4x2xf32>, tensor<2x3x4xf32>) {
  // CHECK-DAG: %[[R:.*]] = veomni.reshape %[[X]] : tensor<2x3x4xf32> to tensor<24xf32>
  %r1 = veomni.reshape %x : tensor<2x3x4xf32> to tensor<6x4xf32>
  %r2 = veomni.reshape %r1 : tensor<6x4xf32> to tensor<24xf32>
  // CHECK-DAG: %[[T:.*]] = veomni.transpose %[[X]] perm = [1, 2, 0] : tensor<2x3x4xf32>
  %t1 = veomni.transpose %x perm = [1, 0, 2] : tensor<2x3x4xf32>
  %t2 = veomni.transpose %t1 perm = [0, 2, 1] : tensor<3x2x4xf32>
  // A transpose undone by another is the input.
  %u1 = veomni.transpose %x perm = [2, 0, 1] : tensor<2x3x4xf32>
  %u2 = veomni.transpose %u1 perm = [1, 2, 0] : tensor<4x2x3xf32>
  // CHECK: return %[[R]], %[[T]], %[[X]]
  return %r2, %t2, %u2 : tensor<24xf32>, tensor<3x4x2xf32>, tensor<2x3x4xf32>
}

// -----

// Constants fold through reshape and broadcast.
// CHECK-LABEL: func.func @constant_folding
func.func @constant_folding() -> (tensor<2x2xf32>, tensor<4x8xf32>) {
  // CHECK-DAG: %[[A:.*]] = veomni.constant dense<{{\[}}[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
  // CHECK-DAG: %[[B:.*]] = veomni.constant dense<5.000000e-01> : tensor<4x8xf32>
  // CHECK-NOT: veomni.reshape
  // CHECK-NOT: veomni.broadcast
  // CHECK: return %[[A]], %[[B]]
  %c = veomni.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %r = veomni.reshape %c : tensor<4xf32> to tensor<2x2xf32>
  %h = veomni.constant dense<0.5> : tensor<8xf32>
  %b = veomni.broadcast %h dims = [1] : tensor<8xf32> to tensor<4x8xf32>
  return %r, %b : tensor<2x2xf32>, tensor<4x8xf32>
}
