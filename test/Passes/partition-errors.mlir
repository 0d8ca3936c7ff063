// RUN: veomni-opt %s -split-input-file --veomni-partition -verify-diagnostics

// Layouts are propagation's: partitioning an unannotated function is an
// error naming what is missing.
dist.mesh @mesh = <["tp" = 2]>
// expected-error @+1 {{veomni-partition: argument #0 has no dist.sharding; run veomni-propagate-sharding first}}
func.func @unannotated(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  return %x : tensor<4x8xf32>
}

// -----

// A split that does not divide names the op, the tensor, the dimension and
// the axes (the verifier of dist.sharding says so before any pass runs).
dist.mesh @mesh = <["tp" = 4]>
func.func @uneven(%x: tensor<4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {}]>}) -> tensor<4x6xf32> {
  // expected-error @+1 {{'veomni.slice' op 'dist.sharding' of result #0: dimension 1 of 'tensor<4x6xf32>' (size 6) is not divisible by 4, the product of the sizes of axes ["tp"]}}
  %y = veomni.slice %x start = [0, 0] limit = [4, 6] step = [1, 1] {dist.sharding = [#dist.sharding<@mesh, [{}, {"tp"}]>]} : tensor<4x8xf32>
  return %y : tensor<4x6xf32>
}

