//===- VeOmniOps.h - veomni ops, attributes and interfaces ------*- C++ -*-===//

#ifndef VEOMNI_DIALECTS_VEOMNI_VEOMNIOPS_H
#define VEOMNI_DIALECTS_VEOMNI_VEOMNIOPS_H

#include "dialects/VeOmni/ShardingRule.h"
#include "dialects/VeOmni/VeOmniDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/VeOmni/VeOmniEnums.h.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/VeOmni/VeOmniAttrs.h.inc"
#include "dialects/VeOmni/VeOmniInterfaces.h.inc"

namespace mlir::veomni {
/// Type rule of the elementwise binary ops: both operands of one type. `op`
/// is the op's name without the dialect prefix, for messages.
llvm::LogicalResult inferBinaryType(std::optional<Location> loc,
                                    llvm::StringRef op, Type lhs, Type rhs,
                                    llvm::SmallVectorImpl<Type> &types);
/// Gives every veomni op its ShardingRuleOpInterface (VeOmniSharding.cpp);
/// called when the dialect loads.
void attachShardingRules(MLIRContext *ctx);

/// The model module an op at `loc` computes (the metadata of a fused
/// location, searched depth first), or null.
ModuleAttr getModule(Location loc);
/// `loc` carrying `module` (replacing a module it had).
Location withModule(Location loc, ModuleAttr module);

/// Attention's optional operands, told apart by element type: the integer
/// segment ids and the float sinks (null when absent).
Value attentionSegmentIds(ValueRange optionals);
Value attentionSinks(ValueRange optionals);
} // namespace mlir::veomni

#define GET_OP_CLASSES
#include "dialects/VeOmni/VeOmniOps.h.inc"

#endif // VEOMNI_DIALECTS_VEOMNI_VEOMNIOPS_H
