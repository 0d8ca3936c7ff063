//===- Sharding.cpp - layouts, factor resolution, resharding --------------===//

#include "passes/Sharding.h"

#include "dialects/VeOmni/VeOmniOps.h"

#include "llvm/ADT/STLExtras.h"
#include <algorithm>
#include <cmath>
#include <numeric>

using namespace mlir;
using namespace mlir::veomni;
using namespace mlir::veomni::sharding;

//===----------------------------------------------------------------------===//
// Layouts and meshes
//===----------------------------------------------------------------------===//

Layout Layout::open(int64_t rank) {
  Layout l;
  l.dims.resize(rank);
  l.priority.assign(rank, kNoPriority);
  l.closed.assign(rank, false);
  return l;
}

Layout Layout::fromAttr(dist::ShardingAttr attr) {
  Layout l = open(attr.getDims().size());
  for (auto [d, dim] : llvm::enumerate(attr.getDims())) {
    l.dims[d].assign(dim.getAxes().begin(), dim.getAxes().end());
    l.closed[d] = dim.getIsClosed();
    l.priority[d] = dim.getPriority().value_or(kNoPriority);
  }
  l.partial.assign(attr.getPartial().begin(), attr.getPartial().end());
  return l;
}

dist::ShardingAttr Layout::toAttr(MLIRContext *ctx,
                                  FlatSymbolRefAttr mesh) const {
  SmallVector<dist::DimShardingAttr> perDim;
  for (auto [d, axes] : llvm::enumerate(dims)) {
    std::optional<int64_t> p;
    if (d < priority.size() && priority[d] != kNoPriority && !axes.empty())
      p = priority[d];
    perDim.push_back(
        dist::DimShardingAttr::get(ctx, axes, /*isClosed=*/true, p));
  }
  return dist::ShardingAttr::get(ctx, mesh, perDim, partial);
}

bool Layout::sameDistribution(const Layout &other) const {
  return dims == other.dims && partial == other.partial;
}

bool Layout::isReplicated() const {
  return partial.empty() &&
         llvm::all_of(dims, [](const Axes &a) { return a.empty(); });
}

dist::MeshOp sharding::onlyMesh(ModuleOp module, StringRef pass) {
  auto meshes = llvm::to_vector(module.getOps<dist::MeshOp>());
  if (meshes.size() == 1)
    return meshes.front();
  module.emitError(pass) << ": expected one dist.mesh in the module "
                         << "(veomni-apply-recipe declares it), found "
                         << meshes.size();
  return {};
}

FailureOr<Layout> sharding::argumentLayout(FunctionOpInterface func, unsigned i,
                                           StringRef pass) {
  auto attr = func.getArgAttrOfType<dist::ShardingAttr>(
      i, dist::DistDialect::kShardingAttrName);
  if (!attr)
    return func.emitError(pass)
           << ": argument #" << i
           << " has no dist.sharding; run veomni-propagate-sharding first";
  return Layout::fromAttr(attr);
}

int64_t Mesh::size(StringAttr axis) const {
  dist::MeshAxisAttr a = attr.getAxis(axis.getValue());
  return a ? a.getSize() : 1;
}

int64_t Mesh::size(ArrayRef<StringAttr> axes) const {
  int64_t n = 1;
  for (StringAttr a : axes)
    n *= size(a);
  return n;
}

RankedTensorType sharding::localType(RankedTensorType type,
                                     const Layout &layout, const Mesh &mesh) {
  SmallVector<int64_t> shape(type.getShape());
  for (auto [d, axes] : llvm::enumerate(layout.dims))
    shape[d] /= mesh.size(axes);
  return RankedTensorType::get(shape, type.getElementType());
}

std::string sharding::groupName(ArrayRef<StringAttr> axes) {
  std::string name;
  for (StringAttr a : axes)
    name += (name.empty() ? "" : "+") + a.getValue().str();
  return name;
}

//===----------------------------------------------------------------------===//
// Factor resolution
//===----------------------------------------------------------------------===//

std::optional<ShardingRule> sharding::ruleOf(Operation *op) {
  if (auto rule = dyn_cast<veomni::ShardingRuleOpInterface>(op))
    return rule.getShardingRule();
  auto freeDims = [](ShardingRule &rule, Type type) {
    ShardingRule::Dims dims;
    for (int64_t size : cast<RankedTensorType>(type).getShape())
      dims.push_back({rule.addFactor(size)});
    return dims;
  };
  ShardingRule rule;
  if (auto c = dyn_cast<dist::ShardingConstraintOp>(op)) {
    ShardingRule::Dims dims = freeDims(rule, c.getInput().getType());
    rule.operandDims.push_back(dims);
    rule.resultDims.push_back(dims);
    rule.perShardResults.push_back(false);
    return rule;
  }
  if (auto r = dyn_cast<dist::RecvOp>(op)) {
    rule.resultDims.push_back(freeDims(rule, r.getType()));
    rule.perShardResults.push_back(false);
    return rule;
  }
  return std::nullopt;
}

static bool isPrefix(ArrayRef<StringAttr> prefix, ArrayRef<StringAttr> of) {
  return prefix.size() <= of.size() &&
         llvm::equal(prefix, of.take_front(prefix.size()));
}

/// Splits a dimension's axes over its factors, major first: a factor takes
/// axes while they divide it, and the next factor starts only when it is
/// split completely. Stops at the first axis that fits nowhere.
static SmallVector<Axes> distribute(const ShardingRule &rule,
                                    ArrayRef<int64_t> factors,
                                    ArrayRef<StringAttr> axes,
                                    const Mesh &mesh) {
  SmallVector<Axes> per(factors.size());
  size_t fi = 0;
  int64_t product = 1;
  for (StringAttr axis : axes) {
    while (fi < factors.size() && product == rule.factorSizes[factors[fi]]) {
      ++fi;
      product = 1;
    }
    if (fi == factors.size())
      break;
    int64_t s = mesh.size(axis);
    if (rule.factorSizes[factors[fi]] % (product * s) != 0)
      break;
    per[fi].push_back(axis);
    product *= s;
  }
  return per;
}

SmallVector<Axes> sharding::projectDims(const ShardingRule &rule,
                                        const ShardingRule::Dims &dims,
                                        const FactorSplit &split,
                                        const Mesh &mesh) {
  SmallVector<Axes> out(dims.size());
  for (auto [d, factors] : llvm::enumerate(dims)) {
    for (int64_t f : factors) {
      out[d].append(split.axes[f]);
      if (mesh.size(split.axes[f]) != rule.factorSizes[f])
        break; // a minor factor's split would not be contiguous
    }
  }
  return out;
}

FactorSplit sharding::resolveFactors(const ShardingRule &rule,
                                     ArrayRef<const Layout *> operands,
                                     ArrayRef<const Layout *> results,
                                     const Mesh &mesh, int64_t upTo) {
  int64_t n = rule.numFactors();
  struct Candidate {
    Axes axes;
    int64_t priority;
    double elements; // of the tensor it comes from: what undoing it moves
  };
  SmallVector<SmallVector<Candidate, 2>> candidates(n);
  auto collect = [&](const ShardingRule::Dims &dims, const Layout *layout) {
    if (!layout)
      return;
    double elements = 1;
    for (const auto &factors : dims)
      for (int64_t f : factors)
        elements *= double(rule.factorSizes[f]);
    for (auto [d, factors] : llvm::enumerate(dims)) {
      if (d >= layout->dims.size() || layout->dims[d].empty() ||
          layout->priority[d] > upTo || factors.empty())
        continue;
      SmallVector<Axes> per = distribute(rule, factors, layout->dims[d], mesh);
      for (auto [fi, axes] : llvm::enumerate(per))
        if (!axes.empty())
          candidates[factors[fi]].push_back(
              {axes, layout->priority[d], elements});
    }
  };
  for (auto [i, dims] : llvm::enumerate(rule.operandDims))
    collect(dims, i < operands.size() ? operands[i] : nullptr);
  for (auto [i, dims] : llvm::enumerate(rule.resultDims))
    collect(dims, i < results.size() ? results[i] : nullptr);

  FactorSplit split;
  split.axes.resize(n);
  split.priority.assign(n, kNoPriority);
  for (int64_t f = 0; f < n; ++f) {
    if (rule.factorKinds[f] == FactorKind::NeedReplication ||
        candidates[f].empty())
      continue;
    llvm::stable_sort(candidates[f],
                      [](const Candidate &a, const Candidate &b) {
                        return a.priority < b.priority;
                      });
    // Among the best-priority splits, a conflict goes to the split that
    // moves the fewest elements: the one the most tensor elements already
    // agree with (one is a prefix of the other); ties to the longer, then
    // the first. Worse-priority splits can only refine it.
    int64_t priority = candidates[f].front().priority;
    auto compatible = [](ArrayRef<StringAttr> a, ArrayRef<StringAttr> b) {
      return isPrefix(a, b) || isPrefix(b, a);
    };
    const Candidate *chosen = nullptr;
    double chosenScore = -1;
    for (const Candidate &c : candidates[f]) {
      if (c.priority != priority)
        break;
      double score = 0;
      for (const Candidate &o : candidates[f])
        if (o.priority == priority && compatible(c.axes, o.axes))
          score += o.elements;
      if (score > chosenScore ||
          (score == chosenScore && c.axes.size() > chosen->axes.size())) {
        chosen = &c;
        chosenScore = score;
      }
    }
    Axes best = chosen->axes;
    for (const Candidate &c : candidates[f])
      if (isPrefix(best, c.axes) && compatible(c.axes, chosen->axes))
        best = c.axes; // a refinement of the same split
    split.axes[f] = best;
    split.priority[f] = priority;
  }

  // Splits that reach a need-replication factor the rule can relocate go
  // to the first relocation target that can take them (after what it
  // already has, the whole split dividing the factor). Only in the last
  // round, at the weakest priority: the explicit splits are placed first
  // (Ulysses' sp goes to the heads after tp has).
  llvm::SmallDenseSet<int64_t, 4> relocated;
  for (auto [from, to] : rule.relocations) {
    if (upTo != kNoPriority || candidates[from].empty() ||
        relocated.contains(from))
      continue;
    const Candidate *best = &candidates[from].front();
    for (const Candidate &c : candidates[from])
      if (c.priority < best->priority)
        best = &c;
    // What the target keeps is its split up to the first axis a factor of
    // better priority holds (the rest would be cut below anyway, and the
    // relocated axes with it): a parameter's FSDP split of the heads (an
    // attention sink's) must not keep the sequence from moving there.
    Axes axes;
    for (StringAttr axis : split.axes[to]) {
      bool claimed = false;
      for (int64_t g = 0; g < n && !claimed; ++g)
        claimed = g != to && split.priority[g] < split.priority[to] &&
                  llvm::is_contained(split.axes[g], axis);
      if (claimed)
        break;
      axes.push_back(axis);
    }
    for (StringAttr axis : best->axes)
      if (!llvm::is_contained(axes, axis))
        axes.push_back(axis);
    if (rule.factorSizes[to] % mesh.size(axes) != 0)
      continue;
    split.axes[to] = axes;
    relocated.insert(from);
  }

  // An axis serves one factor: best priority first, then factor order.
  SmallVector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  llvm::stable_sort(order, [&](int64_t a, int64_t b) {
    return split.priority[a] < split.priority[b];
  });
  // Experts share theirs: their rows may be split over the same axes.
  llvm::SmallDenseSet<StringAttr, 8> used;
  for (int64_t f : order) {
    Axes &axes = split.axes[f];
    bool shares = rule.factorKinds[f] == FactorKind::Expert;
    size_t keep = 0;
    int64_t product = 1;
    for (; keep < axes.size(); ++keep) {
      int64_t s = mesh.size(axes[keep]);
      if ((!shares && used.contains(axes[keep])) ||
          rule.factorSizes[f] % (product * s))
        break;
      product *= s;
    }
    axes.resize(keep);
    if (!shares)
      used.insert(axes.begin(), axes.end());
  }

  // Every tensor must see a factor's whole split: a minor factor of a
  // dimension keeps its axes only when the factors before it are split
  // completely.
  auto consistent = [&](const ShardingRule::Dims &dims) {
    bool changed = false;
    for (const auto &factors : dims) {
      bool complete = true;
      for (int64_t f : factors) {
        if (!complete && !split.axes[f].empty()) {
          split.axes[f].clear();
          changed = true;
        }
        complete = complete && mesh.size(split.axes[f]) == rule.factorSizes[f];
      }
    }
    return changed;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto &dims : rule.operandDims)
      changed |= consistent(dims);
    for (const auto &dims : rule.resultDims)
      changed |= consistent(dims);
  }
  return split;
}

Layout sharding::naturalResultLayout(const ShardingRule &rule, unsigned index,
                                     const FactorSplit &split,
                                     const Mesh &mesh) {
  const ShardingRule::Dims &dims = rule.resultDims[index];
  Layout l = Layout::open(dims.size());
  l.dims = projectDims(rule, dims, split, mesh);
  if (rule.perShardResults[index])
    return l;
  llvm::SmallDenseSet<int64_t, 8> present;
  for (const auto &factors : dims)
    present.insert(factors.begin(), factors.end());
  // Rows that travel to their experts are summed there: the expert axes
  // leave no partial sums.
  llvm::SmallDenseSet<StringAttr, 4> exchanged;
  for (int64_t f = 0; f < rule.numFactors(); ++f)
    if (rule.factorKinds[f] == FactorKind::Expert)
      exchanged.insert(split.axes[f].begin(), split.axes[f].end());
  for (int64_t f = 0; f < rule.numFactors(); ++f)
    if (!present.contains(f) && rule.factorKinds[f] != FactorKind::Expert &&
        rule.factorKinds[f] != FactorKind::Internal)
      for (StringAttr axis : split.axes[f])
        if (!exchanged.contains(axis))
          l.partial.push_back(axis);
  // In mesh order, so that equal sums over the same axes are one group.
  auto position = [&](StringAttr axis) {
    ArrayRef<dist::MeshAxisAttr> axes = mesh.getAttr().getAxes();
    return llvm::find_if(axes,
                         [&](dist::MeshAxisAttr a) {
                           return a.getName() == axis.getValue();
                         }) -
           axes.begin();
  };
  llvm::stable_sort(l.partial, [&](StringAttr a, StringAttr b) {
    return position(a) < position(b);
  });
  return l;
}

OpPlan sharding::planOp(const ShardingRule &rule,
                        ArrayRef<const Layout *> operands,
                        ArrayRef<const Layout *> results, const Mesh &mesh) {
  OpPlan plan;
  plan.split = resolveFactors(rule, operands, results, mesh);
  for (const auto &dims : rule.operandDims) {
    Layout need = Layout::open(dims.size());
    need.dims = projectDims(rule, dims, plan.split, mesh);
    plan.operandNeeds.push_back(std::move(need));
  }
  for (unsigned i = 0; i < rule.resultDims.size(); ++i)
    plan.naturals.push_back(naturalResultLayout(rule, i, plan.split, mesh));
  return plan;
}

//===----------------------------------------------------------------------===//
// Resharding
//===----------------------------------------------------------------------===//

SmallVector<Collective> sharding::planReshard(const Layout &from,
                                              const Layout &to,
                                              const ReshardStyle &style) {
  SmallVector<Collective> steps;
  SmallVector<Axes> cur = from.dims;
  int64_t rank = cur.size();
  auto wantsNext = [&](int64_t d, StringAttr axis) {
    return isPrefix(cur[d], to.dims[d]) && to.dims[d].size() > cur[d].size() &&
           to.dims[d][cur[d].size()] == axis;
  };
  auto inUse = [&](StringAttr axis) {
    return llvm::any_of(
        cur, [&](const Axes &a) { return llvm::is_contained(a, axis); });
  };

  // Partial sums: onto a dimension that wants the axis next, else summed.
  Axes reduce;
  for (StringAttr axis : from.partial) {
    int64_t target = -1;
    for (int64_t d = 0; d < rank && target < 0 && style.scatter; ++d)
      if (wantsNext(d, axis) && !inUse(axis))
        target = d;
    if (target >= 0) {
      steps.push_back({Collective::ReduceScatter, {axis}, target});
      cur[target].push_back(axis);
    } else {
      reduce.push_back(axis);
    }
  }
  if (!reduce.empty())
    steps.push_back({Collective::AllReduce, reduce});

  // Axes that must leave a dimension: moved to where they are wanted, else
  // gathered (a run of them in one all-gather).
  for (int64_t d = 0; d < rank; ++d) {
    while (!isPrefix(cur[d], to.dims[d])) {
      StringAttr axis = cur[d].back();
      int64_t target = -1;
      for (int64_t e = 0; e < rank && target < 0 && style.allToAll; ++e)
        if (e != d && wantsNext(e, axis))
          target = e;
      if (target >= 0) {
        steps.push_back({Collective::AllToAll, {axis}, d, target});
        cur[d].pop_back();
        cur[target].push_back(axis);
        continue;
      }
      // Gather the tail down to the longest prefix `to` keeps, stopping
      // before an axis another dimension wants next.
      size_t keep = 0;
      while (keep < cur[d].size() && keep < to.dims[d].size() &&
             cur[d][keep] == to.dims[d][keep])
        ++keep;
      size_t begin = cur[d].size() - 1;
      while (begin > keep) {
        StringAttr prev = cur[d][begin - 1];
        bool movable = false;
        for (int64_t e = 0; e < rank && style.allToAll; ++e)
          movable |= e != d && wantsNext(e, prev);
        if (movable)
          break;
        --begin;
      }
      Axes gathered(cur[d].begin() + begin, cur[d].end());
      steps.push_back({Collective::AllGather, gathered, d});
      cur[d].resize(begin);
    }
  }

  // What `to` splits further: each rank keeps its slice.
  for (int64_t d = 0; d < rank; ++d) {
    if (cur[d].size() >= to.dims[d].size())
      continue;
    Axes more(to.dims[d].begin() + cur[d].size(), to.dims[d].end());
    steps.push_back({Collective::LocalSplit, more, d});
    cur[d] = to.dims[d];
  }
  return steps;
}

/// The local types along `steps` from `local`.
static void walkSteps(
    RankedTensorType local, ArrayRef<Collective> steps, const Mesh &mesh,
    function_ref<void(const Collective &, RankedTensorType, RankedTensorType)>
        step) {
  for (const Collective &c : steps) {
    SmallVector<int64_t> shape(local.getShape());
    int64_t n = mesh.size(c.axes);
    switch (c.kind) {
    case Collective::AllReduce:
      break;
    case Collective::ReduceScatter:
    case Collective::LocalSplit:
      shape[c.dim] /= n;
      break;
    case Collective::AllGather:
      shape[c.dim] *= n;
      break;
    case Collective::AllToAll:
      shape[c.splitDim] /= n;
      shape[c.dim] *= n;
      break;
    }
    RankedTensorType next = local.clone(shape);
    step(c, local, next);
    local = next;
  }
}

SmallVector<Collective> sharding::cheapestReshard(RankedTensorType local,
                                                  const Layout &from,
                                                  const Layout &to,
                                                  const Mesh &mesh,
                                                  const LinkModel &link) {
  SmallVector<Collective> best;
  double bestSeconds = std::numeric_limits<double>::infinity();
  for (bool scatter : {true, false})
    for (bool allToAll : {true, false}) {
      SmallVector<Collective> steps =
          planReshard(from, to, {scatter, allToAll});
      double total = 0;
      walkSteps(
          local, steps, mesh,
          [&](const Collective &c, RankedTensorType in, RankedTensorType out) {
            auto bytes = [](RankedTensorType t) {
              return double(t.getNumElements()) * t.getElementTypeBitWidth() /
                     8;
            };
            total +=
                seconds(c, bytes(c.kind == Collective::AllGather ? out : in),
                        mesh, link);
          });
      if (total < bestSeconds) { // ties keep the earlier (greedier) plan
        best = std::move(steps);
        bestSeconds = total;
      }
    }
  return best;
}

void sharding::walkReshard(
    RankedTensorType local, const Layout &from, const Layout &to,
    const Mesh &mesh,
    function_ref<void(const Collective &, RankedTensorType, RankedTensorType)>
        step) {
  walkSteps(local, cheapestReshard(local, from, to, mesh, LinkModel()), mesh,
            step);
}

double sharding::bytesSent(const Collective &c, double bytes, int64_t n) {
  if (n <= 1)
    return 0;
  double share = double(n - 1) / double(n);
  switch (c.kind) {
  case Collective::AllReduce:
    return 2 * share * bytes;
  case Collective::ReduceScatter:
  case Collective::AllGather:
  case Collective::AllToAll:
    return share * bytes;
  case Collective::LocalSplit:
    return 0;
  }
  return 0;
}

void sharding::placeAxes(LinkModel &link,
                         ArrayRef<std::pair<std::string, int64_t>> axes,
                         int64_t devicesPerNode) {
  link.placed = true;
  link.intraAxes.clear();
  int64_t stride = 1;
  for (auto &[name, size] : llvm::reverse(axes)) {
    int64_t span = stride * size;
    if (size > 1 && span <= devicesPerNode && devicesPerNode % span == 0)
      link.intraAxes.push_back(name);
    stride = span;
  }
}

double sharding::seconds(const Collective &c, double bytes, const Mesh &mesh,
                         const LinkModel &link) {
  int64_t n = mesh.size(c.axes);
  if (n <= 1 || c.kind == Collective::LocalSplit)
    return 0;
  bool intra = llvm::all_of(
      c.axes, [&](StringAttr a) { return link.isIntraNode(a.getValue()); });
  double alpha = intra ? link.intraLatency : link.interLatency;
  double beta = 1.0 / (intra ? link.intraBandwidth : link.interBandwidth);
  // Latency: log2 n steps for a reduce-scatter or all-gather (recursive
  // halving / doubling), twice that for an all-reduce (its two halves),
  // n - 1 for an all-to-all (pairwise); bandwidth: the ring's volume.
  double steps = std::ceil(std::log2(double(n)));
  double hops = c.kind == Collective::AllReduce  ? 2 * steps
                : c.kind == Collective::AllToAll ? double(n - 1)
                                                 : steps;
  return hops * alpha + bytesSent(c, bytes, n) * beta;
}
