//===- PlanMemory.cpp - static offsets in one arena -----------------------===//
//
// The function is one block of kernel calls, so a buffer's lifetime is an
// interval of op positions: from its alloc to its last reader (through any
// view of it). Placing buffers is then interval packing; the greedy order
// "largest first, lowest free offset" is what TFLite and XLA use for the
// same problem and is within a few percent of optimal on transformer
// graphs.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_PLANMEMORY
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

constexpr int64_t kAlignment = 64;

int64_t alignUp(int64_t n) {
  return (n + kAlignment - 1) / kAlignment * kAlignment;
}

int64_t byteSize(Value buffer) {
  auto type = cast<MemRefType>(buffer.getType());
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

using vrt::rootBuffer;

/// Kernels that may write their result over an input of the same type.
bool runsInPlace(vrt::KernelOp k) {
  return k.getKind().getInfo().flags & ::kernel_table::kInPlace;
}

struct Interval {
  Value root;
  int64_t start, end, bytes;
  int64_t offset = -1;
};

LogicalResult planFunction(func::FuncOp func, bool inPlace) {
  Block &block = func.getBody().front();
  // Positions, and each root's last use.
  DenseMap<Operation *, int64_t> position;
  int64_t index = 0;
  for (Operation &op : block)
    position[&op] = index++;
  const int64_t end = index;
  DenseMap<Value, int64_t> lastUse;
  auto touch = [&](Value v, int64_t at) {
    Value root = rootBuffer(v);
    lastUse[root] = std::max(lastUse.lookup(root), at);
  };
  // Each root's readers' positions, in order (for the collectives below).
  DenseMap<Value, SmallVector<int64_t, 4>> readers;
  for (Operation &op : block) {
    for (Value operand : op.getOperands()) {
      const int64_t at = isa<func::ReturnOp>(op) ? end : position[&op];
      touch(operand, at);
      SmallVector<int64_t, 4> &list = readers[rootBuffer(operand)];
      if (list.empty() || list.back() != position[&op])
        list.push_back(position[&op]);
    }
  }
  // A collective runs on the communicator's thread from its position until
  // the first kernel that reads its result: its inputs live until then, so
  // nothing the rank computes meanwhile overwrites them.
  bool collectives = false;
  for (auto kernel : block.getOps<vrt::KernelOp>()) {
    if (!(kernel.getKind().getInfo().flags & ::kernel_table::kCollective))
      continue;
    collectives = true;
    int64_t firstUse = end;
    const int64_t here = position[kernel];
    for (Value out : kernel.getOuts()) {
      auto it = readers.find(rootBuffer(out));
      if (it == readers.end())
        continue;
      auto next = llvm::upper_bound(it->second, here);
      if (next != it->second.end())
        firstUse = std::min(firstUse, *next);
    }
    for (Value in : kernel.getIns())
      touch(in, firstUse);
  }
  if (collectives)
    func->setAttr(vrt::VrtDialect::kAsyncCollectivesAttrName,
                  UnitAttr::get(func.getContext()));

  // In place: an elementwise kernel's result takes over an input that is an
  // alloc of the same type and dies at this kernel.
  if (inPlace) {
    // Fused kernels write an output over a Full-mode input of its own
    // segment that dies there; an update of an argument (a parameter, a
    // moment) over that argument itself, which then needs no copy after
    // the step and no buffer of its own.
    DenseMap<Value, BlockArgument> updates;
    DenseMap<StringAttr, BlockArgument> byName;
    for (BlockArgument a : block.getArguments())
      for (StringRef key : {"veomni.param", "veomni.state"})
        if (auto name =
                func.getArgAttrOfType<StringAttr>(a.getArgNumber(), key))
          byName[name] = a;
    auto ret = cast<func::ReturnOp>(block.getTerminator());
    for (auto [i, v] : llvm::enumerate(ret.getOperands()))
      if (auto target =
              func.getResultAttrOfType<StringAttr>(i, "veomni.update"))
        if (BlockArgument a = byName.lookup(target))
          updates[v] = a;
    for (auto kernel : block.getOps<vrt::KernelOp>()) {
      if (kernel.getKind().getKind() != ::kernel_table::KernelKind::Fused)
        continue;
      auto modes = kernel->getAttrOfType<DenseI64ArrayAttr>("input_modes");
      auto results = kernel->getAttrOfType<DenseI64ArrayAttr>("results");
      auto segments = kernel->getAttrOfType<IntegerAttr>("segments");
      if (!modes || !results || !segments || segments.getInt() < 1)
        continue;
      const size_t perIn = kernel.getIns().size() / segments.getInt();
      const size_t perOut = kernel.getOuts().size() / segments.getInt();
      llvm::SmallPtrSet<Value, 8> taken;
      for (auto [oi, out] : llvm::enumerate(kernel.getOuts())) {
        auto outAlloc = out.getDefiningOp<vrt::AllocOp>();
        size_t seg = oi / perOut, o = oi % perOut;
        if (!outAlloc || results[2 * o + 1] != 0)
          continue;
        for (size_t j = 0; j < perIn; ++j) {
          Value in = kernel.getIns()[seg * perIn + j];
          bool ours = in.getDefiningOp<vrt::AllocOp>() ||
                      (isa<BlockArgument>(in) && updates.lookup(out) == in);
          if (!ours || modes[j] != 0 || in.getType() != out.getType() ||
              taken.contains(in) || lastUse.lookup(in) != position[kernel])
            continue;
          taken.insert(in);
          lastUse[in] = std::max(lastUse[in], lastUse.lookup(out));
          out.replaceAllUsesWith(in);
          outAlloc.erase();
          break;
        }
      }
    }
    for (auto kernel :
         llvm::make_early_inc_range(block.getOps<vrt::KernelOp>())) {
      if (!runsInPlace(kernel) || kernel.getOuts().size() != 1 ||
          kernel.getKind().getKind() == ::kernel_table::KernelKind::Fused)
        continue;
      Value out = kernel.getOuts()[0];
      auto outAlloc = out.getDefiningOp<vrt::AllocOp>();
      if (!outAlloc)
        continue;
      SmallVector<Value> candidates(kernel.getIns());
      if (kernel.getKind().getKind() ==
          ::kernel_table::KernelKind::ScatterAdd) // only dest has out's shape
        candidates.resize(1);
      for (Value in : candidates) {
        auto inAlloc = in.getDefiningOp<vrt::AllocOp>();
        if (!inAlloc || in.getType() != out.getType() ||
            lastUse.lookup(in) != position[kernel])
          continue;
        lastUse[in] = std::max(lastUse[in], lastUse.lookup(out));
        out.replaceAllUsesWith(in);
        outAlloc.erase();
        break;
      }
    }
  }

  // Arguments, then constants, at fixed offsets; then the allocs.
  int64_t offset = 0;
  Builder b(func.getContext());
  SmallVector<DictionaryAttr> argAttrs; // all at once (one by one is
                                        // memory quadratic in arguments)
  for (BlockArgument arg : block.getArguments()) {
    NamedAttrList attrs(func.getArgAttrDict(arg.getArgNumber()));
    attrs.set(vrt::VrtDialect::kOffsetAttrName, b.getI64IntegerAttr(offset));
    argAttrs.push_back(attrs.getDictionary(func.getContext()));
    offset = alignUp(offset + byteSize(arg));
  }
  func.setAllArgAttrs(argAttrs);
  for (auto c : block.getOps<vrt::ConstantOp>()) {
    c.setOffsetAttr(b.getI64IntegerAttr(offset));
    offset = alignUp(offset + byteSize(c.getBuffer()));
  }
  const int64_t base = offset;

  std::vector<Interval> intervals;
  for (auto alloc : block.getOps<vrt::AllocOp>()) {
    Value buf = alloc.getBuffer();
    intervals.push_back(
        {buf, position[alloc], lastUse.lookup(buf), alignUp(byteSize(buf))});
  }
  std::vector<Interval *> order;
  for (Interval &i : intervals)
    order.push_back(&i);
  llvm::stable_sort(order, [](const Interval *a, const Interval *b) {
    return a->bytes > b->bytes;
  });
  // Placed buffers by offset: the first gap among those alive at the same
  // time is found scanning up from the bottom, and the scan ends at the
  // first buffer (alive or not) above the candidate's end, past which none
  // can move it.
  std::vector<Interval *> placed;
  int64_t top = base;
  for (Interval *i : order) {
    int64_t candidate = base;
    for (Interval *p : placed) {
      if (candidate + i->bytes <= p->offset)
        break;
      if (p->start <= i->end && i->start <= p->end)
        candidate = std::max(candidate, p->offset + p->bytes);
    }
    i->offset = candidate;
    top = std::max(top, candidate + i->bytes);
    placed.insert(llvm::upper_bound(placed, i,
                                    [](const Interval *a, const Interval *b) {
                                      return a->offset < b->offset;
                                    }),
                  i);
  }
  for (Interval &i : intervals)
    i.root.getDefiningOp<vrt::AllocOp>().setOffsetAttr(
        b.getI64IntegerAttr(i.offset));
  func->setAttr(vrt::VrtDialect::kArenaBytesAttrName, b.getI64IntegerAttr(top));
  func->setAttr("vrt.activation_bytes", b.getI64IntegerAttr(top - base));
  return success();
}

struct PlanMemoryPass : veomni::impl::PlanMemoryBase<PlanMemoryPass> {
  using PlanMemoryBase::PlanMemoryBase;
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.getBody().getBlocks().size() != 1) {
        func.emitError("veomni-plan-memory expects a single-block function");
        return signalPassFailure();
      }
      if (failed(planFunction(func, inPlace)))
        return signalPassFailure();
    }
  }
};

} // namespace
