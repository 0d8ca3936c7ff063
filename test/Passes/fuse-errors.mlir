// RUN: veomni-opt %s -split-input-file --veomni-lower-to-vrt -verify-diagnostics

// Bodies the veomni.fused verifier accepts but no fused kernel can run:
// lowering says which op and why.

func.func @middle(%x: tensor<4xf32>, %y: tensor<2x4x3xf32>) -> tensor<2x4x3xf32> {
  // expected-error @+1 {{'veomni.fused' op input #0 'tensor<4xf32>' is not read elementwise, as a broadcast over leading or over trailing dimensions of the 24-element domain}}
  %r = veomni.fused(%x, %y) : (tensor<4xf32>, tensor<2x4x3xf32>) -> tensor<2x4x3xf32> {
  ^bb0(%a: tensor<4xf32>, %b: tensor<2x4x3xf32>):
    %c = veomni.broadcast %a dims = [1] : tensor<4xf32> to tensor<2x4x3xf32>
    %s = veomni.add %b, %c : tensor<2x4x3xf32>
    veomni.yield %s : tensor<2x4x3xf32>
  }
  return %r : tensor<2x4x3xf32>
}

// -----

func.func @leading(%x: tensor<4x8xf32>) -> tensor<8xf32> {
  %r = veomni.fused(%x) : (tensor<4x8xf32>) -> tensor<8xf32> {
  ^bb0(%a: tensor<4x8xf32>):
    // expected-error @+1 {{'veomni.reduce' op in a veomni.fused body must reduce trailing dimensions}}
    %s = veomni.reduce sum %a dims = [0] : tensor<4x8xf32>
    veomni.yield %s : tensor<8xf32>
  }
  return %r : tensor<8xf32>
}

// -----

func.func @read(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %r = veomni.fused(%x) : (tensor<4x8xf32>) -> tensor<4xf32> {
  ^bb0(%a: tensor<4x8xf32>):
    // expected-error @+1 {{'veomni.reduce' op in a veomni.fused body must be yielded, not read: its result leaves the iteration domain}}
    %s = veomni.reduce sum %a dims = [1] : tensor<4x8xf32>
    %e = veomni.exp %s : tensor<4xf32>
    veomni.yield %e : tensor<4xf32>
  }
  return %r : tensor<4xf32>
}
