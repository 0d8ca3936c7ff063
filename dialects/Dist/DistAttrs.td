//===- DistAttrs.td - dist attributes ------------------------*- tablegen -*-===//

#ifndef VEOMNI_DIST_ATTRS_TD
#define VEOMNI_DIST_ATTRS_TD

include "DistDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"

class Dist_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Dist_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Dist_MeshAxisAttr : Dist_Attr<"MeshAxis", "axis"> {
  let summary = "One named axis of a device mesh and its size";
  let description = [{
    `#dist.axis<"tp" = 4>`. Conventional names are dp_replicate, dp_shard,
    tp, sp, ep and pp; any non-empty name is allowed.
  }];
  let parameters = (ins StringRefParameter<"axis name">:$name,
                        "int64_t":$size);
  let assemblyFormat = "`<` $name `=` $size `>`";
  let genVerifyDecl = 1;
}

def Dist_MeshAttr : Dist_Attr<"Mesh", "mesh"> {
  let summary = "An ordered list of named axes, major to minor";
  let description = [{
    `#dist.mesh<["dp_shard" = 4, "tp" = 2]>`: 8 devices; device d has
    coordinates (d / 2, d % 2). Names are unique and sizes at least 1.
  }];
  let parameters = (ins ArrayRefParameter<"MeshAxisAttr", "axes">:$axes);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The axis called `name`, or null.
    MeshAxisAttr getAxis(::llvm::StringRef name) const;
    /// Number of devices: the product of the axis sizes.
    int64_t getNumDevices() const;
  }];
}

def Dist_DimShardingAttr : Dist_Attr<"DimSharding", "dim"> {
  let summary = "How one tensor dimension is split over mesh axes";
  let description = [{
    `{"dp_shard", "tp"}`: the dimension is split over dp_shard (major) then
    tp (minor). A trailing `?` marks the dimension open, meaning
    propagation may split it further over more (minor) axes; without it
    the dimension is closed. A suffix `p<N>` gives a priority: lower
    numbers are propagated first (Shardy's convention), absent means
    lowest priority.
  }];
  let parameters = (ins
      ArrayRefParameter<"::mlir::StringAttr", "mesh axes, major to minor">:$axes,
      "bool":$isClosed,
      OptionalParameter<"std::optional<int64_t>">:$priority);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

def Dist_ShardingAttr : Dist_Attr<"Sharding", "sharding"> {
  let summary = "How a global tensor is laid out over a mesh";
  let description = [{
    ```
    #dist.sharding<@mesh, [{"dp_shard"}, {}, {"tp", "sp"} ], partial = ["ep"]>
    ```
    One dim sharding per tensor dimension. Axes that appear nowhere
    replicate the tensor; axes listed in `partial` hold partial sums, the
    true value being the sum over those axes. `verifyShardingFor` checks the
    attribute against a tensor type and the mesh.
  }];
  let parameters = (ins
      "::mlir::FlatSymbolRefAttr":$meshName,
      ArrayRefParameter<"DimShardingAttr", "per-dimension shardings">:$dims,
      OptionalArrayRefParameter<"::mlir::StringAttr", "partial-sum axes">:$partial);
  let hasCustomAssemblyFormat = 1;
}

#endif // VEOMNI_DIST_ATTRS_TD
