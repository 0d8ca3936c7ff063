//===- Autodiff.h - reverse mode, for passes that build backwards -*- C++
//-*-===//

#ifndef VEOMNI_PASSES_AUTODIFF_H
#define VEOMNI_PASSES_AUTODIFF_H

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::veomni {

/// Walks `forward` last first and, with each op's VJP rule, adds the
/// cotangents of its operands to `cotangent` (summed where a value has
/// several uses) from those of its results; `cotangent` holds the seeds.
/// New ops go at `b`'s insertion point. An op on the path without a rule
/// is an error naming it.
LogicalResult backpropagate(OpBuilder &b, ArrayRef<Operation *> forward,
                            llvm::DenseMap<Value, Value> &cotangent);

/// A zero tensor of `type`.
Value zerosLike(OpBuilder &b, Location loc, Type type);

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_AUTODIFF_H
