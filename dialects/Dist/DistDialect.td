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
    /// Argument and result attribute after veomni-partition: the argument
    /// or result is this rank's slice of a global tensor laid out by this
    /// `#dist.sharding` (its type is the local one). The runtime slices
    /// global data into it and gathers it back (checkpoints, batches).
    static constexpr ::llvm::StringLiteral kSliceAttrName = "dist.slice";

    // The hand-off attributes passes give each other, each checked by
    // verifyOperationAttribute.
    /// The mesh axes a partitioned op combines over itself: a vocab-split
    /// cross entropy, a token-split mean, a lookup in a split table, a
    /// grouped matmul over experts split across ranks (non-empty lists of
    /// axis names, veomni-partition).
    static constexpr ::llvm::StringLiteral kVocabAxesAttrName =
        "dist.vocab_axes";
    static constexpr ::llvm::StringLiteral kTokenAxesAttrName =
        "dist.token_axes";
    static constexpr ::llvm::StringLiteral kIndexAxesAttrName =
        "dist.index_axes";
    static constexpr ::llvm::StringLiteral kExpertAxesAttrName =
        "dist.expert_axes";
    /// A pipeline function's stage and chunk (non-negative integers,
    /// veomni-pipeline).
    static constexpr ::llvm::StringLiteral kStageAttrName = "dist.stage";
    static constexpr ::llvm::StringLiteral kChunkAttrName = "dist.chunk";
    /// The first argument of a backward chunk that is an activation its
    /// stage kept, and of a weight half that is a stashed value.
    static constexpr ::llvm::StringLiteral kKeptFromAttrName =
        "dist.kept_from";
    static constexpr ::llvm::StringLiteral kStashFromAttrName =
        "dist.stash_from";
    /// The module's pipeline schedule (a dictionary).
    static constexpr ::llvm::StringLiteral kPipelineAttrName =
        "dist.pipeline";
    /// Marks an op that has no sharding rule as meant to run replicated.
    static constexpr ::llvm::StringLiteral kReplicatedAttrName =
        "dist.replicated";
  }];
}

#endif // VEOMNI_DIST_DIALECT_TD
