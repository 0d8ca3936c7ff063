//===- Autodiff.cpp - reverse-mode differentiation of the step ------------===//

#include "passes/Autodiff.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/ScopeExit.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_AUTODIFF
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

llvm::DenseSet<Value> mlir::veomni::activeValues(Operation *op, Block &block) {
  auto func = cast<func::FuncOp>(op);
  llvm::DenseSet<Value> active;
  for (BlockArgument arg : block.getArguments())
    if (func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kParamAttrName) &&
        !func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kFrozenAttrName))
      active.insert(arg);
  for (Operation &op : block)
    if (llvm::any_of(op.getOperands(),
                     [&](Value v) { return active.contains(v); }))
      active.insert(op.getResults().begin(), op.getResults().end());
  return active;
}

LogicalResult
mlir::veomni::backpropagate(OpBuilder &b, ArrayRef<Operation *> forward,
                            llvm::DenseMap<Value, Value> &cotangent,
                            const llvm::DenseSet<Value> *active) {
  auto accumulate = [&](Value v, Value g) {
    if (!g || (active && !active->contains(v)))
      return;
    auto it = cotangent.find(v);
    if (it == cotangent.end())
      cotangent[v] = g;
    else
      it->second = AddOp::create(b, g.getLoc(), it->second, g);
  };
  // Each op the rules create computes part of the VJP of one forward op:
  // it gets that op's module, marked backward.
  Block *block = b.getInsertionBlock();
  auto lastBefore = [&]() -> Operation * {
    Block::iterator at = b.getInsertionPoint();
    return at == block->begin() ? nullptr : &*std::prev(at);
  };
  auto markBackward = [&](Operation *from, Operation *op) {
    ModuleAttr module = getModule(op->getLoc());
    if (!module)
      return;
    Block::iterator it = from ? std::next(from->getIterator()) : block->begin();
    for (; it != b.getInsertionPoint(); ++it)
      it->setLoc(withModule(it->getLoc(), module.asBackward()));
  };
  for (Operation *op : llvm::reverse(forward)) {
    Operation *from = lastBefore();
    llvm::scope_exit mark([&] { markBackward(from, op); });
    SmallVector<Value> resultGrads;
    bool reached = false;
    for (Value r : op->getResults()) {
      Value g = cotangent.lookup(r);
      reached |= bool(g);
      resultGrads.push_back(g);
    }
    if (!reached)
      continue;
    // Nothing trainable behind it: no backward.
    if (active && llvm::none_of(op->getOperands(),
                                [&](Value v) { return active->contains(v); }))
      continue;
    auto vjp = dyn_cast<VJPOpInterface>(op);
    if (!vjp)
      return op->emitOpError("is on the path to the loss but has no VJP "
                             "rule yet");
    // Rules take a cotangent for every result: zeros where none reached.
    for (auto [r, g] : llvm::zip(op->getResults(), resultGrads))
      if (!g &&
          isa<FloatType>(cast<RankedTensorType>(r.getType()).getElementType()))
        g = zerosLike(b, op->getLoc(), r.getType());
    SmallVector<Value> operandGrads;
    if (failed(vjp.buildVJP(b, resultGrads, operandGrads)))
      return failure();
    if (operandGrads.size() != op->getNumOperands())
      return op->emitOpError("VJP rule gave ")
             << operandGrads.size() << " cotangents for "
             << op->getNumOperands() << " operands";
    for (auto [operand, g] : llvm::zip(op->getOperands(), operandGrads))
      accumulate(operand, g);
  }
  return success();
}

Value mlir::veomni::zerosLike(OpBuilder &b, Location loc, Type type) {
  auto t = cast<RankedTensorType>(type);
  return ConstantOp::create(b, loc,
                            cast<ElementsAttr>(DenseElementsAttr::get(
                                t, b.getFloatAttr(t.getElementType(), 0.0))));
}

namespace {

LogicalResult differentiate(func::FuncOp func) {
  Block &block = func.getBody().front();
  auto ret = cast<func::ReturnOp>(block.getTerminator());
  if (ret.getNumOperands() == 0)
    return func.emitError("veomni-autodiff: @")
           << func.getName() << " returns nothing; its first result must be "
           << "the loss";
  Value loss = ret.getOperand(0);
  auto lossType = dyn_cast<RankedTensorType>(loss.getType());
  if (!lossType || lossType.getRank() != 0 ||
      !isa<FloatType>(lossType.getElementType()))
    return func.emitError("veomni-autodiff: the first result of @")
           << func.getName() << " must be a scalar float loss, got "
           << loss.getType();

  OpBuilder b(ret);
  Location loc = ret.getLoc();
  // The seed belongs to the backward of the op that computed the loss.
  Location seedLoc = loc;
  if (Operation *def = loss.getDefiningOp())
    if (ModuleAttr m = getModule(def->getLoc()))
      seedLoc = withModule(def->getLoc(), m.asBackward());
  llvm::DenseMap<Value, Value> cotangent;
  cotangent[loss] = ConstantOp::create(
      b, seedLoc,
      cast<ElementsAttr>(DenseElementsAttr::get(
          lossType, b.getFloatAttr(lossType.getElementType(), 1.0))));

  // The forward ops, last first. New backward ops go before the return and
  // are never visited: the list is taken before any is created.
  SmallVector<Operation *> forward;
  for (Operation &op : block.without_terminator())
    forward.push_back(&op);
  llvm::DenseSet<Value> active = activeValues(func, block);
  if (failed(backpropagate(b, forward, cotangent, &active)))
    return failure();

  // Return the original results, then one gradient per parameter.
  SmallVector<Value> results(ret.getOperands());
  SmallVector<std::pair<unsigned, StringAttr>> grads;
  for (BlockArgument arg : block.getArguments()) {
    auto name = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), VeOmniDialect::kParamAttrName);
    if (!name ||
        func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kFrozenAttrName))
      continue;
    Value g = cotangent.lookup(arg);
    results.push_back(
        g ? g
          : zerosLike(b,
                      withModule(loc, ModuleAttr::get(func.getContext(),
                                                      ModuleKind::Other, -1,
                                                      /*backward=*/true)),
                      arg.getType()));
    grads.push_back({static_cast<unsigned>(results.size() - 1), name});
  }
  func::ReturnOp::create(b, loc, results);
  ret.erase();
  // FuncOp::setFunctionType leaves the result attributes as they were:
  // keep the original results' (veomni.output) and size the list anew.
  SmallVector<DictionaryAttr> resultAttrs(
      results.size(), DictionaryAttr::get(func.getContext()));
  for (unsigned i = 0; i < func.getNumResults(); ++i)
    if (DictionaryAttr attrs = func.getResultAttrDict(i))
      resultAttrs[i] = attrs;
  func.setFunctionType(b.getFunctionType(block.getArgumentTypes(),
                                         ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  for (auto [index, name] : grads) {
    func.setResultAttr(index, "veomni.grad", name);
    func.setResultAttr(
        index, VeOmniDialect::kRoleAttrName,
        ResultRoleAttr::get(func.getContext(), ResultRole::Gradient));
  }
  func->setAttr(
      VeOmniDialect::kRoleAttrName,
      FunctionRoleAttr::get(func.getContext(), FunctionRole::Gradients));
  return success();
}

struct AutodiffPass : veomni::impl::AutodiffBase<AutodiffPass> {
  using AutodiffBase::AutodiffBase;
  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>(funcName);
    if (!func) {
      getOperation().emitError("veomni-autodiff: no function @") << funcName;
      return signalPassFailure();
    }
    if (func.getBody().getBlocks().size() != 1) {
      func.emitError("veomni-autodiff expects a single-block function");
      return signalPassFailure();
    }
    if (failed(differentiate(func)))
      signalPassFailure();
  }
};

} // namespace
