//===- FuseLoss.cpp - LM head + cross entropy + VJP as one chunked op -----===//
//
// The training step ends in logits = matmul(h, W^T) [tokens, V], the cross
// entropy of the logits, and at the start of the backward the cross
// entropy's VJP dlogits [tokens, V] and the two matmuls dh = dlogits W and
// dW = dlogits^T h. With a large vocabulary the two [tokens, V] tensors are
// the largest of the step (151,936 x 32,768 tokens: 20 GB each in f32).
// veomni.linear_cross_entropy takes their place: its kernel computes
// `chunk` tokens at a time (logits, loss, dlogits in place, dh rows, dW
// accumulated), in a [chunk, V] workspace the memory plan holds. Chunks
// are of tokens, not of the vocabulary, so that no logit is computed twice:
// a softmax over a vocabulary chunk needs the whole row's maximum and sum
// first, which costs the forward matmul again.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::veomni {
#define GEN_PASS_DEF_FUSELOSS
#include "passes/Passes.h.inc"
} // namespace mlir::veomni

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// The chunk when the pass is not told: as many tokens as 64 MiB of f32
/// logits hold, and at least 256, below which the chunks' GEMMs lose speed
/// (veomni-bench-kernels: 128-token chunks 5% slower than the unfused
/// step, 256 as fast, one 512-token chunk 7% faster).
constexpr int64_t kWorkspaceBytes = int64_t{64} << 20;
constexpr int64_t kMinChunk = 256;

/// `a` and `b` are the same weight: one value, or two all-gathers of one
/// shard (an FSDP- or sp-sharded head gathers its weight for the forward
/// and again for the backward; the fused op needs the first only).
bool sameWeight(Value a, Value b) {
  if (a == b)
    return true;
  auto ga = a.getDefiningOp<dist::AllGatherOp>();
  auto gb = b.getDefiningOp<dist::AllGatherOp>();
  return ga && gb && ga->getOperands() == gb->getOperands() &&
         ga->getAttrDictionary() == gb->getAttrDictionary() &&
         ga.getType() == gb.getType();
}

/// The reshapes and transposes that lead from `v`'s producer to `v`, the
/// first last, and the value they start from.
std::pair<Value, SmallVector<Operation *>> viewChain(Value v) {
  SmallVector<Operation *> chain;
  while (Operation *def = v.getDefiningOp()) {
    if (!isa<ReshapeOp, TransposeOp>(def))
      break;
    chain.push_back(def);
    v = def->getOperand(0);
  }
  return {v, chain};
}

/// Two view chains that move the rows of two tensors alike: the same
/// reshapes and transposes of every dimension but the last, which every
/// view keeps whole and in place (`lastA`, `lastB` elements; sequence
/// parallelism reorders the token rows of dW's operands this way).
/// dW = dlogits^T h sums over rows in any order.
bool sameRowOrder(ArrayRef<Operation *> a, ArrayRef<Operation *> b,
                  int64_t lastA, int64_t lastB) {
  if (a.size() != b.size())
    return false;
  for (auto [x, y] : llvm::zip(a, b)) {
    if (x->getName() != y->getName())
      return false;
    auto tx = cast<RankedTensorType>(x->getResult(0).getType());
    auto ty = cast<RankedTensorType>(y->getResult(0).getType());
    if (tx.getRank() != ty.getRank() || tx.getRank() < 1 ||
        tx.getShape().back() != lastA || ty.getShape().back() != lastB ||
        tx.getShape().drop_back() != ty.getShape().drop_back())
      return false;
    if (auto t = dyn_cast<TransposeOp>(x)) {
      ArrayRef<int64_t> perm = t.getPerm();
      if (perm != cast<TransposeOp>(y).getPerm() ||
          perm.back() != static_cast<int64_t>(perm.size()) - 1)
        return false;
    }
  }
  return true;
}

/// The five ops of one LM head's loss and its VJP.
struct LossGroup {
  MatmulOp logits;
  CrossEntropyOp loss;
  CrossEntropyGradOp lossGrad;
  MatmulOp hiddenGrad, weightGrad;
  SmallVector<Operation *> views; // reshapes feeding weightGrad
};

/// The group around `grad`, or nothing with the reason it does not fuse.
FailureOr<LossGroup> matchGroup(CrossEntropyGradOp grad) {
  LossGroup g;
  g.lossGrad = grad;
  if (grad->hasAttr(dist::DistDialect::kVocabAxesAttrName) ||
      grad.getReduction() == LossReduction::None)
    return failure();
  Value logits = grad.getLogits();
  g.logits = logits.getDefiningOp<MatmulOp>();
  if (!g.logits || g.logits.getTransposeLhs() || !g.logits.getTransposeRhs())
    return failure();
  auto weightType = cast<RankedTensorType>(g.logits.getRhs().getType());
  auto hiddenType = cast<RankedTensorType>(g.logits.getLhs().getType());
  Type element = hiddenType.getElementType();
  if (weightType.getRank() != 2 || weightType.getElementType() != element ||
      cast<RankedTensorType>(logits.getType()).getElementType() != element ||
      !(element.isF32() || element.isBF16() || element.isF16()))
    return failure();
  // The logits feed exactly this cross entropy and its VJP.
  for (Operation *user : logits.getUsers()) {
    if (user == grad.getOperation())
      continue;
    auto ce = dyn_cast<CrossEntropyOp>(user);
    if (!ce || g.loss || ce.getLabels() != grad.getLabels() ||
        ce.getIgnoreIndex() != grad.getIgnoreIndex() ||
        ce.getReduction() != grad.getReduction() ||
        ce->getAttr(dist::DistDialect::kTokenAxesAttrName) !=
            grad->getAttr(dist::DistDialect::kTokenAxesAttrName))
      return failure();
    g.loss = ce;
  }
  if (!g.loss)
    return failure();
  // The cotangent (the step's seed) and the labels exist before the
  // forward matmul, where the fused op goes.
  for (Value v : {grad.getGrad(), grad.getLabels()})
    if (Operation *def = v.getDefiningOp();
        def && (def->getBlock() != g.logits->getBlock() ||
                !def->isBeforeInBlock(g.logits)))
      return failure();
  // dlogits goes to dh = dlogits W and (through a reshape to 2-D)
  // dW = dlogits^T h, and nowhere else.
  Value hidden = g.logits.getLhs();
  // dW = dlogits^T h, each operand through views that order its rows alike.
  auto isWeightGrad = [&](MatmulOp mm) {
    if (!mm.getTransposeLhs() || mm.getTransposeRhs() ||
        cast<RankedTensorType>(mm.getType()) != weightType)
      return false;
    auto [dl, dlViews] = viewChain(mm.getLhs());
    auto [h, hViews] = viewChain(mm.getRhs());
    if (dl != grad.getResult() || h != hidden ||
        !sameRowOrder(dlViews, hViews, weightType.getDimSize(0),
                      weightType.getDimSize(1)))
      return false;
    // The views of dlogits serve this matmul alone.
    for (Operation *v : dlViews)
      if (!v->getResult(0).hasOneUse())
        return false;
    g.views.append(dlViews.begin(), dlViews.end());
    g.views.append(hViews.begin(), hViews.end());
    return true;
  };
  for (Operation *user : grad.getResult().getUsers()) {
    // Follow a view of dlogits to the matmul at the end of its chain.
    Operation *end = user;
    while (isa<ReshapeOp, TransposeOp>(end) && end->getResult(0).hasOneUse())
      end = *end->getResult(0).getUsers().begin();
    auto mm = dyn_cast<MatmulOp>(end);
    if (!mm)
      return failure();
    if (end == user && !g.hiddenGrad && mm.getLhs() == grad.getResult() &&
        !mm.getTransposeLhs() && !mm.getTransposeRhs() &&
        sameWeight(mm.getRhs(), g.logits.getRhs())) {
      g.hiddenGrad = mm;
      continue;
    }
    if (g.weightGrad || !isWeightGrad(mm))
      return failure();
    g.weightGrad = mm;
  }
  if (!g.hiddenGrad || !g.weightGrad || g.hiddenGrad.getType() != hiddenType)
    return failure();
  return g;
}

struct FuseLossPass : veomni::impl::FuseLossBase<FuseLossPass> {
  using FuseLossBase::FuseLossBase;

  void runOnOperation() override {
    SmallVector<CrossEntropyGradOp> grads;
    getOperation().walk([&](CrossEntropyGradOp op) { grads.push_back(op); });
    for (CrossEntropyGradOp grad : grads) {
      FailureOr<LossGroup> g = matchGroup(grad);
      if (failed(g))
        continue;
      if (failed(rewrite(*g)))
        return signalPassFailure();
    }
  }

  LogicalResult rewrite(LossGroup &g) {
    auto hiddenType = cast<RankedTensorType>(g.logits.getLhs().getType());
    auto weightType = cast<RankedTensorType>(g.logits.getRhs().getType());
    int64_t tokens = hiddenType.getNumElements() /
                     std::max<int64_t>(hiddenType.getShape().back(), 1);
    int64_t vocab = weightType.getDimSize(0);
    int64_t rows = chunk;
    if (rows < 0)
      return g.logits->emitError("veomni-fuse-loss: chunk ")
             << rows << " is negative";
    if (rows == 0)
      rows = std::max(kMinChunk,
                      kWorkspaceBytes / std::max<int64_t>(vocab * 4, 1));
    rows = std::clamp<int64_t>(rows, 1, std::max<int64_t>(tokens, 1));
    // A bf16 or f16 head adds the weight gradient's f32 sum to the
    // workspace: fused only where that holds at most half of the logits
    // and their gradient, a margin that keeps the memory plan's peak from
    // growing where the head was not its peak (Qwen3-30B-A3B at 4096
    // tokens a rank: a workspace of 0.56x the two tensors raised the
    // planned peak by 0.16 GiB).
    Type element = hiddenType.getElementType();
    int64_t features = hiddenType.getShape().back();
    int64_t extra = element.isF32() ? 0 : features;
    double workspaceBytes = double(rows + extra) * vocab * 4;
    double logitsBytes =
        2.0 * tokens * vocab * element.getIntOrFloatBitWidth() / 8;
    if (extra ? 2 * workspaceBytes > logitsBytes
              : workspaceBytes >= logitsBytes)
      return success();

    OpBuilder b(g.logits);
    Type f32 = b.getF32Type();
    auto fused = LinearCrossEntropyOp::create(
        b, g.loss.getLoc(), g.loss.getType(), hiddenType, weightType,
        RankedTensorType::get({rows + extra, vocab}, f32), g.logits.getLhs(),
        g.logits.getRhs(), g.loss.getLabels(), g.lossGrad.getGrad(),
        g.loss.getIgnoreIndexAttr(), g.loss.getReductionAttr());
    if (Attribute tokensAxes =
            g.loss->getAttr(dist::DistDialect::kTokenAxesAttrName))
      fused->setAttr(dist::DistDialect::kTokenAxesAttrName, tokensAxes);

    Value backwardWeight = g.hiddenGrad.getRhs();
    g.loss.getResult().replaceAllUsesWith(fused.getLoss());
    g.hiddenGrad.getResult().replaceAllUsesWith(fused.getHiddenGrad());
    g.weightGrad.getResult().replaceAllUsesWith(fused.getWeightGrad());
    g.weightGrad->erase();
    // Views after the ops they read come first in each chain.
    for (Operation *view : g.views)
      if (view->use_empty())
        view->erase();
    g.hiddenGrad->erase();
    g.lossGrad->erase();
    g.loss->erase();
    Value forwardWeight = g.logits.getRhs();
    g.logits->erase();
    // The backward's own gather of the weight, now unread.
    if (backwardWeight != forwardWeight)
      if (Operation *gather = backwardWeight.getDefiningOp();
          gather && gather->use_empty())
        gather->erase();
    return success();
  }
};

} // namespace
