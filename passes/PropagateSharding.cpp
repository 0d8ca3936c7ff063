//===- PropagateSharding.cpp - shardings for every value ------------------===//
//
// From the shardings veomni-apply-recipe (or a user) put on arguments and
// `dist.sharding_constraint`s, gives every tensor of the function a layout,
// in the manner of OpenXLA Shardy:
//
//  - Each op's sharding rule (ShardingRuleOpInterface) relates the
//    dimensions of its operands and results through factors. Visiting an
//    op, the splits its tensors already have are projected onto factors
//    (resolveFactors: best priority wins, then the split the most elements
//    agree with; a longer compatible split refines it; an axis serves one
//    factor), and projected back onto every tensor dimension that is open
//    and whose split the result extends.
//  - Priorities run in rounds, best first: round p only reads dimensions of
//    priority <= p, so a batch split (p0) claims the data-parallel axes
//    before a parameter's FSDP split (p1) can; the parameter is then
//    all-gathered before use rather than the activations.
//  - Each round sweeps forward then backward over the ops until nothing
//    changes. Splits only grow, so it terminates; it reads the ops in
//    program order, so it is deterministic.
//
// The result: every op carries `dist.sharding = [...]`, one layout per
// result; arguments and results carry theirs as `dist.sharding`. Partial
// sums are not layouts of values: where an op leaves one, veomni-partition
// reduces it to the value's layout. Afterwards, sums of scalars are
// regrouped by the axes their terms are partial over (a gradient norm:
// one all-reduce per group), and pipeline chunks (veomni-pipeline) are
// visited forwards first so that what crosses a cut has one layout.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/FuncAttrs.h"
#include "passes/Passes.h"
#include "passes/Sharding.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include <functional>
#include <map>
#include <set>

namespace mlir::veomni {
#define GEN_PASS_DEF_PROPAGATESHARDING
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;
using namespace mlir::veomni::sharding;

namespace {

class Propagator {
public:
  Propagator(func::FuncOp func, const Mesh &mesh) : func(func), mesh(mesh) {}

  LogicalResult run(FlatSymbolRefAttr meshRef);

private:
  Layout *layoutOf(Value v) {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (!type)
      return nullptr;
    auto it = layouts.find(v);
    if (it == layouts.end())
      it = layouts.try_emplace(v, Layout::open(type.getRank())).first;
    return &it->second;
  }
  bool visit(Operation *op, const ShardingRule &rule, int64_t upTo);
  bool update(Value v, const ShardingRule &rule, const ShardingRule::Dims &dims,
              const FactorSplit &split);

  func::FuncOp func;
  const Mesh &mesh;
  llvm::DenseMap<Value, Layout> layouts;
};

bool Propagator::update(Value v, const ShardingRule &rule,
                        const ShardingRule::Dims &dims,
                        const FactorSplit &split) {
  Layout *layout = layoutOf(v);
  if (!layout)
    return false;
  SmallVector<Axes> wanted = projectDims(rule, dims, split, mesh);
  bool changed = false;
  for (auto [d, axes] : llvm::enumerate(wanted)) {
    Axes &have = layout->dims[d];
    if (layout->closed[d] || axes.size() <= have.size() ||
        !llvm::equal(have, ArrayRef<StringAttr>(axes).take_front(have.size())))
      continue;
    // A new axis must not split another dimension of the same tensor.
    bool clash = false;
    for (StringAttr axis : ArrayRef<StringAttr>(axes).drop_front(have.size()))
      for (auto [e, other] : llvm::enumerate(layout->dims))
        clash |= e != d && llvm::is_contained(other, axis);
    if (clash)
      continue;
    int64_t priority = 0;
    for (int64_t f : dims[d])
      if (!split.axes[f].empty())
        priority = std::max(priority, split.priority[f]);
    have = axes;
    layout->priority[d] = std::min(layout->priority[d], priority);
    changed = true;
  }
  return changed;
}

bool Propagator::visit(Operation *op, const ShardingRule &rule, int64_t upTo) {
  SmallVector<const Layout *> operands, results;
  for (Value v : op->getOperands())
    operands.push_back(layoutOf(v));
  for (Value v : op->getResults())
    results.push_back(layoutOf(v));
  FactorSplit split = resolveFactors(rule, operands, results, mesh, upTo);
  bool changed = false;
  for (auto [i, dims] : llvm::enumerate(rule.operandDims))
    if (i < op->getNumOperands())
      changed |= update(op->getOperand(i), rule, dims, split);
  for (auto [i, dims] : llvm::enumerate(rule.resultDims))
    if (i < op->getNumResults())
      changed |= update(op->getResult(i), rule, dims, split);
  return changed;
}

LogicalResult Propagator::run(FlatSymbolRefAttr meshRef) {
  MLIRContext *ctx = func.getContext();
  std::set<int64_t> rounds = {kNoPriority};
  auto seed = [&](Value v, dist::ShardingAttr attr) {
    Layout l = Layout::fromAttr(attr);
    l.partial.clear();
    for (int64_t p : l.priority)
      rounds.insert(p);
    layouts[v] = l;
  };
  for (BlockArgument arg : func.getArguments())
    if (auto attr = func.getArgAttrOfType<dist::ShardingAttr>(
            arg.getArgNumber(), dist::DistDialect::kShardingAttrName))
      seed(arg, attr);

  // A gradient (veomni-autodiff's `veomni.grad` results) is laid out like
  // its parameter, at the parameter's priority: with FSDP its partial sums
  // become a reduce-scatter.
  llvm::StringMap<dist::ShardingAttr> paramLayouts;
  for (BlockArgument arg : func.getArguments())
    if (auto name = func.getArgAttrOfType<StringAttr>(
            arg.getArgNumber(), VeOmniDialect::kParamAttrName))
      paramLayouts[name.getValue()] = func.getArgAttrOfType<dist::ShardingAttr>(
          arg.getArgNumber(), dist::DistDialect::kShardingAttrName);
  // State added after veomni-apply-recipe (a pipeline stage's AdamW
  // moments) is laid out like its parameter.
  for (BlockArgument arg : func.getArguments()) {
    unsigned i = arg.getArgNumber();
    auto of =
        func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kStateOfAttrName);
    if (!of || func.getArgAttr(i, dist::DistDialect::kShardingAttrName))
      continue;
    if (dist::ShardingAttr param = paramLayouts.lookup(of.getValue()))
      seed(arg, param);
  }
  Operation *ret = func.getBody().front().getTerminator();
  auto paramLayoutOf = [&](unsigned result) -> dist::ShardingAttr {
    auto grad = func.getResultAttrOfType<StringAttr>(result, "veomni.grad");
    if (!grad)
      return {};
    dist::ShardingAttr param = paramLayouts.lookup(grad.getValue());
    auto type = dyn_cast<RankedTensorType>(ret->getOperand(result).getType());
    if (!param || !type ||
        param.getDims().size() != static_cast<size_t>(type.getRank()))
      return {};
    return param;
  };
  for (unsigned i = 0; i < ret->getNumOperands(); ++i) {
    dist::ShardingAttr param = paramLayoutOf(i);
    Value v = ret->getOperand(i);
    if (!param || isa<BlockArgument>(v))
      continue;
    Layout l = Layout::fromAttr(param);
    l.partial.clear();
    l.closed.assign(l.closed.size(), false);
    layouts[v] = l;
  }

  // The ops and their rules, in program order.
  std::vector<std::pair<Operation *, ShardingRule>> ops;
  for (Operation &op : func.getBody().front()) {
    if (auto c = dyn_cast<dist::ShardingConstraintOp>(op))
      seed(c.getResult(), c.getSharding());
    if (std::optional<ShardingRule> rule = ruleOf(&op))
      ops.push_back({&op, std::move(*rule)});
    else if (op.getNumResults() > 0 &&
             !op.hasAttr(dist::DistDialect::kReplicatedAttrName))
      return op.emitOpError("has no sharding rule, so its results' layouts "
                            "are unknown (give the op a rule, or mark it ")
             << dist::DistDialect::kReplicatedAttrName << ")";
  }

  // Every value's layout exists before the sweeps take pointers to them
  // (the map never grows while an op is visited).
  for (BlockArgument arg : func.getArguments())
    (void)layoutOf(arg);
  for (auto &[op, rule] : ops)
    for (Value v : op->getResults())
      (void)layoutOf(v);

  for (int64_t round : rounds) {
    for (int sweep = 0; sweep < 64; ++sweep) {
      bool changed = false;
      for (auto &[op, rule] : ops)
        changed |= visit(op, rule, round);
      for (auto &[op, rule] : llvm::reverse(ops))
        changed |= visit(op, rule, round);
      if (!changed)
        break;
    }
  }

  // Write the layouts down.
  auto attrOf = [&](Value v) { return layoutOf(v)->toAttr(ctx, meshRef); };
  editArgAttrs(func, [&](unsigned i, NamedAttrList &attrs) {
    if (isa<RankedTensorType>(func.getArgument(i).getType()))
      attrs.set(dist::DistDialect::kShardingAttrName,
                attrOf(func.getArgument(i)));
  });
  for (auto &[op, rule] : ops) {
    if (isa<dist::ShardingConstraintOp>(op))
      continue;
    SmallVector<Attribute> perResult;
    for (Value r : op->getResults())
      perResult.push_back(attrOf(r));
    op->setAttr(dist::DistDialect::kShardingAttrName,
                ArrayAttr::get(ctx, perResult));
  }
  editResultAttrs(func, [&](unsigned i, NamedAttrList &attrs) {
    Value v = ret->getOperand(i);
    if (!isa<RankedTensorType>(v.getType()))
      return;
    dist::ShardingAttr param = paramLayoutOf(i);
    attrs.set(dist::DistDialect::kShardingAttrName,
              param ? Attribute(param) : Attribute(attrOf(v)));
  });
  return success();
}

int64_t chunkOf(func::FuncOp func) {
  auto chunk =
      func->getAttrOfType<IntegerAttr>(dist::DistDialect::kChunkAttrName);
  return chunk ? chunk.getInt() : -1;
}

/// The layout propagation gave `v` in `func`.
dist::ShardingAttr layoutAttrOf(func::FuncOp func, Value v) {
  if (auto arg = dyn_cast<BlockArgument>(v))
    return func.getArgAttrOfType<dist::ShardingAttr>(
        arg.getArgNumber(), dist::DistDialect::kShardingAttrName);
  auto perResult = v.getDefiningOp()->getAttrOfType<ArrayAttr>(
      dist::DistDialect::kShardingAttrName);
  return cast<dist::ShardingAttr>(
      perResult[cast<OpResult>(v).getResultNumber()]);
}

/// Pins what crosses the cuts of chunk g's function to the cuts' layouts:
/// what it receives (after the receive), what it sends (before the send),
/// and, for a backward, the activations its stage kept (arguments).
void constrainCuts(func::FuncOp func, int64_t g,
                   std::map<int64_t, SmallVector<dist::ShardingAttr>> &cuts) {
  bool backward = func->hasAttr(dist::DistDialect::kKeptFromAttrName);
  // A forward receives cut g - 1 and sends cut g; a backward receives the
  // cotangents of cut g and sends those of cut g - 1.
  int64_t in = backward ? g : g - 1, out = backward ? g - 1 : g;
  auto pin = [&](OpBuilder &b, Value v, dist::ShardingAttr attr) {
    return dist::ShardingConstraintOp::create(b, v.getLoc(), v.getType(), v,
                                              attr)
        .getResult();
  };
  unsigned i = 0;
  for (auto recv : llvm::to_vector(func.getOps<dist::RecvOp>())) {
    if (!cuts.count(in) || i >= cuts[in].size())
      break;
    OpBuilder b(recv->getBlock(), std::next(recv->getIterator()));
    Value pinned = pin(b, recv.getResult(), cuts[in][i++]);
    recv.getResult().replaceAllUsesExcept(pinned, pinned.getDefiningOp());
  }
  if (!backward)
    return;
  i = 0;
  for (auto send : llvm::to_vector(func.getOps<dist::SendOp>())) {
    if (!cuts.count(out) || i >= cuts[out].size())
      break;
    OpBuilder b(send);
    send->setOperand(0, pin(b, send.getInput(), cuts[out][i++]));
  }
  auto keptFrom =
      func->getAttrOfType<IntegerAttr>(dist::DistDialect::kKeptFromAttrName)
          .getInt();
  if (!cuts.count(g - 1))
    return;
  for (auto [k, attr] : llvm::enumerate(cuts[g - 1]))
    if (keptFrom + k < func.getNumArguments() &&
        !func.getArgAttr(keptFrom + k, dist::DistDialect::kShardingAttrName))
      func.setArgAttr(keptFrom + k, dist::DistDialect::kShardingAttrName, attr);
}

/// The axes over which `v` is a partial sum as its op computes it.
Axes partialAxesOf(func::FuncOp func, Value v, const Mesh &mesh) {
  Operation *def = v.getDefiningOp();
  std::optional<ShardingRule> rule = def ? ruleOf(def) : std::nullopt;
  if (!rule)
    return {};
  SmallVector<Layout> operands, results;
  for (Value o : def->getOperands())
    operands.push_back(Layout::fromAttr(layoutAttrOf(func, o)));
  for (Value r : def->getResults())
    results.push_back(Layout::fromAttr(layoutAttrOf(func, r)));
  SmallVector<const Layout *> ops, res;
  for (const Layout &l : operands)
    ops.push_back(&l);
  for (const Layout &l : results)
    res.push_back(&l);
  OpPlan plan = planOp(*rule, ops, res, mesh);
  return plan.naturals[cast<OpResult>(v).getResultNumber()].partial;
}

/// A sum of scalars (a gradient norm: one sum of squares per parameter)
/// whose terms are partial over different axes would take one all-reduce
/// per term. Regrouped so that terms partial over the same axes are added
/// first, it takes one all-reduce per group. (Floating-point addition is
/// reassociated, as any all-reduce does.)
void groupScalarSums(func::FuncOp func, const Mesh &mesh) {
  auto isScalarSum = [](Operation *op) {
    auto add = dyn_cast_or_null<AddOp>(op);
    return add && add.getType().getRank() == 0;
  };
  // The tops of the trees: sums not feeding, alone, another sum.
  SmallVector<Operation *> roots;
  for (Operation &op : func.getBody().front())
    if (isScalarSum(&op) && !(op.getResult(0).hasOneUse() &&
                              isScalarSum(*op.getResult(0).user_begin())))
      roots.push_back(&op);
  for (Operation *rootOp : roots) {
    Operation &root = *rootOp;
    // The tree of single-use scalar sums under `root`, and its leaves.
    SmallVector<Operation *> inner;
    SmallVector<Value> leaves;
    std::function<void(Value)> walk = [&](Value v) {
      Operation *def = v.getDefiningOp();
      if (isScalarSum(def) && v.hasOneUse()) {
        inner.push_back(def);
        walk(def->getOperand(0));
        walk(def->getOperand(1));
        return;
      }
      leaves.push_back(v);
    };
    inner.push_back(&root);
    walk(root.getOperand(0));
    walk(root.getOperand(1));
    if (leaves.size() < 3)
      continue;
    // Groups by partial axes, in order of first appearance.
    SmallVector<std::pair<Axes, SmallVector<Value>>> groups;
    for (Value leaf : leaves) {
      Axes axes = partialAxesOf(func, leaf, mesh);
      auto it = llvm::find_if(groups, [&](auto &g) { return g.first == axes; });
      if (it == groups.end())
        groups.push_back({axes, {leaf}});
      else
        it->second.push_back(leaf);
    }
    if (groups.size() < 2 || groups.size() == leaves.size())
      continue;
    OpBuilder b(&root);
    auto attr = root.getAttr(dist::DistDialect::kShardingAttrName);
    auto sum = [&](Value x, Value y) {
      auto add = AddOp::create(b, root.getLoc(), x, y);
      add->setAttr(dist::DistDialect::kShardingAttrName, attr);
      return add.getResult();
    };
    Value total;
    for (auto &[axes, terms] : groups) {
      Value part = terms.front();
      for (Value t : llvm::drop_begin(terms))
        part = sum(part, t);
      total = total ? sum(total, part) : part;
    }
    root.getResult(0).replaceAllUsesWith(total);
    for (Operation *op : inner)
      op->dropAllUses();
    for (Operation *op : inner)
      op->erase();
  }
}

struct PropagateShardingPass
    : veomni::impl::PropagateShardingBase<PropagateShardingPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    dist::MeshOp meshOp = onlyMesh(module, "veomni-propagate-sharding");
    if (!meshOp)
      return signalPassFailure();
    Mesh mesh(meshOp.getMesh());
    auto meshRef = FlatSymbolRefAttr::get(meshOp.getSymNameAttr());
    // Pipeline chunks (veomni-pipeline): forwards in chunk order, then the
    // backwards, so that what crosses a cut has one layout on both sides:
    // the one the sending forward gives it.
    SmallVector<func::FuncOp> forwards, others;
    for (auto func : module.getOps<func::FuncOp>())
      (func->hasAttr(dist::DistDialect::kChunkAttrName) &&
               !func->hasAttr(dist::DistDialect::kKeptFromAttrName)
           ? forwards
           : others)
          .push_back(func);
    llvm::stable_sort(forwards, [](func::FuncOp a, func::FuncOp b) {
      return chunkOf(a) < chunkOf(b);
    });
    std::map<int64_t, SmallVector<dist::ShardingAttr>> cuts;
    // What a split backward's input half returns, by chunk: the weight
    // half receives it laid out the same.
    std::map<int64_t, SmallVector<dist::ShardingAttr>> stashes;
    for (func::FuncOp func : llvm::concat<func::FuncOp>(forwards, others)) {
      int64_t g = chunkOf(func);
      if (g >= 0)
        constrainCuts(func, g, cuts);
      if (auto from = func->getAttrOfType<IntegerAttr>(
              dist::DistDialect::kStashFromAttrName))
        for (auto [k, attr] : llvm::enumerate(stashes[g]))
          if (from.getInt() + k < func.getNumArguments())
            func.setArgAttr(from.getInt() + k,
                            dist::DistDialect::kShardingAttrName, attr);
      if (failed(Propagator(func, mesh).run(meshRef)))
        return signalPassFailure();
      groupScalarSums(func, mesh);
      if (g >= 0 && !func->hasAttr(dist::DistDialect::kKeptFromAttrName))
        for (auto send : func.getOps<dist::SendOp>())
          cuts[g].push_back(layoutAttrOf(func, send.getInput()));
      auto role =
          func->getAttrOfType<FunctionRoleAttr>(VeOmniDialect::kRoleAttrName);
      if (g >= 0 && role && role.getValue() == FunctionRole::BackwardInput)
        for (unsigned i = 0; i < func.getNumResults(); ++i)
          stashes[g].push_back(func.getResultAttrOfType<dist::ShardingAttr>(
              i, dist::DistDialect::kShardingAttrName));
    }
  }
};

} // namespace
