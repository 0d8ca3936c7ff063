//===- Translate.cpp - a planned vrt module to a .vmb program -------------===//

#include "compiler/Translate.h"

#include "dialects/Runtime/VrtOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "runtime/schema/ProgramFile.h"
#include "runtime/schema/program_generated.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::veomni;
namespace fb = ::veomni::fb;

namespace {

fb::DType dtypeOf(Type t) {
  if (t.isF32())
    return fb::DType::F32;
  if (t.isBF16())
    return fb::DType::BF16;
  if (t.isF16())
    return fb::DType::F16;
  if (t.isInteger(32))
    return fb::DType::I32;
  return fb::DType::I64; // the verifiers admit nothing else
}

Value rootOf(Value v) {
  while (auto view = v.getDefiningOp<vrt::ViewOp>())
    v = view.getSource();
  return v;
}

/// One kernel's positional attributes, as program.fbs lists them.
struct KernelAttrs {
  fb::KernelKind kind;
  std::vector<int64_t> ints;
  std::vector<double> floats;
};

int64_t intAttr(Operation *op, StringRef name, int64_t otherwise) {
  if (auto a = op->getAttrOfType<IntegerAttr>(name))
    return a.getValue().getSExtValue();
  return otherwise;
}

double floatAttr(Operation *op, StringRef name, double otherwise) {
  if (auto a = op->getAttrOfType<FloatAttr>(name))
    return a.getValueAsDouble();
  return otherwise;
}

std::vector<int64_t> arrayAttr(Operation *op, StringRef name) {
  if (auto a = op->getAttrOfType<DenseI64ArrayAttr>(name))
    return std::vector<int64_t>(a.asArrayRef().begin(), a.asArrayRef().end());
  return {};
}

/// The gradient kernels of gelu, layer_norm, slice, conv1d, grouped_matmul,
/// the MoE router and combine, and max reductions; false for other kinds.
bool gradKernelAttrs(vrt::KernelOp k, KernelAttrs &a) {
  Operation *op = k;
  StringRef kind = k.getKind();
  if (kind == "gelu_grad") {
    auto approx = op->getAttrOfType<GeluApproximationAttr>("approximation");
    a.kind = fb::KernelKind::GeluGrad;
    a.ints = {approx && approx.getValue() == GeluApproximation::Tanh};
  } else if (kind == "layer_norm_grad") {
    a.kind = fb::KernelKind::LayerNormGrad;
    a.ints = {k.getIns().size() == 4};
    a.floats = {floatAttr(op, "epsilon", 1e-5)};
  } else if (kind == "slice_grad") {
    a.kind = fb::KernelKind::SliceGrad;
    for (StringRef name : {"start", "limit", "step"})
      llvm::append_range(a.ints, arrayAttr(op, name));
  } else if (kind == "conv1d_grad") {
    a.kind = fb::KernelKind::Conv1DGrad;
    a.ints = {intAttr(op, "stride", 1), intAttr(op, "padding", 0),
              k.getIns().size() == 4};
  } else if (kind == "grouped_matmul_weight_grad") {
    a.kind = fb::KernelKind::GroupedMatmulWeightGrad;
    a.ints = {op->hasAttr("transpose_weight")};
  } else if (kind == "moe_topk_grad") {
    a.kind = fb::KernelKind::MoETopKGrad;
    a.ints = {intAttr(op, "k", 1), op->hasAttr("normalize")};
  } else if (kind == "moe_combine_grad") {
    a.kind = fb::KernelKind::MoECombineGrad;
  } else if (kind == "reduce_max_grad") {
    a.kind = fb::KernelKind::ReduceMaxGrad;
    a.ints = arrayAttr(op, "dims");
  } else {
    return false;
  }
  return true;
}

/// cross_entropy and its grad: [ignore_index, reduction (0 mean, 1 sum,
/// 2 none)].
std::vector<int64_t> lossAttrs(Operation *op) {
  auto r = op->getAttrOfType<LossReductionAttr>("reduction");
  int64_t reduction = !r                                    ? 0
                      : r.getValue() == LossReduction::Mean ? 0
                      : r.getValue() == LossReduction::Sum  ? 1
                                                            : 2;
  return {intAttr(op, "ignore_index", -100), reduction};
}

FailureOr<KernelAttrs> kernelAttrs(vrt::KernelOp k) {
  static const llvm::StringMap<fb::KernelKind> simple = {
      {"neg", fb::KernelKind::Neg},
      {"exp", fb::KernelKind::Exp},
      {"log", fb::KernelKind::Log},
      {"sqrt", fb::KernelKind::Sqrt},
      {"rsqrt", fb::KernelKind::Rsqrt},
      {"sin", fb::KernelKind::Sin},
      {"cos", fb::KernelKind::Cos},
      {"tanh", fb::KernelKind::Tanh},
      {"sigmoid", fb::KernelKind::Sigmoid},
      {"silu", fb::KernelKind::Silu},
      {"add", fb::KernelKind::Add},
      {"sub", fb::KernelKind::Sub},
      {"mul", fb::KernelKind::Mul},
      {"div", fb::KernelKind::Div},
      {"cast", fb::KernelKind::Cast},
      {"moe_combine", fb::KernelKind::MoECombine},
      {"copy", fb::KernelKind::Copy}};
  Operation *op = k;
  StringRef kind = k.getKind();
  KernelAttrs a;
  if (auto it = simple.find(kind); it != simple.end()) {
    a.kind = it->second;
  } else if (gradKernelAttrs(k, a)) {
    // a gradient kernel: kind and attributes set
  } else if (kind == "matmul") {
    a.kind = fb::KernelKind::Matmul;
    a.ints = {op->hasAttr("transpose_lhs"), op->hasAttr("transpose_rhs")};
  } else if (kind == "grouped_matmul") {
    a.kind = fb::KernelKind::GroupedMatmul;
    a.ints = {op->hasAttr("transpose_weight")};
  } else if (kind == "conv1d") {
    a.kind = fb::KernelKind::Conv1D;
    a.ints = {intAttr(op, "stride", 1), intAttr(op, "padding", 0),
              k.getIns().size() == 3};
  } else if (kind == "gelu") {
    auto approx = op->getAttrOfType<GeluApproximationAttr>("approximation");
    a.kind = approx && approx.getValue() == GeluApproximation::Tanh
                 ? fb::KernelKind::GeluTanh
                 : fb::KernelKind::Gelu;
  } else if (kind.starts_with("reduce_")) {
    a.kind = kind == "reduce_sum"   ? fb::KernelKind::ReduceSum
             : kind == "reduce_max" ? fb::KernelKind::ReduceMax
                                    : fb::KernelKind::ReduceMean;
    if (kind != "reduce_sum" && kind != "reduce_max" && kind != "reduce_mean")
      return k.emitOpError("unknown reduction '") << kind << "'";
    a.ints = arrayAttr(op, "dims");
  } else if (kind == "softmax") {
    a.kind = fb::KernelKind::Softmax;
    a.ints = {intAttr(op, "dim", 0)};
  } else if (kind == "rms_norm") {
    a.kind = fb::KernelKind::RmsNorm;
    a.floats = {floatAttr(op, "epsilon", 1e-6)};
  } else if (kind == "layer_norm") {
    a.kind = fb::KernelKind::LayerNorm;
    a.ints = {k.getIns().size() == 3};
    a.floats = {floatAttr(op, "epsilon", 1e-5)};
  } else if (kind == "broadcast") {
    a.kind = fb::KernelKind::Broadcast;
    a.ints = arrayAttr(op, "dims");
  } else if (kind == "transpose") {
    a.kind = fb::KernelKind::Transpose;
    a.ints = arrayAttr(op, "perm");
  } else if (kind == "slice") {
    a.kind = fb::KernelKind::Slice;
    for (StringRef name : {"start", "limit", "step"})
      llvm::append_range(a.ints, arrayAttr(op, name));
  } else if (kind == "concat") {
    a.kind = fb::KernelKind::Concat;
    a.ints = {intAttr(op, "dim", 0)};
  } else if (kind == "gather" || kind == "scatter_add") {
    a.kind =
        kind == "gather" ? fb::KernelKind::Gather : fb::KernelKind::ScatterAdd;
    a.ints = {intAttr(op, "axis", 0)};
  } else if (kind == "fill") {
    a.kind = fb::KernelKind::Fill;
    Attribute v = op->getAttr("value");
    if (auto f = dyn_cast_or_null<FloatAttr>(v))
      a.floats = {f.getValueAsDouble()};
    else if (auto i = dyn_cast_or_null<IntegerAttr>(v))
      a.floats = {static_cast<double>(i.getValue().getSExtValue())};
    else
      return k.emitOpError("fill without a scalar value");
  } else if (kind == "rms_norm_grad") {
    a.kind = fb::KernelKind::RmsNormGrad;
    a.floats = {floatAttr(op, "epsilon", 1e-6)};
  } else if (kind == "attention_grad") {
    a.kind = fb::KernelKind::AttentionGrad;
    a.ints = {op->hasAttr("causal"), k.getIns().size() == 5};
    a.floats = {floatAttr(op, "scale", 1.0)};
  } else if (kind == "cross_entropy_grad") {
    a.kind = fb::KernelKind::CrossEntropyGrad;
    a.ints = lossAttrs(op);
  } else if (kind == "rope") {
    a.kind = op->hasAttr("inverse") ? fb::KernelKind::RopeInverse
                                    : fb::KernelKind::Rope;
    a.ints = arrayAttr(op, "mrope_section");
    a.floats = {floatAttr(op, "theta", 10000.0),
                floatAttr(op, "attention_scaling", 1.0)};
    if (auto inv = op->getAttrOfType<DenseF32ArrayAttr>("inv_freq"))
      llvm::append_range(a.floats, inv.asArrayRef());
  } else if (kind == "attention") {
    a.kind = fb::KernelKind::Attention;
    a.ints = {op->hasAttr("causal"), k.getIns().size() == 4};
    a.floats = {floatAttr(op, "scale", 1.0)};
  } else if (kind == "cross_entropy") {
    a.kind = fb::KernelKind::CrossEntropy;
    a.ints = lossAttrs(op);
  } else if (kind == "moe_topk") {
    a.kind = fb::KernelKind::MoETopK;
    a.ints = {intAttr(op, "k", 1), op->hasAttr("normalize")};
  } else if (kind == "moe_dispatch") {
    a.kind = fb::KernelKind::MoEDispatch;
    a.ints = {intAttr(op, "num_experts", 1)};
  } else {
    return k.emitOpError("no runtime kernel for '") << kind << "'";
  }
  return a;
}

std::string locationName(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location l : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(l))
        return name.getName().str();
  return "";
}

} // namespace

LogicalResult mlir::veomni::translateToProgram(
    ModuleOp module, const std::map<std::string, std::string> &placements,
    std::string &out) {
  auto funcs = llvm::to_vector(module.getOps<func::FuncOp>());
  if (funcs.size() != 1)
    return module.emitError("a program has exactly one function, found ")
           << funcs.size();
  func::FuncOp func = funcs.front();
  auto arena =
      func->getAttrOfType<IntegerAttr>(vrt::VrtDialect::kArenaBytesAttrName);
  if (!arena)
    return func.emitError("memory is not planned: run veomni-plan-memory "
                          "before translating");
  Block &block = func.getBody().front();

  flatbuffers::FlatBufferBuilder fbb(1 << 16);
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
  llvm::DenseMap<Value, uint32_t> bufferIndex;
  llvm::DenseMap<Value, int64_t> offsets;
  auto addBuffer = [&](Value v, int64_t offset) {
    auto type = cast<MemRefType>(v.getType());
    std::vector<int64_t> shape(type.getShape().begin(), type.getShape().end());
    bufferIndex[v] = buffers.size();
    offsets[v] = offset;
    buffers.push_back(fb::CreateBufferDirect(
        fbb, offset, dtypeOf(type.getElementType()), &shape));
  };

  // Which parameters are norm weights, which inputs index what.
  llvm::DenseMap<Value, fb::ParamInit> inits;
  llvm::DenseMap<Value, int64_t> bounds;
  for (auto k : block.getOps<vrt::KernelOp>()) {
    StringRef kind = k.getKind();
    if ((kind == "rms_norm" || kind == "layer_norm") && k.getIns().size() > 1)
      inits[rootOf(k.getIns()[1])] = fb::ParamInit::Ones;
    if ((kind == "gather" || kind == "scatter_add") && k.getIns().size() > 1) {
      auto source = cast<MemRefType>(k.getIns()[0].getType());
      int64_t axis = intAttr(k, "axis", 0);
      if (axis >= 0 && axis < source.getRank())
        bounds[rootOf(k.getIns()[1])] = source.getDimSize(axis);
    }
  }

  std::vector<flatbuffers::Offset<fb::Argument>> arguments;
  llvm::StringMap<uint32_t> argumentIndex;
  for (BlockArgument arg : block.getArguments()) {
    auto offset = func.getArgAttrOfType<IntegerAttr>(
        arg.getArgNumber(), vrt::VrtDialect::kOffsetAttrName);
    auto param = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), VeOmniDialect::kParamAttrName);
    auto input = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), VeOmniDialect::kInputAttrName);
    auto state = func.getArgAttrOfType<StringAttr>(
        arg.getArgNumber(), VeOmniDialect::kStateAttrName);
    if (!offset || (!param && !input && !state))
      return func.emitError("argument #")
             << arg.getArgNumber()
             << " needs an offset and a veomni.param, veomni.input or "
                "veomni.state name";
    addBuffer(arg, offset.getInt());
    std::string name = (param ? param : input ? input : state).getValue().str();
    argumentIndex[name] = arguments.size();
    fb::ParamInit init = fb::ParamInit::Normal;
    std::string initFrom;
    if (state) {
      init = fb::ParamInit::Zeros;
      if (StringRef(name).starts_with("optimizer.master."))
        initFrom = name.substr(strlen("optimizer.master."));
    } else if (StringRef(name).ends_with(".bias")) {
      init = fb::ParamInit::Zeros;
    } else if (auto it = inits.find(arg); it != inits.end()) {
      init = it->second;
    }
    auto placement = placements.find(name);
    fb::ArgumentKind kind = param   ? fb::ArgumentKind::Param
                            : input ? fb::ArgumentKind::Input
                                    : fb::ArgumentKind::State;
    arguments.push_back(fb::CreateArgumentDirect(
        fbb, name.c_str(), kind, bufferIndex[arg],
        placement == placements.end() ? "" : placement->second.c_str(), init,
        bounds.lookup(arg), initFrom.empty() ? nullptr : initFrom.c_str()));
  }

  std::vector<flatbuffers::Offset<fb::Constant>> constants;
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  std::vector<uint32_t> outputs;
  std::vector<flatbuffers::Offset<flatbuffers::String>> outputNames;
  std::vector<flatbuffers::Offset<fb::Update>> updates;
  for (Operation &op : block) {
    if (auto alloc = dyn_cast<vrt::AllocOp>(op)) {
      if (!alloc.getOffset())
        return alloc.emitOpError("has no offset: memory is not planned");
      addBuffer(alloc.getBuffer(), *alloc.getOffset());
    } else if (auto view = dyn_cast<vrt::ViewOp>(op)) {
      addBuffer(view.getResult(), offsets.lookup(view.getSource()));
    } else if (auto c = dyn_cast<vrt::ConstantOp>(op)) {
      if (!c.getOffset())
        return c.emitOpError("has no offset: memory is not planned");
      addBuffer(c.getBuffer(), *c.getOffset());
      auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
      if (!dense)
        return c.emitOpError("only dense constants can be serialized");
      ArrayRef<char> raw = dense.getRawData();
      auto type = cast<MemRefType>(c.getBuffer().getType());
      size_t bytes = type.getNumElements() * type.getElementTypeBitWidth() / 8;
      std::vector<uint8_t> data(bytes);
      if (dense.isSplat()) {
        for (size_t at = 0; at + raw.size() <= bytes; at += raw.size())
          std::memcpy(data.data() + at, raw.data(), raw.size());
      } else if (raw.size() == bytes) {
        std::memcpy(data.data(), raw.data(), bytes);
      } else {
        return c.emitOpError("constant data is ")
               << raw.size() << " bytes, its buffer " << bytes;
      }
      constants.push_back(
          fb::CreateConstantDirect(fbb, bufferIndex[c.getBuffer()], &data));
    } else if (auto k = dyn_cast<vrt::KernelOp>(op)) {
      FailureOr<KernelAttrs> attrs = kernelAttrs(k);
      if (failed(attrs))
        return failure();
      std::vector<uint32_t> ins, outs;
      for (Value v : k.getIns())
        ins.push_back(bufferIndex.lookup(v));
      for (Value v : k.getOuts())
        outs.push_back(bufferIndex.lookup(v));
      std::string where = locationName(k.getLoc());
      kernels.push_back(fb::CreateKernelDirect(fbb, attrs->kind, &ins, &outs,
                                               &attrs->ints, &attrs->floats,
                                               where.c_str()));
    } else if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
        outputs.push_back(bufferIndex.lookup(v));
        // Outputs are named for people and for `veomni run --save`: the
        // name given (loss, logits, grad_norm, ...), or grad.<parameter>.
        std::string name;
        if (auto named =
                func.getResultAttrOfType<StringAttr>(i, "veomni.output"))
          name = named.getValue().str();
        else if (auto grad =
                     func.getResultAttrOfType<StringAttr>(i, "veomni.grad"))
          name = "grad." + grad.getValue().str();
        outputNames.push_back(fbb.CreateString(name));
        auto target = func.getResultAttrOfType<StringAttr>(i, "veomni.update");
        if (!target)
          continue;
        auto it = argumentIndex.find(target.getValue());
        if (it == argumentIndex.end())
          return func.emitError("result #")
                 << i << " updates unknown argument '" << target.getValue()
                 << "'";
        updates.push_back(fb::CreateUpdate(fbb, i, it->second));
      }
    } else {
      return op.emitOpError("cannot be translated to a runtime program");
    }
  }

  std::string modelType;
  if (auto t = module->getAttrOfType<StringAttr>("veomni.model_type"))
    modelType = t.getValue().str();
  auto program = fb::CreateProgramDirect(
      fbb, modelType.c_str(), arena.getInt(), &buffers, &arguments, &constants,
      &kernels, &outputs, &outputNames, &updates, /*world_size=*/1,
      /*comm_groups=*/nullptr);
  fb::FinishProgramBuffer(fbb, program);

  fb::ProgramHeader header =
      fb::MakeHeader(fbb.GetBufferPointer(), fbb.GetSize());
  out.assign(reinterpret_cast<const char *>(&header), sizeof(header));
  out.append(reinterpret_cast<const char *>(fbb.GetBufferPointer()),
             fbb.GetSize());
  return success();
}
