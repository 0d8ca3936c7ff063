//===- DistDialect.td - the dist dialect ---------------------*- tablegen -*-===//
//
// Parallelism planning, in the manner of OpenXLA Shardy: a named device mesh,
// per-tensor shardings over its axes, and the collectives that a partitioner
// inserts between them.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_DIST_DIALECT_TD
#define VEOMNI_DIST_DIALECT_TD

include "mlir/IR/OpBase.td"

def Dist_Dialect : Dialect {
  let name = "dist";
  let cppNamespace = "::mlir::dist";
  let summary = "Device meshes, tensor shardings and collectives";
  let useDefaultAttributePrinterParser = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let hasOperationAttrVerify = 1;
  let extraClassDeclaration = [{
    /// Argument and result attribute: a `#dist.sharding` of the (global)
    /// tensor that the argument or result is.
    static constexpr ::llvm::StringLiteral kShardingAttrName = "dist.sharding";
  }];
}

#endif // VEOMNI_DIST_DIALECT_TD
