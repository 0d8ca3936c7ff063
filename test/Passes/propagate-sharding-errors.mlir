// RUN: veomni-opt %s -split-input-file --veomni-propagate-sharding -verify-diagnostics

// Propagation needs the mesh veomni-apply-recipe declares.
// expected-error @+1 {{veomni-propagate-sharding: expected one dist.mesh in the module (veomni-apply-recipe declares it), found 0}}
module {
  func.func @no_mesh(%x: tensor<4xf32>) -> tensor<4xf32> {
    return %x : tensor<4xf32>
  }
}
