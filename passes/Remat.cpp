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
             MoEGroupTopKOp, MoEDispatchOp, MoECombineOp, GatherOp,
             ScatterAddOp>(op);
}

/// Which repeated block (a decoder layer, a vision block, an audio layer)
/// an op computes, or none.
std::optional<std::pair<ModuleKind, int64_t>> blockOf(Operation *op) {
  ModuleAttr m = getModule(op->getLoc());
  if (!m || !m.isBlock())
    return std::nullopt;
  // The modules of one decoder layer form one block.
  ModuleKind kind = m.isDecoderLayer() ? ModuleKind::Attention : m.getKind();
  return std::make_pair(kind, m.getLayer());
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
    if (policy == "none")
      return success();
    // The forward pass is what autodiff did not mark backward.
    Block &block = func.getBody().front();
    llvm::DenseSet<Operation *> forward;
    SmallVector<Operation *> backward;
    for (Operation &op : block.without_terminator()) {
      ModuleAttr m = getModule(op.getLoc());
      if (m && m.getBackward())
        backward.push_back(&op);
      else
        forward.insert(&op);
    }
    if (backward.empty())
      return success(); // not differentiated: nothing to do

    // Values the policy keeps alive from the forward pass.
    llvm::DenseSet<Value> kept;
    if (policy == "full") {
      // Each block's inputs (the residual stream entering a decoder layer,
      // the hidden states entering a vision or audio block); outside the
      // blocks, everything is kept.
      for (Operation *op : forward) {
        auto block = blockOf(op);
        if (!block) {
          for (Value r : op->getResults())
            kept.insert(r);
          continue;
        }
        for (Value operand : op->getOperands()) {
          Operation *def = operand.getDefiningOp();
          if (def && forward.contains(def) && blockOf(def) != block)
            kept.insert(operand);
        }
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
