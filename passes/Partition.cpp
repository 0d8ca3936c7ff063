//===- Partition.cpp - collectives and per-rank shapes --------------------===//
//
// Turns the global-shape function that veomni-propagate-sharding annotated
// into the one program every rank runs (SPMD): device-local shapes, and a
// collective wherever a value's layout is not what its user computes with.
//
// Per op, in program order:
//  1. The op's rule and the layouts of its operands and results resolve to
//     one split per factor (the same resolution propagation used).
//  2. Each operand is resharded to the split's projection on it.
//  3. The op is rewritten in place with local result types; what it then
//     computes is the projection on each result plus, for a result that
//     lacks a split factor (a contraction), partial sums over its axes.
//  4. Each result is resharded from that to its propagated layout.
// A reshard is planReshard's sequence (Sharding.h): partial sums become a
// reduce-scatter where the target splits the axis next (FSDP gradients,
// sequence-parallel outputs) or an all-reduce (Megatron's row-parallel
// output); an axis that leaves one dimension for another is an all-to-all
// (Ulysses); one that just leaves is an all-gather (FSDP weights).
//
// Arguments and results keep their layout as `dist.slice`: what part of
// the global tensor each rank holds, for the runtime to slice and gather.
//
// Ops whose local form needs to know it is partitioned get attributes:
// a vocab-split cross_entropy (and its grad) `dist.vocab_axes`, a
// token-split mean `dist.token_axes` (the count is global), and a gather or
// scatter_add over a split table `dist.index_axes` (ids outside the local
// slice give zeros), and a grouped matmul over split experts
// `dist.expert_axes` (its rows go to their experts' ranks and back).
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/FuncAttrs.h"
#include "passes/Passes.h"
#include "passes/Sharding.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_PARTITION
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;
using namespace mlir::veomni::sharding;

namespace {

ArrayAttr axesAttr(MLIRContext *ctx, ArrayRef<StringAttr> axes) {
  return ArrayAttr::get(ctx, SmallVector<Attribute>(axes.begin(), axes.end()));
}

class Partitioner {
public:
  Partitioner(func::FuncOp func, const Mesh &mesh, FlatSymbolRefAttr meshRef)
      : func(func), mesh(mesh), meshRef(meshRef) {}
  LogicalResult run();

private:
  /// `layout`'s split alone (no priorities), for `dist.slice`.
  dist::ShardingAttr sliceAttr(const Layout &layout) {
    Layout split = Layout::open(layout.dims.size());
    split.dims = layout.dims;
    return split.toAttr(func.getContext(), meshRef);
  }
  /// Emits the collectives from `from` to `to` after `b`'s insertion
  /// point; `first` gets the first of them (null when none).
  Value reshard(OpBuilder &b, Location loc, Value v, const Layout &from,
                const Layout &to, Operation **first = nullptr);
  LogicalResult checkDivisible(RankedTensorType type, const Layout &layout,
                               function_ref<InFlightDiagnostic()> emit);
  LogicalResult partitionOp(Operation *op, const ShardingRule &rule);
  void sinkAllReduces(Block &body);
  void annotateLocalOp(Operation *op, const ShardingRule &rule,
                       const FactorSplit &split);

  func::FuncOp func;
  const Mesh &mesh;
  FlatSymbolRefAttr meshRef;
  llvm::DenseMap<Value, Layout> layouts;
  llvm::DenseMap<Value, RankedTensorType> globalTypes;
};

Value Partitioner::reshard(OpBuilder &b, Location loc, Value v,
                           const Layout &from, const Layout &to,
                           Operation **first) {
  RankedTensorType global = globalTypes.lookup(v);
  if (first)
    *first = nullptr;
  walkReshard(
      cast<RankedTensorType>(v.getType()), from, to, mesh,
      [&](const Collective &c, RankedTensorType, RankedTensorType out) {
        ArrayAttr axes = axesAttr(b.getContext(), c.axes);
        auto dim = b.getI64IntegerAttr(c.dim);
        switch (c.kind) {
        case Collective::AllReduce:
          v = dist::AllReduceOp::create(b, loc, out, v, meshRef, axes);
          break;
        case Collective::ReduceScatter:
          v = dist::ReduceScatterOp::create(b, loc, out, v, meshRef, axes, dim);
          break;
        case Collective::AllGather:
          v = dist::AllGatherOp::create(b, loc, out, v, meshRef, axes, dim);
          break;
        case Collective::AllToAll:
          v = dist::AllToAllOp::create(b, loc, out, v, meshRef, axes,
                                       b.getI64IntegerAttr(c.splitDim), dim);
          break;
        case Collective::LocalSplit:
          v = dist::LocalSplitOp::create(b, loc, out, v, meshRef, axes, dim);
          break;
        }
        if (first && !*first)
          *first = v.getDefiningOp();
        globalTypes[v] = global;
      });
  return v;
}

LogicalResult
Partitioner::checkDivisible(RankedTensorType type, const Layout &layout,
                            function_ref<InFlightDiagnostic()> emit) {
  for (auto [d, axes] : llvm::enumerate(layout.dims)) {
    int64_t product = 1;
    for (StringAttr axis : axes) {
      product *= mesh.size(axis);
      if (type.getDimSize(d) % product != 0)
        return emit() << "dimension " << d << " of " << type << " (size "
                      << type.getDimSize(d) << ") does not split evenly over "
                      << "axis \"" << axis.getValue() << "\" ("
                      << groupName(ArrayRef<StringAttr>(axes).take_front(
                             &axis - axes.begin() + 1))
                      << " = " << product << " parts)";
    }
  }
  return success();
}

void Partitioner::annotateLocalOp(Operation *op, const ShardingRule &rule,
                                  const FactorSplit &split) {
  MLIRContext *ctx = op->getContext();
  auto splitOf = [&](ArrayRef<SmallVector<int64_t, 1>> dims) {
    Axes axes;
    for (const auto &factors : dims)
      for (int64_t f : factors)
        axes.append(split.axes[f]);
    return axes;
  };
  // Slices of whole dimensions: the local limit is the local size.
  auto fixLimits = [&](DenseI64ArrayAttr limitAttr, RankedTensorType full,
                       RankedTensorType localFull, StringRef name) {
    SmallVector<int64_t> limit(limitAttr.asArrayRef());
    for (int64_t d = 0; d < full.getRank(); ++d)
      if (limit[d] == full.getDimSize(d))
        limit[d] = localFull.getDimSize(d);
    op->setAttr(name, DenseI64ArrayAttr::get(ctx, limit));
  };
  if (auto s = dyn_cast<SliceOp>(op))
    fixLimits(s.getLimitAttr(), globalTypes.lookup(s.getInput()),
              s.getInput().getType(), "limit");
  if (auto s = dyn_cast<SliceGradOp>(op))
    fixLimits(s.getLimitAttr(), globalTypes.lookup(s.getInputGrad()),
              s.getInputGrad().getType(), "limit");
  if (isa<CrossEntropyOp, CrossEntropyGradOp>(op)) {
    const auto &logits = rule.operandDims[0];
    Axes vocab = splitOf(ArrayRef(logits).take_back());
    Axes tokens = splitOf(ArrayRef(logits).drop_back());
    if (!vocab.empty())
      op->setAttr(dist::DistDialect::kVocabAxesAttrName, axesAttr(ctx, vocab));
    if (!tokens.empty())
      op->setAttr(dist::DistDialect::kTokenAxesAttrName, axesAttr(ctx, tokens));
  }
  // Experts split: the local op holds a slice of the experts and moves
  // each row to its expert's rank and back.
  Axes experts;
  for (int64_t f = 0; f < rule.numFactors(); ++f)
    if (rule.factorKinds[f] == FactorKind::Expert)
      experts.append(split.axes[f]);
  if (!experts.empty())
    op->setAttr(dist::DistDialect::kExpertAxesAttrName, axesAttr(ctx, experts));
  if (isa<GatherOp, ScatterAddOp>(op)) {
    int64_t axis = isa<GatherOp>(op) ? cast<GatherOp>(op).getAxis()
                                     : cast<ScatterAddOp>(op).getAxis();
    Axes indexed = splitOf(ArrayRef(rule.operandDims[0]).slice(axis, 1));
    if (!indexed.empty())
      op->setAttr(dist::DistDialect::kIndexAxesAttrName,
                  axesAttr(ctx, indexed));
  }
}

LogicalResult Partitioner::partitionOp(Operation *op,
                                       const ShardingRule &rule) {
  auto perResult =
      op->getAttrOfType<ArrayAttr>(dist::DistDialect::kShardingAttrName);
  if (!perResult || perResult.size() != op->getNumResults())
    return op->emitError("veomni-partition: no layouts on this op; run "
                         "veomni-propagate-sharding first");
  SmallVector<Layout> targets;
  for (Attribute a : perResult)
    targets.push_back(Layout::fromAttr(cast<dist::ShardingAttr>(a)));
  for (auto [i, r] : llvm::enumerate(op->getResults()))
    if (failed(checkDivisible(
            cast<RankedTensorType>(r.getType()), targets[i], [&] {
              return op->emitError("veomni-partition: result #") << i << ": ";
            })))
      return failure();

  SmallVector<const Layout *> operandLayouts, resultLayouts;
  for (Value v : op->getOperands()) // create first: pointers stay valid
    (void)layouts[v];
  for (Value v : op->getOperands())
    operandLayouts.push_back(&layouts[v]);
  for (const Layout &l : targets)
    resultLayouts.push_back(&l);
  OpPlan plan = planOp(rule, operandLayouts, resultLayouts, mesh);
  const FactorSplit &split = plan.split;

  OpBuilder b(op);
  for (auto [i, need] : llvm::enumerate(plan.operandNeeds)) {
    Value v = op->getOperand(i);
    if (layouts[v].sameDistribution(need))
      continue;
    if (llvm::is_contained(rule.typeOnlyOperands, int64_t(i))) {
      // Read for its type only: zeros of the local type, no traffic.
      auto type = localType(globalTypes.lookup(v), need, mesh);
      auto zeros =
          DenseElementsAttr::get(type, b.getZeroAttr(type.getElementType()));
      op->setOperand(i, ConstantOp::create(b, op->getLoc(), zeros));
      continue;
    }
    op->setOperand(i, reshard(b, op->getLoc(), v, layouts[v], need));
  }
  for (auto [i, r] : llvm::enumerate(op->getResults())) {
    auto global = cast<RankedTensorType>(r.getType());
    globalTypes[r] = global;
    r.setType(localType(global, plan.naturals[i], mesh));
    layouts[r] = plan.naturals[i];
  }
  if (auto c = dyn_cast<ConstantOp>(op)) {
    auto value = cast<ElementsAttr>(c.getValue());
    if (value.isSplat())
      c.setValueAttr(DenseElementsAttr::get(cast<ShapedType>(c.getType()),
                                            value.getSplatValue<Attribute>()));
  }
  annotateLocalOp(op, rule, split);
  op->removeAttr(dist::DistDialect::kShardingAttrName);

  b.setInsertionPointAfter(op);
  for (auto [i, r] : llvm::enumerate(op->getResults())) {
    if (layouts[r].sameDistribution(targets[i])) {
      layouts[r] = targets[i];
      continue;
    }
    Operation *first;
    Value local = reshard(b, op->getLoc(), r, layouts[r], targets[i], &first);
    r.replaceAllUsesExcept(local, first);
    layouts[local] = targets[i];
    b.setInsertionPointAfter(local.getDefiningOp());
  }
  return success();
}

LogicalResult Partitioner::run() {
  Block &body = func.getBody().front();
  // Rules read shapes: take them all while the types are still global.
  llvm::DenseMap<Operation *, ShardingRule> rules;
  for (Operation &op : body.without_terminator())
    if (!isa<dist::ShardingConstraintOp>(op))
      if (std::optional<ShardingRule> rule = ruleOf(&op))
        rules[&op] = std::move(*rule);
  for (BlockArgument arg : func.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    if (!type)
      continue;
    FailureOr<Layout> maybeLayout =
        argumentLayout(func, arg.getArgNumber(), "veomni-partition");
    if (failed(maybeLayout))
      return failure();
    Layout layout = *maybeLayout;
    auto emit = [&] {
      InFlightDiagnostic diag = func.emitError("veomni-partition: argument #")
                                << arg.getArgNumber();
      for (StringRef kind : {"veomni.param", "veomni.input", "veomni.state"})
        if (auto name =
                func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kind))
          diag << " ('" << name.getValue() << "')";
      return std::move(diag << ": ");
    };
    if (failed(checkDivisible(type, layout, emit)))
      return failure();
    globalTypes[arg] = type;
    arg.setType(localType(type, layout, mesh));
    layouts[arg] = layout;
  }
  // The runtime slices global data into each argument by its slice.
  editArgAttrs(func, [&](unsigned i, NamedAttrList &attrs) {
    auto it = layouts.find(func.getArgument(i));
    if (it == layouts.end() || !globalTypes.count(func.getArgument(i)))
      return;
    attrs.set(dist::DistDialect::kSliceAttrName, sliceAttr(it->second));
    attrs.erase(dist::DistDialect::kShardingAttrName);
  });

  for (Operation &op : llvm::make_early_inc_range(body.without_terminator())) {
    if (auto c = dyn_cast<dist::ShardingConstraintOp>(op)) {
      Layout want = Layout::fromAttr(c.getSharding());
      if (failed(checkDivisible(globalTypes.lookup(c.getInput()), want, [&] {
            return c.emitError("veomni-partition: ");
          })))
        return failure();
      OpBuilder b(c);
      Value v = c.getInput();
      Value local = reshard(b, c.getLoc(), v, layouts[v], want);
      layouts[local] = want;
      c.getResult().replaceAllUsesWith(local);
      c.erase();
      continue;
    }
    if (isa<dist::SendOp>(op))
      continue; // sends what it is given (propagation constrained it)
    auto rule = rules.find(&op);
    if (rule == rules.end())
      return op.emitError("veomni-partition: '")
             << op.getName() << "' has no sharding rule";
    if (failed(partitionOp(&op, rule->second)))
      return failure();
  }

  // Results leave in the layouts propagation gave them.
  Operation *ret = body.getTerminator();
  OpBuilder b(ret);
  editResultAttrs(func, [&](unsigned i, NamedAttrList &attrs) {
    auto attr = dyn_cast_or_null<dist::ShardingAttr>(
        attrs.get(dist::DistDialect::kShardingAttrName));
    if (!attr)
      return;
    Value v = ret->getOperand(i);
    Layout want = Layout::fromAttr(attr);
    if (!layouts[v].sameDistribution(want))
      ret->setOperand(i, reshard(b, ret->getLoc(), v, layouts[v], want));
    attrs.set(dist::DistDialect::kSliceAttrName, sliceAttr(want));
    attrs.erase(dist::DistDialect::kShardingAttrName);
  });
  func.setType(FunctionType::get(func.getContext(), body.getArgumentTypes(),
                                 ret->getOperandTypes()));
  sinkAllReduces(body);
  return success();
}

/// Sums commute with sums: add(all_reduce(a), all_reduce(b)) over the same
/// axes is all_reduce(add(a, b)), one collective instead of two. This is
/// how the cotangents of a column-parallel group (q, k and v; gate and up)
/// meet in one all-reduce, as in Megatron.
void Partitioner::sinkAllReduces(Block &body) {
  for (bool changed = true; changed;) {
    changed = false;
    for (Operation &op : llvm::make_early_inc_range(body)) {
      if (!isa<AddOp, SubOp>(op))
        continue;
      auto lhs = op.getOperand(0).getDefiningOp<dist::AllReduceOp>();
      auto rhs = op.getOperand(1).getDefiningOp<dist::AllReduceOp>();
      if (!lhs || !rhs || lhs == rhs || lhs.getAxes() != rhs.getAxes() ||
          lhs.getMesh() != rhs.getMesh() || !lhs->hasOneUse() ||
          !rhs->hasOneUse())
        continue;
      OpBuilder b(&op);
      Operation *sum = b.clone(op);
      sum->setOperands({lhs.getInput(), rhs.getInput()});
      auto reduced = dist::AllReduceOp::create(
          b, op.getLoc(), sum->getResult(0).getType(), sum->getResult(0),
          lhs.getMeshAttr(), lhs.getAxes());
      op.getResult(0).replaceAllUsesWith(reduced.getResult());
      op.erase();
      lhs.erase();
      rhs.erase();
      changed = true;
    }
  }
}

struct PartitionPass : veomni::impl::PartitionBase<PartitionPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    dist::MeshOp meshOp = onlyMesh(module, "veomni-partition");
    if (!meshOp)
      return signalPassFailure();
    Mesh mesh(meshOp.getMesh());
    auto meshRef = FlatSymbolRefAttr::get(meshOp.getSymNameAttr());
    for (auto func : module.getOps<func::FuncOp>())
      if (failed(Partitioner(func, mesh, meshRef).run()))
        return signalPassFailure();
  }
};

} // namespace
