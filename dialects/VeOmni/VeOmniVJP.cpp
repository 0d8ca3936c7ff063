//===- VeOmniVJP.cpp - reverse-mode rules of the veomni ops ---------------===//
//
// One buildVJP per op that has a rule. The builder's insertion point is in
// the backward part of the step; each rule appends the ops computing its
// operands' cotangents from its results' cotangents. A null result
// cotangent means the result does not reach the loss; a null operand
// cotangent means "no gradient" (ids, labels, positions).
//
// Rules use forward ops wherever they can (the transposes of matmul, the
// reductions of broadcast, ...) and dedicated grad ops where recomputing is
// cheaper than composing (rms_norm_grad, attention_grad,
// cross_entropy_grad, and the *_grad ops of gelu, layer_norm, conv1d,
// slice, grouped_matmul's weight, the router and combine, max reductions);
// rope's VJP is rope with the inverse rotation.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::veomni;

namespace {

RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// A splat of `value` with the type of `like`.
Value splatLike(OpBuilder &b, Location loc, Value like, double value) {
  RankedTensorType t = typeOf(like);
  return ConstantOp::create(b, loc,
                            cast<ElementsAttr>(DenseElementsAttr::get(
                                t, b.getFloatAttr(t.getElementType(), value))));
}

Value mul(OpBuilder &b, Location loc, Value x, Value y) {
  return MulOp::create(b, loc, x, y);
}

/// Swaps the last two dimensions.
Value transposeLast(OpBuilder &b, Location loc, Value x) {
  int64_t r = typeOf(x).getRank();
  SmallVector<int64_t> perm = llvm::to_vector(llvm::seq<int64_t>(0, r));
  std::swap(perm[r - 1], perm[r - 2]);
  return TransposeOp::create(b, loc, x, b.getDenseI64ArrayAttr(perm));
}

/// `g` (shaped like a reduce result) broadcast back to `shape`, with
/// `dims` the reduced dimensions.
Value unreduce(OpBuilder &b, Location loc, Value g, ArrayRef<int64_t> dims,
               bool keepDims, RankedTensorType shape) {
  RankedTensorType gt = typeOf(g);
  SmallVector<int64_t> kept;
  for (int64_t d = 0; d < shape.getRank(); ++d)
    kept.push_back(llvm::is_contained(dims, d) ? 1 : shape.getDimSize(d));
  if (!keepDims)
    g = ReshapeOp::create(b, loc, gt.clone(kept), g);
  return BroadcastOp::create(b, loc, shape.clone(gt.getElementType()), g,
                             b.getDenseI64ArrayAttr(llvm::to_vector(
                                 llvm::seq<int64_t>(0, shape.getRank()))));
}

} // namespace

//===----------------------------------------------------------------------===//
// Leaves and elementwise ops
//===----------------------------------------------------------------------===//

LogicalResult ConstantOp::buildVJP(OpBuilder &, ValueRange,
                                   SmallVectorImpl<Value> &) {
  return success(); // no operands
}

LogicalResult AddOp::buildVJP(OpBuilder &, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.append({grads[0], grads[0]});
  return success();
}

LogicalResult SubOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.append({grads[0], NegOp::create(b, getLoc(), grads[0])});
  return success();
}

LogicalResult MulOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  Location loc = getLoc();
  out.append(
      {mul(b, loc, grads[0], getRhs()), mul(b, loc, grads[0], getLhs())});
  return success();
}

LogicalResult DivOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  // y = a / b: da = g / b, db = -g * y / b.
  Location loc = getLoc();
  Value da = DivOp::create(b, loc, grads[0], getRhs());
  Value db = NegOp::create(b, loc, mul(b, loc, da, getResult()));
  out.append({da, db});
  return success();
}

LogicalResult NegOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.push_back(NegOp::create(b, getLoc(), grads[0]));
  return success();
}

LogicalResult ExpOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.push_back(mul(b, getLoc(), grads[0], getResult()));
  return success();
}

LogicalResult LogOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.push_back(DivOp::create(b, getLoc(), grads[0], getInput()));
  return success();
}

LogicalResult SqrtOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // d sqrt(x) = 0.5 / y
  Location loc = getLoc();
  Value half = mul(b, loc, grads[0], splatLike(b, loc, grads[0], 0.5));
  out.push_back(DivOp::create(b, loc, half, getResult()));
  return success();
}

LogicalResult RsqrtOp::buildVJP(OpBuilder &b, ValueRange grads,
                                SmallVectorImpl<Value> &out) {
  // d x^-1/2 = -0.5 y^3
  Location loc = getLoc();
  Value y = getResult();
  Value y3 = mul(b, loc, mul(b, loc, y, y), y);
  Value g = mul(b, loc, grads[0], splatLike(b, loc, y, -0.5));
  out.push_back(mul(b, loc, g, y3));
  return success();
}

LogicalResult SinOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  out.push_back(
      mul(b, getLoc(), grads[0], CosOp::create(b, getLoc(), getInput())));
  return success();
}

LogicalResult CosOp::buildVJP(OpBuilder &b, ValueRange grads,
                              SmallVectorImpl<Value> &out) {
  Location loc = getLoc();
  Value s = SinOp::create(b, loc, getInput());
  out.push_back(NegOp::create(b, loc, mul(b, loc, grads[0], s)));
  return success();
}

LogicalResult TanhOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // 1 - y^2
  Location loc = getLoc();
  Value y = getResult();
  Value d = SubOp::create(b, loc, splatLike(b, loc, y, 1.0), mul(b, loc, y, y));
  out.push_back(mul(b, loc, grads[0], d));
  return success();
}

LogicalResult SigmoidOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  // y (1 - y)
  Location loc = getLoc();
  Value y = getResult();
  Value d = mul(b, loc, y, SubOp::create(b, loc, splatLike(b, loc, y, 1.0), y));
  out.push_back(mul(b, loc, grads[0], d));
  return success();
}

LogicalResult SiluOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // d x s(x) = s (1 + x (1 - s))
  Location loc = getLoc();
  Value x = getInput();
  Value s = SigmoidOp::create(b, loc, x);
  Value one = splatLike(b, loc, x, 1.0);
  Value inner =
      AddOp::create(b, loc, one, mul(b, loc, x, SubOp::create(b, loc, one, s)));
  out.push_back(mul(b, loc, grads[0], mul(b, loc, s, inner)));
  return success();
}

LogicalResult CastOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  RankedTensorType in = typeOf(getInput());
  if (!isa<FloatType>(in.getElementType())) {
    out.push_back(Value()); // integers carry no gradient
    return success();
  }
  out.push_back(CastOp::create(b, getLoc(), in, grads[0]));
  return success();
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  // Y = A' B' with A' = op(A), B' = op(B): dA' = G B'^T, dB' = A'^T G, and
  // a transposed operand takes the transpose of its cotangent.
  Location loc = getLoc();
  Value g = grads[0], a = getLhs(), bm = getRhs();
  bool ta = getTransposeLhs(), tb = getTransposeRhs();
  RankedTensorType at = typeOf(a), bt = typeOf(bm);

  Value dA = MatmulOp::create(b, loc, g, bm, /*transpose_lhs=*/false,
                              /*transpose_rhs=*/!tb);
  if (ta)
    dA = transposeLast(b, loc, dA);

  Value dB;
  if (bt.getRank() == 2 && at.getRank() > 2) {
    // B is shared by every batch: fold the batch into the rows and sum.
    Value a2 = ta ? transposeLast(b, loc, a) : a; // [..., M, K]
    int64_t k = typeOf(a2).getShape().back();
    int64_t n = typeOf(g).getShape().back();
    int64_t rows = typeOf(a2).getNumElements() / k;
    Value af = ReshapeOp::create(b, loc, at.clone({rows, k}), a2);
    Value gf = ReshapeOp::create(b, loc, typeOf(g).clone({rows, n}), g);
    dB = tb ? MatmulOp::create(b, loc, gf, af, true, false)  // [N, K]
            : MatmulOp::create(b, loc, af, gf, true, false); // [K, N]
  } else {
    dB = MatmulOp::create(b, loc, a, g, /*transpose_lhs=*/!ta, false);
    if (tb)
      dB = transposeLast(b, loc, dB);
  }
  out.append({dA, dB});
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

LogicalResult ReduceOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  Location loc = getLoc();
  RankedTensorType in = typeOf(getInput());
  if (getKind() == ReduceKind::Max) {
    // The whole cotangent to the first maximum of each reduced group.
    out.push_back(ReduceMaxGradOp::create(b, loc, getInput(), grads[0],
                                          getDimsAttr(), getKeepDimsAttr()));
    return success();
  }
  Value g = unreduce(b, loc, grads[0], getDims(), getKeepDims(), in);
  if (getKind() == ReduceKind::Mean) {
    int64_t n = 1;
    for (int64_t d : getDims())
      n *= in.getDimSize(d);
    g = mul(b, loc, g, splatLike(b, loc, g, 1.0 / n));
  }
  out.push_back(g);
  return success();
}

LogicalResult SoftmaxOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  // dx = y (g - sum(g y, dim))
  Location loc = getLoc();
  Value y = getResult(), g = grads[0];
  int64_t dim = getDim();
  Value gy = mul(b, loc, g, y);
  Value s = ReduceOp::create(
      b, loc, ReduceKindAttr::get(b.getContext(), ReduceKind::Sum), gy,
      b.getDenseI64ArrayAttr({dim}), b.getUnitAttr());
  Value sb = unreduce(b, loc, s, {dim}, /*keepDims=*/true, typeOf(y));
  out.push_back(mul(b, loc, y, SubOp::create(b, loc, g, sb)));
  return success();
}

LogicalResult RMSNormOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  auto op = RMSNormGradOp::create(b, getLoc(), getInput(), getWeight(),
                                  grads[0], getEpsilonAttr());
  out.append({op.getInputGrad(), op.getWeightGrad()});
  return success();
}

//===----------------------------------------------------------------------===//
// Shape manipulation and indexing
//===----------------------------------------------------------------------===//

LogicalResult BroadcastOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  // Sum over the dimensions the broadcast created or stretched.
  Location loc = getLoc();
  RankedTensorType in = typeOf(getInput()), res = typeOf(getResult());
  ArrayRef<int64_t> dims = getDims();
  SmallVector<int64_t> summed;
  for (int64_t d = 0; d < res.getRank(); ++d) {
    auto it = llvm::find(dims, d);
    if (it == dims.end() ||
        (in.getDimSize(it - dims.begin()) == 1 && res.getDimSize(d) != 1))
      summed.push_back(d);
  }
  Value g = grads[0];
  if (!summed.empty())
    g = ReduceOp::create(b, loc,
                         ReduceKindAttr::get(b.getContext(), ReduceKind::Sum),
                         g, b.getDenseI64ArrayAttr(summed), UnitAttr());
  if (typeOf(g) != in)
    g = ReshapeOp::create(b, loc, in, g);
  out.push_back(g);
  return success();
}

LogicalResult ReshapeOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  out.push_back(ReshapeOp::create(b, getLoc(), typeOf(getInput()), grads[0]));
  return success();
}

LogicalResult TransposeOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  ArrayRef<int64_t> perm = getPerm();
  SmallVector<int64_t> inverse(perm.size());
  for (auto [i, p] : llvm::enumerate(perm))
    inverse[p] = i;
  out.push_back(TransposeOp::create(b, getLoc(), grads[0],
                                    b.getDenseI64ArrayAttr(inverse)));
  return success();
}

LogicalResult ConcatOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  Location loc = getLoc();
  RankedTensorType gt = typeOf(grads[0]);
  int64_t dim = getDim(), at = 0;
  for (Value in : getInputs()) {
    RankedTensorType t = typeOf(in);
    SmallVector<int64_t> start(gt.getRank(), 0), limit(gt.getShape()),
        step(gt.getRank(), 1);
    start[dim] = at;
    limit[dim] = at + t.getDimSize(dim);
    at = limit[dim];
    out.push_back(SliceOp::create(
        b, loc, grads[0], b.getDenseI64ArrayAttr(start),
        b.getDenseI64ArrayAttr(limit), b.getDenseI64ArrayAttr(step)));
  }
  return success();
}

LogicalResult GatherOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  // The embedding's cotangent: every gathered row's cotangent added back.
  Location loc = getLoc();
  Value zeros = splatLike(b, loc, getSource(), 0.0);
  out.push_back(ScatterAddOp::create(b, loc, zeros, getIndices(), grads[0],
                                     b.getI64IntegerAttr(getAxis())));
  out.push_back(Value()); // indices
  return success();
}

LogicalResult ScatterAddOp::buildVJP(OpBuilder &b, ValueRange grads,
                                     SmallVectorImpl<Value> &out) {
  Location loc = getLoc();
  out.push_back(grads[0]); // dest
  out.push_back(Value());  // indices
  out.push_back(GatherOp::create(b, loc, grads[0], getIndices(),
                                 b.getI64IntegerAttr(getAxis())));
  return success();
}

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // A rotation (times attention_scaling): its transpose rotates back.
  auto inverse = RopeOp::create(
      b, getLoc(), grads[0], getPositions(), getThetaAttr(),
      getMropeSectionAttr(), getInvFreqAttr(),
      b.getF64FloatAttr(getAttentionScaling().convertToDouble()),
      getInverse() ? UnitAttr() : b.getUnitAttr(), getMropeInterleavedAttr());
  out.append({inverse.getResult(), Value()});
  return success();
}

LogicalResult AttentionOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  Value sinks = getSinks();
  SmallVector<Type, 4> types = {getQuery().getType(), getKey().getType(),
                                getValue().getType()};
  if (sinks)
    types.push_back(sinks.getType());
  auto op = AttentionGradOp::create(
      b, getLoc(), types, getQuery(), getKey(), getValue(), getOptionals(),
      grads[0], getCausalAttr(), getScaleAttr(), getWindowAttr());
  out.append({op.getQueryGrad(), op.getKeyGrad(), op.getValueGrad()});
  // Optional operands in order: segment ids (no cotangent), sinks.
  for (Value v : getOptionals())
    out.push_back(v == sinks ? op.getSinksGrad() : Value());
  return success();
}

LogicalResult CrossEntropyOp::buildVJP(OpBuilder &b, ValueRange grads,
                                       SmallVectorImpl<Value> &out) {
  auto op = CrossEntropyGradOp::create(
      b, getLoc(), getLogits(), getLabels(), grads[0],
      b.getI64IntegerAttr(getIgnoreIndex()),
      LossReductionAttr::get(getContext(), getReduction()));
  out.append({op.getResult(), Value()});
  return success();
}

//===----------------------------------------------------------------------===//
// Vision and audio: gelu, layer_norm, slice, conv1d
//===----------------------------------------------------------------------===//

LogicalResult ClampOp::buildVJP(OpBuilder &b, ValueRange grads,
                                SmallVectorImpl<Value> &out) {
  out.push_back(ClampGradOp::create(b, getLoc(), getInput(), grads[0],
                                    getMinAttr(), getMaxAttr()));
  return success();
}

LogicalResult GeluOp::buildVJP(OpBuilder &b, ValueRange grads,
                               SmallVectorImpl<Value> &out) {
  // Exact GELU's derivative needs Phi(x), which forward ops give only as
  // gelu(x) / x away from 0: a dedicated kernel computes either form.
  out.push_back(GeluGradOp::create(b, getLoc(), getInput(), grads[0],
                                   getApproximationAttr()));
  return success();
}

LogicalResult LayerNormOp::buildVJP(OpBuilder &b, ValueRange grads,
                                    SmallVectorImpl<Value> &out) {
  auto op = LayerNormGradOp::create(b, getLoc(), getInput(), getWeight(),
                                    getBias(), grads[0], getEpsilonAttr());
  out.append({op.getInputGrad(), op.getWeightGrad()});
  if (getBias())
    out.push_back(op.getBiasGrad());
  return success();
}

LogicalResult SliceOp::buildVJP(OpBuilder &b, ValueRange grads,
                                SmallVectorImpl<Value> &out) {
  RankedTensorType in = typeOf(getInput());
  if (!isa<FloatType>(in.getElementType())) {
    out.push_back(Value()); // integers carry no gradient
    return success();
  }
  out.push_back(SliceGradOp::create(b, getLoc(), in, grads[0], getStartAttr(),
                                    getLimitAttr(), getStepAttr()));
  return success();
}

LogicalResult Conv1DOp::buildVJP(OpBuilder &b, ValueRange grads,
                                 SmallVectorImpl<Value> &out) {
  auto op = Conv1DGradOp::create(b, getLoc(), getInput(), getWeight(),
                                 /*bias=*/Value(), grads[0], getStrideAttr(),
                                 getPaddingAttr());
  out.append({op.getInputGrad(), op.getWeightGrad()});
  // The bias cotangent sums the output's over batch and length. A reduce of
  // its own, not a third result of conv1d_grad: it does not involve the
  // input channels, so a split of those leaves it whole on every rank,
  // where as a result of the op it would read as partial sums.
  if (getBias())
    out.push_back(ReduceOp::create(
        b, getLoc(), ReduceKindAttr::get(b.getContext(), ReduceKind::Sum),
        grads[0], b.getDenseI64ArrayAttr({0, 2}), UnitAttr()));
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

LogicalResult GroupedMatmulOp::buildVJP(OpBuilder &b, ValueRange grads,
                                        SmallVectorImpl<Value> &out) {
  // Y_e = X_e W_e (W_e^T with transpose_weight): dX_e = G_e W_e^T (G_e W_e),
  // the same op with the other flag; dW_e = X_e^T G_e (G_e^T X_e).
  Location loc = getLoc();
  bool tw = getTransposeWeight();
  Value dX =
      GroupedMatmulOp::create(b, loc, grads[0], getWeight(), getGroupSizes(),
                              tw ? UnitAttr() : b.getUnitAttr());
  Value dW = GroupedMatmulWeightGradOp::create(b, loc, getInput(), getWeight(),
                                               getGroupSizes(), grads[0],
                                               getTransposeWeightAttr());
  out.append({dX, dW, Value()});
  return success();
}

LogicalResult MoEGroupTopKOp::buildVJP(OpBuilder &b, ValueRange grads,
                                       SmallVectorImpl<Value> &out) {
  // The indices are integers; the bias only chooses.
  auto op = MoEGroupTopKGradOp::create(
      b, getLoc(), getScores().getType(), getScores(), getBias(), grads[0],
      getKAttr(), getGroupsAttr(), getTopkGroupsAttr(), getNormalizeAttr(),
      getScaleAttr());
  out.append({op.getResult(), Value()});
  return success();
}

LogicalResult MoETopKOp::buildVJP(OpBuilder &b, ValueRange grads,
                                  SmallVectorImpl<Value> &out) {
  // grads[1], the indices', is always null: only the weights carry one.
  out.push_back(MoETopKGradOp::create(b, getLoc(), getLogits(), grads[0],
                                      getKAttr(), getNormalizeAttr()));
  return success();
}

LogicalResult MoEDispatchOp::buildVJP(OpBuilder &b, ValueRange grads,
                                      SmallVectorImpl<Value> &out) {
  // Token t's cotangent sums those of its k copies: moe_combine, which
  // gathers the copies back, with unit weights.
  Location loc = getLoc();
  RankedTensorType indices = typeOf(getIndices());
  auto onesType = RankedTensorType::get(indices.getShape(),
                                        typeOf(grads[0]).getElementType());
  Value ones = ConstantOp::create(
      b, loc,
      cast<ElementsAttr>(DenseElementsAttr::get(
          onesType, b.getFloatAttr(onesType.getElementType(), 1.0))));
  out.append(
      {MoECombineOp::create(b, loc, grads[0], ones, getIndices()), Value()});
  return success();
}

LogicalResult MoECombineOp::buildVJP(OpBuilder &b, ValueRange grads,
                                     SmallVectorImpl<Value> &out) {
  auto op = MoECombineGradOp::create(b, getLoc(), getInput(), getWeights(),
                                     getIndices(), grads[0]);
  out.append({op.getInputGrad(), op.getWeightsGrad(), Value()});
  return success();
}
