//===- ModelBuilder.cpp - build veomni models from C++ --------------------===//

#include "frontends/ModelBuilder.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::veomni;

namespace {
template <typename OpTy> constexpr unsigned resultCount() {
  if constexpr (OpTy::template hasTrait<OpTrait::OneResult>())
    return 1;
  else
    return OpTy::template hasTrait<OpTrait::NResults<2>::Impl>() ? 2 : 0;
}
} // namespace

void ModelBuilder::setModule(StringRef name, ModuleKind kind, int64_t layer) {
  location = withModule(NameLoc::get(StringAttr::get(context, name)),
                        ModuleAttr::get(context, kind, layer, false));
}

ModelBuilder::ModelBuilder(MLIRContext &context, Type dtype, Location loc,
                           StringRef funcName)
    : context(&context), modelType(dtype), location(loc), opBuilder(&context) {
  context.getOrLoadDialect<VeOmniDialect>();
  context.getOrLoadDialect<func::FuncDialect>();
  // Every op belongs to a module; until the importer says which, "other".
  if (!getModule(location))
    location = withModule(
        location, ModuleAttr::get(&context, ModuleKind::Other, -1, false));
  module = ModuleOp::create(loc);
  opBuilder.setInsertionPointToEnd(module->getBody());
  func = func::FuncOp::create(opBuilder, loc, funcName,
                              opBuilder.getFunctionType({}, {}));
  opBuilder.setInsertionPointToEnd(func.addEntryBlock());
  if (!isa<Float32Type, BFloat16Type, Float16Type>(dtype)) {
    emitError(loc) << "model dtype must be f32, bf16 or f16, got " << dtype;
    hasFailed = true;
  }
}

ModelBuilder::~ModelBuilder() = default;

bool ModelBuilder::operandsUsable(ValueRange operands) {
  if (!module && !hasFailed) {
    emitError(location) << "ModelBuilder used after finish()";
    hasFailed = true;
  }
  if (hasFailed || llvm::any_of(operands, [](Value v) { return !v; }))
    hasFailed = true;
  return !hasFailed;
}

template <typename OpTy, typename... Args>
Operation *ModelBuilder::createInferred(ValueRange operands, Args &&...args) {
  if (!operandsUsable(operands))
    return nullptr;
  OperationState state(location, OpTy::getOperationName());
  SmallVector<Type, 2> placeholders(resultCount<OpTy>(),
                                    opBuilder.getNoneType());
  OpTy::build(opBuilder, state, TypeRange(placeholders),
              std::forward<Args>(args)...);
  SmallVector<Type, 2> types;
  if (::mlir::failed(OpTy::inferReturnTypes(
          context, state.location, state.operands,
          state.attributes.getDictionary(context), state.getRawProperties(),
          state.regions, types))) {
    hasFailed = true;
    return nullptr;
  }
  state.types.assign(types.begin(), types.end());
  Operation *op = opBuilder.create(state);
  if (::mlir::failed(verify(op, /*verifyRecursively=*/false))) {
    op->erase();
    hasFailed = true;
    return nullptr;
  }
  return op;
}

template <typename OpTy, typename... Args>
Value ModelBuilder::createTyped(ValueRange operands, Type resultType,
                                Args &&...args) {
  if (!operandsUsable(operands))
    return {};
  auto op = OpTy::create(opBuilder, location, resultType,
                         std::forward<Args>(args)...);
  if (::mlir::failed(verify(op, /*verifyRecursively=*/false))) {
    op->erase();
    hasFailed = true;
    return {};
  }
  return op.getResult();
}

//===----------------------------------------------------------------------===//
// Arguments
//===----------------------------------------------------------------------===//

Value ModelBuilder::declare(StringRef name, RankedTensorType type,
                            bool isParam) {
  if (!operandsUsable({}))
    return {};
  for (const ArgumentInfo &a : args) {
    if (a.name == name) {
      emitError(location) << (isParam ? "parameter" : "input") << " '" << name
                          << "' is declared twice";
      hasFailed = true;
      return {};
    }
  }
  for (int64_t d : type.getShape()) {
    if (d <= 0) {
      emitError(location) << "'" << name << "' has shape " << type
                          << ": every dimension must be positive";
      hasFailed = true;
      return {};
    }
  }
  args.push_back({name.str(), type, isParam});
  return func.getBody().front().addArgument(type, location);
}

void ModelBuilder::initAs(Value v, StringRef init) {
  // Arguments are numbered as declared until finish() orders them.
  auto arg = dyn_cast_or_null<BlockArgument>(v);
  if (!arg || arg.getOwner() != &func.getBody().front() ||
      arg.getArgNumber() >= args.size() || !args[arg.getArgNumber()].isParam)
    return;
  args[arg.getArgNumber()].init = init.str();
}

void ModelBuilder::markBuffer(Value v) {
  auto arg = dyn_cast_or_null<BlockArgument>(v);
  if (arg && arg.getOwner() == &func.getBody().front() &&
      arg.getArgNumber() < args.size() && args[arg.getArgNumber()].isParam)
    args[arg.getArgNumber()].buffer = true;
}

void ModelBuilder::markRouter(Value v) {
  auto arg = dyn_cast_or_null<BlockArgument>(v);
  if (arg && arg.getOwner() == &func.getBody().front() &&
      arg.getArgNumber() < args.size() && args[arg.getArgNumber()].isParam)
    args[arg.getArgNumber()].router = true;
}

void ModelBuilder::markExperts(Value product, StringRef hfParam, int64_t order,
                               int64_t column, int64_t in) {
  Operation *op = product ? product.getDefiningOp() : nullptr;
  if (!op || !isa<GroupedMatmulOp>(op))
    return;
  op->setAttr(
      VeOmniDialect::kExpertsAttrName,
      opBuilder.getDictionaryAttr(
          {opBuilder.getNamedAttr("param", opBuilder.getStringAttr(hfParam)),
           opBuilder.getNamedAttr("order", opBuilder.getI64IntegerAttr(order)),
           opBuilder.getNamedAttr("column",
                                  opBuilder.getI64IntegerAttr(column)),
           opBuilder.getNamedAttr("in", opBuilder.getI64IntegerAttr(in))}));
}

Value ModelBuilder::param(StringRef hfName, ArrayRef<int64_t> shape) {
  return declare(hfName, RankedTensorType::get(shape, modelType), true);
}

Value ModelBuilder::input(StringRef name, ArrayRef<int64_t> shape,
                          Type elementType) {
  return declare(name, RankedTensorType::get(shape, elementType), false);
}

Value ModelBuilder::packedInput(StringRef name, ArrayRef<int64_t> shape,
                                Type elementType, int64_t packDim) {
  Value v = input(name, shape, elementType);
  if (v && packDim >= 0 && packDim < static_cast<int64_t>(shape.size()))
    args.back().packDim = packDim;
  return v;
}

Value ModelBuilder::tokenInput(StringRef name, ArrayRef<int64_t> shape,
                               Type elementType, int64_t batchDim) {
  Value v = input(name, shape, elementType);
  if (v && batchDim >= 0 && batchDim + 1 < static_cast<int64_t>(shape.size()))
    args.back().tokenBatchDim = batchDim;
  return v;
}

//===----------------------------------------------------------------------===//
// Ops
//===----------------------------------------------------------------------===//

Value ModelBuilder::splat(double value, ArrayRef<int64_t> shape,
                          Type elementType) {
  if (!operandsUsable({}))
    return {};
  Type elem = elementType ? elementType : modelType;
  auto type = RankedTensorType::get(shape, elem);
  Attribute scalar;
  if (isa<FloatType>(elem))
    scalar = opBuilder.getFloatAttr(elem, value);
  else
    scalar = opBuilder.getIntegerAttr(elem, static_cast<int64_t>(value));
  return result(createInferred<ConstantOp>(
      {}, llvm::cast<ElementsAttr>(SplatElementsAttr::get(type, scalar))));
}

Value ModelBuilder::constant(ArrayRef<float> values, ArrayRef<int64_t> shape) {
  if (!operandsUsable({}))
    return {};
  auto type = RankedTensorType::get(shape, opBuilder.getF32Type());
  if (type.getNumElements() != static_cast<int64_t>(values.size())) {
    emitError(location) << "constant of type " << type << " given "
                        << values.size() << " values";
    hasFailed = true;
    return {};
  }
  return result(createInferred<ConstantOp>(
      {}, llvm::cast<ElementsAttr>(DenseElementsAttr::get(type, values))));
}

Value ModelBuilder::matmul(Value lhs, Value rhs, bool transposeLhs,
                           bool transposeRhs) {
  return result(createInferred<MatmulOp>(
      {lhs, rhs}, lhs, rhs, unit(transposeLhs), unit(transposeRhs)));
}

Value ModelBuilder::linear(Value x, Value weight, Value bias) {
  initAs(bias, "zeros");
  Value y = matmul(x, weight, false, true);
  if (!bias || !y)
    return y;
  return add(y, broadcastTrailing(
                    bias, llvm::cast<ShapedType>(y.getType()).getShape()));
}

Value ModelBuilder::groupedMatmul(Value input, Value weight, Value groupSizes,
                                  bool transposeWeight) {
  return result(createInferred<GroupedMatmulOp>({input, weight, groupSizes},
                                                input, weight, groupSizes,
                                                unit(transposeWeight)));
}

Value ModelBuilder::conv1d(Value input, Value weight, Value bias,
                           int64_t stride, int64_t padding) {
  initAs(bias, "zeros");
  SmallVector<Value, 3> operands = {input, weight};
  if (bias)
    operands.push_back(bias);
  return result(createInferred<Conv1DOp>(operands, input, weight, bias,
                                         opBuilder.getI64IntegerAttr(stride),
                                         opBuilder.getI64IntegerAttr(padding)));
}

Value ModelBuilder::add(Value lhs, Value rhs) {
  return result(createInferred<AddOp>({lhs, rhs}, lhs, rhs));
}
Value ModelBuilder::sub(Value lhs, Value rhs) {
  return result(createInferred<SubOp>({lhs, rhs}, lhs, rhs));
}
Value ModelBuilder::mul(Value lhs, Value rhs) {
  return result(createInferred<MulOp>({lhs, rhs}, lhs, rhs));
}
Value ModelBuilder::div(Value lhs, Value rhs) {
  return result(createInferred<DivOp>({lhs, rhs}, lhs, rhs));
}

Value ModelBuilder::scale(Value x, double factor) {
  if (!operandsUsable({x}))
    return {};
  auto type = llvm::cast<RankedTensorType>(x.getType());
  return mul(x, splat(factor, type.getShape(), type.getElementType()));
}

Value ModelBuilder::neg(Value x) {
  return result(createInferred<NegOp>({x}, x));
}
Value ModelBuilder::exp(Value x) {
  return result(createInferred<ExpOp>({x}, x));
}
Value ModelBuilder::log(Value x) {
  return result(createInferred<LogOp>({x}, x));
}
Value ModelBuilder::sqrt(Value x) {
  return result(createInferred<SqrtOp>({x}, x));
}
Value ModelBuilder::rsqrt(Value x) {
  return result(createInferred<RsqrtOp>({x}, x));
}
Value ModelBuilder::sin(Value x) {
  return result(createInferred<SinOp>({x}, x));
}
Value ModelBuilder::cos(Value x) {
  return result(createInferred<CosOp>({x}, x));
}
Value ModelBuilder::tanh(Value x) {
  return result(createInferred<TanhOp>({x}, x));
}
Value ModelBuilder::sigmoid(Value x) {
  return result(createInferred<SigmoidOp>({x}, x));
}
Value ModelBuilder::silu(Value x) {
  return result(createInferred<SiluOp>({x}, x));
}
Value ModelBuilder::gelu(Value x, bool tanhApproximation) {
  auto approx = GeluApproximationAttr::get(
      context,
      tanhApproximation ? GeluApproximation::Tanh : GeluApproximation::None);
  return result(createInferred<GeluOp>({x}, x, approx));
}

Value ModelBuilder::clamp(Value x, std::optional<double> lo,
                          std::optional<double> hi) {
  auto bound = [&](std::optional<double> v) {
    return v ? opBuilder.getF64FloatAttr(*v) : FloatAttr();
  };
  return result(createInferred<ClampOp>({x}, x, bound(lo), bound(hi)));
}

Value ModelBuilder::cast(Value x, Type elementType) {
  if (!operandsUsable({x}))
    return {};
  auto type = llvm::cast<RankedTensorType>(x.getType()).clone(elementType);
  return createTyped<CastOp>({x}, type, x);
}

Value ModelBuilder::reduce(ReduceKind kind, Value x, ArrayRef<int64_t> dims,
                           bool keepDims) {
  return result(createInferred<ReduceOp>(
      {x}, ReduceKindAttr::get(context, kind), x,
      opBuilder.getDenseI64ArrayAttr(dims), unit(keepDims)));
}

Value ModelBuilder::softmax(Value x, int64_t dim) {
  return result(
      createInferred<SoftmaxOp>({x}, x, opBuilder.getI64IntegerAttr(dim)));
}

Value ModelBuilder::rmsNorm(Value x, Value weight, double epsilon) {
  initAs(weight, "ones");
  return result(createInferred<RMSNormOp>({x, weight}, x, weight,
                                          opBuilder.getF64FloatAttr(epsilon)));
}

Value ModelBuilder::layerNorm(Value x, Value weight, Value bias,
                              double epsilon) {
  initAs(weight, "ones");
  initAs(bias, "zeros");
  SmallVector<Value, 3> operands = {x, weight};
  if (bias)
    operands.push_back(bias);
  return result(createInferred<LayerNormOp>(
      operands, x, weight, bias, opBuilder.getF64FloatAttr(epsilon)));
}

Value ModelBuilder::broadcast(Value x, ArrayRef<int64_t> shape,
                              ArrayRef<int64_t> dims) {
  if (!operandsUsable({x}))
    return {};
  auto type = llvm::cast<RankedTensorType>(x.getType());
  return createTyped<BroadcastOp>(
      {x}, RankedTensorType::get(shape, type.getElementType()), x,
      opBuilder.getDenseI64ArrayAttr(dims));
}

Value ModelBuilder::broadcastTrailing(Value x, ArrayRef<int64_t> shape) {
  if (!operandsUsable({x}))
    return {};
  int64_t rank = llvm::cast<RankedTensorType>(x.getType()).getRank();
  int64_t offset = static_cast<int64_t>(shape.size()) - rank;
  SmallVector<int64_t> dims;
  for (int64_t d = 0; d < rank; ++d)
    dims.push_back(offset + d);
  return broadcast(x, shape, dims);
}

Value ModelBuilder::reshape(Value x, ArrayRef<int64_t> shape) {
  if (!operandsUsable({x}))
    return {};
  auto type = llvm::cast<RankedTensorType>(x.getType());
  return createTyped<ReshapeOp>(
      {x}, RankedTensorType::get(shape, type.getElementType()), x);
}

Value ModelBuilder::transpose(Value x, ArrayRef<int64_t> perm) {
  return result(createInferred<TransposeOp>(
      {x}, x, opBuilder.getDenseI64ArrayAttr(perm)));
}

Value ModelBuilder::slice(Value x, ArrayRef<int64_t> start,
                          ArrayRef<int64_t> limit, ArrayRef<int64_t> step) {
  SmallVector<int64_t> steps(step);
  if (steps.empty())
    steps.assign(start.size(), 1);
  return result(createInferred<SliceOp>({x}, x,
                                        opBuilder.getDenseI64ArrayAttr(start),
                                        opBuilder.getDenseI64ArrayAttr(limit),
                                        opBuilder.getDenseI64ArrayAttr(steps)));
}

Value ModelBuilder::concat(ValueRange inputs, int64_t dim) {
  return result(createInferred<ConcatOp>(inputs, inputs,
                                         opBuilder.getI64IntegerAttr(dim)));
}

Value ModelBuilder::gather(Value source, Value indices, int64_t axis) {
  return result(createInferred<GatherOp>({source, indices}, source, indices,
                                         opBuilder.getI64IntegerAttr(axis)));
}

Value ModelBuilder::scatterAdd(Value dest, Value indices, Value updates,
                               int64_t axis) {
  return result(
      createInferred<ScatterAddOp>({dest, indices, updates}, dest, indices,
                                   updates, opBuilder.getI64IntegerAttr(axis)));
}

Value ModelBuilder::rope(Value x, Value positions, double theta,
                         ArrayRef<int64_t> mropeSection,
                         ArrayRef<float> invFreq, double attentionScaling,
                         bool interleaved) {
  return result(createInferred<RopeOp>(
      {x, positions}, x, positions, opBuilder.getF64FloatAttr(theta),
      mropeSection.empty() ? DenseI64ArrayAttr()
                           : opBuilder.getDenseI64ArrayAttr(mropeSection),
      invFreq.empty() ? DenseF32ArrayAttr()
                      : opBuilder.getDenseF32ArrayAttr(invFreq),
      opBuilder.getF64FloatAttr(attentionScaling), UnitAttr(),
      unit(interleaved)));
}

Value ModelBuilder::attention(Value query, Value key, Value value,
                              Value segmentIds, bool causal, double scale,
                              int64_t window, Value sinks) {
  SmallVector<Value, 5> operands = {query, key, value};
  if (segmentIds)
    operands.push_back(segmentIds);
  if (sinks)
    operands.push_back(sinks);
  return result(createInferred<AttentionOp>(
      operands, query, key, value, ValueRange(operands).drop_front(3),
      unit(causal), opBuilder.getF64FloatAttr(scale),
      window > 0 ? opBuilder.getI64IntegerAttr(window) : IntegerAttr()));
}

Value ModelBuilder::crossEntropy(Value logits, Value labels,
                                 int64_t ignoreIndex) {
  return result(createInferred<CrossEntropyOp>(
      {logits, labels}, logits, labels,
      opBuilder.getI64IntegerAttr(ignoreIndex),
      LossReductionAttr::get(context, LossReduction::Mean)));
}

std::pair<Value, Value> ModelBuilder::moeTopK(Value logits, int64_t k,
                                              bool normalize) {
  Operation *op = createInferred<MoETopKOp>(
      {logits}, logits, opBuilder.getI64IntegerAttr(k), unit(normalize));
  return {result(op, 0), result(op, 1)};
}

std::pair<Value, Value> ModelBuilder::moeDispatch(Value input, Value indices,
                                                  int64_t numExperts) {
  Operation *op =
      createInferred<MoEDispatchOp>({input, indices}, input, indices,
                                    opBuilder.getI64IntegerAttr(numExperts));
  return {result(op, 0), result(op, 1)};
}

std::pair<Value, Value>
ModelBuilder::moeGroupTopK(Value scores, Value bias, int64_t k, int64_t groups,
                           int64_t topkGroups, bool normalize, double scale) {
  Operation *op = createInferred<MoEGroupTopKOp>(
      {scores, bias}, scores, bias, opBuilder.getI64IntegerAttr(k),
      opBuilder.getI64IntegerAttr(groups),
      opBuilder.getI64IntegerAttr(topkGroups), unit(normalize),
      opBuilder.getF64FloatAttr(scale));
  return {result(op, 0), result(op, 1)};
}

Value ModelBuilder::moeCombine(Value input, Value weights, Value indices) {
  return result(createInferred<MoECombineOp>({input, weights, indices}, input,
                                             weights, indices));
}

//===----------------------------------------------------------------------===//
// Finishing
//===----------------------------------------------------------------------===//

FailureOr<OwningOpRef<ModuleOp>> ModelBuilder::finish(ValueRange results) {
  if (!operandsUsable(results) || !module)
    return failure();

  // Arguments are declared as the model is walked; the signature puts every
  // parameter first, then the batch inputs, each in declaration order.
  Block &old = func.getBody().front();
  auto *block = new Block();
  SmallVector<unsigned> order;
  for (unsigned i = 0; i < args.size(); ++i)
    if (args[i].isParam)
      order.push_back(i);
  for (unsigned i = 0; i < args.size(); ++i)
    if (!args[i].isParam)
      order.push_back(i);
  for (unsigned i : order) {
    BlockArgument oldArg = old.getArgument(i);
    oldArg.replaceAllUsesWith(
        block->addArgument(oldArg.getType(), oldArg.getLoc()));
  }
  block->getOperations().splice(block->end(), old.getOperations());
  func.getBody().push_back(block);
  old.erase();

  opBuilder.setInsertionPointToEnd(block);
  func::ReturnOp::create(opBuilder, location, results);
  func.setFunctionType(
      opBuilder.getFunctionType(block->getArgumentTypes(), results.getTypes()));
  // Every argument's attributes at once: setting them one by one would
  // rebuild (and keep, uniqued) the whole list each time, memory quadratic
  // in the arguments.
  SmallVector<DictionaryAttr> argAttrs;
  argAttrs.reserve(order.size());
  for (size_t i : order) {
    NamedAttrList attrs;
    attrs.append(args[i].isParam ? VeOmniDialect::kParamAttrName
                                 : VeOmniDialect::kInputAttrName,
                 opBuilder.getStringAttr(args[i].name));
    attrs.append(VeOmniDialect::kRoleAttrName,
                 ArgumentRoleAttr::get(
                     context, args[i].isParam ? ArgumentRole::Parameter
                                              : ArgumentRole::BatchInput));
    if (args[i].tokenBatchDim >= 0)
      attrs.append(VeOmniDialect::kTokenDimsAttrName,
                   opBuilder.getDenseI64ArrayAttr(
                       {args[i].tokenBatchDim, args[i].tokenBatchDim + 1}));
    if (args[i].packDim >= 0)
      attrs.append(VeOmniDialect::kPackDimAttrName,
                   opBuilder.getI64IntegerAttr(args[i].packDim));
    if (!args[i].init.empty())
      attrs.append(VeOmniDialect::kInitAttrName,
                   opBuilder.getStringAttr(args[i].init));
    if (args[i].router)
      attrs.append(VeOmniDialect::kRouterAttrName, opBuilder.getUnitAttr());
    argAttrs.push_back(attrs.getDictionary(context));
  }
  func.setAllArgAttrs(argAttrs);
  func->setAttr(VeOmniDialect::kRoleAttrName,
                FunctionRoleAttr::get(context, FunctionRole::Forward));
  std::stable_partition(args.begin(), args.end(),
                        [](const ArgumentInfo &a) { return a.isParam; });

  if (::mlir::failed(verify(*module))) {
    hasFailed = true;
    return failure();
  }
  return std::move(module);
}
