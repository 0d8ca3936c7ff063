// RUN: veomni-opt %s -split-input-file -verify-diagnostics

// veomni.fused: what its verifier refuses (test/Passes/fuse-errors.mlir:
// what lowering refuses in a body the verifier accepts).

func.func @args(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.fused' op body argument #0 is 'tensor<8xf32>', input 'tensor<4xf32>'}}
  %r = veomni.fused(%x) : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<8xf32>):
    %s = veomni.silu %a : tensor<8xf32>
    veomni.yield %s : tensor<8xf32>
  }
  return %r : tensor<4xf32>
}

// -----

func.func @yields(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.fused' op yields 'tensor<4xf32>', 'tensor<4xf32>' but returns 'tensor<4xf32>'}}
  %r = veomni.fused(%x) : (tensor<4xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4xf32>):
    veomni.yield %a, %a : tensor<4xf32>, tensor<4xf32>
  }
  return %r : tensor<4xf32>
}

// -----

func.func @matmul(%x: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %r = veomni.fused(%x) : (tensor<4x4xf32>) -> tensor<4x4xf32> {
  ^bb0(%a: tensor<4x4xf32>):
    // expected-error @+1 {{'veomni.matmul' op cannot be part of a veomni.fused body}}
    %m = veomni.matmul %a, %a : tensor<4x4xf32>, tensor<4x4xf32>
    veomni.yield %m : tensor<4x4xf32>
  }
  return %r : tensor<4x4xf32>
}
