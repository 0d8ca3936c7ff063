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

/// The kernel-table row a veomni op becomes: the op's name without the
/// dialect prefix, but for the variants the table keeps apart (the
/// reduction of reduce, the tanh form of gelu, the inverse of rope).
std::string kernelMnemonic(Operation *op) {
  if (auto r = dyn_cast<ReduceOp>(op))
    return ("reduce_" + stringifyReduceKind(r.getKind())).str();
  if (auto g = dyn_cast<GeluOp>(op);
      g && g.getApproximation() == GeluApproximation::Tanh)
    return "gelu_tanh";
  if (isa<RopeOp>(op) && op->hasAttr("inverse"))
    return "rope_inverse";
  return op->getName().stripDialect().str();
}

/// The value of the table's attribute `spec` in `attrs` (op's), or the
/// table's default. Enumerations become their numbers as the table says.
FailureOr<Attribute> kernelAttr(Operation *op, DictionaryAttr attrs,
                                const ::kernel_table::AttrSpec &spec) {
  using ::kernel_table::AttrType;
  Builder b(op->getContext());
  StringRef name = spec.name;
  Attribute given = attrs.get(name);
  switch (spec.type) {
  case AttrType::Bool:
    if (name == "tanh_approximation") {
      auto approx =
          dyn_cast_or_null<GeluApproximationAttr>(attrs.get("approximation"));
      return approx && approx.getValue() == GeluApproximation::Tanh
                 ? Attribute(b.getUnitAttr())
                 : Attribute();
    }
    if (auto flag = dyn_cast_or_null<BoolAttr>(given))
      return flag.getValue() ? Attribute(b.getUnitAttr()) : Attribute();
    return given ? Attribute(b.getUnitAttr()) : Attribute();
  case AttrType::Int:
    if (auto r = dyn_cast_or_null<LossReductionAttr>(given))
      return Attribute(
          b.getI64IntegerAttr(r.getValue() == LossReduction::Mean  ? 0
                              : r.getValue() == LossReduction::Sum ? 1
                                                                   : 2));
    if (auto i = dyn_cast_or_null<IntegerAttr>(given))
      return Attribute(b.getI64IntegerAttr(i.getValue().getSExtValue()));
    if (given)
      break;
    return Attribute(
        b.getI64IntegerAttr(static_cast<int64_t>(spec.defaultValue)));
  case AttrType::Float:
    if (auto f = dyn_cast_or_null<FloatAttr>(given))
      return Attribute(b.getF64FloatAttr(f.getValueAsDouble()));
    if (auto i = dyn_cast_or_null<IntegerAttr>(given))
      return Attribute(b.getF64FloatAttr(i.getValue().getSExtValue()));
    if (given)
      break;
    return Attribute(b.getF64FloatAttr(spec.defaultValue));
  case AttrType::Ints:
    if (isa_and_nonnull<DenseI64ArrayAttr>(given))
      return given;
    if (given)
      break;
    return Attribute(b.getDenseI64ArrayAttr({}));
  case AttrType::Floats:
    if (isa_and_nonnull<DenseF32ArrayAttr, DenseF64ArrayAttr>(given))
      return given;
    if (given)
      break;
    return Attribute(b.getDenseF64ArrayAttr({}));
  }
  return op->emitOpError("attribute '")
         << name << "' = " << given
         << " does not have the type its runtime kernel takes";
}

/// A kernel call of `op` on buffers, with the table's attributes taken
/// from `op` (or their defaults, with `ownAttrs` false).
FailureOr<vrt::KernelOp> createKernel(OpBuilder &builder, Operation *op,
                                      StringRef mnemonic, ValueRange ins,
                                      ValueRange outs, bool ownAttrs = true) {
  auto kind = ::kernel_table::KindOfMnemonic(mnemonic);
  if (!kind)
    return op->emitOpError("has no runtime kernel ('")
           << mnemonic << "' is not in runtime/program/KernelTable.def)";
  auto kernel = vrt::KernelOp::create(
      builder, op->getLoc(), vrt::KernelKindAttr::get(op->getContext(), *kind),
      ins, outs);
  const ::kernel_table::KernelInfo &info = ::kernel_table::Info(*kind);
  DictionaryAttr from = ownAttrs ? op->getAttrDictionary()
                                 : DictionaryAttr::get(op->getContext());
  for (uint32_t i = 0; i < info.numAttrs; ++i) {
    FailureOr<Attribute> a = kernelAttr(op, from, info.attrs[i]);
    if (failed(a))
      return failure();
    if (*a)
      kernel->setAttr(info.attrs[i].name, *a);
  }
  return kernel;
}

/// The comm groups of the module's collective kernels, by their axes (in
/// the order the collective lists them); kernels name them by index.
struct CommGroups {
  SmallVector<Attribute> axes;
  int64_t indexOf(ArrayAttr groupAxes) {
    for (auto [i, a] : llvm::enumerate(axes))
      if (a == groupAxes)
        return static_cast<int64_t>(i);
    axes.push_back(groupAxes);
    return static_cast<int64_t>(axes.size()) - 1;
  }
};

LogicalResult lowerFunction(func::FuncOp func, CommGroups &groups) {
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
          if (failed(createKernel(builder, &op, "copy", ValueRange(v),
                                  ValueRange(buf))))
            return failure();
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
        FailureOr<vrt::KernelOp> fill =
            createKernel(builder, &op, "fill", ValueRange(), ValueRange(buf),
                         /*ownAttrs=*/false);
        if (failed(fill))
          return failure();
        Attribute value = splat.getSplatValue<Attribute>();
        double v = 0;
        if (auto f = dyn_cast<FloatAttr>(value))
          v = f.getValueAsDouble();
        else if (auto i = dyn_cast<IntegerAttr>(value))
          v = static_cast<double>(i.getValue().getSExtValue());
        else
          return c.emitOpError("splat of ") << value << " cannot be filled";
        (*fill)->setAttr("value", builder.getF64FloatAttr(v));
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
      if (isa<dist::AllGatherOp, dist::ReduceScatterOp, dist::AllReduceOp,
              dist::AllToAllOp, dist::LocalSplitOp>(op)) {
        // A collective kernel on its comm group (the runtime's
        // communicator runs it).
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, op.getName().stripDialect(), ins, outs);
        if (failed(kernel))
          return failure();
        (*kernel)->setAttr("group", builder.getI64IntegerAttr(groups.indexOf(
                                        op.getAttrOfType<ArrayAttr>("axes"))));
      } else if (isa<dist::SendOp, dist::RecvOp>(op)) {
        // A pipeline stage's send or receive, to its peer along one axis.
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, op.getName().stripDialect(), ins, outs);
        if (failed(kernel))
          return failure();
        auto axis = op.getAttrOfType<StringAttr>("axis");
        (*kernel)->setAttr("group", builder.getI64IntegerAttr(groups.indexOf(
                                        builder.getArrayAttr({axis}))));
      } else if (isa<dist::DistDialect>(op.getDialect())) {
        // Permutes and broadcasts have no runtime kernel
        // yet: memory planning still sees their buffers; translation
        // refuses them.
        auto c = vrt::CollectiveOp::create(
            builder, loc, op.getName().getStringRef(), ins, outs);
        for (NamedAttribute attr : op.getAttrs())
          c->setAttr(attr.getName(), attr.getValue());
      } else {
        FailureOr<vrt::KernelOp> kernel =
            createKernel(builder, &op, kernelMnemonic(&op), ins, outs);
        if (failed(kernel))
          return failure();
        // A token-split cross entropy counts its tokens over a comm group;
        // a lookup in a split table finds its slice from its place in one.
        if (auto tokens = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kTokenAxesAttrName))
          (*kernel)->setAttr("token_group",
                             builder.getI64IntegerAttr(groups.indexOf(tokens)));
        if (auto index = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kIndexAxesAttrName))
          (*kernel)->setAttr("index_group",
                             builder.getI64IntegerAttr(groups.indexOf(index)));
        if (auto vocab = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kVocabAxesAttrName))
          (*kernel)->setAttr("vocab_group",
                             builder.getI64IntegerAttr(groups.indexOf(vocab)));
        if (auto experts = op.getAttrOfType<ArrayAttr>(
                dist::DistDialect::kExpertAxesAttrName))
          (*kernel)->setAttr("expert_group", builder.getI64IntegerAttr(
                                                 groups.indexOf(experts)));
      }
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
    CommGroups groups;
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (failed(lowerFunction(func, groups)))
        return signalPassFailure();
    if (!groups.axes.empty())
      getOperation()->setAttr(vrt::VrtDialect::kCommGroupsAttrName,
                              ArrayAttr::get(&getContext(), groups.axes));
  }
};

} // namespace
