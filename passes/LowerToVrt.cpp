//===- LowerToVrt.cpp - veomni ops to kernel calls on buffers -------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_LOWERTOVRT
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

MemRefType bufferType(Type tensor) {
  auto t = cast<RankedTensorType>(tensor);
  return MemRefType::get(t.getShape(), t.getElementType());
}

/// The kernel a veomni op becomes: its name without the dialect prefix, and
/// for reduce the reduction too ("reduce_sum"): `kind` is the kernel op's
/// own attribute.
std::string kernelKind(Operation *op) {
  if (auto r = dyn_cast<ReduceOp>(op))
    return ("reduce_" + stringifyReduceKind(r.getKind())).str();
  return op->getName().stripDialect().str();
}

LogicalResult lowerFunction(func::FuncOp func) {
  if (func.getBody().getBlocks().size() != 1)
    return func.emitError("veomni-lower-to-vrt expects a single-block "
                          "function, @")
           << func.getName() << " has " << func.getBody().getBlocks().size();
  Block &block = func.getBody().front();
  OpBuilder builder(func.getContext());
  IRMapping buffers;

  for (BlockArgument arg : block.getArguments()) {
    if (!isa<RankedTensorType>(arg.getType()))
      return func.emitError("argument #")
             << arg.getArgNumber() << " of @" << func.getName()
             << " is not a tensor: " << arg.getType();
  }

  SmallVector<Operation *> lowered;
  for (Operation &op : llvm::make_early_inc_range(block)) {
    builder.setInsertionPoint(&op);
    Location loc = op.getLoc();
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      SmallVector<Value> results;
      for (Value v : ret.getOperands()) {
        // An argument returned as it is (a gradient that is an input)
        // is copied: results live in buffers the program owns.
        if (isa<BlockArgument>(v)) {
          Value buf = vrt::AllocOp::create(
              builder, loc, bufferType(v.getType()), IntegerAttr());
          vrt::KernelOp::create(builder, loc, "copy", ValueRange(v),
                                ValueRange(buf));
          results.push_back(buf);
          continue;
        }
        results.push_back(buffers.lookup(v));
      }
      func::ReturnOp::create(builder, loc, results);
      lowered.push_back(&op);
      continue;
    }
    // Collectives of a partitioned step are kernels like any other.
    if (!isa<VeOmniDialect, dist::DistDialect>(op.getDialect()))
      return op.emitOpError("cannot be lowered to vrt: not a veomni op or a "
                            "collective");

    if (auto c = dyn_cast<ConstantOp>(op)) {
      // A splat (zeros for gradients, ones, scales) is filled when the step
      // runs, instead of being stored in the program.
      if (auto splat = dyn_cast<SplatElementsAttr>(c.getValue())) {
        Value buf = vrt::AllocOp::create(builder, loc, bufferType(c.getType()),
                                         IntegerAttr());
        auto fill = vrt::KernelOp::create(builder, loc, "fill", ValueRange(),
                                          ValueRange(buf));
        fill->setAttr("value", splat.getSplatValue<Attribute>());
        buffers.map(c.getResult(), buf);
      } else {
        Value buf = vrt::ConstantOp::create(
            builder, loc, bufferType(c.getType()), c.getValue(), IntegerAttr());
        buffers.map(c.getResult(), buf);
      }
    } else if (auto r = dyn_cast<ReshapeOp>(op)) {
      // A reshape of a contiguous buffer moves no bytes.
      Value source = r.getInput();
      Value buf = vrt::ViewOp::create(
          builder, loc, bufferType(r.getType()),
          isa<BlockArgument>(source) ? source : buffers.lookup(source));
      buffers.map(r.getResult(), buf);
    } else {
      SmallVector<Value> ins, outs;
      for (Value operand : op.getOperands())
        ins.push_back(isa<BlockArgument>(operand) ? operand
                                                  : buffers.lookup(operand));
      for (Value result : op.getResults()) {
        Value buf = vrt::AllocOp::create(
            builder, loc, bufferType(result.getType()), IntegerAttr());
        buffers.map(result, buf);
        outs.push_back(buf);
      }
      auto kernel =
          vrt::KernelOp::create(builder, loc, kernelKind(&op), ins, outs);
      // Keep the op's attributes (transpose flags, epsilon, dims...).
      for (NamedAttribute attr : op.getAttrs())
        if (!isa<ReduceOp>(op) || attr.getName() != "kind")
          kernel->setAttr(attr.getName(), attr.getValue());
    }
    lowered.push_back(&op);
  }
  for (Operation *op : llvm::reverse(lowered)) {
    op->dropAllUses();
    op->erase();
  }

  for (BlockArgument arg : block.getArguments())
    arg.setType(bufferType(arg.getType()));
  auto ret = cast<func::ReturnOp>(block.getTerminator());
  func.setFunctionType(FunctionType::get(
      func.getContext(), block.getArgumentTypes(), ret.getOperandTypes()));
  return success();
}

struct LowerToVrtPass : veomni::impl::LowerToVrtBase<LowerToVrtPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(lowerFunction(func)))
        return signalPassFailure();
  }
};

} // namespace
