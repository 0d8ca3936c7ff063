//===- Communication.cpp - what one rank sends and computes in a step -----===//

#include "passes/Communication.h"

#include "dialects/VeOmni/VeOmniOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseSet.h"

using namespace mlir;
using namespace mlir::veomni;
using namespace mlir::veomni::sharding;

void StepTraffic::add(ArrayRef<StringAttr> axes, StringRef kind, double bytes,
                      double seconds) {
  Traffic &t = byGroup[groupName(axes)][kind.str()];
  t.bytes += bytes;
  t.seconds += seconds;
  ++t.count;
}

double StepTraffic::totalBytes() const {
  double sum = 0;
  for (auto &[group, kinds] : byGroup)
    for (auto &[kind, t] : kinds)
      sum += t.bytes;
  return sum;
}

double StepTraffic::totalSeconds() const {
  double sum = 0;
  for (auto &[group, kinds] : byGroup)
    for (auto &[kind, t] : kinds)
      sum += t.seconds;
  return sum;
}

namespace {

double bytesOf(RankedTensorType t) {
  return double(t.getNumElements()) * t.getElementTypeBitWidth() / 8;
}

const char *kindName(Collective::Kind kind) {
  switch (kind) {
  case Collective::AllReduce:
    return "all_reduce";
  case Collective::ReduceScatter:
    return "reduce_scatter";
  case Collective::AllGather:
    return "all_gather";
  case Collective::AllToAll:
    return "all_to_all";
  case Collective::LocalSplit:
    return "local_split";
  }
  return "";
}

/// One collective on local tensors `in` -> `out`.
void addCollective(StepTraffic &traffic, const Collective &c,
                   RankedTensorType in, RankedTensorType out, const Mesh &mesh,
                   const LinkModel &link) {
  if (c.kind == Collective::LocalSplit)
    return;
  double bytes = bytesOf(c.kind == Collective::AllGather ? out : in);
  traffic.add(c.axes, kindName(c.kind), bytesSent(c, bytes, mesh.size(c.axes)),
              sharding::seconds(c, bytes, mesh, link));
}

/// Whether a mean cross entropy before `op` in its block, on the same
/// labels, ignore index and token axes, already exchanged their count: the
/// executor keeps such a count for the rest of the step
/// (Executor::CountLabels), so a VJP after its forward does not count
/// again.
bool countedBefore(Operation *op) {
  auto labelsOf = [](Operation *o) {
    return o->getOperand(isa<LinearCrossEntropyOp>(o) ? 2 : 1);
  };
  auto ignoreOf = [](Operation *o) {
    auto a = o->getAttrOfType<IntegerAttr>("ignore_index");
    return a ? a.getInt() : int64_t{-100};
  };
  auto isMean = [](Operation *o) {
    auto r = o->getAttrOfType<LossReductionAttr>("reduction");
    return !r || r.getValue() == LossReduction::Mean;
  };
  for (Operation *user : labelsOf(op).getUsers())
    if (user != op && user->getBlock() == op->getBlock() &&
        user->isBeforeInBlock(op) &&
        isa<CrossEntropyOp, CrossEntropyGradOp, LinearCrossEntropyOp>(user) &&
        labelsOf(user) == labelsOf(op) && isMean(user) &&
        ignoreOf(user) == ignoreOf(op) &&
        user->getAttr(dist::DistDialect::kTokenAxesAttrName) ==
            op->getAttr(dist::DistDialect::kTokenAxesAttrName))
      return true;
  return false;
}

/// What a cross entropy over split vocabulary or tokens exchanges inside:
/// per token, the max, the sum of exponentials and (forward) the target
/// logit over the vocab axes; the count of labels over the token axes.
void addCrossEntropy(StepTraffic &traffic, Operation *op,
                     ArrayRef<StringAttr> vocab, ArrayRef<StringAttr> tokens,
                     RankedTensorType localLogits, const Mesh &mesh,
                     const LinkModel &link) {
  auto reduction = op->getAttrOfType<LossReductionAttr>("reduction");
  bool mean = !reduction || reduction.getValue() == LossReduction::Mean;
  if (!vocab.empty()) {
    double rows =
        double(localLogits.getNumElements()) / localLogits.getShape().back();
    int exchanges = isa<CrossEntropyOp>(op) ? 3 : 2;
    Collective c{Collective::AllReduce, Axes(vocab)};
    for (int i = 0; i < exchanges; ++i)
      traffic.add(vocab, "all_reduce", bytesSent(c, rows * 4, mesh.size(vocab)),
                  sharding::seconds(c, rows * 4, mesh, link));
  }
  if (!tokens.empty() && mean && !countedBefore(op)) {
    Collective c{Collective::AllReduce, Axes(tokens)};
    traffic.add(tokens, "all_reduce", bytesSent(c, 4, mesh.size(tokens)),
                sharding::seconds(c, 4, mesh, link));
  }
}

} // namespace

double sharding::opFlops(Operation *op) {
  auto type = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  if (auto m = dyn_cast<MatmulOp>(op)) {
    RankedTensorType lhs = type(m.getLhs());
    int64_t k = lhs.getDimSize(lhs.getRank() - (m.getTransposeLhs() ? 2 : 1));
    return 2.0 * type(m.getResult()).getNumElements() * k;
  }
  if (auto g = dyn_cast<GroupedMatmulOp>(op))
    return 2.0 * type(g.getResult()).getNumElements() *
           type(g.getInput()).getDimSize(1);
  if (auto g = dyn_cast<GroupedMatmulWeightGradOp>(op))
    return 2.0 * type(g.getInput()).getNumElements() *
           type(g.getGrad()).getDimSize(1);
  auto attention = [&](Value q, Value k, Value v, bool causal) {
    RankedTensorType qt = type(q), kt = type(k), vt = type(v);
    double pairs = double(qt.getDimSize(0)) * qt.getDimSize(2) *
                   qt.getDimSize(1) * kt.getDimSize(1);
    return 2.0 * pairs * (qt.getDimSize(3) + vt.getDimSize(3)) *
           (causal ? 0.5 : 1.0);
  };
  if (auto a = dyn_cast<AttentionOp>(op))
    return attention(a.getQuery(), a.getKey(), a.getValue(), a.getCausal());
  if (auto a = dyn_cast<AttentionGradOp>(op)) // recompute + four products
    return 2.5 *
           attention(a.getQuery(), a.getKey(), a.getValue(), a.getCausal());
  auto conv = [&](Value weight, Value out) { // out x Cin x K
    RankedTensorType w = type(weight);
    return 2.0 * type(out).getNumElements() * w.getDimSize(1) * w.getDimSize(2);
  };
  if (auto c = dyn_cast<Conv1DOp>(op))
    return conv(c.getWeight(), c.getResult());
  if (auto c = dyn_cast<Conv1DGradOp>(op)) // input and weight cotangents
    return 2 * conv(c.getWeight(), c.getGrad());
  return 0;
}

namespace {

/// The token axes and vocab axes of a cross entropy under `split`.
std::pair<Axes, Axes> lossAxes(const ShardingRule &rule,
                               const FactorSplit &split) {
  Axes tokens, vocab;
  const auto &logits = rule.operandDims[0];
  for (auto [d, factors] : llvm::enumerate(logits))
    for (int64_t f : factors)
      (d + 1 == logits.size() ? vocab : tokens).append(split.axes[f]);
  return {tokens, vocab};
}

/// Expert parallelism's token exchanges, as the runtime makes them
/// (runtime/executor/ExpertSplit.cpp). A grouped matmul over experts split
/// on some axes all-gathers its group sizes over them, takes its rows (and,
/// for the weight gradient, their cotangents) to their experts' ranks, and
/// brings the products back: an all-to-all of the rows a rank holds each
/// way (uniform routing; the real volume depends on the router).
class ExpertExchanges {
public:
  void visit(Operation *op, ArrayRef<StringAttr> experts,
             function_ref<RankedTensorType(Value)> localType,
             StepTraffic &traffic, const Mesh &mesh, const LinkModel &link) {
    if (experts.empty() || !isa<GroupedMatmulOp, GroupedMatmulWeightGradOp>(op))
      return;
    const int64_t ranks = mesh.size(experts);
    auto allToAll = [&](double bytes) {
      Collective c{Collective::AllToAll, Axes(experts)};
      traffic.add(experts, "all_to_all", bytesSent(c, bytes, ranks),
                  sharding::seconds(c, bytes, mesh, link));
    };
    Value sizes = op->getOperand(2);
    double gathered = bytesOf(localType(sizes)) * ranks;
    Collective c{Collective::AllGather, Axes(experts)};
    traffic.add(experts, "all_gather", bytesSent(c, gathered, ranks),
                sharding::seconds(c, gathered, mesh, link));
    RankedTensorType rows = localType(op->getOperand(0));
    allToAll(bytesOf(rows));
    if (auto g = dyn_cast<GroupedMatmulWeightGradOp>(op)) {
      allToAll(bytesOf(localType(g.getGrad())));
      return;
    }
    // The products: the rows' count, the result's width.
    auto result = cast<RankedTensorType>(op->getResult(0).getType());
    allToAll(bytesOf(RankedTensorType::get(
        {rows.getDimSize(0), result.getDimSize(1)}, result.getElementType())));
  }
};

class Analysis {
public:
  Analysis(func::FuncOp func, const Mesh &mesh, const LinkModel &link)
      : func(func), mesh(mesh), link(link) {}
  LogicalResult run();
  StepTraffic traffic;

private:
  /// The all-reduces a reshard ends with, innermost first.
  struct Pending {
    SmallVector<Axes, 2> chain;
    double bytes;
  };
  void reshard(Value v, const Layout &from, const Layout &to);
  void flush(Value v);
  void addAllReduce(ArrayRef<StringAttr> axes, double bytes);

  func::FuncOp func;
  const Mesh &mesh;
  const LinkModel &link;
  llvm::DenseMap<Value, Layout> layouts;
  /// Results whose partial sums wait for an all-reduce that a sum may
  /// still absorb (Partition's sinkAllReduces).
  llvm::DenseMap<Value, Pending> pending;
  ExpertExchanges experts;
};

void Analysis::addAllReduce(ArrayRef<StringAttr> axes, double bytes) {
  Collective c{Collective::AllReduce, Axes(axes)};
  traffic.add(axes, "all_reduce", bytesSent(c, bytes, mesh.size(axes)),
              sharding::seconds(c, bytes, mesh, link));
}

void Analysis::flush(Value v) {
  auto it = pending.find(v);
  if (it == pending.end())
    return;
  for (const Axes &axes : it->second.chain)
    addAllReduce(axes, it->second.bytes);
  pending.erase(it);
}

void Analysis::reshard(Value v, const Layout &from, const Layout &to) {
  auto global = cast<RankedTensorType>(v.getType());
  walkReshard(
      localType(global, from, mesh), from, to, mesh,
      [&](const Collective &c, RankedTensorType in, RankedTensorType out) {
        addCollective(traffic, c, in, out, mesh, link);
      });
}

LogicalResult Analysis::run() {
  Block &body = func.getBody().front();
  for (BlockArgument arg : func.getArguments()) {
    auto type = dyn_cast<RankedTensorType>(arg.getType());
    if (!type)
      continue;
    FailureOr<Layout> layout =
        argumentLayout(func, arg.getArgNumber(), "traffic analysis");
    if (failed(layout))
      return failure();
    layouts[arg] = *layout;
  }

  for (Operation &op : body.without_terminator()) {
    if (auto c = dyn_cast<dist::ShardingConstraintOp>(op)) {
      flush(c.getInput());
      Layout want = Layout::fromAttr(c.getSharding());
      reshard(c.getInput(), layouts[c.getInput()], want);
      layouts[c.getResult()] = want;
      continue;
    }
    if (auto send = dyn_cast<dist::SendOp>(op)) {
      // Point to point along pp: the local tensor, once.
      flush(send.getInput());
      Value v = send.getInput();
      auto local =
          localType(cast<RankedTensorType>(v.getType()), layouts[v], mesh);
      Axes axes = {send.getAxisAttr()};
      double bytes = bytesOf(local);
      traffic.add(axes, "send", bytes,
                  link.interLatency + bytes / link.interBandwidth);
      continue;
    }
    std::optional<ShardingRule> maybeRule = ruleOf(&op);
    auto perResult =
        op.getAttrOfType<ArrayAttr>(dist::DistDialect::kShardingAttrName);
    if (!maybeRule || !perResult || perResult.size() != op.getNumResults())
      return op.emitError("no layouts on this op; run "
                          "veomni-propagate-sharding first");
    ShardingRule rule = std::move(*maybeRule);
    SmallVector<Layout> targets;
    for (Attribute a : perResult)
      targets.push_back(Layout::fromAttr(cast<dist::ShardingAttr>(a)));
    SmallVector<const Layout *> operands, results;
    for (Value v : op.getOperands()) // create first: pointers stay valid
      (void)layouts[v];
    for (Value v : op.getOperands())
      operands.push_back(&layouts[v]);
    for (const Layout &l : targets)
      results.push_back(&l);
    OpPlan plan = planOp(rule, operands, results, mesh);

    double split = 1;
    for (const Axes &axes : plan.split.axes)
      split *= mesh.size(axes);
    traffic.flops += opFlops(&op) / split;

    // A sum of two results waiting for the same all-reduces takes them
    // over, outermost first, as far as they agree.
    std::optional<Pending> sunk;
    if (isa<AddOp, SubOp>(op) && op.getOperand(0) != op.getOperand(1)) {
      auto lhs = pending.find(op.getOperand(0));
      auto rhs = pending.find(op.getOperand(1));
      if (lhs != pending.end() && rhs != pending.end() &&
          op.getOperand(0).hasOneUse() && op.getOperand(1).hasOneUse() &&
          layouts[op.getOperand(0)].sameDistribution(plan.operandNeeds[0]) &&
          layouts[op.getOperand(1)].sameDistribution(plan.operandNeeds[1])) {
        auto &a = lhs->second.chain, &b = rhs->second.chain;
        size_t k = 0;
        while (k < a.size() && k < b.size() &&
               a[a.size() - 1 - k] == b[b.size() - 1 - k])
          ++k;
        if (k > 0) {
          sunk = Pending{{a.end() - k, a.end()}, lhs->second.bytes};
          double bytes = lhs->second.bytes;
          for (size_t i = 0; i + k < a.size(); ++i)
            addAllReduce(a[i], bytes);
          for (size_t i = 0; i + k < b.size(); ++i)
            addAllReduce(b[i], rhs->second.bytes);
          pending.erase(op.getOperand(0));
          pending.erase(op.getOperand(1));
        }
      }
    }
    for (auto [i, v] : llvm::enumerate(op.getOperands())) {
      flush(v);
      if (!layouts[v].sameDistribution(plan.operandNeeds[i]) &&
          !llvm::is_contained(rule.typeOnlyOperands, int64_t(i)))
        reshard(v, layouts[v], plan.operandNeeds[i]);
    }

    if (isa<CrossEntropyOp, CrossEntropyGradOp>(op)) {
      auto [tokens, vocab] = lossAxes(rule, plan.split);
      addCrossEntropy(
          traffic, &op, vocab, tokens,
          localType(cast<RankedTensorType>(op.getOperand(0).getType()),
                    plan.operandNeeds[0], mesh),
          mesh, link);
    }
    Axes expertAxes;
    for (int64_t f = 0; f < rule.numFactors(); ++f)
      if (rule.factorKinds[f] == FactorKind::Expert)
        expertAxes.append(plan.split.axes[f]);
    experts.visit(
        &op, expertAxes,
        [&](Value v) {
          return localType(cast<RankedTensorType>(v.getType()), layouts[v],
                           mesh);
        },
        traffic, mesh, link);

    for (auto [j, r] : llvm::enumerate(op.getResults())) {
      const Layout &natural = plan.naturals[j];
      auto local =
          localType(cast<RankedTensorType>(r.getType()), natural, mesh);
      SmallVector<Collective> steps =
          cheapestReshard(local, natural, targets[j], mesh, LinkModel());
      double bytes = bytesOf(local);
      if (sunk && !steps.empty())
        for (const Axes &axes : sunk->chain)
          addAllReduce(axes, bytes);
      // A reshard that ends in all-reduces leaves them for a sum to absorb.
      size_t counted = steps.size();
      Pending waiting{{},
                      bytesOf(localType(cast<RankedTensorType>(r.getType()),
                                        targets[j], mesh))};
      while (counted > 0 && steps[counted - 1].kind == Collective::AllReduce)
        --counted;
      for (size_t i = counted; i < steps.size(); ++i)
        waiting.chain.push_back(steps[i].axes);
      if (sunk && steps.empty())
        waiting.chain = sunk->chain;
      if (!waiting.chain.empty())
        pending[r] = waiting;
      size_t index = 0;
      walkReshard(
          local, natural, targets[j], mesh,
          [&](const Collective &c, RankedTensorType in, RankedTensorType out) {
            if (index++ < counted)
              addCollective(traffic, c, in, out, mesh, link);
          });
      layouts[r] = targets[j];
    }
  }

  Operation *ret = body.getTerminator();
  for (auto [i, v] : llvm::enumerate(ret->getOperands())) {
    flush(v);
    auto attr = func.getResultAttrOfType<dist::ShardingAttr>(
        i, dist::DistDialect::kShardingAttrName);
    if (attr && !layouts[v].sameDistribution(Layout::fromAttr(attr)))
      reshard(v, layouts[v], Layout::fromAttr(attr));
  }
  for (auto &[v, p] : pending)
    for (const Axes &axes : p.chain)
      addAllReduce(axes, p.bytes);
  pending.clear();
  return success();
}

} // namespace

FailureOr<StepTraffic> sharding::analyzeStep(func::FuncOp func,
                                             const Mesh &mesh,
                                             const LinkModel &link) {
  Analysis analysis(func, mesh, link);
  if (failed(analysis.run()))
    return failure();
  return std::move(analysis.traffic);
}

StepTraffic sharding::countCollectives(func::FuncOp func, const Mesh &mesh,
                                       const LinkModel &link) {
  StepTraffic traffic;
  auto axesOf = [](ArrayAttr attr) {
    Axes axes;
    for (Attribute a : attr)
      axes.push_back(cast<StringAttr>(a));
    return axes;
  };
  auto type = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  ExpertExchanges experts;
  func.walk([&](Operation *op) {
    Axes expertAxes;
    if (auto a = op->getAttrOfType<ArrayAttr>(
            dist::DistDialect::kExpertAxesAttrName))
      expertAxes = axesOf(a);
    if (isa<veomni::VeOmniDialect>(op->getDialect()))
      experts.visit(op, expertAxes, type, traffic, mesh, link);
    Collective c{Collective::LocalSplit, {}};
    Value in, out;
    if (auto o = dyn_cast<dist::AllReduceOp>(op))
      c = {Collective::AllReduce, axesOf(o.getAxes())};
    else if (auto o = dyn_cast<dist::ReduceScatterOp>(op))
      c = {Collective::ReduceScatter, axesOf(o.getAxes()), int64_t(o.getDim())};
    else if (auto o = dyn_cast<dist::AllGatherOp>(op))
      c = {Collective::AllGather, axesOf(o.getAxes()), int64_t(o.getDim())};
    else if (auto o = dyn_cast<dist::AllToAllOp>(op))
      c = {Collective::AllToAll, axesOf(o.getAxes()), int64_t(o.getConcatDim()),
           int64_t(o.getSplitDim())};
    if (c.kind != Collective::LocalSplit) {
      addCollective(traffic, c, type(op->getOperand(0)), type(op->getResult(0)),
                    mesh, link);
      return;
    }
    if (isa<CrossEntropyOp, CrossEntropyGradOp, LinearCrossEntropyOp>(op)) {
      Axes vocab, tokens;
      if (auto a = op->getAttrOfType<ArrayAttr>(
              dist::DistDialect::kVocabAxesAttrName))
        vocab = axesOf(a);
      if (auto a = op->getAttrOfType<ArrayAttr>(
              dist::DistDialect::kTokenAxesAttrName))
        tokens = axesOf(a);
      addCrossEntropy(traffic, op, vocab, tokens, type(op->getOperand(0)), mesh,
                      link);
    }
  });
  return traffic;
}

FailureOr<std::vector<StageTraffic>>
mlir::veomni::sharding::analyzePipeline(ModuleOp module, int64_t microBatches,
                                        const LinkModel &link) {
  auto meshes = llvm::to_vector(module.getOps<dist::MeshOp>());
  auto info = module->getAttrOfType<DictionaryAttr>(
      dist::DistDialect::kPipelineAttrName);
  if (meshes.size() != 1 || !info)
    return module.emitError("analyzePipeline: not a pipelined module");
  Mesh mesh(meshes.front().getMesh());
  int64_t stages = cast<IntegerAttr>(info.get("stages")).getInt();
  std::vector<StageTraffic> out(stages);
  auto stageOf = [](func::FuncOp f) -> int64_t {
    auto s = f->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName);
    return s ? s.getInt() : -1;
  };
  for (auto func : module.getOps<func::FuncOp>()) {
    int64_t s = stageOf(func);
    if (s < 0 || s >= stages)
      return func.emitError("analyzePipeline: a function of no stage");
    FailureOr<StepTraffic> t = analyzeStep(func, mesh, link);
    if (failed(t))
      return failure();
    double times =
        func->hasAttr(dist::DistDialect::kChunkAttrName) ? microBatches : 1;
    out[s].bytes += t->totalBytes() * times;
    out[s].seconds += t->totalSeconds() * times;
    out[s].flops += t->flops * times;
  }
  // An all-reduce of `bytes` over n ranks: the ring's volume.
  auto allReduce = [&](StageTraffic &t, double bytes, double n) {
    double sent = 2 * (n - 1) / n * bytes;
    t.bytes += sent;
    t.seconds += 2 * std::ceil(std::log2(n)) * link.interLatency +
                 sent / link.interBandwidth;
  };
  // Tied parameters: the holders' f32 gradient sums.
  if (auto tied = info.getAs<ArrayAttr>("tied_params"))
    for (Attribute a : tied) {
      StringRef name = cast<StringAttr>(a).getValue();
      std::map<int64_t, double> holders; // stage -> local f32 bytes
      for (auto func : module.getOps<func::FuncOp>()) {
        auto role =
            func->getAttrOfType<FunctionRoleAttr>(VeOmniDialect::kRoleAttrName);
        if (!role || role.getValue() != FunctionRole::StageUpdate)
          continue;
        for (unsigned i = 0; i < func.getNumArguments(); ++i) {
          auto p = func.getArgAttrOfType<StringAttr>(
              i, VeOmniDialect::kParamAttrName);
          if (!p || p.getValue() != name)
            continue;
          auto type = cast<RankedTensorType>(func.getArgument(i).getType());
          auto layout =
              Layout::fromAttr(func.getArgAttrOfType<dist::ShardingAttr>(
                  i, dist::DistDialect::kShardingAttrName));
          holders[stageOf(func)] =
              double(localType(type, layout, mesh).getNumElements()) * 4;
        }
      }
      for (auto [stage, bytes] : holders)
        if (holders.size() > 1)
          allReduce(out[stage], bytes, holders.size());
    }
  // The loss and the squared norm, over the stages.
  for (StageTraffic &t : out)
    allReduce(t, 8, stages);
  return out;
}
