//===- DistOps.h - the dist dialect -----------------------------*- C++ -*-===//

#ifndef VEOMNI_DIALECTS_DIST_DISTOPS_H
#define VEOMNI_DIALECTS_DIST_DISTOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Dist/DistDialect.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Dist/DistAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/Dist/DistOps.h.inc"

namespace mlir::dist {

/// Checks that `sharding` can lay out a global tensor of type `type` on
/// `mesh`: the mesh exists (a null `mesh` is reported as a failed lookup of
/// the sharding's mesh), there is one dim sharding per dimension, every axis
/// is in the mesh and used at most once across dims and `partial`, and each
/// static dimension is divisible by the product of its axes' sizes.
LogicalResult verifyShardingFor(RankedTensorType type, ShardingAttr sharding,
                                MeshOp mesh,
                                function_ref<InFlightDiagnostic()> emitError);

/// The mesh `name` as seen from `from`, or null.
MeshOp lookupMesh(Operation *from, FlatSymbolRefAttr name);

} // namespace mlir::dist

#endif // VEOMNI_DIALECTS_DIST_DISTOPS_H
