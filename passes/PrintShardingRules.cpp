//===- PrintShardingRules.cpp - rules as attributes, for reading ----------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"
#include "passes/Sharding.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_PRINTSHARDINGRULES
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct PrintShardingRulesPass
    : veomni::impl::PrintShardingRulesBase<PrintShardingRulesPass> {
  void runOnOperation() override {
    WalkResult result = getOperation().walk([&](Operation *op) {
      if (op->getNumResults() == 0 || isa<ModuleOp, func::FuncOp>(op) ||
          isa<dist::MeshOp>(op))
        return WalkResult::advance();
      std::optional<ShardingRule> rule = sharding::ruleOf(op);
      if (!rule) {
        if (op->hasAttr(dist::DistDialect::kReplicatedAttrName))
          return WalkResult::advance();
        op->emitOpError("has no sharding rule (give it one, or mark it ")
            << dist::DistDialect::kReplicatedAttrName << ")";
        return WalkResult::interrupt();
      }
      op->setAttr("veomni.sharding_rule",
                  ShardingRuleAttr::get(op->getContext(), *rule));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
