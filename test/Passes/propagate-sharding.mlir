// RUN: veomni-opt %s -split-input-file --veomni-propagate-sharding | FileCheck %s
// RUN: veomni-opt %s -split-input-file --veomni-propagate-sharding --veomni-propagate-sharding | FileCheck %s

// Priorities: the batch (p0) claims dp_shard before the weight's FSDP
// split (p1) can, so the product is split on the batch and on tp, never
// on dp_shard twice; the split follows the exp.
// CHECK-LABEL: func.func @fsdp_priority
// CHECK-SAME: -> (tensor<8x32xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {"tp"}p1]>})
// CHECK: veomni.matmul %arg0, %arg1 {dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}p0, {"tp"}p1]>], transpose_rhs}
// CHECK: veomni.exp %{{.*}} {dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}p0, {"tp"}p1]>]}
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 2]>
func.func @fsdp_priority(
    %x: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>},
    %w: tensor<32x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp", "dp_shard"}p1, {}]>}) -> tensor<8x32xf32> {
  %y = veomni.matmul %x, %w {transpose_rhs} : tensor<8x16xf32>, tensor<32x16xf32>
  %z = veomni.exp %y : tensor<8x32xf32>
  return %z : tensor<8x32xf32>
}

// -----

// Two splits of one factor at the same priority that disagree: the one
// fewer elements would have to leave wins (the bigger tensor keeps its
// split); on a tie, the first operand's.
// CHECK-LABEL: func.func @conflict_tie
// CHECK: veomni.add %arg0, %arg1 {dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}, {}]>]}
// CHECK-LABEL: func.func @conflict_by_size
// CHECK: veomni.matmul %arg0, %arg1 {dist.sharding = [#dist.sharding<@mesh, [{"tp"}, {}, {}]>]}
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 2]>
func.func @conflict_tie(
    %a: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {}]>},
    %b: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}, {}]>}) -> tensor<8x16xf32> {
  %s = veomni.add %a, %b : tensor<8x16xf32>
  return %s : tensor<8x16xf32>
}
func.func @conflict_by_size(
    %a: tensor<4x8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {}, {}]>},
    %b: tensor<4x16x64xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}, {}, {}]>}) -> tensor<4x8x64xf32> {
  %y = veomni.matmul %a, %b : tensor<4x8x16xf32>, tensor<4x16x64xf32>
  return %y : tensor<4x8x64xf32>
}

// -----

// Propagation runs backward too: a constraint at the end lays out the
// values before it and the argument that has no sharding; a closed
// dimension of an argument keeps its (empty) split.
// CHECK-LABEL: func.func @backward
// CHECK-SAME: %arg0: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}, {"tp"}]>}
// CHECK-SAME: %arg1: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"tp"}]>}
// CHECK: veomni.neg %arg0 {dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}, {"tp"}]>]}
// CHECK: veomni.mul %{{.*}}, %arg1 {dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}, {"tp"}]>]}
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 2]>
func.func @backward(%x: tensor<8x16xf32>,
                    %y: tensor<8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"tp", ?}]>}) -> tensor<8x16xf32> {
  %n = veomni.neg %x : tensor<8x16xf32>
  %s = veomni.mul %n, %y : tensor<8x16xf32>
  %t = dist.sharding_constraint %s <@mesh, [{"dp_shard"}, {"tp"}]> : tensor<8x16xf32>
  return %t : tensor<8x16xf32>
}

// -----

// A reshape splits [.., 64] into [.., 4 heads, 16]: the split of the
// merged dimension lands on its major factor, the heads.
// CHECK-LABEL: func.func @reshape_heads
// CHECK: veomni.reshape %arg0 {dist.sharding = [#dist.sharding<@mesh, [{}, {}, {"tp"}, {}]>]}
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 2]>
func.func @reshape_heads(%x: tensor<2x8x64xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {}, {"tp"}]>}) -> tensor<2x8x4x16xf32> {
  %r = veomni.reshape %x : tensor<2x8x64xf32> to tensor<2x8x4x16xf32>
  return %r : tensor<2x8x4x16xf32>
}

// -----

// Ulysses: attention keeps whole sequences, so a sequence split on the
// inputs is moved to the heads for the op (after every explicit split,
// at the weakest priority); its output is head-split.
// CHECK-LABEL: func.func @attention_heads
// CHECK: veomni.attention {{.*}}dist.sharding = [#dist.sharding<@mesh, [{}, {}, {"sp"}, {}]>]
dist.mesh @mesh = <["sp" = 2]>
func.func @attention_heads(
    %q: tensor<1x16x4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>},
    %k: tensor<1x16x2x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>},
    %v: tensor<1x16x2x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>}) -> tensor<1x16x4x8xf32> {
  %o = veomni.attention %q, %k, %v {causal, scale = 0.35 : f64} : tensor<1x16x4x8xf32>, tensor<1x16x2x8xf32>, tensor<1x16x2x8xf32>
  return %o : tensor<1x16x4x8xf32>
}

// -----

// Expert parallelism: the experts of a grouped matmul take ep from the
// stacked weights; the rows (tokens) keep their data-parallel split.
// CHECK-LABEL: func.func @experts
// CHECK: veomni.grouped_matmul {{.*}}dist.sharding = [#dist.sharding<@mesh, [{"dp_shard"}p0, {}]>]
dist.mesh @mesh = <["dp_shard" = 2, "ep" = 4]>
func.func @experts(
    %rows: tensor<64x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>},
    %w: tensor<8x32x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"ep"}p0, {}, {}]>},
    %sizes: tensor<8xi32>) -> tensor<64x32xf32> {
  %y = veomni.grouped_matmul %rows, %w, %sizes {transpose_weight} : tensor<64x16xf32>, tensor<8x32x16xf32>, tensor<8xi32>
  return %y : tensor<64x32xf32>
}
