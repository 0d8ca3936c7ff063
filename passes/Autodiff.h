//===- Autodiff.h - reverse mode, for passes that build backwards -*- C++
//-*-===//

#ifndef VEOMNI_PASSES_AUTODIFF_H
#define VEOMNI_PASSES_AUTODIFF_H

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::veomni {

/// Walks `forward` last first and, with each op's VJP rule, adds the
/// cotangents of its operands to `cotangent` (summed where a value has
/// several uses) from those of its results; `cotangent` holds the seeds.
/// New ops go at `b`'s insertion point. An op on the path without a rule
/// is an error naming it. With `active`, only its values get cotangents
/// (and an op none of whose operands is active is not differentiated).
LogicalResult backpropagate(OpBuilder &b, ArrayRef<Operation *> forward,
                            llvm::DenseMap<Value, Value> &cotangent,
                            const llvm::DenseSet<Value> *active = nullptr);

/// The values of `block` that depend on a trainable parameter: its
/// `veomni.param` arguments not marked `veomni.frozen`, of `func`, and
/// everything computed from them, in order.
llvm::DenseSet<Value> activeValues(Operation *func, Block &block);

/// A zero tensor of `type`.
Value zerosLike(OpBuilder &b, Location loc, Type type);

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_AUTODIFF_H
