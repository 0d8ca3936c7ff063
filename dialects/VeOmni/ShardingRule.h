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
#include <utility>

namespace mlir::veomni {

/// How a factor may be sharded.
enum class FactorKind {
  /// Appears in operands and results: sharding it needs no communication.
  PassThrough,
  /// Appears only in operands (a contraction, a masked lookup): sharding it
  /// leaves the results that lack it as partial sums over the axes.
  Reduction,
  /// Must be whole on every rank (e.g. the sorted dimension of a top-k, the
  /// normalised dimension of a norm).
  NeedReplication,
  /// May be sharded; the op, told the factor's axes when partitioned,
  /// communicates across them itself and its results are complete. A
  /// cross entropy's vocabulary: max, sum of exponentials and the target
  /// logit are combined across the vocabulary shards.
  Internal,
  /// The experts of a grouped matmul. Sharding it (expert parallelism)
  /// means each rank holds its experts' weights; the rows, wherever they
  /// are split, travel to their expert's rank and back (dispatch and
  /// combine all-to-alls the partitioned op makes). So its axes may also
  /// split the rows: an expert factor shares its axes.
  Expert,
};

/// The factor form of an op's sharding: every tensor dimension is the
/// product of a list of factors (most major first); an empty list is a
/// dimension of size 1 that no factor covers.
///
/// A result that lacks a sharded factor holds partial sums over its axes,
/// unless it is marked per-shard: such a result (a histogram of the rows a
/// rank holds, say) describes the local shard and is used only with
/// operands sharded the same way.
struct ShardingRule {
  using Dims = llvm::SmallVector<llvm::SmallVector<int64_t, 1>>;
  llvm::SmallVector<int64_t> factorSizes;
  llvm::SmallVector<FactorKind> factorKinds;
  /// operandDims[i][d]: the factors of dimension d of operand i.
  llvm::SmallVector<Dims> operandDims;
  /// resultDims[i][d]: the factors of dimension d of result i.
  llvm::SmallVector<Dims> resultDims;
  /// perShardResults[i]: result i is per shard, never a partial sum.
  llvm::SmallVector<bool> perShardResults;
  /// Operands read only for their type (a weight gradient's weight): a
  /// partitioner gives them the local type without moving data.
  llvm::SmallVector<int64_t> typeOnlyOperands;
  /// (from, to): a split that reaches need-replication factor `from` is
  /// better moved onto factor `to` than undone. Attention moves a split
  /// sequence onto the heads, which is Ulysses' all-to-all.
  llvm::SmallVector<std::pair<int64_t, int64_t>> relocations;

  /// Adds a factor and returns its index.
  int64_t addFactor(int64_t size, FactorKind kind = FactorKind::PassThrough) {
    factorSizes.push_back(size);
    factorKinds.push_back(kind);
    return static_cast<int64_t>(factorSizes.size()) - 1;
  }
  int64_t numFactors() const {
    return static_cast<int64_t>(factorSizes.size());
  }
};

} // namespace mlir::veomni

#endif // VEOMNI_DIALECTS_VEOMNI_SHARDINGRULE_H
