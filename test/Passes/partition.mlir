// RUN: veomni-opt %s -split-input-file --veomni-propagate-sharding --veomni-partition | FileCheck %s

// Textbook plans, from shardings on the arguments alone: propagation gives
// every value a layout, partitioning inserts exactly the collectives the
// literature uses and rewrites every type to its per-rank shape.

// Megatron MLP, dp 2 x tp 4: column-parallel up, row-parallel down, one
// all-reduce of the output over tp, nothing over dp.
// CHECK-LABEL: func.func @megatron_mlp
// Arguments and results keep the slice each rank holds, for the runtime.
// CHECK-SAME: (%[[X:.*]]: tensor<4x16x64xf32> {dist.slice = #dist.sharding<@mesh, [{"dp_shard"}, {}, {}]>},
// CHECK-SAME: %[[W1:.*]]: tensor<64x64xf32> {dist.slice = #dist.sharding<@mesh, [{"tp"}, {}]>},
// CHECK-SAME: %[[W2:.*]]: tensor<64x64xf32> {dist.slice = #dist.sharding<@mesh, [{}, {"tp"}]>})
// CHECK-SAME: -> (tensor<4x16x64xf32> {dist.slice = #dist.sharding<@mesh, [{"dp_shard"}, {}, {}]>})
// CHECK-NEXT: %[[H:.*]] = veomni.matmul %[[X]], %[[W1]] {transpose_rhs} : tensor<4x16x64xf32>, tensor<64x64xf32>
// CHECK-NEXT: %[[A:.*]] = veomni.silu %[[H]] : tensor<4x16x64xf32>
// CHECK-NEXT: %[[Y:.*]] = veomni.matmul %[[A]], %[[W2]] {transpose_rhs} : tensor<4x16x64xf32>, tensor<64x64xf32>
// CHECK-NEXT: %[[R:.*]] = dist.all_reduce %[[Y]] mesh = @mesh axes = ["tp"] : tensor<4x16x64xf32>
// CHECK-NEXT: return %[[R]]
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 4]>
func.func @megatron_mlp(
    %x: tensor<8x16x64xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}, {}]>},
    %w1: tensor<256x64xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}p1, {}]>},
    %w2: tensor<64x256xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"tp"}p1]>}) -> tensor<8x16x64xf32> {
  %h = veomni.matmul %x, %w1 {transpose_rhs} : tensor<8x16x64xf32>, tensor<256x64xf32>
  %a = veomni.silu %h : tensor<8x16x256xf32>
  %y = veomni.matmul %a, %w2 {transpose_rhs} : tensor<8x16x256xf32>, tensor<64x256xf32>
  return %y : tensor<8x16x64xf32>
}

// -----

// Megatron with sequence parallelism: activations between blocks split on
// the sequence over tp; the all-reduce becomes an all-gather before the
// column-parallel matmul and a reduce-scatter after the row-parallel one.
// CHECK-LABEL: func.func @sequence_parallel_mlp
// CHECK: dist.all_gather %{{.*}} mesh = @mesh axes = ["tp"] dim = 1 : tensor<2x4x8xf32> -> tensor<2x16x8xf32>
// CHECK: veomni.matmul
// CHECK: veomni.gelu
// CHECK: %[[Y:.*]] = veomni.matmul
// CHECK-NEXT: %[[R:.*]] = dist.reduce_scatter %[[Y]] mesh = @mesh axes = ["tp"] dim = 1 : tensor<2x16x8xf32> -> tensor<2x4x8xf32>
// CHECK-NEXT: return %[[R]]
dist.mesh @mesh = <["tp" = 4]>
func.func @sequence_parallel_mlp(
    %x: tensor<2x16x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"tp"}p1, {}]>},
    %w1: tensor<32x8xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}p0, {}]>},
    %w2: tensor<8x32xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"tp"}p0]>}) -> tensor<2x16x8xf32> {
  %h = veomni.matmul %x, %w1 {transpose_rhs} : tensor<2x16x8xf32>, tensor<32x8xf32>
  %a = veomni.gelu %h : tensor<2x16x32xf32>
  %y = veomni.matmul %a, %w2 {transpose_rhs} : tensor<2x16x32xf32>, tensor<8x32xf32>
  %r = dist.sharding_constraint %y <@mesh, [{}, {"tp"}, {}]> : tensor<2x16x8xf32>
  return %r : tensor<2x16x8xf32>
}

// -----

// Ulysses: q, k and v arrive split on the sequence over sp; attention
// needs whole sequences, and its rule moves the split onto the (kv) heads:
// one all-to-all each, and one back for the output.
// CHECK-LABEL: func.func @ulysses_attention
// CHECK-SAME: tensor<1x8x4x8xf32>
// CHECK-NEXT: %[[Q:.*]] = dist.all_to_all %arg0 mesh = @mesh axes = ["sp"] split_dim = 2 concat_dim = 1 : tensor<1x8x4x8xf32> -> tensor<1x16x2x8xf32>
// CHECK-NEXT: %[[K:.*]] = dist.all_to_all %arg1 mesh = @mesh axes = ["sp"] split_dim = 2 concat_dim = 1 : tensor<1x8x2x8xf32> -> tensor<1x16x1x8xf32>
// CHECK-NEXT: %[[V:.*]] = dist.all_to_all %arg2 mesh = @mesh axes = ["sp"] split_dim = 2 concat_dim = 1 : tensor<1x8x2x8xf32> -> tensor<1x16x1x8xf32>
// CHECK-NEXT: %[[O:.*]] = veomni.attention %[[Q]], %[[K]], %[[V]] {causal, scale = 3.500000e-01 : f64} : tensor<1x16x2x8xf32>, tensor<1x16x1x8xf32>, tensor<1x16x1x8xf32>
// CHECK-NEXT: %[[R:.*]] = dist.all_to_all %[[O]] mesh = @mesh axes = ["sp"] split_dim = 1 concat_dim = 2 : tensor<1x16x2x8xf32> -> tensor<1x8x4x8xf32>
// CHECK-NEXT: return %[[R]]
dist.mesh @mesh = <["sp" = 2]>
func.func @ulysses_attention(
    %q: tensor<1x16x4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>},
    %k: tensor<1x16x2x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>},
    %v: tensor<1x16x2x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {}, {}]>}) -> tensor<1x16x4x8xf32> {
  %o = veomni.attention %q, %k, %v {causal, scale = 0.35 : f64} : tensor<1x16x4x8xf32>, tensor<1x16x2x8xf32>, tensor<1x16x2x8xf32>
  %r = dist.sharding_constraint %o <@mesh, [{}, {"sp"}, {}, {}]> : tensor<1x16x4x8xf32>
  return %r : tensor<1x16x4x8xf32>
}

// -----

// Vocab-parallel cross entropy: the logits stay split on the vocabulary
// (never gathered); the op is told its vocab axes and its token axes, and
// the only collective is the sum of the per-shard losses over dp.
// CHECK-LABEL: func.func @vocab_parallel_cross_entropy
// CHECK-NEXT: %[[L:.*]] = veomni.matmul %arg0, %arg1 {transpose_rhs} : tensor<1x8x16xf32>, tensor<16x16xf32>
// CHECK-NEXT: %[[CE:.*]] = veomni.cross_entropy %[[L]], %arg2 {dist.token_axes = ["dp_shard"], dist.vocab_axes = ["tp"]} : tensor<1x8x16xf32>, tensor<1x8xi32>
// CHECK-NEXT: %[[R:.*]] = dist.all_reduce %[[CE]] mesh = @mesh axes = ["dp_shard"] : tensor<f32>
// CHECK-NEXT: return %[[R]]
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 4]>
func.func @vocab_parallel_cross_entropy(
    %h: tensor<2x8x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}, {}]>},
    %w: tensor<64x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}p1, {}]>},
    %labels: tensor<2x8xi32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}p0, {}]>}) -> tensor<f32> {
  %logits = veomni.matmul %h, %w {transpose_rhs} : tensor<2x8x16xf32>, tensor<64x16xf32>
  %loss = veomni.cross_entropy %logits, %labels : tensor<2x8x64xf32>, tensor<2x8xi32>
  return %loss : tensor<f32>
}

// -----

// Vocab-parallel embedding: each rank looks the ids up in its slice of the
// table (zeros for the others'), and the lookups sum over tp.
// CHECK-LABEL: func.func @vocab_parallel_embedding
// CHECK-NEXT: %[[E:.*]] = veomni.gather %arg0[%arg1] axis = 0 {dist.index_axes = ["tp"]} : tensor<16x8xf32>, tensor<2x4xi32>
// CHECK-NEXT: %[[R:.*]] = dist.all_reduce %[[E]] mesh = @mesh axes = ["tp"] : tensor<2x4x8xf32>
dist.mesh @mesh = <["tp" = 4]>
func.func @vocab_parallel_embedding(
    %table: tensor<64x8xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}, {}]>},
    %ids: tensor<2x4xi32>) -> tensor<2x4x8xf32> {
  %e = veomni.gather %table[%ids] axis = 0 : tensor<64x8xf32>, tensor<2x4xi32>
  return %e : tensor<2x4x8xf32>
}

// -----

// A layout that splits further than the value: a local split, no traffic.
// (An argument without a sharding would take the split itself.)
// CHECK-LABEL: func.func @local_split
// CHECK-NEXT: %[[S:.*]] = dist.local_split %arg0 mesh = @mesh axes = ["tp"] dim = 1 : tensor<4x8xf32> -> tensor<4x2xf32>
// CHECK-NEXT: return %[[S]] : tensor<4x2xf32>
dist.mesh @mesh = <["tp" = 4]>
func.func @local_split(%x: tensor<4x8xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {}]>}) -> tensor<4x8xf32> {
  %y = dist.sharding_constraint %x <@mesh, [{}, {"tp"}]> : tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// Ulysses with tensor parallelism and grouped-query attention: tp takes the
// kv heads first; sp cannot split the one kv head left per tp rank, so it
// goes to the query heads of each group, and keys and values are gathered
// on the sequence instead (as DeepSpeed-Ulysses does when sp exceeds the
// kv heads).
// CHECK-LABEL: func.func @ulysses_gqa
// CHECK-SAME: (%arg0: tensor<1x32x2x16xf32> {{{.*}}}, %arg1: tensor<1x32x1x16xf32> {{{.*}}}, %arg2: tensor<1x32x1x16xf32> {{{.*}}}) -> (tensor<1x64x1x16xf32> {dist.slice = #dist.sharding<@mesh, [{}, {}, {"tp", "sp"}, {}]>})
// CHECK-NEXT: %[[Q:.*]] = dist.all_to_all %arg0 mesh = @mesh axes = ["sp"] split_dim = 2 concat_dim = 1 : tensor<1x32x2x16xf32> -> tensor<1x64x1x16xf32>
// CHECK-NEXT: %[[K:.*]] = dist.all_gather %arg1 mesh = @mesh axes = ["sp"] dim = 1 : tensor<1x32x1x16xf32> -> tensor<1x64x1x16xf32>
// CHECK-NEXT: %[[V:.*]] = dist.all_gather %arg2 mesh = @mesh axes = ["sp"] dim = 1 : tensor<1x32x1x16xf32> -> tensor<1x64x1x16xf32>
// CHECK-NEXT: veomni.attention %[[Q]], %[[K]], %[[V]] {{.*}} : tensor<1x64x1x16xf32>, tensor<1x64x1x16xf32>, tensor<1x64x1x16xf32>
dist.mesh @mesh = <["tp" = 2, "sp" = 2]>
func.func @ulysses_gqa(
    %q: tensor<1x64x4x16xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {"tp"}p1, {}]>},
    %k: tensor<1x64x2x16xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {"tp"}p1, {}]>},
    %v: tensor<1x64x2x16xf32> {dist.sharding = #dist.sharding<@mesh, [{}, {"sp"}p0, {"tp"}p1, {}]>}) -> tensor<1x64x4x16xf32> {
  %o = veomni.attention %q, %k, %v {causal, scale = 0.35 : f64} : tensor<1x64x4x16xf32>, tensor<1x64x2x16xf32>, tensor<1x64x2x16xf32>
  return %o : tensor<1x64x4x16xf32>
}

// -----

// Expert parallelism: each rank keeps a slice of the experts (the weight's
// expert dimension split on ep) and its own tokens' rows (split on the
// data-parallel axes and ep alike); the group sizes count every expert's
// rows and stay whole; the local op is told its expert axes, over which it
// sends rows to their experts' ranks and back. No all-gather anywhere.
// CHECK-LABEL: func.func @expert_parallel
// CHECK-SAME: (%arg0: tensor<16x16xf32> {{{.*}}}, %arg1: tensor<2x32x16xf32> {dist.slice = #dist.sharding<@mesh, [{"ep"}, {}, {}]>}, %arg2: tensor<8xi32> {{{.*}}}) -> (tensor<16x32xf32> {{{.*}}})
// CHECK-NEXT: %[[Y:.*]] = veomni.grouped_matmul %arg0, %arg1, %arg2 {dist.expert_axes = ["ep"], transpose_weight} : tensor<16x16xf32>, tensor<2x32x16xf32>, tensor<8xi32>
// CHECK-NEXT: return %[[Y]]
dist.mesh @mesh = <["dp_shard" = 2, "ep" = 4]>
func.func @expert_parallel(
    %rows: tensor<128x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard", "ep"}p0, {}]>},
    %w: tensor<8x32x16xf32> {dist.sharding = #dist.sharding<@mesh, [{"ep"}p0, {}, {}]>},
    %sizes: tensor<8xi32> {dist.sharding = #dist.sharding<@mesh, [{}]>}) -> tensor<128x32xf32> {
  %y = veomni.grouped_matmul %rows, %w, %sizes {transpose_weight} : tensor<128x16xf32>, tensor<8x32x16xf32>, tensor<8xi32>
  return %y : tensor<128x32xf32>
}

// -----

// A gradient norm: one sum of squares per parameter, each partial over the
// axes its parameter is split on. Propagation regroups the sum so that
// terms partial over the same axes meet first: one all-reduce per group,
// not one per parameter.
// CHECK-LABEL: func.func @grad_norm
// CHECK-DAG: %[[A:.*]] = veomni.reduce sum %arg0
// CHECK-DAG: %[[B:.*]] = veomni.reduce sum %arg1
// CHECK-DAG: %[[BR:.*]] = dist.all_reduce %[[B]] mesh = @mesh axes = ["tp"]
// CHECK-DAG: %[[C:.*]] = veomni.reduce sum %arg2
// CHECK: %[[AC:.*]] = veomni.add %[[A]], %[[C]]
// CHECK-NEXT: %[[ACR:.*]] = dist.all_reduce %[[AC]] mesh = @mesh axes = ["dp_shard"]
// CHECK-NEXT: %[[T:.*]] = veomni.add %[[ACR]], %[[BR]]
// CHECK-NEXT: return %[[T]]
dist.mesh @mesh = <["dp_shard" = 2, "tp" = 2]>
func.func @grad_norm(%a: tensor<8xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}]>},
                     %b: tensor<8xf32> {dist.sharding = #dist.sharding<@mesh, [{"tp"}]>},
                     %c: tensor<8xf32> {dist.sharding = #dist.sharding<@mesh, [{"dp_shard"}]>}) -> tensor<f32> {
  %sa = veomni.reduce sum %a dims = [0] : tensor<8xf32>
  %sb = veomni.reduce sum %b dims = [0] : tensor<8xf32>
  %sc = veomni.reduce sum %c dims = [0] : tensor<8xf32>
  %t1 = veomni.add %sa, %sb : tensor<f32>
  %t2 = veomni.add %t1, %sc : tensor<f32>
  return %t2 : tensor<f32>
}
