// RUN: veomni-opt %s -split-input-file -verify-diagnostics

// Every verifier rule of the dist dialect, one case each.

//===----------------------------------------------------------------------===//
// Meshes
//===----------------------------------------------------------------------===//

// expected-error @+1 {{mesh axis "tp" appears more than once}}
dist.mesh @m = <["tp" = 2, "dp_shard" = 2, "tp" = 4]>

// -----

// expected-error @+1 {{mesh axis "tp" has size 0; sizes must be at least 1}}
dist.mesh @m = <["tp" = 0]>

// -----

// expected-error @+1 {{mesh axis name must not be empty}}
dist.mesh @m = <["" = 2]>

// -----

func.func @nested() {
  // expected-error @+1 {{'dist.mesh' op expects parent op 'builtin.module'}}
  "dist.mesh"() <{sym_name = "m", mesh = #dist.mesh<["tp" = 2]>}> : () -> ()
  return
}

// -----

//===----------------------------------------------------------------------===//
// Shardings
//===----------------------------------------------------------------------===//

dist.mesh @m = <["tp" = 2]>
func.func @bad_priority(%x: tensor<4xf32>) {
  // expected-error @+1 {{expected a priority `p<N>` after a dimension sharding}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}q1]> : tensor<4xf32>
  return
}

// -----

func.func @unknown_mesh(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.sharding_constraint' op sharding for 'tensor<4xf32>' refers to unknown mesh @nowhere}}
  %0 = dist.sharding_constraint %x <@nowhere, [{}]> : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @rank(%x: tensor<4x4xf32>) {
  // expected-error @+1 {{sharding has 1 dimension shardings but 'tensor<4x4xf32>' has rank 2}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}]> : tensor<4x4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @unknown_axis(%x: tensor<4x4xf32>) {
  // expected-error @+1 {{axis "sp" in dimension 1 of the sharding for 'tensor<4x4xf32>' is not an axis of mesh @m}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}, {"sp"}]> : tensor<4x4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2, "sp" = 2]>
func.func @unknown_partial_axis(%x: tensor<4xf32>) {
  // expected-error @+1 {{axis "ep" in partial of the sharding for 'tensor<4xf32>' is not an axis of mesh @m}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}], partial = ["ep"]> : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2, "sp" = 2]>
func.func @axis_twice(%x: tensor<4x4xf32>) {
  // expected-error @+1 {{axis "tp" is used more than once in the sharding for 'tensor<4x4xf32>'}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}, {"sp", "tp"}]> : tensor<4x4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2, "sp" = 2]>
func.func @axis_sharded_and_partial(%x: tensor<4xf32>) {
  // expected-error @+1 {{axis "tp" is used more than once in the sharding for 'tensor<4xf32>'}}
  %0 = dist.sharding_constraint %x <@m, [{"tp"}], partial = ["tp"]> : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2, "sp" = 4]>
func.func @not_divisible(%x: tensor<4x12xf32>) {
  // expected-error @+1 {{dimension 1 of 'tensor<4x12xf32>' (size 12) is not divisible by 8, the product of the sizes of axes ["tp", "sp"]}}
  %0 = dist.sharding_constraint %x <@m, [{}, {"tp", "sp"}]> : tensor<4x12xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Function argument and result attributes
//===----------------------------------------------------------------------===//

dist.mesh @m = <["tp" = 2]>
// expected-error @+1 {{argument #0: dimension 0 of 'tensor<3xf32>' (size 3) is not divisible by 2, the product of the sizes of axes ["tp"]}}
func.func @arg(%x: tensor<3xf32> {dist.sharding = #dist.sharding<@m, [{"tp"}]>}) {
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
// expected-error @+1 {{result #0: sharding has 2 dimension shardings but 'tensor<4xf32>' has rank 1}}
func.func @result(%x: tensor<4xf32>) -> (tensor<4xf32> {dist.sharding = #dist.sharding<@m, [{"tp"}, {}]>}) {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{'dist.sharding' on argument #0 must be a #dist.sharding, got "tp"}}
func.func @not_a_sharding(%x: tensor<4xf32> {dist.sharding = "tp"}) {
  return
}

// -----

// expected-error @+1 {{unknown dist argument attribute 'dist.shard' on argument #0}}
func.func @unknown_attribute(%x: tensor<4xf32> {dist.shard = 1}) {
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
// expected-error @+1 {{'dist.sharding' is on argument #0 of type 'f32', not a ranked tensor}}
func.func @not_a_tensor(%x: f32 {dist.sharding = #dist.sharding<@m, []>}) {
  return
}

// -----

//===----------------------------------------------------------------------===//
// Collectives
//===----------------------------------------------------------------------===//

dist.mesh @m = <["tp" = 2]>
func.func @no_axes(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_reduce' op needs at least one mesh axis in 'axes'}}
  %0 = dist.all_reduce %x mesh = @m axes = [] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @repeated_axis(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_reduce' op axis "tp" appears more than once in 'axes'}}
  %0 = dist.all_reduce %x mesh = @m axes = ["tp", "tp"] : tensor<4xf32>
  return
}

// -----

func.func @collective_unknown_mesh(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_reduce' op refers to unknown mesh @m}}
  %0 = dist.all_reduce %x mesh = @m axes = ["tp"] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @collective_unknown_axis(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_reduce' op axis "ep" is not an axis of mesh @m}}
  %0 = dist.all_reduce %x mesh = @m axes = ["ep"] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @all_reduce_type(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_reduce' op failed to verify that all of {input, result} have same type}}
  %0 = "dist.all_reduce"(%x) <{mesh = @m, axes = ["tp"]}> : (tensor<4xf32>) -> tensor<2xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @all_gather_element_type(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_gather' op result 'tensor<8xbf16>' must have the element type of input 'tensor<4xf32>'}}
  %0 = dist.all_gather %x mesh = @m axes = ["tp"] dim = 0 : tensor<4xf32> -> tensor<8xbf16>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @all_gather_rank(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_gather' op result 'tensor<2x4xf32>' must have the rank of input 'tensor<4xf32>'}}
  %0 = dist.all_gather %x mesh = @m axes = ["tp"] dim = 0 : tensor<4xf32> -> tensor<2x4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @all_gather_dim(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.all_gather' op 'dim' = 1 is not a dimension of input 'tensor<4xf32>'}}
  %0 = dist.all_gather %x mesh = @m axes = ["tp"] dim = 1 : tensor<4xf32> -> tensor<8xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 2, "sp" = 2]>
func.func @all_gather_shape(%x: tensor<4x3xf32>) {
  // expected-error @+1 {{'dist.all_gather' op result 'tensor<4x6xf32>' must be 'tensor<4x12xf32>': input 'tensor<4x3xf32>' with dimension 1 multiplied by 4, the size of the group over axes ["tp", "sp"]}}
  %0 = dist.all_gather %x mesh = @m axes = ["tp", "sp"] dim = 1 : tensor<4x3xf32> -> tensor<4x6xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 4]>
func.func @reduce_scatter_divisible(%x: tensor<6x4xf32>) {
  // expected-error @+1 {{'dist.reduce_scatter' op dimension 0 of input 'tensor<6x4xf32>' (size 6) is not divisible by 4, the size of the group over axes ["tp"]}}
  %0 = dist.reduce_scatter %x mesh = @m axes = ["tp"] dim = 0 : tensor<6x4xf32> -> tensor<1x4xf32>
  return
}

// -----

dist.mesh @m = <["tp" = 4]>
func.func @reduce_scatter_shape(%x: tensor<8x4xf32>) {
  // expected-error @+1 {{'dist.reduce_scatter' op result 'tensor<8x1xf32>' must be 'tensor<2x4xf32>': input 'tensor<8x4xf32>' with dimension 0 divided by 4, the size of the group over axes ["tp"]}}
  %0 = dist.reduce_scatter %x mesh = @m axes = ["tp"] dim = 0 : tensor<8x4xf32> -> tensor<8x1xf32>
  return
}

// -----

dist.mesh @m = <["ep" = 4]>
func.func @all_to_all_dim(%x: tensor<8x4xf32>) {
  // expected-error @+1 {{'dist.all_to_all' op 'concat_dim' = 2 is not a dimension of input 'tensor<8x4xf32>'}}
  %0 = dist.all_to_all %x mesh = @m axes = ["ep"] split_dim = 0 concat_dim = 2 : tensor<8x4xf32> -> tensor<2x16xf32>
  return
}

// -----

dist.mesh @m = <["ep" = 4]>
func.func @all_to_all_divisible(%x: tensor<8x6xf32>) {
  // expected-error @+1 {{'dist.all_to_all' op dimension 1 of input 'tensor<8x6xf32>' (size 6) is not divisible by 4, the size of the group over axes ["ep"]}}
  %0 = dist.all_to_all %x mesh = @m axes = ["ep"] split_dim = 1 concat_dim = 0 : tensor<8x6xf32> -> tensor<32x1xf32>
  return
}

// -----

dist.mesh @m = <["ep" = 4]>
func.func @all_to_all_shape(%x: tensor<8x4xf32>) {
  // expected-error @+1 {{'dist.all_to_all' op result 'tensor<8x4xf32>' must be 'tensor<2x16xf32>': input 'tensor<8x4xf32>' with split_dim 0 divided and concat_dim 1 multiplied by 4, the size of the group over axes ["ep"]}}
  %0 = dist.all_to_all %x mesh = @m axes = ["ep"] split_dim = 0 concat_dim = 1 : tensor<8x4xf32> -> tensor<8x4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @permute_odd_pairs(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.permute' op 'pairs' must hold source, target pairs, got 3 numbers}}
  %0 = "dist.permute"(%x) <{mesh = @m, axes = ["pp"], pairs = array<i64: 0, 1, 2>}> : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @permute_range(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.permute' op pair 3 -> 4 names device 4, outside the group of 4 over axes ["pp"]}}
  %0 = dist.permute %x mesh = @m axes = ["pp"] pairs = [0 -> 1, 3 -> 4] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @permute_two_sources(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.permute' op device 0 is the source of two pairs}}
  %0 = dist.permute %x mesh = @m axes = ["pp"] pairs = [0 -> 1, 0 -> 2] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @permute_two_targets(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.permute' op device 1 is the target of two pairs}}
  %0 = dist.permute %x mesh = @m axes = ["pp"] pairs = [0 -> 1, 2 -> 1] : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["dp_shard" = 2, "tp" = 2]>
func.func @broadcast_root(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.broadcast' op root 4 is outside the group of 4 over axes ["dp_shard", "tp"]}}
  %0 = dist.broadcast %x mesh = @m axes = ["dp_shard", "tp"] root = 4 : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @send_peer(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.send' op peer 4 is outside axis "pp" of size 4}}
  dist.send %x mesh = @m axis = "pp" peer = 4 : tensor<4xf32>
  return
}

// -----

dist.mesh @m = <["pp" = 4]>
func.func @recv_axis() {
  // expected-error @+1 {{'dist.recv' op axis "tp" is not an axis of mesh @m}}
  %0 = dist.recv mesh = @m axis = "tp" peer = 0 : tensor<4xf32>
  return
}

// -----

func.func @send_mesh(%x: tensor<4xf32>) {
  // expected-error @+1 {{'dist.send' op refers to unknown mesh @m}}
  dist.send %x mesh = @m axis = "pp" peer = 0 : tensor<4xf32>
  return
}

// -----

// The layouts propagation writes on ops: one #dist.sharding per result.
dist.mesh @m = <["tp" = 2]>
func.func @layouts_count(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.exp' op 'dist.sharding' must list one #dist.sharding per result (1), got []}}
  %0 = veomni.exp %x {dist.sharding = []} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @layouts_entry(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.exp' op 'dist.sharding' entry 0 must be a #dist.sharding of a ranked tensor result, got "tp"}}
  %0 = veomni.exp %x {dist.sharding = ["tp"]} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @layouts_rank(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.exp' op 'dist.sharding' of result #0: sharding has 2 dimension shardings but 'tensor<4xf32>' has rank 1}}
  %0 = veomni.exp %x {dist.sharding = [#dist.sharding<@m, [{"tp"}, {}]>]} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

dist.mesh @m = <["tp" = 2]>
func.func @layouts_axis(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.exp' op 'dist.sharding' of result #0: axis "ep" in dimension 0 of the sharding for 'tensor<4xf32>' is not an axis of mesh @m}}
  %0 = veomni.exp %x {dist.sharding = [#dist.sharding<@m, [{"ep"}]>]} : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @partitioned_axes(%l: tensor<2x8xf32>, %y: tensor<2xi32>) -> tensor<f32> {
  // expected-error @+1 {{'veomni.cross_entropy' op 'dist.vocab_axes' must be a non-empty list of mesh axis names, got []}}
  %0 = veomni.cross_entropy %l, %y {dist.vocab_axes = []} : tensor<2x8xf32>, tensor<2xi32>
  return %0 : tensor<f32>
}

// -----

func.func @unknown_attribute(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{'veomni.exp' op unknown dist attribute 'dist.shardings'}}
  %0 = veomni.exp %x {dist.shardings = []} : tensor<4xf32>
  return %0 : tensor<4xf32>
}
