// RUN: veomni-opt %s -split-input-file --veomni-propagate-sharding -verify-diagnostics

// Propagation needs the mesh veomni-apply-recipe declares.
// expected-error @+1 {{veomni-propagate-sharding: expected one dist.mesh in the module (veomni-apply-recipe declares it), found 0}}
module {
  func.func @no_mesh(%x: tensor<4xf32>) -> tensor<4xf32> {
    return %x : tensor<4xf32>
  }
}

// -----

// An op without a sharding rule is an error, not a silent replication.
dist.mesh @mesh = <["tp"=2]>
func.func @no_rule(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'dist.all_reduce' op has no sharding rule, so its results' layouts are unknown (give the op a rule, or mark it dist.replicated)}}
  %r = dist.all_reduce %x mesh = @mesh axes = ["tp"] : tensor<4xf32>
  return %r : tensor<4xf32>
}
