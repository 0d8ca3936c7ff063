//===- PipelineBoundaries.cpp - pipeline sends and receives as I/O --------===//
//
// veomni-pipeline writes each chunk as a function that receives what the
// previous chunk sent (dist.recv) and sends on what the next one needs
// (dist.send). A runtime that runs the schedule's action list itself
// (runtime/train/Pipeline.cpp) wants them as the program's inputs and
// outputs instead: it keeps what a forward received for that micro-batch's
// backward, and it sends without blocking, so that two stages sending to
// each other never wait on one another.
//
// After veomni-partition (types are per rank), in every chunk function:
//  - each `dist.recv` becomes a new argument, in program order: role
//    `activation` (named activation.<k>) in a forward, `cotangent`
//    (cotangent.<k>) in a backward; an integer cotangent is zeros (an
//    index has no gradient, and the sending side sends none);
//  - each `dist.send` becomes a new result, in program order: role
//    `activation` or `cotangent`, named like the argument it becomes on
//    the other side.
// Program order is the order veomni-pipeline lists a cut's values in on
// both sides, so result k of one chunk is argument k of the next.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_PIPELINEBOUNDARIES
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct PipelineBoundariesPass
    : veomni::impl::PipelineBoundariesBase<PipelineBoundariesPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (!func->hasAttr(dist::DistDialect::kChunkAttrName))
        continue;
      auto role =
          func->getAttrOfType<FunctionRoleAttr>(VeOmniDialect::kRoleAttrName);
      bool forward = role && role.getValue() == FunctionRole::ForwardChunk;
      StringRef prefix = forward ? "activation." : "cotangent.";
      Block &entry = func.getBody().front();
      auto ret = cast<func::ReturnOp>(entry.getTerminator());

      unsigned received = 0;
      for (auto recv : llvm::to_vector(entry.getOps<dist::RecvOp>())) {
        if (recv.getAxis() != "pp") {
          recv.emitOpError("veomni-pipeline-boundaries: a receive on axis ")
              << recv.getAxis() << ", not pp";
          return signalPassFailure();
        }
        auto type = cast<RankedTensorType>(recv.getType());
        Value replacement;
        if (!forward && !isa<FloatType>(type.getElementType())) {
          OpBuilder b(recv);
          replacement = ConstantOp::create(
              b, recv.getLoc(),
              cast<ElementsAttr>(DenseElementsAttr::get(
                  type, b.getIntegerAttr(type.getElementType(), 0))));
        } else {
          unsigned index = func.getNumArguments();
          SmallVector<NamedAttribute> attrs = {
              NamedAttribute(
                  StringAttr::get(ctx, VeOmniDialect::kInputAttrName),
                  StringAttr::get(ctx, prefix + Twine(received))),
              NamedAttribute(StringAttr::get(ctx, VeOmniDialect::kRoleAttrName),
                             ArgumentRoleAttr::get(
                                 ctx, forward ? ArgumentRole::Activation
                                              : ArgumentRole::Cotangent))};
          if (failed(func.insertArgument(
                  index, type, DictionaryAttr::get(ctx, attrs), recv.getLoc())))
            return signalPassFailure();
          replacement = func.getArgument(index);
          ++received;
        }
        recv.getResult().replaceAllUsesWith(replacement);
        recv.erase();
      }

      SmallVector<Value> sent;
      for (auto send : llvm::to_vector(entry.getOps<dist::SendOp>())) {
        if (send.getAxis() != "pp") {
          send.emitOpError("veomni-pipeline-boundaries: a send on axis ")
              << send.getAxis() << ", not pp";
          return signalPassFailure();
        }
        sent.push_back(send.getInput());
        send.erase();
      }
      if (sent.empty())
        continue;
      unsigned first = ret.getNumOperands();
      SmallVector<Value> results(ret.getOperands());
      results.append(sent);
      OpBuilder b(ret);
      func::ReturnOp::create(b, ret.getLoc(), results);
      ret.erase();
      SmallVector<DictionaryAttr> resultAttrs;
      for (unsigned i = 0; i < first; ++i)
        resultAttrs.push_back(func.getResultAttrDict(i));
      for (size_t k = 0; k < sent.size(); ++k)
        resultAttrs.push_back(DictionaryAttr::get(
            ctx,
            {NamedAttribute(StringAttr::get(ctx, "veomni.output"),
                            StringAttr::get(ctx, prefix + Twine(k))),
             NamedAttribute(
                 StringAttr::get(ctx, VeOmniDialect::kRoleAttrName),
                 ResultRoleAttr::get(ctx, forward ? ResultRole::Activation
                                                  : ResultRole::Cotangent))}));
      func.setFunctionType(FunctionType::get(ctx, func.getArgumentTypes(),
                                             ValueRange(results).getTypes()));
      func.setAllResultAttrs(resultAttrs);
    }
  }
};

} // namespace
