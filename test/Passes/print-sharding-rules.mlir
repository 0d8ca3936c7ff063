// RUN: veomni-opt %s -split-input-file --veomni-print-sharding-rules -verify-diagnostics | FileCheck %s

// Every op with results has a rule (the per-family files under
// test/Dialect/VeOmni/sharding-rules check them); one without is an error
// unless it is marked dist.replicated.

dist.mesh @mesh = <["tp"=2]>
// CHECK-LABEL: func.func @marked
func.func @marked(%x: tensor<4xf32>) -> tensor<4xf32> {
  // CHECK: dist.all_reduce {{.*}} {dist.replicated}
  %r = dist.all_reduce %x mesh = @mesh axes = ["tp"] {dist.replicated} : tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

dist.mesh @mesh = <["tp"=2]>
func.func @unmarked(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'dist.all_reduce' op has no sharding rule (give it one, or mark it dist.replicated)}}
  %r = dist.all_reduce %x mesh = @mesh axes = ["tp"] : tensor<4xf32>
  return %r : tensor<4xf32>
}
