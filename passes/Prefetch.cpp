//===- Prefetch.cpp - all-gathers of parameters ahead of their use --------===//
//
// FSDP keeps each parameter split over the data-parallel ranks and gathers
// it whole where an op needs it; veomni-partition puts the gather right
// before that op. On the collectives' own thread a gather overlaps only
// the compute between where it is issued and where it is read, which there
// is none of. Here gather k of a function argument moves up to just before
// the first op that reads gather k - distance: layer i's weights arrive
// while layer i - 1 computes, as FSDP's forward and backward prefetch do.
//
// Only gathers whose input is a function argument move (a parameter or
// state shard is there from the start); their order among themselves is
// kept, and every rank runs the same program, so collectives still meet.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "passes/Passes.h"

#include <limits>

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_PREFETCH
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct PrefetchPass : veomni::impl::PrefetchBase<PrefetchPass> {
  using PrefetchBase::PrefetchBase;

  void runOnOperation() override {
    if (distance < 0) {
      getOperation().emitError("veomni-prefetch: distance must be >= 0");
      return signalPassFailure();
    }
    if (distance == 0)
      return;
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      Block &body = func.getBody().front();
      SmallVector<dist::AllGatherOp> gathers;
      for (auto g : body.getOps<dist::AllGatherOp>())
        if (isa<BlockArgument>(g.getInput()))
          gathers.push_back(g);
      // Positions without Operation::isBeforeInBlock, whose order every
      // move invalidates (a scan of the block per gather, quadratic in
      // layers): an op that stays keeps (its index, max); a gather moved
      // before op `at` takes (at's index, n) for the n-th such move, so
      // that it sorts after what it follows and before `at`.
      using Position = std::pair<int64_t, int64_t>;
      DenseMap<Operation *, Position> position;
      int64_t index = 0;
      constexpr int64_t kStays = std::numeric_limits<int64_t>::max();
      for (Operation &op : body)
        position[&op] = {index++, kStays};
      int64_t moves = 0;
      // The first op of the block that reads `op`'s result.
      auto firstReader = [&](Operation *op) -> Operation * {
        Operation *first = nullptr;
        for (Operation *user : op->getUsers()) {
          Operation *inBlock = body.findAncestorOpInBlock(*user);
          if (inBlock && (!first || position[inBlock] < position[first]))
            first = inBlock;
        }
        return first;
      };
      for (size_t k = distance; k < gathers.size(); ++k) {
        Operation *gather = gathers[k];
        Operation *previous = gathers[k - 1];
        Operation *reader = firstReader(gathers[k - distance]);
        if (!reader)
          continue;
        // Not before the gather issued before it, and only ever earlier.
        Operation *at = reader;
        if (position[at] <= position[previous])
          at = previous->getNextNode();
        if (at == gather || !(position[at] < position[gather]))
          continue;
        position[gather] = {position[at].first, ++moves};
        gather->moveBefore(at);
      }
    }
  }
};

} // namespace
