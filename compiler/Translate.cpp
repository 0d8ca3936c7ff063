//===- Translate.cpp - a planned vrt module to a .vmb program -------------===//

#include "compiler/Translate.h"

#include "dialects/Dist/DistOps.h"
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

// The IR's role enums are numbered as the program format's.
static_assert(static_cast<int>(fb::ArgumentRole::MAX) ==
              static_cast<int>(ArgumentRole::Stash));
static_assert(static_cast<int>(fb::OutputRole::MAX) ==
              static_cast<int>(ResultRole::GradNormSquared));
static_assert(static_cast<int>(fb::ProgramRole::MAX) ==
              static_cast<int>(FunctionRole::StageGradNorm));

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

int64_t intAttr(Operation *op, StringRef name, int64_t otherwise) {
  if (auto a = op->getAttrOfType<IntegerAttr>(name))
    return a.getValue().getSExtValue();
  return otherwise;
}

/// A kernel's attributes in the table's order, as program.fbs stores them.
/// vrt.kernel's verifier has checked that each is there with its type.
std::vector<flatbuffers::Offset<fb::Attr>>
encodeAttrs(flatbuffers::FlatBufferBuilder &fbb, vrt::KernelOp k) {
  using ::kernel_table::AttrType;
  const ::kernel_table::KernelInfo &info = k.getKind().getInfo();
  std::vector<flatbuffers::Offset<fb::Attr>> attrs;
  for (uint32_t i = 0; i < info.numAttrs; ++i) {
    Attribute a = k->getAttr(info.attrs[i].name);
    std::vector<int64_t> ints;
    std::vector<double> floats;
    switch (info.attrs[i].type) {
    case AttrType::Bool:
      ints = {a && (!isa<BoolAttr>(a) || cast<BoolAttr>(a).getValue())};
      break;
    case AttrType::Int:
      ints = {cast<IntegerAttr>(a).getValue().getSExtValue()};
      break;
    case AttrType::Float:
      floats = {cast<FloatAttr>(a).getValueAsDouble()};
      break;
    case AttrType::Ints:
      llvm::append_range(ints, cast<DenseI64ArrayAttr>(a).asArrayRef());
      break;
    case AttrType::Floats:
      if (auto f32 = dyn_cast<DenseF32ArrayAttr>(a))
        llvm::append_range(floats, f32.asArrayRef());
      else
        llvm::append_range(floats, cast<DenseF64ArrayAttr>(a).asArrayRef());
      break;
    }
    attrs.push_back(fb::CreateAttrDirect(fbb, &ints, &floats));
  }
  return attrs;
}

/// The model module a kernel came from, as people name it: the HF module
/// ("model.layers.3.mlp"), "optimizer" for the update.
std::string locationName(Location loc) {
  if (auto name = dyn_cast<NameLoc>(loc))
    return name.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc)) {
    if (auto module = dyn_cast_or_null<ModuleAttr>(fused.getMetadata());
        module && module.getKind() == ModuleKind::Optimizer)
      return "optimizer";
    for (Location l : fused.getLocations())
      if (auto name = dyn_cast<NameLoc>(l))
        return name.getName().str();
  }
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

  // A partitioned program's mesh: its axes are what comm groups and slices
  // index.
  auto meshes = llvm::to_vector(module.getOps<dist::MeshOp>());
  ArrayRef<dist::MeshAxisAttr> meshAxes;
  if (meshes.size() == 1)
    meshAxes = meshes.front().getMesh().getAxes();
  auto axisIndex = [&](StringRef name) -> std::optional<uint32_t> {
    auto it = llvm::find_if(
        meshAxes, [&](dist::MeshAxisAttr a) { return a.getName() == name; });
    if (it == meshAxes.end())
      return std::nullopt;
    return static_cast<uint32_t>(it - meshAxes.begin());
  };
  bool sliced = false;

  flatbuffers::FlatBufferBuilder fbb(1 << 16);
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
  llvm::DenseMap<Value, uint32_t> bufferIndex;
  llvm::DenseMap<Value, int64_t> offsets;
  // `slice`: the dist.slice of an argument or result, encoded as its
  // buffer's split.
  auto addBuffer = [&](Value v, int64_t offset,
                       dist::ShardingAttr slice = {}) -> LogicalResult {
    auto type = cast<MemRefType>(v.getType());
    std::vector<int64_t> shape(type.getShape().begin(), type.getShape().end());
    std::vector<flatbuffers::Offset<fb::DimSplit>> split;
    if (slice) {
      if (slice.getDims().size() != shape.size())
        return func.emitError("a dist.slice of ")
               << slice.getDims().size() << " dimensions on a buffer of "
               << shape.size();
      for (dist::DimShardingAttr dim : slice.getDims()) {
        std::vector<uint32_t> axes;
        for (StringAttr name : dim.getAxes()) {
          std::optional<uint32_t> a = axisIndex(name.getValue());
          if (!a)
            return func.emitError("dist.slice axis \"")
                   << name.getValue() << "\" is not an axis of the one mesh";
          axes.push_back(*a);
        }
        split.push_back(fb::CreateDimSplitDirect(fbb, &axes));
      }
      sliced = true;
    }
    bufferIndex[v] = buffers.size();
    offsets[v] = offset;
    buffers.push_back(fb::CreateBufferDirect(fbb, offset,
                                             dtypeOf(type.getElementType()),
                                             &shape, slice ? &split : nullptr));
    return success();
  };
  auto sliceOfResult = [&](unsigned i) {
    return func.getResultAttrOfType<dist::ShardingAttr>(
        i, dist::DistDialect::kSliceAttrName);
  };

  // Which inputs index what: the whole table's rows, also when each rank
  // holds a slice of it (index_group).
  auto groupList =
      module->getAttrOfType<ArrayAttr>(vrt::VrtDialect::kCommGroupsAttrName);
  auto groupSize = [&](int64_t g) -> int64_t {
    if (g < 0 || !groupList || g >= int64_t(groupList.size()))
      return 1;
    int64_t n = 1;
    for (Attribute name : cast<ArrayAttr>(groupList[g]))
      if (std::optional<uint32_t> a =
              axisIndex(cast<StringAttr>(name).getValue()))
        n *= meshAxes[*a].getSize();
    return n;
  };
  llvm::DenseMap<Value, int64_t> bounds;
  using ::kernel_table::KernelKind;
  for (auto k : block.getOps<vrt::KernelOp>()) {
    KernelKind kind = k.getKind().getKind();
    if ((kind == KernelKind::Gather || kind == KernelKind::ScatterAdd) &&
        k.getIns().size() > 1) {
      auto source = cast<MemRefType>(k.getIns()[0].getType());
      int64_t axis = intAttr(k, "axis", 0);
      if (axis >= 0 && axis < source.getRank())
        bounds[rootOf(k.getIns()[1])] =
            source.getDimSize(axis) * groupSize(intAttr(k, "index_group", -1));
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
    if (failed(addBuffer(
            arg, offset.getInt(),
            func.getArgAttrOfType<dist::ShardingAttr>(
                arg.getArgNumber(), dist::DistDialect::kSliceAttrName))))
      return failure();
    std::string name = (param ? param : input ? input : state).getValue().str();
    argumentIndex[name] = arguments.size();
    // How it starts, as the importer and the optimizer declared.
    fb::ParamInit init = state ? fb::ParamInit::Zeros : fb::ParamInit::Normal;
    if (auto declared = func.getArgAttrOfType<StringAttr>(
            arg.getArgNumber(), VeOmniDialect::kInitAttrName))
      init = declared.getValue() == "ones"     ? fb::ParamInit::Ones
             : declared.getValue() == "zeros"  ? fb::ParamInit::Zeros
             : declared.getValue() == "lora_a" ? fb::ParamInit::LoraA
                                               : fb::ParamInit::Normal;
    std::string initFrom, stateOf;
    if (auto of = func.getArgAttrOfType<StringAttr>(
            arg.getArgNumber(), VeOmniDialect::kStateOfAttrName))
      stateOf = of.getValue().str();
    if (auto from = func.getArgAttrOfType<StringAttr>(
            arg.getArgNumber(), VeOmniDialect::kInitFromAttrName))
      initFrom = from.getValue().str();
    auto placement = placements.find(name);
    // The role the compiler declared; IR written by hand may leave it to
    // the kind of name attribute.
    fb::ArgumentRole kind = param   ? fb::ArgumentRole::Parameter
                            : input ? fb::ArgumentRole::BatchInput
                                    : fb::ArgumentRole::OptimizerState;
    if (auto role = func.getArgAttrOfType<ArgumentRoleAttr>(
            arg.getArgNumber(), VeOmniDialect::kRoleAttrName))
      kind = static_cast<fb::ArgumentRole>(role.getValue());
    arguments.push_back(fb::CreateArgumentDirect(
        fbb, name.c_str(), kind, bufferIndex[arg],
        placement == placements.end() ? "" : placement->second.c_str(), init,
        bounds.lookup(arg), initFrom.empty() ? nullptr : initFrom.c_str(),
        stateOf.empty() ? nullptr : stateOf.c_str(),
        param &&
            func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kFrozenAttrName),
        param && func.getArgAttr(arg.getArgNumber(),
                                 VeOmniDialect::kAdapterAttrName)));
  }

  std::vector<flatbuffers::Offset<fb::Constant>> constants;
  std::vector<flatbuffers::Offset<fb::Kernel>> kernels;
  std::vector<uint32_t> outputs;
  std::vector<flatbuffers::Offset<flatbuffers::String>> outputNames;
  std::vector<fb::OutputRole> outputRoles;
  std::vector<flatbuffers::Offset<fb::Update>> updates;
  for (Operation &op : block) {
    if (auto alloc = dyn_cast<vrt::AllocOp>(op)) {
      if (!alloc.getOffset())
        return alloc.emitOpError("has no offset: memory is not planned");
      (void)addBuffer(alloc.getBuffer(), *alloc.getOffset());
    } else if (auto view = dyn_cast<vrt::ViewOp>(op)) {
      (void)addBuffer(view.getResult(), offsets.lookup(view.getSource()));
    } else if (auto c = dyn_cast<vrt::ConstantOp>(op)) {
      if (!c.getOffset())
        return c.emitOpError("has no offset: memory is not planned");
      (void)addBuffer(c.getBuffer(), *c.getOffset());
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
    } else if (auto c = dyn_cast<vrt::CollectiveOp>(op)) {
      return c.emitOpError("cannot run yet: the runtime has no "
                           "communicator for '")
             << c.getOp() << "' (multi-rank execution)";
    } else if (auto k = dyn_cast<vrt::KernelOp>(op)) {
      std::vector<flatbuffers::Offset<fb::Attr>> attrs = encodeAttrs(fbb, k);
      std::vector<uint32_t> ins, outs;
      for (Value v : k.getIns())
        ins.push_back(bufferIndex.lookup(v));
      for (Value v : k.getOuts())
        outs.push_back(bufferIndex.lookup(v));
      std::string where = locationName(k.getLoc());
      kernels.push_back(fb::CreateKernelDirect(
          fbb, static_cast<uint16_t>(k.getKind().getKind()), &ins, &outs,
          &attrs, where.c_str()));
    } else if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
        outputs.push_back(bufferIndex.lookup(v));
        // A sliced result gets a buffer of its own that records the split
        // (a view of the same memory), unless it is the argument's.
        if (dist::ShardingAttr slice = sliceOfResult(i);
            slice && !isa<BlockArgument>(v)) {
          if (failed(addBuffer(v, offsets.lookup(v), slice)))
            return failure();
          outputs.back() = buffers.size() - 1;
        }
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
        auto role = func.getResultAttrOfType<ResultRoleAttr>(
            i, VeOmniDialect::kRoleAttrName);
        outputRoles.push_back(role
                                  ? static_cast<fb::OutputRole>(role.getValue())
                                  : fb::OutputRole::Other);
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
  // What the program computes, as its function's role says.
  // The two enums are numbered alike.
  fb::ProgramRole role = fb::ProgramRole::Forward;
  if (auto r =
          func->getAttrOfType<FunctionRoleAttr>(VeOmniDialect::kRoleAttrName))
    role = static_cast<fb::ProgramRole>(r.getValue());
  // The mesh and the comm groups of a partitioned program.
  std::vector<flatbuffers::Offset<fb::MeshAxis>> mesh;
  std::vector<flatbuffers::Offset<fb::CommGroup>> groups;
  uint32_t worldSize = 1;
  auto list =
      module->getAttrOfType<ArrayAttr>(vrt::VrtDialect::kCommGroupsAttrName);
  if (list || sliced) {
    if (meshes.size() != 1)
      return module.emitError("a partitioned program needs exactly one "
                              "dist.mesh, found ")
             << meshes.size();
    for (dist::MeshAxisAttr a : meshAxes) {
      mesh.push_back(fb::CreateMeshAxisDirect(fbb, a.getName().str().c_str(),
                                              a.getSize()));
      worldSize *= a.getSize();
    }
    for (Attribute g : list ? list.getValue() : ArrayRef<Attribute>()) {
      std::vector<uint32_t> indices;
      for (Attribute name : cast<ArrayAttr>(g)) {
        std::optional<uint32_t> a =
            axisIndex(cast<StringAttr>(name).getValue());
        if (!a)
          return module.emitError("comm group axis ")
                 << name << " is not an axis of the mesh";
        indices.push_back(*a);
      }
      groups.push_back(fb::CreateCommGroupDirect(fbb, &indices));
    }
  }
  auto program = fb::CreateProgramDirect(
      fbb, modelType.c_str(), role, arena.getInt(), &buffers, &arguments,
      &constants, &kernels, &outputs, &outputNames, &outputRoles, &updates,
      worldSize, mesh.empty() ? nullptr : &mesh,
      groups.empty() ? nullptr : &groups,
      func->hasAttr(vrt::VrtDialect::kAsyncCollectivesAttrName));
  fb::FinishProgramBuffer(fbb, program);

  fb::ProgramHeader header =
      fb::MakeHeader(fbb.GetBufferPointer(), fbb.GetSize());
  out.assign(reinterpret_cast<const char *>(&header), sizeof(header));
  out.append(reinterpret_cast<const char *>(fbb.GetBufferPointer()),
             fbb.GetSize());
  return success();
}
