//===- VeOmniShapes.cpp - shape rules of the veomni ops -------------------===//
//
// One inferReturnTypes per op. It serves the builders (result types need not
// be spelled), the parser, and the verifier, which checks that the declared
// result types equal the inferred ones; so every shape rule is written once,
// and every message names the operand at fault and its type.
//
//===----------------------------------------------------------------------===//

#include "dialects/VeOmni/VeOmniOps.h"

#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::veomni;

namespace {

/// Emits "'veomni.<op>' op <message>" at the op's location, when there is one.
class ShapeErrors {
public:
  ShapeErrors(std::optional<Location> loc, StringRef op) : loc(loc), op(op) {}

  template <typename... Args> LogicalResult operator()(Args &&...args) const {
    return emitOptionalError(loc, "'veomni.", op, "' op ",
                             std::forward<Args>(args)...);
  }

private:
  std::optional<Location> loc;
  StringRef op;
};

RankedTensorType tensorOf(Value v) {
  return cast<RankedTensorType>(v.getType());
}

/// Checks that `t` has rank `rank`; `name` names the operand.
LogicalResult expectRank(const ShapeErrors &err, StringRef name,
                         RankedTensorType t, int64_t rank) {
  if (t.getRank() == rank)
    return success();
  return err(name, " must have rank ", rank, ", got ", t);
}

LogicalResult expectSameElementType(const ShapeErrors &err, StringRef aName,
                                    RankedTensorType a, StringRef bName,
                                    RankedTensorType b) {
  if (a.getElementType() == b.getElementType())
    return success();
  return err(aName, " ", a, " and ", bName, " ", b,
             " have different element types");
}

/// Checks that dimension `ad` of `a` equals dimension `bd` of `b`.
LogicalResult expectSameDim(const ShapeErrors &err, StringRef what,
                            StringRef aName, RankedTensorType a, int64_t ad,
                            StringRef bName, RankedTensorType b, int64_t bd) {
  if (a.getDimSize(ad) == b.getDimSize(bd))
    return success();
  return err(what, " differs: ", aName, " ", a, " has ", a.getDimSize(ad),
             " but ", bName, " ", b, " has ", b.getDimSize(bd));
}

/// What inference may assume about an attribute once preflight passed.
enum class AttrKind { Integer, Float, I64Array, F32Array, Unit };
struct AttrSpec {
  StringRef name;
  AttrKind kind;
  bool required;
};

/// Inference runs in the parser before the attributes are verified, so it
/// first checks what it is about to read: every operand a statically shaped
/// ranked tensor with no empty dimension, and every attribute it uses
/// present (when required) and of the right kind. The Attr getters are
/// safe after this.
LogicalResult preflight(const ShapeErrors &err, ValueRange operands,
                        DictionaryAttr attrs, ArrayRef<AttrSpec> specs) {
  for (auto [i, v] : llvm::enumerate(operands)) {
    auto t = dyn_cast<RankedTensorType>(v.getType());
    if (!t || !t.hasStaticShape())
      return err("operand #", i, " must be a statically shaped tensor, got ",
                 v.getType());
    if (llvm::is_contained(t.getShape(), 0))
      return err("operand #", i, " ", t, " has an empty dimension");
  }
  for (const AttrSpec &spec : specs) {
    Attribute a = attrs ? attrs.get(spec.name) : Attribute();
    if (!a) {
      if (spec.required)
        return err("requires attribute '", spec.name, "'");
      continue;
    }
    bool ok = false;
    StringRef expected;
    switch (spec.kind) {
    case AttrKind::Integer:
      ok = isa<IntegerAttr>(a), expected = "an integer";
      break;
    case AttrKind::Float:
      ok = isa<FloatAttr>(a), expected = "a float";
      break;
    case AttrKind::I64Array:
      ok = isa<DenseI64ArrayAttr>(a), expected = "an array<i64>";
      break;
    case AttrKind::F32Array:
      ok = isa<DenseF32ArrayAttr>(a), expected = "an array<f32>";
      break;
    case AttrKind::Unit:
      ok = isa<UnitAttr>(a), expected = "a unit attribute";
      break;
    }
    if (!ok)
      return err("attribute '", spec.name, "' must be ", expected, ", got ", a);
  }
  return success();
}

/// A present-and-checked required attribute (see preflight).
template <typename AttrT>
FailureOr<AttrT> required(const ShapeErrors &err, AttrT attr, StringRef name) {
  if (!attr)
    return err("requires attribute '", name, "'");
  return attr;
}

int64_t intOr(IntegerAttr attr, int64_t otherwise) {
  return attr ? attr.getValue().getSExtValue() : otherwise;
}

} // namespace

LogicalResult mlir::veomni::inferBinaryType(std::optional<Location> loc,
                                            StringRef op, Type lhs, Type rhs,
                                            SmallVectorImpl<Type> &types) {
  ShapeErrors err(loc, op);
  Type operands[] = {lhs, rhs};
  for (auto [i, t] : llvm::enumerate(operands)) {
    auto ranked = dyn_cast<RankedTensorType>(t);
    if (!ranked || !ranked.hasStaticShape())
      return err("operand #", i, " must be a statically shaped tensor, got ",
                 t);
  }
  if (lhs != rhs)
    return err("operands differ: lhs ", lhs, " but rhs ", rhs,
               " (broadcast explicitly with veomni.broadcast)");
  types.push_back(lhs);
  return success();
}

//===----------------------------------------------------------------------===//
// Constants and linear algebra
//===----------------------------------------------------------------------===//

LogicalResult ConstantOp::inferReturnTypes(MLIRContext *,
                                           std::optional<Location> loc,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "constant"), adaptor.getOperands(),
                       adaptor.getAttributes(), {})))
    return failure();
  auto type = dyn_cast<RankedTensorType>(adaptor.getValue().getType());
  if (!type)
    return ShapeErrors(loc, "constant")("value must be a ranked tensor");
  types.push_back(type);
  return success();
}

LogicalResult MatmulOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "matmul"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"transpose_lhs", AttrKind::Unit, false},
                        {"transpose_rhs", AttrKind::Unit, false}})))
    return failure();
  ShapeErrors err(loc, "matmul");
  RankedTensorType lhs = tensorOf(adaptor.getLhs());
  RankedTensorType rhs = tensorOf(adaptor.getRhs());
  int64_t rank = lhs.getRank();
  if (rank < 2)
    return err("lhs must have rank >= 2, got ", lhs);
  if (rhs.getRank() != 2 && rhs.getRank() != rank)
    return err("rhs must have rank 2 or the rank of lhs ", lhs, ", got ", rhs);
  if (failed(expectSameElementType(err, "lhs", lhs, "rhs", rhs)))
    return failure();
  if (rhs.getRank() == rank)
    for (int64_t d = 0; d < rank - 2; ++d)
      if (failed(expectSameDim(err, "batch dimension " + std::to_string(d),
                               "lhs", lhs, d, "rhs", rhs, d)))
        return failure();

  bool tl = adaptor.getTransposeLhs(), tr = adaptor.getTransposeRhs();
  int64_t lr = rank, rr = rhs.getRank();
  int64_t lhsK = tl ? lr - 2 : lr - 1, lhsM = tl ? lr - 1 : lr - 2;
  int64_t rhsK = tr ? rr - 1 : rr - 2, rhsN = tr ? rr - 2 : rr - 1;
  if (failed(expectSameDim(err, "contracting dimension", "lhs", lhs, lhsK,
                           "rhs", rhs, rhsK)))
    return failure();

  SmallVector<int64_t> shape(lhs.getShape().drop_back(2));
  shape.push_back(lhs.getDimSize(lhsM));
  shape.push_back(rhs.getDimSize(rhsN));
  types.push_back(RankedTensorType::get(shape, lhs.getElementType()));
  return success();
}

LogicalResult GroupedMatmulOp::inferReturnTypes(MLIRContext *,
                                                std::optional<Location> loc,
                                                Adaptor adaptor,
                                                SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "grouped_matmul"),
                       adaptor.getOperands(), adaptor.getAttributes(),
                       {{"transpose_weight", AttrKind::Unit, false}})))
    return failure();
  ShapeErrors err(loc, "grouped_matmul");
  RankedTensorType input = tensorOf(adaptor.getInput());
  RankedTensorType weight = tensorOf(adaptor.getWeight());
  RankedTensorType groups = tensorOf(adaptor.getGroupSizes());
  if (failed(expectRank(err, "input", input, 2)) ||
      failed(expectRank(err, "weight", weight, 3)) ||
      failed(expectRank(err, "group_sizes", groups, 1)) ||
      failed(expectSameElementType(err, "input", input, "weight", weight)))
    return failure();
  // Partitioned with experts split (`dist.expert_axes`, veomni-partition):
  // the weight holds a slice of the experts the group sizes count.
  bool expertSlice = adaptor.getAttributes() &&
                     adaptor.getAttributes().get("dist.expert_axes");
  if (expertSlice) {
    if (groups.getDimSize(0) % weight.getDimSize(0) != 0)
      return err("group_sizes ", groups, " must count a multiple of the ",
                 weight.getDimSize(0), " experts of weight ", weight,
                 " (dist.expert_axes)");
  } else if (failed(expectSameDim(err, "expert count", "weight", weight, 0,
                                  "group_sizes", groups, 0))) {
    return failure();
  }
  bool tw = adaptor.getTransposeWeight();
  if (failed(expectSameDim(err, "contracting dimension", "input", input, 1,
                           "weight", weight, tw ? 2 : 1)))
    return failure();
  types.push_back(RankedTensorType::get(
      {input.getDimSize(0), weight.getDimSize(tw ? 1 : 2)},
      input.getElementType()));
  return success();
}

LogicalResult Conv1DOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "conv1d"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"stride", AttrKind::Integer, false},
                        {"padding", AttrKind::Integer, false}})))
    return failure();
  ShapeErrors err(loc, "conv1d");
  RankedTensorType input = tensorOf(adaptor.getInput());
  RankedTensorType weight = tensorOf(adaptor.getWeight());
  if (failed(expectRank(err, "input", input, 3)) ||
      failed(expectRank(err, "weight", weight, 3)) ||
      failed(expectSameElementType(err, "input", input, "weight", weight)) ||
      failed(expectSameDim(err, "input channel count", "input", input, 1,
                           "weight", weight, 1)))
    return failure();
  if (Value bias = adaptor.getBias()) {
    RankedTensorType b = tensorOf(bias);
    if (failed(expectRank(err, "bias", b, 1)) ||
        failed(expectSameElementType(err, "input", input, "bias", b)) ||
        failed(expectSameDim(err, "output channel count", "weight", weight, 0,
                             "bias", b, 0)))
      return failure();
  }
  int64_t stride = intOr(adaptor.getStrideAttr(), 1);
  int64_t padding = intOr(adaptor.getPaddingAttr(), 0);
  if (stride < 1)
    return err("stride must be >= 1, got ", stride);
  if (padding < 0)
    return err("padding must be >= 0, got ", padding);
  int64_t span = input.getDimSize(2) + 2 * padding - weight.getDimSize(2);
  if (span < 0)
    return err("kernel of weight ", weight, " is longer than padded input ",
               input);
  types.push_back(RankedTensorType::get(
      {input.getDimSize(0), weight.getDimSize(0), span / stride + 1},
      input.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions and normalisation
//===----------------------------------------------------------------------===//

LogicalResult ReduceOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "reduce"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"dims", AttrKind::I64Array, true},
                        {"keep_dims", AttrKind::Unit, false}})))
    return failure();
  ShapeErrors err(loc, "reduce");
  RankedTensorType input = tensorOf(adaptor.getInput());
  auto dimsAttr = required(err, adaptor.getDimsAttr(), "dims");
  if (failed(dimsAttr))
    return failure();
  ArrayRef<int64_t> dims = dimsAttr->asArrayRef();
  if (dims.empty())
    return err("dims must name at least one dimension of input ", input);
  for (auto [i, d] : llvm::enumerate(dims)) {
    if (d < 0 || d >= input.getRank())
      return err("dims[", i, "] = ", d, " is out of range for input ", input);
    if (i > 0 && dims[i - 1] >= d)
      return err("dims must be strictly increasing, got dims[", i - 1,
                 "] = ", dims[i - 1], " then ", d);
  }
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < input.getRank(); ++d) {
    if (!llvm::is_contained(dims, d))
      shape.push_back(input.getDimSize(d));
    else if (adaptor.getKeepDims())
      shape.push_back(1);
  }
  types.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

LogicalResult SoftmaxOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "softmax"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"dim", AttrKind::Integer, true}})))
    return failure();
  ShapeErrors err(loc, "softmax");
  RankedTensorType input = tensorOf(adaptor.getInput());
  auto dimAttr = required(err, adaptor.getDimAttr(), "dim");
  if (failed(dimAttr))
    return failure();
  int64_t dim = dimAttr->getValue().getSExtValue();
  if (dim < 0 || dim >= input.getRank())
    return err("dim = ", dim, " is out of range for input ", input);
  types.push_back(input);
  return success();
}

/// The shared rule of rms_norm and layer_norm: a [D] weight (and bias) for
/// an input [..., D].
static LogicalResult inferNorm(const ShapeErrors &err, RankedTensorType input,
                               Value weight, Value bias, FloatAttr epsilonAttr,
                               SmallVectorImpl<Type> &types) {
  if (input.getRank() < 1)
    return err("input must have rank >= 1, got ", input);
  if (failed(required(err, epsilonAttr, "epsilon")))
    return failure();
  double epsilon = epsilonAttr.getValueAsDouble();
  if (!(epsilon > 0))
    return err("epsilon must be positive, got ", epsilon);
  for (auto [name, value] : {std::pair<StringRef, Value>{"weight", weight},
                             std::pair<StringRef, Value>{"bias", bias}}) {
    if (!value)
      continue;
    RankedTensorType t = tensorOf(value);
    if (failed(expectRank(err, name, t, 1)) ||
        failed(expectSameElementType(err, "input", input, name, t)) ||
        failed(expectSameDim(err, "normalised dimension", "input", input,
                             input.getRank() - 1, name, t, 0)))
      return failure();
  }
  types.push_back(input);
  return success();
}

LogicalResult RMSNormOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "rms_norm"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"epsilon", AttrKind::Float, true}})))
    return failure();
  return inferNorm(ShapeErrors(loc, "rms_norm"), tensorOf(adaptor.getInput()),
                   adaptor.getWeight(), Value(), adaptor.getEpsilonAttr(),
                   types);
}

LogicalResult LayerNormOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "layer_norm"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"epsilon", AttrKind::Float, true}})))
    return failure();
  return inferNorm(ShapeErrors(loc, "layer_norm"), tensorOf(adaptor.getInput()),
                   adaptor.getWeight(), adaptor.getBias(),
                   adaptor.getEpsilonAttr(), types);
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "transpose"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"perm", AttrKind::I64Array, true}})))
    return failure();
  ShapeErrors err(loc, "transpose");
  RankedTensorType input = tensorOf(adaptor.getInput());
  auto permAttr = required(err, adaptor.getPermAttr(), "perm");
  if (failed(permAttr))
    return failure();
  ArrayRef<int64_t> perm = permAttr->asArrayRef();
  if (static_cast<int64_t>(perm.size()) != input.getRank())
    return err("perm has ", perm.size(), " entries but input ", input,
               " has rank ", input.getRank());
  SmallVector<bool> seen(perm.size(), false);
  SmallVector<int64_t> shape;
  for (int64_t p : perm) {
    if (p < 0 || p >= input.getRank() || seen[p])
      return err("perm is not a permutation of the dimensions of input ",
                 input);
    seen[p] = true;
    shape.push_back(input.getDimSize(p));
  }
  types.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *,
                                        std::optional<Location> loc,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "slice"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"start", AttrKind::I64Array, true},
                        {"limit", AttrKind::I64Array, true},
                        {"step", AttrKind::I64Array, true}})))
    return failure();
  ShapeErrors err(loc, "slice");
  RankedTensorType input = tensorOf(adaptor.getInput());
  auto startAttr = required(err, adaptor.getStartAttr(), "start");
  auto limitAttr = required(err, adaptor.getLimitAttr(), "limit");
  auto stepAttr = required(err, adaptor.getStepAttr(), "step");
  if (failed(startAttr) || failed(limitAttr) || failed(stepAttr))
    return failure();
  ArrayRef<int64_t> start = startAttr->asArrayRef(),
                    limit = limitAttr->asArrayRef(),
                    step = stepAttr->asArrayRef();
  size_t rank = input.getRank();
  if (start.size() != rank || limit.size() != rank || step.size() != rank)
    return err("start, limit and step need one entry per dimension of input ",
               input, ", got ", start.size(), ", ", limit.size(), " and ",
               step.size());
  SmallVector<int64_t> shape;
  for (size_t d = 0; d < rank; ++d) {
    if (step[d] < 1)
      return err("step[", d, "] = ", step[d], " must be >= 1");
    if (start[d] < 0 || start[d] >= limit[d] || limit[d] > input.getDimSize(d))
      return err("dimension ", d, " slice [", start[d], ", ", limit[d],
                 ") is empty or outside input ", input);
    // start < limit here, so this cannot overflow.
    shape.push_back((limit[d] - start[d] - 1) / step[d] + 1);
  }
  types.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "concat"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"dim", AttrKind::Integer, true}})))
    return failure();
  ShapeErrors err(loc, "concat");
  ValueRange inputs = adaptor.getInputs();
  if (inputs.empty())
    return err("needs at least one input");
  RankedTensorType first = tensorOf(inputs.front());
  auto dimAttr = required(err, adaptor.getDimAttr(), "dim");
  if (failed(dimAttr))
    return failure();
  int64_t dim = dimAttr->getValue().getSExtValue();
  if (dim < 0 || dim >= first.getRank())
    return err("dim = ", dim, " is out of range for input #0 ", first);
  SmallVector<int64_t> shape(first.getShape());
  for (auto [i, v] : llvm::enumerate(inputs.drop_front())) {
    RankedTensorType t = tensorOf(v);
    std::string name = "input #" + std::to_string(i + 1);
    if (t.getRank() != first.getRank() ||
        t.getElementType() != first.getElementType())
      return err(name, " ", t, " does not match the rank and element type ",
                 "of input #0 ", first);
    for (int64_t d = 0; d < t.getRank(); ++d)
      if (d != dim &&
          failed(expectSameDim(err, "dimension " + std::to_string(d),
                               "input #0", first, d, name, t, d)))
        return failure();
    shape[dim] += t.getDimSize(dim);
  }
  types.push_back(RankedTensorType::get(shape, first.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Indexing
//===----------------------------------------------------------------------===//

/// source.shape[:axis] + indices.shape + source.shape[axis+1:]
static SmallVector<int64_t>
gatheredShape(RankedTensorType source, RankedTensorType indices, int64_t axis) {
  SmallVector<int64_t> shape(source.getShape().take_front(axis));
  llvm::append_range(shape, indices.getShape());
  llvm::append_range(shape, source.getShape().drop_front(axis + 1));
  return shape;
}

LogicalResult GatherOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "gather"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"axis", AttrKind::Integer, false}})))
    return failure();
  RankedTensorType source = tensorOf(adaptor.getSource());
  RankedTensorType indices = tensorOf(adaptor.getIndices());
  int64_t axis = intOr(adaptor.getAxisAttr(), 0);
  if (axis < 0 || axis >= source.getRank())
    return ShapeErrors(loc, "gather")("axis = ", axis,
                                      " is out of range for source ", source);
  types.push_back(RankedTensorType::get(gatheredShape(source, indices, axis),
                                        source.getElementType()));
  return success();
}

LogicalResult ScatterAddOp::inferReturnTypes(MLIRContext *,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "scatter_add"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"axis", AttrKind::Integer, false}})))
    return failure();
  ShapeErrors err(loc, "scatter_add");
  RankedTensorType dest = tensorOf(adaptor.getDest());
  RankedTensorType indices = tensorOf(adaptor.getIndices());
  RankedTensorType updates = tensorOf(adaptor.getUpdates());
  int64_t axis = intOr(adaptor.getAxisAttr(), 0);
  if (axis < 0 || axis >= dest.getRank())
    return err("axis = ", axis, " is out of range for dest ", dest);
  if (failed(expectSameElementType(err, "dest", dest, "updates", updates)))
    return failure();
  auto expected = gatheredShape(dest, indices, axis);
  if (updates.getShape() != ArrayRef<int64_t>(expected))
    return err("updates ", updates, " must have shape ",
               RankedTensorType::get(expected, dest.getElementType()),
               " for dest ", dest, " and indices ", indices);
  types.push_back(dest);
  return success();
}

//===----------------------------------------------------------------------===//
// Transformer blocks
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::inferReturnTypes(MLIRContext *,
                                       std::optional<Location> loc,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "rope"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"theta", AttrKind::Float, true},
                        {"mrope_section", AttrKind::I64Array, false},
                        {"inv_freq", AttrKind::F32Array, false},
                        {"attention_scaling", AttrKind::Float, false},
                        {"inverse", AttrKind::Unit, false},
                        {"mrope_interleaved", AttrKind::Unit, false}})))
    return failure();
  ShapeErrors err(loc, "rope");
  RankedTensorType input = tensorOf(adaptor.getInput());
  RankedTensorType positions = tensorOf(adaptor.getPositions());
  if (failed(expectRank(err, "input", input, 4)))
    return failure();
  int64_t headDim = input.getDimSize(3);
  if (headDim % 2 != 0)
    return err("head dimension of input ", input, " must be even");
  auto theta = required(err, adaptor.getThetaAttr(), "theta");
  if (failed(theta))
    return failure();
  if (!(theta->getValueAsDouble() > 0))
    return err("theta must be positive, got ", theta->getValueAsDouble());
  if (auto invFreq = adaptor.getInvFreq())
    if (static_cast<int64_t>(invFreq->size()) != headDim / 2)
      return err("inv_freq has ", invFreq->size(), " entries but input ", input,
                 " needs ", headDim / 2);

  int64_t lead = 0; // dimensions of `positions` before [B, S]
  if (auto sections = adaptor.getMropeSection()) {
    int64_t total = 0;
    for (int64_t s : *sections) {
      if (s < 1)
        return err("mrope_section sizes must be positive");
      total += s;
    }
    if (total != headDim / 2)
      return err("mrope_section sums to ", total, " but input ", input, " has ",
                 headDim / 2, " frequencies");
    if (failed(expectRank(err, "positions", positions, 3)))
      return failure();
    if (positions.getDimSize(0) != static_cast<int64_t>(sections->size()))
      return err("positions ", positions, " must have one row per section (",
                 sections->size(), ")");
    // Interleaved: section k >= 1 takes frequencies k, k + N, ... below
    // N * size, which must all be frequencies of the input.
    int64_t n = static_cast<int64_t>(sections->size());
    if (adaptor.getMropeInterleaved())
      for (int64_t k = 1; k < n; ++k)
        if ((*sections)[k] * n - n + k >= headDim / 2)
          return err("interleaved mrope_section ", (*sections)[k],
                     " of section ", k, " reaches past the ", headDim / 2,
                     " frequencies");
    lead = 1;
  } else if (adaptor.getMropeInterleaved()) {
    return err("mrope_interleaved needs mrope_section");
  } else if (failed(expectRank(err, "positions", positions, 2))) {
    return failure();
  }
  if (failed(expectSameDim(err, "batch size", "input", input, 0, "positions",
                           positions, lead)) ||
      failed(expectSameDim(err, "sequence length", "input", input, 1,
                           "positions", positions, lead + 1)))
    return failure();
  types.push_back(input);
  return success();
}

/// Attention's optional operands: at most one integer segment ids tensor,
/// then at most one float sinks tensor.
static LogicalResult checkOptionals(const ShapeErrors &err,
                                    ValueRange optionals) {
  Value seg = attentionSegmentIds(optionals), sinks = attentionSinks(optionals);
  size_t expected = (seg ? 1 : 0) + (sinks ? 1 : 0);
  if (optionals.size() != expected || (seg && optionals.front() != seg))
    return err("takes at most one integer segment_ids operand, then at most "
               "one float sinks operand; got ",
               optionals.size(), " optional operands");
  return success();
}

/// Attention's shape rule, shared with its VJP: the result type of
/// attention over q, k, v with the optional segment ids and sinks.
static FailureOr<RankedTensorType>
inferAttention(const ShapeErrors &err, Value query, Value key, Value value,
               Value segments, Value sinks, bool causal, FloatAttr scaleAttr,
               IntegerAttr windowAttr) {
  RankedTensorType q = tensorOf(query);
  RankedTensorType k = tensorOf(key);
  RankedTensorType v = tensorOf(value);
  if (failed(expectRank(err, "query", q, 4)) ||
      failed(expectRank(err, "key", k, 4)) ||
      failed(expectRank(err, "value", v, 4)) ||
      failed(expectSameElementType(err, "query", q, "key", k)) ||
      failed(expectSameElementType(err, "query", q, "value", v)) ||
      failed(expectSameDim(err, "batch size", "query", q, 0, "key", k, 0)) ||
      failed(expectSameDim(err, "batch size", "query", q, 0, "value", v, 0)) ||
      failed(
          expectSameDim(err, "key/value length", "key", k, 1, "value", v, 1)) ||
      failed(expectSameDim(err, "key/value head count", "key", k, 2, "value", v,
                           2)) ||
      failed(expectSameDim(err, "head dimension", "query", q, 3, "key", k, 3)))
    return failure();
  int64_t hq = q.getDimSize(2), hkv = k.getDimSize(2);
  if (hq % hkv != 0)
    return err("key/value head count ", hkv, " of key ", k,
               " does not divide the query head count ", hq, " of query ", q);
  bool samelen = q.getDimSize(1) == k.getDimSize(1);
  if (causal && !samelen)
    return err("causal attention needs query ", q, " and key ", k,
               " of one sequence length");
  if (segments) {
    RankedTensorType s = tensorOf(segments);
    if (!samelen)
      return err("segment_ids need query ", q, " and key ", k,
                 " of one sequence length");
    // [B, S], or [2, B, S]: the segment ids, then bidirectional blocks.
    int64_t lead = s.getRank() == 3 ? 1 : 0;
    if (s.getRank() != 3 && failed(expectRank(err, "segment_ids", s, 2)))
      return failure();
    if (lead && s.getDimSize(0) != 2)
      return err("segment_ids ", s,
                 " of rank 3 must be [2, batch, sequence] (segment ids, "
                 "then bidirectional blocks)");
    if (lead && !causal)
      return err("bidirectional blocks (segment_ids ", s,
                 ") need causal attention");
    if (failed(expectSameDim(err, "batch size", "query", q, 0, "segment_ids", s,
                             lead)) ||
        failed(expectSameDim(err, "sequence length", "query", q, 1,
                             "segment_ids", s, lead + 1)))
      return failure();
  }
  if (sinks) {
    RankedTensorType t = tensorOf(sinks);
    if (failed(expectRank(err, "sinks", t, 1)) ||
        failed(expectSameDim(err, "head count", "query", q, 2, "sinks", t, 0)))
      return failure();
  }
  int64_t window = intOr(windowAttr, 0);
  if (window < 0)
    return err("window must be >= 0 (0: none), got ", window);
  if (window > 0 && !causal)
    return err("a sliding window (", window, ") needs causal attention");
  auto scale = required(err, scaleAttr, "scale");
  if (failed(scale))
    return failure();
  if (!(scale->getValueAsDouble() > 0))
    return err("scale must be positive, got ", scale->getValueAsDouble());
  return RankedTensorType::get(
      {q.getDimSize(0), q.getDimSize(1), hq, v.getDimSize(3)},
      q.getElementType());
}

static const AttrSpec kAttentionAttrs[] = {
    {"causal", AttrKind::Unit, false},
    {"scale", AttrKind::Float, true},
    {"window", AttrKind::Integer, false}};

/// attention's and attention_grad's common checks, through either adaptor.
template <typename AdaptorT>
static FailureOr<RankedTensorType> inferAttentionOf(const ShapeErrors &err,
                                                    AdaptorT &adaptor) {
  if (failed(preflight(err, adaptor.getOperands(), adaptor.getAttributes(),
                       kAttentionAttrs)) ||
      failed(checkOptionals(err, adaptor.getOptionals())))
    return failure();
  return inferAttention(
      err, adaptor.getQuery(), adaptor.getKey(), adaptor.getValue(),
      attentionSegmentIds(adaptor.getOptionals()),
      attentionSinks(adaptor.getOptionals()), adaptor.getCausal(),
      adaptor.getScaleAttr(), adaptor.getWindowAttr());
}

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  ShapeErrors err(loc, "attention");
  FailureOr<RankedTensorType> out = inferAttentionOf(err, adaptor);
  if (failed(out))
    return failure();
  types.push_back(*out);
  return success();
}

LogicalResult CrossEntropyOp::inferReturnTypes(MLIRContext *context,
                                               std::optional<Location> loc,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "cross_entropy"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"ignore_index", AttrKind::Integer, false}})))
    return failure();
  ShapeErrors err(loc, "cross_entropy");
  RankedTensorType logits = tensorOf(adaptor.getLogits());
  RankedTensorType labels = tensorOf(adaptor.getLabels());
  if (logits.getRank() < 1)
    return err("logits must have a vocabulary dimension, got ", logits);
  if (labels.getShape() != logits.getShape().drop_back())
    return err("labels ", labels, " must have the shape of logits ", logits,
               " without its last (vocabulary) dimension");
  Type f32 = Float32Type::get(context);
  LossReductionAttr reduction = adaptor.getReductionAttr();
  if (reduction && reduction.getValue() == LossReduction::None)
    types.push_back(RankedTensorType::get(labels.getShape(), f32));
  else
    types.push_back(RankedTensorType::get({}, f32));
  return success();
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

/// moe_group_topk's shape rule (shared with its VJP): weights and indices
/// [T, k] of scores [T, E] and bias [E].
static LogicalResult inferGroupTopK(MLIRContext *context,
                                    const ShapeErrors &err, Value scoresV,
                                    Value biasV, DictionaryAttr attrs,
                                    SmallVectorImpl<Type> &types) {
  RankedTensorType scores = tensorOf(scoresV), bias = tensorOf(biasV);
  if (failed(expectRank(err, "scores", scores, 2)) ||
      failed(expectRank(err, "bias", bias, 1)) ||
      failed(expectSameDim(err, "expert count", "scores", scores, 1, "bias",
                           bias, 0)))
    return failure();
  auto intAttr = [&](StringRef name, int64_t otherwise) {
    auto a =
        attrs ? dyn_cast_or_null<IntegerAttr>(attrs.get(name)) : IntegerAttr();
    return a ? a.getValue().getSExtValue() : otherwise;
  };
  int64_t experts = scores.getDimSize(1), k = intAttr("k", 0);
  int64_t groups = intAttr("groups", 1), keep = intAttr("topk_groups", 1);
  if (groups < 1 || experts % groups != 0)
    return err("groups = ", groups, " must divide the ", experts,
               " experts of scores ", scores);
  if (keep < 1 || keep > groups)
    return err("topk_groups = ", keep, " must be in [1, groups = ", groups,
               "]");
  int64_t eligible = keep * (experts / groups);
  if (k < 1 || k > eligible)
    return err("k = ", k, " must be in [1, ", eligible,
               "], the experts of the topk_groups best groups");
  int64_t tokens = scores.getDimSize(0);
  types.push_back(RankedTensorType::get({tokens, k}, scores.getElementType()));
  types.push_back(
      RankedTensorType::get({tokens, k}, IntegerType::get(context, 32)));
  return success();
}

static const AttrSpec kGroupTopKAttrs[] = {
    {"k", AttrKind::Integer, true},
    {"groups", AttrKind::Integer, false},
    {"topk_groups", AttrKind::Integer, false},
    {"normalize", AttrKind::Unit, false},
    {"scale", AttrKind::Float, false}};

LogicalResult MoEGroupTopKOp::inferReturnTypes(MLIRContext *context,
                                               std::optional<Location> loc,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  ShapeErrors err(loc, "moe_group_topk");
  if (failed(preflight(err, adaptor.getOperands(), adaptor.getAttributes(),
                       kGroupTopKAttrs)))
    return failure();
  return inferGroupTopK(context, err, adaptor.getScores(), adaptor.getBias(),
                        adaptor.getAttributes(), types);
}

LogicalResult MoEGroupTopKGradOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &types) {
  ShapeErrors err(loc, "moe_group_topk_grad");
  SmallVector<Type, 2> forward;
  if (failed(preflight(err, adaptor.getOperands(), adaptor.getAttributes(),
                       kGroupTopKAttrs)) ||
      failed(inferGroupTopK(context, err, adaptor.getScores(),
                            adaptor.getBias(), adaptor.getAttributes(),
                            forward)))
    return failure();
  if (adaptor.getGrad().getType() != forward.front())
    return err("grad ", adaptor.getGrad().getType(),
               " must have the weights' type ", forward.front());
  types.push_back(adaptor.getScores().getType());
  return success();
}

LogicalResult MoETopKOp::inferReturnTypes(MLIRContext *context,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "moe_topk"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"k", AttrKind::Integer, true},
                        {"normalize", AttrKind::Unit, false}})))
    return failure();
  ShapeErrors err(loc, "moe_topk");
  RankedTensorType logits = tensorOf(adaptor.getLogits());
  if (failed(expectRank(err, "logits", logits, 2)))
    return failure();
  auto kAttr = required(err, adaptor.getKAttr(), "k");
  if (failed(kAttr))
    return failure();
  int64_t k = kAttr->getValue().getSExtValue();
  int64_t experts = logits.getDimSize(1);
  if (k < 1 || k > experts)
    return err("k = ", k, " must be in [1, ", experts,
               "], the expert count of logits ", logits);
  int64_t tokens = logits.getDimSize(0);
  types.push_back(RankedTensorType::get({tokens, k}, logits.getElementType()));
  types.push_back(
      RankedTensorType::get({tokens, k}, IntegerType::get(context, 32)));
  return success();
}

/// Checks router indices [T, k] against tokens [T, ...] in `input`.
static LogicalResult expectRouting(const ShapeErrors &err, StringRef name,
                                   RankedTensorType tokens,
                                   RankedTensorType indices) {
  if (failed(expectRank(err, "indices", indices, 2)))
    return failure();
  return expectSameDim(err, "token count", name, tokens, 0, "indices", indices,
                       0);
}

LogicalResult MoEDispatchOp::inferReturnTypes(MLIRContext *context,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "moe_dispatch"), adaptor.getOperands(),
                       adaptor.getAttributes(),
                       {{"num_experts", AttrKind::Integer, true}})))
    return failure();
  ShapeErrors err(loc, "moe_dispatch");
  RankedTensorType input = tensorOf(adaptor.getInput());
  RankedTensorType indices = tensorOf(adaptor.getIndices());
  if (failed(expectRank(err, "input", input, 2)) ||
      failed(expectRouting(err, "input", input, indices)))
    return failure();
  auto expertsAttr = required(err, adaptor.getNumExpertsAttr(), "num_experts");
  if (failed(expertsAttr))
    return failure();
  int64_t experts = expertsAttr->getValue().getSExtValue();
  if (experts < 1)
    return err("num_experts must be >= 1, got ", experts);
  if (indices.getDimSize(1) > experts)
    return err("indices ", indices, " route each token to more than the ",
               experts, " experts");
  types.push_back(RankedTensorType::get(
      {input.getDimSize(0) * indices.getDimSize(1), input.getDimSize(1)},
      input.getElementType()));
  types.push_back(
      RankedTensorType::get({experts}, IntegerType::get(context, 32)));
  return success();
}

LogicalResult MoECombineOp::inferReturnTypes(MLIRContext *,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &types) {
  if (failed(preflight(ShapeErrors(loc, "moe_combine"), adaptor.getOperands(),
                       adaptor.getAttributes(), {})))
    return failure();
  ShapeErrors err(loc, "moe_combine");
  RankedTensorType input = tensorOf(adaptor.getInput());
  RankedTensorType weights = tensorOf(adaptor.getWeights());
  RankedTensorType indices = tensorOf(adaptor.getIndices());
  if (failed(expectRank(err, "input", input, 2)) ||
      failed(expectRank(err, "weights", weights, 2)) ||
      failed(expectSameElementType(err, "input", input, "weights", weights)) ||
      failed(expectRouting(err, "weights", weights, indices)) ||
      failed(expectSameDim(err, "top-k", "weights", weights, 1, "indices",
                           indices, 1)))
    return failure();
  int64_t tokens = weights.getDimSize(0), k = weights.getDimSize(1);
  if (input.getDimSize(0) != tokens * k)
    return err("input ", input, " must have tokens * k = ", tokens * k,
               " rows for indices ", indices);
  types.push_back(RankedTensorType::get({tokens, input.getDimSize(1)},
                                        input.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Gradients: the forward op's rule, then the cotangent must have the type
// of the forward result.
//===----------------------------------------------------------------------===//

/// Runs the shape rule of forward op `Fwd` on `operands` and the grad op's
/// attributes, and checks `grad` against the forward result.
template <typename Fwd>
static LogicalResult
inferLikeForward(MLIRContext *context, std::optional<Location> loc,
                 StringRef op, ValueRange operands, DictionaryAttr attrs,
                 Value grad, SmallVectorImpl<Type> &forward) {
  if (failed(preflight(ShapeErrors(loc, op), ValueRange(grad), attrs, {})) ||
      failed(Fwd::inferReturnTypes(context, loc, operands, attrs,
                                   OpaqueProperties(nullptr), RegionRange(),
                                   forward)))
    return failure();
  if (grad.getType() != forward.front())
    return ShapeErrors(loc, op)("grad ", grad.getType(),
                                " must have the forward result's type ",
                                forward.front());
  return success();
}

/// The usual grad-op rule: the forward op's rule on `operands` (checking
/// `grad` against its result), then one cotangent per value of `like`, of
/// that value's type.
template <typename Fwd>
static LogicalResult
inferGrad(MLIRContext *context, std::optional<Location> loc, StringRef op,
          ValueRange operands, DictionaryAttr attrs, Value grad,
          ValueRange like, SmallVectorImpl<Type> &types) {
  SmallVector<Type, 2> forward;
  if (failed(inferLikeForward<Fwd>(context, loc, op, operands, attrs, grad,
                                   forward)))
    return failure();
  for (Value v : like)
    types.push_back(v.getType());
  return success();
}

LogicalResult RMSNormGradOp::inferReturnTypes(MLIRContext *context,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &types) {
  return inferGrad<RMSNormOp>(
      context, loc, "rms_norm_grad",
      ValueRange{adaptor.getInput(), adaptor.getWeight()},
      adaptor.getAttributes(), adaptor.getGrad(),
      ValueRange{adaptor.getInput(), adaptor.getWeight()}, types);
}

LogicalResult AttentionGradOp::inferReturnTypes(MLIRContext *,
                                                std::optional<Location> loc,
                                                Adaptor adaptor,
                                                SmallVectorImpl<Type> &types) {
  ShapeErrors err(loc, "attention_grad");
  FailureOr<RankedTensorType> out = inferAttentionOf(err, adaptor);
  if (failed(out))
    return failure();
  if (adaptor.getGrad().getType() != Type(*out))
    return err("grad ", adaptor.getGrad().getType(),
               " must have the forward result's type ", *out);
  types.append({adaptor.getQuery().getType(), adaptor.getKey().getType(),
                adaptor.getValue().getType()});
  if (Value sinks = attentionSinks(adaptor.getOptionals()))
    types.push_back(sinks.getType());
  return success();
}

LogicalResult CrossEntropyGradOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &types) {
  return inferGrad<CrossEntropyOp>(
      context, loc, "cross_entropy_grad",
      ValueRange{adaptor.getLogits(), adaptor.getLabels()},
      adaptor.getAttributes(), adaptor.getGrad(),
      ValueRange{adaptor.getLogits()}, types);
}

LogicalResult GeluGradOp::inferReturnTypes(MLIRContext *context,
                                           std::optional<Location> loc,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &types) {
  return inferGrad<GeluOp>(context, loc, "gelu_grad",
                           ValueRange{adaptor.getInput()},
                           adaptor.getAttributes(), adaptor.getGrad(),
                           ValueRange{adaptor.getInput()}, types);
}

LogicalResult LayerNormGradOp::inferReturnTypes(MLIRContext *context,
                                                std::optional<Location> loc,
                                                Adaptor adaptor,
                                                SmallVectorImpl<Type> &types) {
  SmallVector<Value, 3> operands = {adaptor.getInput(), adaptor.getWeight()};
  if (Value bias = adaptor.getBias())
    operands.push_back(bias);
  return inferGrad<LayerNormOp>(context, loc, "layer_norm_grad", operands,
                                adaptor.getAttributes(), adaptor.getGrad(),
                                operands, types);
}

/// The result is the sliced input's cotangent: slice's rule, run on the
/// result type, must give the type of `grad`.
LogicalResult SliceGradOp::verify() {
  auto input = dyn_cast<RankedTensorType>(getInputGrad().getType());
  if (!input || !input.hasStaticShape())
    return emitOpError("result must be a statically shaped tensor, got ")
           << getInputGrad().getType();
  SmallVector<Type, 1> forward;
  return inferLikeForward<SliceOp>(
      getContext(), getLoc(), "slice_grad", ValueRange{getInputGrad()},
      getOperation()->getAttrDictionary(), getGrad(), forward);
}

LogicalResult Conv1DGradOp::inferReturnTypes(MLIRContext *context,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &types) {
  SmallVector<Value, 3> operands = {adaptor.getInput(), adaptor.getWeight()};
  if (Value bias = adaptor.getBias())
    operands.push_back(bias);
  return inferGrad<Conv1DOp>(context, loc, "conv1d_grad", operands,
                             adaptor.getAttributes(), adaptor.getGrad(),
                             operands, types);
}

LogicalResult GroupedMatmulWeightGradOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &types) {
  return inferGrad<GroupedMatmulOp>(context, loc, "grouped_matmul_weight_grad",
                                    ValueRange{adaptor.getInput(),
                                               adaptor.getWeight(),
                                               adaptor.getGroupSizes()},
                                    adaptor.getAttributes(), adaptor.getGrad(),
                                    ValueRange{adaptor.getWeight()}, types);
}

LogicalResult MoETopKGradOp::inferReturnTypes(MLIRContext *context,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &types) {
  return inferGrad<MoETopKOp>(context, loc, "moe_topk_grad",
                              ValueRange{adaptor.getLogits()},
                              adaptor.getAttributes(), adaptor.getGrad(),
                              ValueRange{adaptor.getLogits()}, types);
}

LogicalResult MoECombineGradOp::inferReturnTypes(MLIRContext *context,
                                                 std::optional<Location> loc,
                                                 Adaptor adaptor,
                                                 SmallVectorImpl<Type> &types) {
  return inferGrad<MoECombineOp>(
      context, loc, "moe_combine_grad",
      ValueRange{adaptor.getInput(), adaptor.getWeights(),
                 adaptor.getIndices()},
      adaptor.getAttributes(), adaptor.getGrad(),
      ValueRange{adaptor.getInput(), adaptor.getWeights()}, types);
}

LogicalResult ReduceMaxGradOp::inferReturnTypes(MLIRContext *context,
                                                std::optional<Location> loc,
                                                Adaptor adaptor,
                                                SmallVectorImpl<Type> &types) {
  // The forward rule's adaptor expects its required `kind` too.
  NamedAttrList attrs(adaptor.getAttributes());
  attrs.set("kind", ReduceKindAttr::get(context, ReduceKind::Max));
  SmallVector<Type, 1> forward;
  if (failed(inferLikeForward<ReduceOp>(
          context, loc, "reduce_max_grad", ValueRange{adaptor.getInput()},
          attrs.getDictionary(context), adaptor.getGrad(), forward)))
    return failure();
  types.push_back(adaptor.getInput().getType());
  return success();
}
