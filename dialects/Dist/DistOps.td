//===- DistOps.td - the dist dialect: meshes and collectives -*- tablegen -*-===//
//
// Two levels of IR meet here. Before partitioning, tensors have their global
// (logical) shape and `dist.sharding` attributes / `dist.sharding_constraint`
// say how they are to be laid out over a mesh. After partitioning, every
// tensor has its device-local shape and the collectives below move data
// between devices. Collectives therefore take and return LOCAL shapes:
// `dist.all_gather` over a group of 4 turns a tensor<8x2xf32> shard into a
// tensor<8x8xf32> one.
//
// A collective's group is given by `axes`, a list of mesh axes: the devices
// that share every coordinate outside `axes` form one group, and each group
// runs the collective independently. Within a group, a device's index is its
// coordinates along `axes` read row-major in the order listed (the first
// axis is the most significant). That index orders the pieces of all_gather
// and all_to_all, and numbers the devices in `permute` pairs and the
// `broadcast` root.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_DIST_OPS_TD
#define VEOMNI_DIST_OPS_TD

include "DistDialect.td"
include "DistAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class Dist_Op<string mnemonic, list<Trait> traits = []>
    : Op<Dist_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Mesh and shardings
//===----------------------------------------------------------------------===//

def Dist_MeshOp : Dist_Op<"mesh", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "A named device mesh";
  let description = [{
    ```mlir
    dist.mesh @mesh = <["dp_shard" = 4, "tp" = 2]>
    ```
    Declares 8 devices arranged 4 x 2 (major to minor). Shardings and
    collectives refer to the mesh by symbol.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, Dist_MeshAttr:$mesh);
  let assemblyFormat = "$sym_name `=` $mesh attr-dict";
}

def Dist_ShardingConstraintOp
    : Dist_Op<"sharding_constraint",
              [Pure, AllTypesMatch<["input", "result"]>,
               DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Pins the sharding of a global tensor";
  let description = [{
    Returns its input unchanged; the partitioner must lay the result out as
    `sharding` says. Types are global (pre-partitioning) shapes.

    ```mlir
    %y = dist.sharding_constraint %x <@mesh, [{"dp_shard"}, {"tp"} ]> : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, Dist_ShardingAttr:$sharding);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input $sharding attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Collectives (device-local shapes)
//===----------------------------------------------------------------------===//

class Dist_CollectiveOp<string mnemonic, list<Trait> traits = []>
    : Dist_Op<mnemonic, !listconcat(traits, [
          DeclareOpInterfaceMethods<SymbolUserOpInterface>])> {
  let hasVerifier = 1;
}

def Dist_AllGatherOp : Dist_CollectiveOp<"all_gather", [Pure]> {
  let summary = "Concatenates the group's shards along `dim`";
  let description = [{
    Every device of the group gets the concatenation, in group-index order,
    of all the group's inputs along `dim`: the result's `dim` is the input's
    times the group size, other dimensions are unchanged.

    ```mlir
    %y = dist.all_gather %x mesh = @mesh axes = ["tp"] dim = 1
        : tensor<8x2xf32> -> tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, I64Attr:$dim);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `dim` `=` $dim attr-dict
    `:` type($input) `->` type($result)
  }];
}

def Dist_ReduceScatterOp : Dist_CollectiveOp<"reduce_scatter", [Pure]> {
  let summary = "Sums over the group, then keeps one slice of `dim`";
  let description = [{
    The element-wise sum of the group's inputs is split along `dim` into
    group-size equal slices; the device with group index i gets slice i.
    The result's `dim` is the input's divided by the group size, which must
    divide it.

    ```mlir
    %y = dist.reduce_scatter %x mesh = @mesh axes = ["tp"] dim = 0
        : tensor<8x4xf32> -> tensor<4x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, I64Attr:$dim);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `dim` `=` $dim attr-dict
    `:` type($input) `->` type($result)
  }];
}

def Dist_LocalSplitOp : Dist_CollectiveOp<"local_split", [Pure]> {
  let summary = "Keeps this device's slice of `dim`; no communication";
  let description = [{
    The input is the same on every device of the group; it is split along
    `dim` into group-size equal slices and the device with group index i
    keeps slice i. What a partitioner emits where a layout splits a
    dimension further than the value it starts from.

    ```mlir
    %y = dist.local_split %x mesh = @mesh axes = ["tp"] dim = 1
        : tensor<8x4xf32> -> tensor<8x2xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, I64Attr:$dim);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `dim` `=` $dim attr-dict
    `:` type($input) `->` type($result)
  }];
}

def Dist_AllReduceOp
    : Dist_CollectiveOp<"all_reduce", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Element-wise sum over the group";
  let description = [{
    Every device of the group gets the sum of the group's inputs; the
    shape is unchanged. Turns a value that is `partial` over `axes` into a
    replicated one.

    ```mlir
    %y = dist.all_reduce %x mesh = @mesh axes = ["tp"] : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes attr-dict `:` type($result)
  }];
}

def Dist_AllToAllOp : Dist_CollectiveOp<"all_to_all", [Pure]> {
  let summary = "Moves a factor of the group size from one dim to another";
  let description = [{
    Each device splits its input along `split_dim` into group-size slices
    and sends slice j to the device with group index j; each device then
    concatenates what it received, in group-index order, along
    `concat_dim`. So the result's `split_dim` is the input's divided by the
    group size and its `concat_dim` multiplied by it (when the two are
    equal the shape is unchanged).

    ```mlir
    %y = dist.all_to_all %x mesh = @mesh axes = ["ep"] split_dim = 0 concat_dim = 1
        : tensor<8x2xf32> -> tensor<2x8xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, I64Attr:$split_dim,
                       I64Attr:$concat_dim);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `split_dim` `=` $split_dim
    `concat_dim` `=` $concat_dim attr-dict `:` type($input) `->` type($result)
  }];
}

def Dist_PermuteOp
    : Dist_CollectiveOp<"permute", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Sends each device's tensor to another in its group";
  let description = [{
    `pairs` lists source -> target group indices; a device that is the
    target of no pair gets zeros. Every index is below the group size and
    appears at most once as a source and at most once as a target.

    ```mlir
    %y = dist.permute %x mesh = @mesh axes = ["pp"] pairs = [0 -> 1, 1 -> 2, 2 -> 3]
        : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, DenseI64ArrayAttr:$pairs);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `pairs` `=` custom<Pairs>($pairs)
    attr-dict `:` type($result)
  }];
}

def Dist_BroadcastOp
    : Dist_CollectiveOp<"broadcast", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Every device of the group gets the root's tensor";
  let description = [{
    `root` is a group index. The shape is unchanged.

    ```mlir
    %y = dist.broadcast %x mesh = @mesh axes = ["dp_shard"] root = 0 : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrArrayAttr:$axes, I64Attr:$root);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axes` `=` $axes `root` `=` $root attr-dict
    `:` type($result)
  }];
}

def Dist_SendOp : Dist_CollectiveOp<"send", [
    MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "Sends a tensor to a peer stage along one mesh axis";
  let description = [{
    For pipelines, where each stage along `axis` (usually "pp") is its own
    program: `peer` is the receiving stage's index along `axis`, the other
    coordinates being the sender's. Must be matched by a `dist.recv` of the
    same type on the peer. Has side effects so that it is neither removed
    nor reordered with other sends and receives.

    ```mlir
    dist.send %x mesh = @mesh axis = "pp" peer = 1 : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins AnyStaticShapeTensor:$input, FlatSymbolRefAttr:$mesh,
                       StrAttr:$axis, I64Attr:$peer);
  let assemblyFormat = [{
    $input `mesh` `=` $mesh `axis` `=` $axis `peer` `=` $peer attr-dict
    `:` type($input)
  }];
  let hasVerifier = 0;
}

def Dist_RecvOp : Dist_CollectiveOp<"recv", [
    MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "Receives a tensor from a peer stage along one mesh axis";
  let description = [{
    The counterpart of `dist.send`: `peer` is the sending stage's index
    along `axis`.

    ```mlir
    %x = dist.recv mesh = @mesh axis = "pp" peer = 0 : tensor<8x4xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$mesh, StrAttr:$axis, I64Attr:$peer);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    `mesh` `=` $mesh `axis` `=` $axis `peer` `=` $peer attr-dict
    `:` type($result)
  }];
  let hasVerifier = 0;
}

#endif // VEOMNI_DIST_OPS_TD
