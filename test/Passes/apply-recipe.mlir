// RUN: veomni-opt %s --veomni-apply-recipe="dp-shard=2 tp=2 sp=2" -split-input-file -verify-diagnostics | FileCheck %s

// Column and row pairs on tp, then FSDP on dp_shard where it divides;
// batches on the data-parallel axes and sequences on sp.
// CHECK: dist.mesh @mesh = <["dp_replicate" = 1, "dp_shard" = 2, "tp" = 2, "sp" = 2, "ep" = 1, "pp" = 1]>
// CHECK-LABEL: func.func @mlp
// CHECK-SAME: %{{.*}}: tensor<8x4xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp", "dp_shard"}, {}]>, veomni.param = "up", veomni.placement = "tp:column"}
// CHECK-SAME: %{{.*}}: tensor<4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {"tp"}]>, veomni.param = "down", veomni.placement = "tp:row"}
// CHECK-SAME: %{{.*}}: tensor<3xf32> {dist.sharding = #dist.sharding<@mesh, [{}]>, veomni.param = "norm", veomni.placement = "replicated"}
// CHECK-SAME: %{{.*}}: tensor<4x16xi32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {"sp"}]>, veomni.input = "input_ids"}
func.func @mlp(%up: tensor<8x4xf32> {veomni.param = "up", veomni.placement = "tp:column"},
               %down: tensor<4x8xf32> {veomni.param = "down", veomni.placement = "tp:row"},
               %norm: tensor<3xf32> {veomni.param = "norm", veomni.placement = "replicated"},
               %ids: tensor<4x16xi32> {veomni.input = "input_ids"}) {
  return
}

// -----

// A batch the data-parallel axes do not divide.
// expected-error @+1 {{argument #0 (input): dimension 0 of 'tensor<3x16xi32>' (size 3) is not divisible by 2, the product of the sizes of axes ["dp_shard"]}}
func.func @odd_batch(%ids: tensor<3x16xi32> {veomni.input = "input_ids"}) {
  return
}
