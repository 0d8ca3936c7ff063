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

/// The workspace the chunk size is chosen by when the pass is not told.
constexpr int64_t kWorkspaceBytes = int64_t{32} << 20;

/// `a` and `b` are the same weight value. Two all-gathers of one FSDP
/// shard (forward and backward) are not taken yet: the fused op would need
/// one gather, not the two the plan report counts (passes/Communication).
bool sameWeight(Value a, Value b) { return a == b; }

/// `v` through reshapes that only merge its leading dimensions.
Value throughReshape(Value v) {
  if (auto r = v.getDefiningOp<ReshapeOp>())
    return r.getInput();
  return v;
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
  if (weightType.getRank() != 2 || !weightType.getElementType().isF32() ||
      !hiddenType.getElementType().isF32() ||
      !cast<RankedTensorType>(logits.getType()).getElementType().isF32())
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
  // The cotangent exists before the forward matmul (the step's seed).
  Value seed = grad.getGrad();
  if (Operation *def = seed.getDefiningOp();
      def && (def->getBlock() != g.logits->getBlock() ||
              !def->isBeforeInBlock(g.logits)))
    return failure();
  // dlogits goes to dh = dlogits W and (through a reshape to 2-D)
  // dW = dlogits^T h, and nowhere else.
  Value hidden = g.logits.getLhs();
  auto isWeightGrad = [&](MatmulOp mm, Value lhs) {
    return mm.getLhs() == lhs && mm.getTransposeLhs() &&
           !mm.getTransposeRhs() && throughReshape(mm.getRhs()) == hidden &&
           cast<RankedTensorType>(mm.getType()) == weightType;
  };
  auto takeWeightGrad = [&](MatmulOp mm, Operation *view) {
    if (g.weightGrad)
      return false;
    g.weightGrad = mm;
    if (view)
      g.views.push_back(view);
    if (auto r = mm.getRhs().getDefiningOp<ReshapeOp>())
      g.views.push_back(r);
    return true;
  };
  for (Operation *user : grad.getResult().getUsers()) {
    if (auto mm = dyn_cast<MatmulOp>(user)) {
      if (!g.hiddenGrad && mm.getLhs() == grad.getResult() &&
          !mm.getTransposeLhs() && !mm.getTransposeRhs() &&
          sameWeight(mm.getRhs(), g.logits.getRhs())) {
        g.hiddenGrad = mm;
        continue;
      }
      if (isWeightGrad(mm, grad.getResult()) && takeWeightGrad(mm, nullptr))
        continue;
      return failure();
    }
    auto view = dyn_cast<ReshapeOp>(user);
    if (!view || !view.getResult().hasOneUse())
      return failure();
    auto mm = dyn_cast<MatmulOp>(*view.getResult().getUsers().begin());
    if (!mm || !isWeightGrad(mm, view.getResult()) || !takeWeightGrad(mm, view))
      return failure();
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
      rows = kWorkspaceBytes / std::max<int64_t>(vocab * 4, 1);
    rows = std::clamp<int64_t>(rows, 1, std::max<int64_t>(tokens, 1));

    OpBuilder b(g.logits);
    Type f32 = b.getF32Type();
    auto fused = LinearCrossEntropyOp::create(
        b, g.loss.getLoc(), g.loss.getType(), hiddenType, weightType,
        RankedTensorType::get({rows, vocab}, f32), g.logits.getLhs(),
        g.logits.getRhs(), g.loss.getLabels(), g.lossGrad.getGrad(),
        g.loss.getIgnoreIndexAttr(), g.loss.getReductionAttr());
    if (Attribute tokensAxes =
            g.loss->getAttr(dist::DistDialect::kTokenAxesAttrName))
      fused->setAttr(dist::DistDialect::kTokenAxesAttrName, tokensAxes);

    g.loss.getResult().replaceAllUsesWith(fused.getLoss());
    g.hiddenGrad.getResult().replaceAllUsesWith(fused.getHiddenGrad());
    g.weightGrad.getResult().replaceAllUsesWith(fused.getWeightGrad());
    g.weightGrad->erase();
    for (Operation *view : g.views)
      if (view->use_empty())
        view->erase();
    g.hiddenGrad->erase();
    g.lossGrad->erase();
    g.loss->erase();
    g.logits->erase();
    return success();
  }
};

} // namespace
