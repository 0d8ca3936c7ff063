//===- Fuse.cpp - chains of elementwise ops into veomni.fused -------------===//
//
// Walks each function in order and grows groups of fusible ops that share
// an iteration domain (their element count): an op joins the open groups
// of its operands (merging them), or starts one. A group closes as soon as
// an op outside it reads one of its values, so that the fused op, placed
// where its last member was, still comes before every outside reader.
// Broadcasts join as the way a smaller input is read; a trailing
// reduction joins as a last step (its result leaves the group). Splat
// constants are copied into each group that reads them. A group of one op,
// or of views alone, stays as it was.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/EquivalenceClasses.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_FUSE
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

int64_t mlir::veomni::fusedInputMode(BroadcastOp broadcast) {
  auto in = cast<RankedTensorType>(broadcast.getInput().getType());
  auto out = cast<RankedTensorType>(broadcast.getType());
  if (in.getNumElements() == out.getNumElements() || in.getNumElements() == 1)
    return in.getNumElements() == out.getNumElements() ? 0 : 1;
  // The result dimensions (of size > 1) the input provides whole.
  SmallVector<bool> taken(out.getRank(), false);
  for (auto [i, d] : llvm::enumerate(broadcast.getDims()))
    if (in.getDimSize(i) == out.getDimSize(d) && in.getDimSize(i) > 1)
      taken[d] = true;
  SmallVector<bool> pattern;
  for (int64_t d = 0; d < out.getRank(); ++d)
    if (out.getDimSize(d) > 1)
      pattern.push_back(taken[d]);
  // Inner: the taken dimensions are a suffix; Outer: a prefix.
  auto firstTaken = llvm::find(pattern, true) - pattern.begin();
  auto lastTaken = pattern.rend() - llvm::find(llvm::reverse(pattern), true);
  bool contiguous = llvm::all_of(
      ArrayRef<bool>(pattern).slice(firstTaken, lastTaken - firstTaken),
      [](bool t) { return t; });
  if (!contiguous)
    return -1;
  if (lastTaken == static_cast<int64_t>(pattern.size()))
    return 1;
  if (firstTaken == 0)
    return 2;
  return -1;
}

namespace {

int64_t numel(Type t) {
  auto r = cast<RankedTensorType>(t);
  return r.getNumElements();
}

bool isFloatTensor(Type t) {
  auto r = dyn_cast<RankedTensorType>(t);
  return r && r.hasStaticShape() && isa<FloatType>(r.getElementType());
}

bool isSplat(Operation *op) {
  auto c = dyn_cast_or_null<ConstantOp>(op);
  return c && isa<SplatElementsAttr>(c.getValue()) &&
         isFloatTensor(c.getType());
}

/// A reduction over the trailing dimensions (one contiguous run per
/// result element).
bool isTrailingReduce(ReduceOp r) {
  auto in = cast<RankedTensorType>(r.getInput().getType());
  ArrayRef<int64_t> dims = r.getDims();
  for (auto [i, d] : llvm::enumerate(dims))
    if (d != in.getRank() - static_cast<int64_t>(dims.size()) +
                 static_cast<int64_t>(i))
      return false;
  return !dims.empty();
}

/// The ops a fused kernel can run, and the domain (element count) each
/// iterates over; 0 for the rest.
int64_t domainOf(Operation *op) {
  if (op->getNumResults() != 1 || !isFloatTensor(op->getResult(0).getType()))
    return 0;
  if (!llvm::all_of(op->getOperandTypes(), isFloatTensor))
    return 0;
  if (isa<NegOp, ExpOp, LogOp, SqrtOp, RsqrtOp, SinOp, CosOp, TanhOp, SigmoidOp,
          SiluOp, GeluOp, AddOp, SubOp, MulOp, DivOp, CastOp, ReshapeOp,
          IsFiniteOp, MulNoNanOp>(op))
    return numel(op->getResult(0).getType());
  if (auto b = dyn_cast<BroadcastOp>(op))
    return fusedInputMode(b) >= 0 ? numel(b.getType()) : 0;
  if (auto r = dyn_cast<ReduceOp>(op))
    return isTrailingReduce(r) ? numel(r.getInput().getType()) : 0;
  return 0;
}

/// Ops that compute (the rest only view or read differently).
bool computes(Operation *op) { return !isa<ReshapeOp, BroadcastOp>(op); }

struct Group {
  SmallVector<Operation *> members;
  int64_t domain = 0;
  int64_t rows = 0; ///< the reductions' result size, 0 without one
  bool open = true;
};

/// Upper bounds that keep a group within the fused kernel's registers.
constexpr size_t kMaxMembers = 40;
constexpr size_t kMaxInputs = 12;

class Fuser {
public:
  explicit Fuser(Block &block) : block_(block) {}

  void run() {
    for (Operation &op : block_) {
      int64_t domain = domainOf(&op);
      if (!domain) {
        for (Value v : op.getOperands())
          close(v);
        continue;
      }
      join(&op, domain);
    }
    for (Group &g : groups_)
      if (g.members.size() >= 2 && llvm::any_of(g.members, computes))
        materialize(g);
  }

private:
  Group *groupOf(Value v) {
    Operation *def = v.getDefiningOp();
    auto it = def ? member_.find(def) : member_.end();
    return it == member_.end() ? nullptr : &groups_[it->second];
  }
  void close(Value v) {
    if (Group *g = groupOf(v))
      g->open = false;
  }

  void join(Operation *op, int64_t domain) {
    auto reduce = dyn_cast<ReduceOp>(op);
    int64_t rows = reduce ? numel(reduce.getType()) : 0;
    // The open groups of the operands this op can continue: not one whose
    // reduction it reads (that result has left the domain).
    SmallVector<Group *> reducedIn;
    for (Value v : op->getOperands())
      if (Group *g = groupOf(v); g && isa<ReduceOp>(v.getDefiningOp()))
        reducedIn.push_back(g);
    SmallVector<size_t> into;
    for (Value v : op->getOperands()) {
      Group *g = groupOf(v);
      if (!g || !g->open || g->domain != domain ||
          llvm::is_contained(reducedIn, g))
        continue;
      if (rows && g->rows && g->rows != rows)
        continue;
      size_t index = g - groups_.data();
      if (!llvm::is_contained(into, index))
        into.push_back(index);
    }
    // Merge them, while the result stays small enough for one kernel.
    size_t target;
    if (into.empty()) {
      target = groups_.size();
      groups_.emplace_back();
      groups_[target].domain = domain;
    } else {
      target = into.front();
      for (size_t other : llvm::drop_begin(into)) {
        Group &o = groups_[other];
        Group &t = groups_[target];
        if (t.members.size() + o.members.size() + 1 > kMaxMembers ||
            (o.rows && t.rows && o.rows != t.rows))
          continue;
        for (Operation *m : o.members) {
          t.members.push_back(m);
          member_[m] = target;
        }
        t.rows = t.rows ? t.rows : o.rows;
        o.members.clear();
        o.open = false;
      }
      if (groups_[target].members.size() + 1 > kMaxMembers ||
          inputsWith(groups_[target], op) > kMaxInputs) {
        groups_[target].open = false;
        target = groups_.size();
        groups_.emplace_back();
        groups_[target].domain = domain;
      }
    }
    Group &g = groups_[target];
    g.members.push_back(op);
    member_[op] = target;
    if (rows)
      g.rows = rows;
    // Values of other groups this op reads are read from outside them.
    for (Value v : op->getOperands())
      if (Group *h = groupOf(v); h && h != &g)
        h->open = false;
  }

  /// The inputs `g` would have with `op` in it.
  size_t inputsWith(const Group &g, Operation *op) {
    llvm::SmallPtrSet<Operation *, 16> in(g.members.begin(), g.members.end());
    in.insert(op);
    llvm::SetVector<Value> inputs;
    for (Operation *m : in)
      for (Value v : m->getOperands())
        if (!in.contains(v.getDefiningOp()) && !isSplat(v.getDefiningOp()))
          inputs.insert(v);
    return inputs.size();
  }

  void materialize(Group &g) {
    llvm::SmallPtrSet<Operation *, 16> in(g.members.begin(), g.members.end());
    // Members in block order (merging may have mixed them).
    llvm::sort(g.members, [](Operation *a, Operation *b) {
      return a->isBeforeInBlock(b);
    });
    llvm::SetVector<Value> inputs, results;
    for (Operation *m : g.members) {
      for (Value v : m->getOperands())
        if (!in.contains(v.getDefiningOp()) && !isSplat(v.getDefiningOp()))
          inputs.insert(v);
      for (Value r : m->getResults())
        for (Operation *user : r.getUsers())
          if (!in.contains(user))
            results.insert(r);
    }
    if (results.empty())
      return; // nothing reads it: leave it to dead-code elimination
    Operation *last = g.members.back();
    OpBuilder b(last->getContext());
    b.setInsertionPointAfter(last);
    SmallVector<Type> resultTypes;
    for (Value r : results)
      resultTypes.push_back(r.getType());
    auto fused =
        FusedOp::create(b, last->getLoc(), resultTypes, inputs.getArrayRef());
    Block *body = new Block();
    fused.getBody().push_back(body);
    IRMapping map;
    for (Value v : inputs)
      map.map(v, body->addArgument(v.getType(), v.getLoc()));
    OpBuilder inner = OpBuilder::atBlockBegin(body);
    for (Operation *m : g.members) {
      for (Value v : m->getOperands())
        if (!map.contains(v))
          map.map(v, inner.clone(*v.getDefiningOp())->getResult(0));
      inner.clone(*m, map);
    }
    SmallVector<Value> yielded;
    for (Value r : results)
      yielded.push_back(map.lookup(r));
    YieldOp::create(inner, last->getLoc(), yielded);
    for (auto [r, f] : llvm::zip(results, fused.getResults()))
      Value(r).replaceUsesWithIf(
          f, [&](OpOperand &use) { return !in.contains(use.getOwner()); });
    for (Operation *m : llvm::reverse(g.members))
      m->erase();
  }

  Block &block_;
  std::vector<Group> groups_;
  DenseMap<Operation *, size_t> member_;
};

struct FusePass : veomni::impl::FuseBase<FusePass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.getBody().getBlocks().size() != 1)
        continue;
      Fuser(func.getBody().front()).run();
      // Splat constants the groups copied and nothing else reads.
      for (Operation &op : llvm::make_early_inc_range(func.getBody().front()))
        if (isa<ConstantOp>(op) && op.use_empty())
          op.erase();
    }
  }
};

} // namespace
