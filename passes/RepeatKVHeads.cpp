//===- RepeatKVHeads.cpp - kv heads repeated up to sp ---------------------===//

#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_REPEATKVHEADS
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// [B, S, H, D] -> [B, S, H * repeat, D]: head h becomes heads
/// h * repeat ... h * repeat + repeat - 1.
Value repeatHeads(OpBuilder &b, Location loc, Value v, int64_t repeat) {
  auto t = cast<RankedTensorType>(v.getType());
  int64_t batch = t.getDimSize(0), seq = t.getDimSize(1),
          heads = t.getDimSize(2), dim = t.getDimSize(3);
  Value one =
      ReshapeOp::create(b, loc, t.clone({batch, seq, heads, 1, dim}), v);
  Value copies =
      BroadcastOp::create(b, loc, t.clone({batch, seq, heads, repeat, dim}),
                          one, b.getDenseI64ArrayAttr({0, 1, 2, 3, 4}));
  return ReshapeOp::create(b, loc, t.clone({batch, seq, heads * repeat, dim}),
                           copies);
}

struct RepeatKVHeadsPass : veomni::impl::RepeatKVHeadsBase<RepeatKVHeadsPass> {
  using RepeatKVHeadsBase::RepeatKVHeadsBase;
  void runOnOperation() override {
    if (sp <= 1)
      return;
    getOperation().walk([&](AttentionOp a) {
      auto q = cast<RankedTensorType>(a.getQuery().getType());
      auto k = cast<RankedTensorType>(a.getKey().getType());
      int64_t hq = q.getDimSize(2), hkv = k.getDimSize(2);
      if (hkv >= sp || sp % hkv != 0 || hq % sp != 0)
        return;
      OpBuilder b(a);
      int64_t repeat = sp / hkv;
      a.getKeyMutable().assign(repeatHeads(b, a.getLoc(), a.getKey(), repeat));
      a.getValueMutable().assign(
          repeatHeads(b, a.getLoc(), a.getValue(), repeat));
    });
  }
};

} // namespace
