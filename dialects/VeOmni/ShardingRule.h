//===- ShardingRule.h - factor-based sharding rules -------------*- C++ -*-===//
//
// The value returned by ShardingRuleOpInterface. Kept apart from the dialect
// headers so that passes can use it without the op definitions.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_DIALECTS_VEOMNI_SHARDINGRULE_H
#define VEOMNI_DIALECTS_VEOMNI_SHARDINGRULE_H

#include "llvm/ADT/SmallVector.h"
#include <cstdint>

namespace mlir::veomni {

/// How a factor may be sharded.
enum class FactorKind {
  /// Appears in operands and results: sharding it needs no communication.
  PassThrough,
  /// Appears only in operands (a contraction): sharding it makes the results
  /// partial sums over the sharding axes.
  Reduction,
  /// Must be whole on every rank (e.g. the sorted dimension of a top-k).
  NeedReplication,
};

/// The factor form of an op's sharding: every tensor dimension is the
/// product of a list of factors (most major first); an empty list is a
/// dimension of size 1 that no factor covers.
struct ShardingRule {
  llvm::SmallVector<int64_t> factorSizes;
  llvm::SmallVector<FactorKind> factorKinds;
  /// operandDims[i][d]: the factors of dimension d of operand i.
  llvm::SmallVector<llvm::SmallVector<llvm::SmallVector<int64_t, 1>>>
      operandDims;
  /// resultDims[i][d]: the factors of dimension d of result i.
  llvm::SmallVector<llvm::SmallVector<llvm::SmallVector<int64_t, 1>>>
      resultDims;
};

} // namespace mlir::veomni

#endif // VEOMNI_DIALECTS_VEOMNI_SHARDINGRULE_H
