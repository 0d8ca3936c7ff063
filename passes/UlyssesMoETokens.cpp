//===- UlyssesMoETokens.cpp - MoE rows that keep a Ulysses split ----------===//
//
// A MoE block works on token rows: [B, S, H] is flattened to [B * S, H],
// routed, dispatched to experts, combined, and reshaped back. With the
// sequence split over sp and the batch over the data-parallel axes, a rank
// holds B/dp x S/sp tokens; when B/dp > 1 those rows are not one block of
// B * S, so the flatten cannot keep the sequence split and the partitioner
// gathers it: every sp rank routes and multiplies every row of its
// sequences. Rows are independent in a MoE block (routing, experts, the
// weighted combine), so their order is free: flattened sp-major,
//   [B, S, H] -> [B, sp, S/sp, H] -> [sp, B, S/sp, H] -> [B * S, H],
// the rows of sp rank r and data-parallel rank d are one block again
// (sp major, then the batch). Where the block's result is reshaped back to
// [B, S, ...] the inverse permutation restores the order.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_ULYSSESMOETOKENS
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct UlyssesMoETokensPass
    : veomni::impl::UlyssesMoETokensBase<UlyssesMoETokensPass> {
  using UlyssesMoETokensBase::UlyssesMoETokensBase;

  /// [B, S, W] -> [B, sp, S/sp, W] -> [sp, B, S/sp, W] -> [B * S, W].
  Value spMajor(OpBuilder &b, Location loc, Value v) {
    auto t = cast<RankedTensorType>(v.getType());
    int64_t batch = t.getDimSize(0), seq = t.getDimSize(1),
            width = t.getDimSize(2);
    Value split = ReshapeOp::create(
        b, loc, t.clone({batch, int64_t(sp), seq / sp, width}), v);
    Value moved = TransposeOp::create(b, loc, split,
                                      b.getDenseI64ArrayAttr({1, 0, 2, 3}));
    return ReshapeOp::create(b, loc, t.clone({batch * seq, width}), moved);
  }

  /// Whether [B, S, W] needs reordering: S splits over sp and each rank
  /// holds more than one sequence (with one, its rows are one block).
  bool needed(RankedTensorType t) const {
    return t.getRank() == 3 && t.getDimSize(1) % sp == 0 &&
           t.getDimSize(0) > std::max<int64_t>(batchSplit, 1);
  }

  /// `v` as [B, S, W] flattened to rows by a reshape, or null.
  Value rowsOf(Value v) {
    auto r = v.getDefiningOp<ReshapeOp>();
    if (!r)
      return {};
    auto in = cast<RankedTensorType>(r.getInput().getType());
    auto out = cast<RankedTensorType>(r.getType());
    if (!needed(in) || out.getRank() != 2 ||
        out.getDimSize(0) != in.getDimSize(0) * in.getDimSize(1))
      return {};
    return r.getInput();
  }

  /// dW = X^T dY over rows flattened from [B, S, *]: both read sp-major.
  void reorderContractions() {
    getOperation().walk([&](MatmulOp m) {
      if (!m.getTransposeLhs() || m.getTransposeRhs())
        return;
      Value x = rowsOf(m.getLhs()), dy = rowsOf(m.getRhs());
      if (!x || !dy)
        return;
      auto tx = cast<RankedTensorType>(x.getType());
      auto ty = cast<RankedTensorType>(dy.getType());
      if (tx.getDimSize(0) != ty.getDimSize(0) ||
          tx.getDimSize(1) != ty.getDimSize(1))
        return;
      OpBuilder b(m);
      m.getLhsMutable().assign(spMajor(b, m.getLoc(), x));
      m.getRhsMutable().assign(spMajor(b, m.getLoc(), dy));
    });
  }

  void runOnOperation() override {
    if (sp <= 1)
      return;
    if (contractions)
      return reorderContractions();
    SmallVector<ReshapeOp> flattens;
    getOperation().walk([&](MoEDispatchOp d) {
      auto flatten = d.getInput().getDefiningOp<ReshapeOp>();
      if (!flatten || llvm::is_contained(flattens, flatten))
        return;
      auto in = cast<RankedTensorType>(flatten.getInput().getType());
      auto out = cast<RankedTensorType>(flatten.getType());
      if (!needed(in) || out.getRank() != 2 ||
          out.getDimSize(0) != in.getDimSize(0) * in.getDimSize(1))
        return;
      flattens.push_back(flatten);
    });
    for (ReshapeOp flatten : flattens) {
      auto in = cast<RankedTensorType>(flatten.getInput().getType());
      int64_t batch = in.getDimSize(0), seq = in.getDimSize(1), part = seq / sp;
      OpBuilder b(flatten);
      Value rows = spMajor(b, flatten.getLoc(), flatten.getInput());
      // Where the rows become [B, S, ...] again: back in order.
      SetVector<Operation *> slice;
      getForwardSlice(flatten.getResult(), &slice);
      SmallVector<ReshapeOp> exits;
      for (Operation *op : slice)
        if (auto r = dyn_cast<ReshapeOp>(op)) {
          auto from = cast<RankedTensorType>(r.getInput().getType());
          auto to = cast<RankedTensorType>(r.getType());
          if (from.getRank() == 2 && from.getDimSize(0) == batch * seq &&
              to.getRank() == 3 && to.getDimSize(0) == batch &&
              to.getDimSize(1) == seq)
            exits.push_back(r);
        }
      flatten.getResult().replaceAllUsesWith(rows);
      flatten.erase();
      for (ReshapeOp exit : exits) {
        OpBuilder eb(exit);
        auto from = cast<RankedTensorType>(exit.getInput().getType());
        int64_t width = from.getDimSize(1);
        Value split = ReshapeOp::create(eb, exit.getLoc(),
                                        from.clone({sp, batch, part, width}),
                                        exit.getInput());
        Value back = TransposeOp::create(eb, exit.getLoc(), split,
                                         eb.getDenseI64ArrayAttr({1, 0, 2, 3}));
        exit.getInputMutable().assign(back);
      }
    }
  }
};

} // namespace
