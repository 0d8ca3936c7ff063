//===- VeOmniOps.cpp - veomni verifiers, folders, canonicalizers ----------===//
//
// Shape inference lives in VeOmniShapes.cpp; this file holds what is left:
// verifiers of the ops whose result type is spelled out, folders, the
// matmul canonicalization, and the custom assembly directives.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::veomni;

//===----------------------------------------------------------------------===//
// Custom directives
//===----------------------------------------------------------------------===//

/// `: T` when both operands have type T (the only valid case), else
/// `: T1, T2` so that an invalid op still prints and reaches the verifier.
static ParseResult parseBinaryTypes(OpAsmParser &parser, Type &lhs, Type &rhs) {
  if (parser.parseType(lhs))
    return failure();
  rhs = lhs;
  if (succeeded(parser.parseOptionalComma()))
    return parser.parseType(rhs);
  return success();
}

static void printBinaryTypes(OpAsmPrinter &printer, Operation *, Type lhs,
                             Type rhs) {
  printer << lhs;
  if (rhs != lhs)
    printer << ", " << rhs;
}

static bool isIntegerTensor(Value v) {
  auto t = dyn_cast<ShapedType>(v.getType());
  return t && isa<IntegerType>(t.getElementType());
}

Value mlir::veomni::attentionSegmentIds(ValueRange optionals) {
  for (Value v : optionals)
    if (isIntegerTensor(v))
      return v;
  return {};
}

Value mlir::veomni::attentionSinks(ValueRange optionals) {
  for (Value v : optionals)
    if (!isIntegerTensor(v))
      return v;
  return {};
}

/// Attention's optional operands: `segments %s` and `sinks %t`.
static ParseResult
parseAttentionOptionals(OpAsmParser &parser,
                        SmallVectorImpl<OpAsmParser::UnresolvedOperand> &ops) {
  while (succeeded(parser.parseOptionalKeyword("segments")) ||
         succeeded(parser.parseOptionalKeyword("sinks"))) {
    OpAsmParser::UnresolvedOperand op;
    if (parser.parseOperand(op))
      return failure();
    ops.push_back(op);
  }
  return success();
}

static void printAttentionOptionals(OpAsmPrinter &printer, Operation *,
                                    OperandRange optionals) {
  for (Value v : optionals) {
    printer << (isIntegerTensor(v) ? " segments " : " sinks ");
    printer.printOperand(v);
  }
}

/// Their types after the others: `, T` for segment ids, `sinks T`.
static ParseResult parseOptionalTypes(OpAsmParser &parser,
                                      SmallVectorImpl<Type> &types) {
  while (true) {
    if (failed(parser.parseOptionalComma()) &&
        failed(parser.parseOptionalKeyword("sinks")))
      return success();
    Type t;
    if (parser.parseType(t))
      return failure();
    types.push_back(t);
  }
}

static void printOptionalTypes(OpAsmPrinter &printer, TypeRange types) {
  for (Type t : types) {
    auto shaped = dyn_cast<ShapedType>(t);
    bool integer = shaped && isa<IntegerType>(shaped.getElementType());
    printer << (integer ? ", " : " sinks ") << t;
  }
}

static ParseResult parseAttentionTypes(OpAsmParser &parser, Type &q, Type &k,
                                       Type &v, SmallVectorImpl<Type> &opt) {
  if (parser.parseType(q) || parser.parseComma() || parser.parseType(k) ||
      parser.parseComma() || parser.parseType(v))
    return failure();
  return parseOptionalTypes(parser, opt);
}

static void printAttentionTypes(OpAsmPrinter &printer, Operation *, Type q,
                                Type k, Type v, TypeRange opt) {
  printer << q << ", " << k << ", " << v;
  printOptionalTypes(printer, opt);
}

static ParseResult parseAttentionGradTypes(OpAsmParser &parser, Type &q,
                                           Type &k, Type &v, Type &grad,
                                           SmallVectorImpl<Type> &opt) {
  if (parser.parseType(q) || parser.parseComma() || parser.parseType(k) ||
      parser.parseComma() || parser.parseType(v) || parser.parseComma() ||
      parser.parseType(grad))
    return failure();
  return parseOptionalTypes(parser, opt);
}

static void printAttentionGradTypes(OpAsmPrinter &printer, Operation *, Type q,
                                    Type k, Type v, Type grad, TypeRange opt) {
  printer << q << ", " << k << ", " << v << ", " << grad;
  printOptionalTypes(printer, opt);
}

#define GET_OP_CLASSES
#include "dialects/VeOmni/VeOmniOps.cpp.inc"

//===----------------------------------------------------------------------===//
// ClampOp
//===----------------------------------------------------------------------===//

LogicalResult ClampOp::verify() {
  std::optional<double> lo, hi;
  if (FloatAttr a = getMinAttr())
    lo = a.getValueAsDouble();
  if (FloatAttr a = getMaxAttr())
    hi = a.getValueAsDouble();
  if ((lo && std::isnan(*lo)) || (hi && std::isnan(*hi)))
    return emitOpError("bounds must be numbers");
  if (lo && hi && *lo > *hi)
    return emitOpError("min ") << *lo << " exceeds max " << *hi;
  return success();
}

//===----------------------------------------------------------------------===//
// ConstantOp
//===----------------------------------------------------------------------===//

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

namespace {
/// matmul(transpose(x, swap last two), y) -> matmul(x, y) {transpose_lhs},
/// and likewise for rhs: the kernels read either layout at no cost.
struct FoldTransposeIntoMatmul : OpRewritePattern<MatmulOp> {
  using OpRewritePattern::OpRewritePattern;

  static Value swappedSource(Value v) {
    auto t = v.getDefiningOp<TransposeOp>();
    if (!t)
      return {};
    ArrayRef<int64_t> perm = t.getPerm();
    int64_t r = perm.size();
    for (int64_t i = 0; i < r - 2; ++i)
      if (perm[i] != i)
        return {};
    if (r < 2 || perm[r - 2] != r - 1 || perm[r - 1] != r - 2)
      return {};
    return t.getInput();
  }

  LogicalResult matchAndRewrite(MatmulOp op,
                                PatternRewriter &rewriter) const override {
    Value lhs = swappedSource(op.getLhs());
    Value rhs = swappedSource(op.getRhs());
    if (!lhs && !rhs)
      return failure();
    rewriter.modifyOpInPlace(op, [&] {
      if (lhs) {
        op.getLhsMutable().assign(lhs);
        op.setTransposeLhs(!op.getTransposeLhs());
      }
      if (rhs) {
        op.getRhsMutable().assign(rhs);
        op.setTransposeRhs(!op.getTransposeRhs());
      }
    });
    return success();
  }
};
} // namespace

void MatmulOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                           MLIRContext *context) {
  results.add<FoldTransposeIntoMatmul>(context);
}

//===----------------------------------------------------------------------===//
// Elementwise folders: x + 0, x - 0, x * 1, x / 1
//===----------------------------------------------------------------------===//

OpFoldResult AddOp::fold(FoldAdaptor) {
  if (matchPattern(getRhs(), m_AnyZeroFloat()))
    return getLhs();
  if (matchPattern(getLhs(), m_AnyZeroFloat()))
    return getRhs();
  return {};
}

OpFoldResult SubOp::fold(FoldAdaptor) {
  if (matchPattern(getRhs(), m_AnyZeroFloat()))
    return getLhs();
  return {};
}

OpFoldResult MulOp::fold(FoldAdaptor) {
  if (matchPattern(getRhs(), m_OneFloat()))
    return getLhs();
  if (matchPattern(getLhs(), m_OneFloat()))
    return getRhs();
  return {};
}

OpFoldResult MulNoNanOp::fold(FoldAdaptor) { return {}; }

OpFoldResult DivOp::fold(FoldAdaptor) {
  if (matchPattern(getRhs(), m_OneFloat()))
    return getLhs();
  return {};
}

//===----------------------------------------------------------------------===//
// CastOp
//===----------------------------------------------------------------------===//

LogicalResult CastOp::verify() {
  // Equal shapes are the Elementwise trait's check, which runs first.
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getType());
  if (isa<FloatType>(in.getElementType()) &&
      !isa<FloatType>(out.getElementType()))
    return emitOpError("cannot cast float input ")
           << in << " to non-float " << out;
  return success();
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

//===----------------------------------------------------------------------===//
// BroadcastOp
//===----------------------------------------------------------------------===//

LogicalResult BroadcastOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getType());
  ArrayRef<int64_t> dims = getDims();
  if (in.getElementType() != out.getElementType())
    return emitOpError("input ")
           << in << " and result " << out << " have different element types";
  if (static_cast<int64_t>(dims.size()) != in.getRank())
    return emitOpError("dims has ") << dims.size() << " entries but input "
                                    << in << " has rank " << in.getRank();
  for (auto [i, d] : llvm::enumerate(dims)) {
    if (d < 0 || d >= out.getRank())
      return emitOpError("dims[")
             << i << "] = " << d << " is out of range for result " << out;
    if (i > 0 && dims[i - 1] >= d)
      return emitOpError("dims must be strictly increasing, got dims[")
             << i - 1 << "] = " << dims[i - 1] << " then " << d;
    int64_t size = in.getDimSize(i);
    if (size != 1 && size != out.getDimSize(d))
      return emitOpError("input ")
             << in << " dimension " << i << " of size " << size
             << " cannot broadcast to result " << out << " dimension " << d;
  }
  return success();
}

OpFoldResult BroadcastOp::fold(FoldAdaptor adaptor) {
  if (getInput().getType() == getType())
    return getInput();
  // A splat constant broadcasts to a splat constant of the larger shape.
  if (auto splat = dyn_cast_if_present<SplatElementsAttr>(adaptor.getInput()))
    return SplatElementsAttr::get(cast<ShapedType>(getType()),
                                  splat.getSplatValue<Attribute>());
  return {};
}

//===----------------------------------------------------------------------===//
// ReshapeOp
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getType());
  if (in.getElementType() != out.getElementType())
    return emitOpError("input ")
           << in << " and result " << out << " have different element types";
  if (in.getNumElements() != out.getNumElements())
    return emitOpError("input ")
           << in << " has " << in.getNumElements() << " elements but result "
           << out << " has " << out.getNumElements();
  return success();
}

OpFoldResult ReshapeOp::fold(FoldAdaptor adaptor) {
  if (getInput().getType() == getType())
    return getInput();
  if (auto dense = dyn_cast_if_present<DenseElementsAttr>(adaptor.getInput()))
    return dense.reshape(cast<ShapedType>(getType()));
  // reshape(reshape(x)) -> reshape(x)
  if (auto inner = getInput().getDefiningOp<ReshapeOp>()) {
    getInputMutable().assign(inner.getInput());
    return getResult();
  }
  return {};
}

//===----------------------------------------------------------------------===//
// TransposeOp, SliceOp, ConcatOp
//===----------------------------------------------------------------------===//

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  ArrayRef<int64_t> perm = getPerm();
  if (llvm::equal(perm, llvm::seq<int64_t>(0, perm.size())))
    return getInput();
  // transpose(transpose(x, p), q) -> transpose(x, p o q)
  if (auto inner = getInput().getDefiningOp<TransposeOp>()) {
    ArrayRef<int64_t> innerPerm = inner.getPerm();
    SmallVector<int64_t> composed;
    for (int64_t p : perm)
      composed.push_back(innerPerm[p]);
    getInputMutable().assign(inner.getInput());
    setPerm(composed);
    return getResult();
  }
  return {};
}

OpFoldResult SliceOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

OpFoldResult ConcatOp::fold(FoldAdaptor) {
  if (getInputs().size() == 1)
    return getInputs().front();
  return {};
}

//===----------------------------------------------------------------------===//
// FusedOp
//===----------------------------------------------------------------------===//

LogicalResult FusedOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body has ")
           << body.getNumArguments() << " arguments for " << getInputs().size()
           << " inputs";
  for (auto [i, pair] :
       llvm::enumerate(llvm::zip(body.getArgumentTypes(), getInputs())))
    if (std::get<0>(pair) != std::get<1>(pair).getType())
      return emitOpError("body argument #")
             << i << " is " << std::get<0>(pair) << ", input "
             << std::get<1>(pair).getType();
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("body must end in veomni.yield");
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yields ") << yield.getValues().getTypes()
                                  << " but returns " << getResultTypes();
  for (Operation &op : body.without_terminator())
    if (!isa<NegOp, ExpOp, LogOp, SqrtOp, RsqrtOp, SinOp, CosOp, TanhOp,
             SigmoidOp, SiluOp, GeluOp, AddOp, SubOp, MulOp, DivOp, CastOp,
             IsFiniteOp, MulNoNanOp, BroadcastOp, ReshapeOp, ConstantOp,
             ReduceOp>(op))
      return op.emitOpError("cannot be part of a veomni.fused body: only "
                            "elementwise ops, broadcasts, reshapes, splat "
                            "constants and trailing reductions can");
  return success();
}

//===----------------------------------------------------------------------===//
// LinearCrossEntropyOp
//===----------------------------------------------------------------------===//

LogicalResult LinearCrossEntropyOp::verify() {
  auto hidden = cast<RankedTensorType>(getHidden().getType());
  auto weight = cast<RankedTensorType>(getWeight().getType());
  auto labels = cast<RankedTensorType>(getLabels().getType());
  auto workspace = cast<RankedTensorType>(getWorkspace().getType());
  if (hidden.getRank() < 1)
    return emitOpError("hidden needs a feature dimension");
  int64_t features = hidden.getShape().back();
  if (labels.getShape() != hidden.getShape().drop_back())
    return emitOpError("labels ") << labels << " must have the shape of hidden "
                                  << hidden << " without its last dimension";
  if (weight.getRank() != 2 || weight.getDimSize(1) != features)
    return emitOpError("weight ")
           << weight << " must be [vocabulary, " << features << "]";
  if (weight.getElementType() != hidden.getElementType())
    return emitOpError("weight ") << weight << " and hidden " << hidden
                                  << " must have one element type";
  if (getHiddenGrad().getType() != hidden)
    return emitOpError("hidden_grad must have the type of hidden ") << hidden;
  if (getWeightGrad().getType() != weight)
    return emitOpError("weight_grad must have the type of weight ") << weight;
  if (cast<RankedTensorType>(getGrad().getType()).getRank() != 0 ||
      cast<RankedTensorType>(getLoss().getType()).getRank() != 0)
    return emitOpError("loss and grad must be tensor<f32>");
  if (getReduction() == LossReduction::None)
    return emitOpError("takes a mean or a sum, not per-row losses");
  // 16-bit heads keep the weight gradient's f32 sum in `features` more rows.
  int64_t extra = hidden.getElementType().isF32() ? 0 : features;
  if (workspace.getRank() != 2 || workspace.getDimSize(0) < 1 + extra ||
      workspace.getDimSize(1) != weight.getDimSize(0))
    return emitOpError("workspace ")
           << workspace << " must be [chunk >= 1"
           << (extra ? " + " + std::to_string(extra) : std::string()) << ", "
           << weight.getDimSize(0) << "]";
  return success();
}
