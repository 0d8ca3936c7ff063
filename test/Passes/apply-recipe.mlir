// RUN: veomni-opt %s --veomni-apply-recipe="dp-shard=2 tp=2 sp=2" -split-input-file -verify-diagnostics | FileCheck %s
// RUN: veomni-opt %s --veomni-apply-recipe="dp-shard=2 sp=2 ep=2" -split-input-file -verify-diagnostics | FileCheck %s --check-prefix=EP

// Column and row pairs on tp, then FSDP over dp_shard and sp (Ulysses
// ranks hold different tokens too) where it divides, else over dp_shard
// alone, else nothing; batches on the data-parallel axes and sequences on
// sp. Batches get
// priority p0 and parameters p1 (propagation gives dp_shard to the batch);
// optimizer states take their parameter's sharding.
// CHECK: dist.mesh @mesh = <["dp_replicate" = 1, "dp_shard" = 2, "tp" = 2, "sp" = 2, "ep" = 1, "pp" = 1]>
// CHECK-LABEL: func.func @mlp
// CHECK-SAME: %{{.*}}: tensor<8x4xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp", "dp_shard", "sp"}p1, {}]>, veomni.param = "up", veomni.placement = "tp:column"}
// CHECK-SAME: %{{.*}}: tensor<4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", "sp"}p1, {"tp"}p1]>, veomni.param = "down", veomni.placement = "tp:row"}
// CHECK-SAME: %{{.*}}: tensor<3xf32> {dist.sharding = #dist.sharding<@mesh, [{}]>, veomni.param = "norm", veomni.placement = "replicated"}
// CHECK-SAME: %{{.*}}: tensor<4x16xi32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {"sp"}p0]>, veomni.input = "input_ids", veomni.token_dims = array<i64: 0, 1>}
// CHECK-SAME: %{{.*}}: tensor<8x4xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp", "dp_shard", "sp"}p1, {}]>, veomni.state = "optimizer.exp_avg.up", veomni.state_of = "up"}
func.func @mlp(%up: tensor<8x4xf32> {veomni.param = "up", veomni.placement = "tp:column"},
               %down: tensor<4x8xf32> {veomni.param = "down", veomni.placement = "tp:row"},
               %norm: tensor<3xf32> {veomni.param = "norm", veomni.placement = "replicated"},
               %ids: tensor<4x16xi32> {veomni.input = "input_ids", veomni.token_dims = array<i64: 0, 1>},
               %m: tensor<8x4xf32> {veomni.state = "optimizer.exp_avg.up", veomni.state_of = "up"}) {
  return
}

// -----

// A batch the data-parallel axes do not divide.
// expected-error @+1 {{argument #0 (input): dimension 0 of 'tensor<3x16xi32>' (size 3) is not divisible by 2, the product of the sizes of axes ["dp_shard"]}}
func.func @odd_batch(%ids: tensor<3x16xi32> {veomni.input = "input_ids", veomni.token_dims = array<i64: 0, 1>}) {
  return
}

// -----

// Stacked experts: the experts on ep at the batch's priority, FSDP on
// another dimension (the first the group divides); with experts on ep the
// ep ranks take their own batches too, and the other parameters are split
// over ep as well.
// EP-LABEL: func.func @moe
// EP-SAME: %{{.*}}: tensor<8x6x4xf32> {dist.sharding = #dist.sharding<@mesh, [{"ep"}p0, {}, {"dp_shard", "sp"}p1]>, veomni.param = "experts", veomni.placement = "ep:experts"}
// EP-SAME: %{{.*}}: tensor<16x4xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", "sp", "ep"}p1, {}]>, veomni.param = "router", veomni.placement = "replicated"}
// EP-SAME: %{{.*}}: tensor<8x16xi32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", "ep"}p0, {"sp"}p0]>, veomni.input = "input_ids", veomni.token_dims = array<i64: 0, 1>}
func.func @moe(%experts: tensor<8x6x4xf32> {veomni.param = "experts", veomni.placement = "ep:experts"},
               %router: tensor<16x4xf32> {veomni.param = "router", veomni.placement = "replicated"},
               %ids: tensor<8x16xi32> {veomni.input = "input_ids", veomni.token_dims = array<i64: 0, 1>}) {
  return
}

// -----

// Encoder inputs packed across the batch (patches, their positions): the
// ranks that hold different tokens split the pack (dp_shard then sp, as
// many as divide), so each runs the encoders on its share.
// CHECK-LABEL: func.func @vision
// CHECK-SAME: %{{.*}}: tensor<16x96xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", "sp"}p0, {}]>, veomni.input = "pixel_values", veomni.pack_dim = 0 : i64}
// CHECK-SAME: %{{.*}}: tensor<2x1x16xi32> {dist.sharding = #dist.sharding<@mesh, [{}, {}, {"dp_shard", "sp"}p0]>, veomni.input = "vision_position_ids", veomni.pack_dim = 2 : i64}
// CHECK-SAME: %{{.*}}: tensor<1x6xi32> {dist.sharding = #dist.sharding<@mesh, [{}, {"dp_shard"}p0]>, veomni.input = "audio_segment_ids", veomni.pack_dim = 1 : i64}
// CHECK-SAME: %{{.*}}: tensor<1x3xi32> {dist.sharding = #dist.sharding<@mesh, [{}, {}]>, veomni.input = "odd", veomni.pack_dim = 1 : i64}
func.func @vision(%pixels: tensor<16x96xf32> {veomni.input = "pixel_values", veomni.pack_dim = 0 : i64},
                  %pos: tensor<2x1x16xi32> {veomni.input = "vision_position_ids", veomni.pack_dim = 2 : i64},
                  %seg: tensor<1x6xi32> {veomni.input = "audio_segment_ids", veomni.pack_dim = 1 : i64},
                  %odd: tensor<1x3xi32> {veomni.input = "odd", veomni.pack_dim = 1 : i64}) {
  return
}
