//===- Remat.cpp - recompute activations in the backward pass -------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_REMAT
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// Ops whose results selective remat keeps: recomputing them would cost
/// about as much as the step they belong to.
bool expensive(Operation *op) {
  return isa<MatmulOp, GroupedMatmulOp, AttentionOp, Conv1DOp, MoETopKOp,
             MoEDispatchOp, MoECombineOp, GatherOp, ScatterAddOp>(op);
}

std::string locationName(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  return "";
}

struct RematPass : veomni::impl::RematBase<RematPass> {
  using RematBase::RematBase;

  void runOnOperation() override {
    if (policy != "none" && policy != "selective" && policy != "full") {
      getOperation().emitError("veomni-remat: policy must be none, "
                               "selective or full, got '")
          << policy << "'";
      return signalPassFailure();
    }
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(rematerialize(func)))
        return signalPassFailure();
  }

  LogicalResult rematerialize(func::FuncOp func) {
    auto boundary = func->getAttrOfType<IntegerAttr>("veomni.forward_ops");
    if (!boundary)
      return success(); // not differentiated: nothing to do
    if (policy == "none")
      return success();
    Block &block = func.getBody().front();
    int64_t n = boundary.getInt(), i = 0;
    llvm::DenseSet<Operation *> forward;
    SmallVector<Operation *> backward;
    for (Operation &op : block.without_terminator())
      (i++ < n ? forward.insert(&op), (void)0 : backward.push_back(&op));

    // Values the policy keeps alive from the forward pass.
    llvm::DenseSet<Value> kept;
    if (policy == "full") {
      // Each decoder layer's input: the residual stream entering its
      // input_layernorm. Outside the decoder layers, everything is kept.
      for (Operation *op : forward) {
        std::string where = locationName(op->getLoc());
        if (where.find("layers.") == std::string::npos)
          for (Value r : op->getResults())
            kept.insert(r);
        if (isa<RMSNormOp>(op) &&
            StringRef(where).ends_with(".input_layernorm"))
          kept.insert(op->getOperand(0));
      }
    }
    auto keep = [&](Value v) {
      Operation *def = v.getDefiningOp();
      if (!def || !forward.contains(def) || kept.contains(v))
        return true;
      return policy == "selective" && expensive(def);
    };

    OpBuilder b(func.getContext());
    IRMapping recomputed;
    std::function<Value(Value)> recompute = [&](Value v) -> Value {
      if (keep(v))
        return v;
      if (Value done = recomputed.lookupOrNull(v))
        return done;
      Operation *def = v.getDefiningOp();
      for (Value operand : def->getOperands())
        recomputed.map(operand, recompute(operand));
      Operation *clone = b.clone(*def, recomputed);
      for (auto [from, to] : llvm::zip(def->getResults(), clone->getResults()))
        recomputed.map(from, to);
      return recomputed.lookup(v);
    };
    for (Operation *op : backward) {
      b.setInsertionPoint(op);
      for (OpOperand &use : op->getOpOperands())
        if (!keep(use.get()))
          use.set(recompute(use.get()));
    }
    return success();
  }
};

} // namespace
