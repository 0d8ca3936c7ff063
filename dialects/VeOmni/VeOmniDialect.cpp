//===- VeOmniDialect.cpp - the veomni dialect -----------------------------===//

#include "dialects/VeOmni/VeOmniDialect.h"
#include "dialects/VeOmni/VeOmniOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::veomni;

#include "dialects/VeOmni/VeOmniDialect.cpp.inc"
#include "dialects/VeOmni/VeOmniEnums.cpp.inc"
#include "dialects/VeOmni/VeOmniInterfaces.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/VeOmni/VeOmniAttrs.cpp.inc"

//===----------------------------------------------------------------------===//
// Modules
//===----------------------------------------------------------------------===//

bool ModuleAttr::isDecoderLayer() const {
  switch (getKind()) {
  case ModuleKind::InputNorm:
  case ModuleKind::Attention:
  case ModuleKind::PostAttentionNorm:
  case ModuleKind::Mlp:
    return getLayer() >= 0;
  default:
    return false;
  }
}

ModuleAttr ModuleAttr::asBackward() const {
  return ModuleAttr::get(getContext(), getKind(), getLayer(), true);
}

// #veomni.module<attention, layer = 3, backward>
Attribute ModuleAttr::parse(AsmParser &parser, Type) {
  std::string word;
  SMLoc at = parser.getCurrentLocation();
  if (parser.parseLess() || parser.parseKeywordOrString(&word))
    return {};
  std::optional<ModuleKind> kind = symbolizeModuleKind(word);
  if (!kind) {
    parser.emitError(at, "unknown module kind '") << word << "'";
    return {};
  }
  int64_t layer = -1;
  bool backward = false;
  while (succeeded(parser.parseOptionalComma())) {
    if (succeeded(parser.parseOptionalKeyword("backward"))) {
      backward = true;
    } else if (parser.parseKeyword("layer") || parser.parseEqual() ||
               parser.parseInteger(layer)) {
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return ModuleAttr::get(parser.getContext(), *kind, layer, backward);
}

void ModuleAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyModuleKind(getKind());
  if (getLayer() >= 0)
    printer << ", layer = " << getLayer();
  if (getBackward())
    printer << ", backward";
  printer << ">";
}

ModuleAttr mlir::veomni::getModule(Location loc) {
  if (auto fused = dyn_cast<FusedLoc>(loc)) {
    if (auto m = dyn_cast_or_null<ModuleAttr>(fused.getMetadata()))
      return m;
    for (Location inner : fused.getLocations())
      if (ModuleAttr m = getModule(inner))
        return m;
  }
  return {};
}

Location mlir::veomni::withModule(Location loc, ModuleAttr module) {
  // Keep the people-facing part, drop an earlier module.
  if (auto fused = dyn_cast<FusedLoc>(loc);
      fused && isa_and_nonnull<ModuleAttr>(fused.getMetadata()))
    return FusedLoc::get(fused.getLocations(), module, loc.getContext());
  return FusedLoc::get(ArrayRef<Location>{loc}, module, loc.getContext());
}

void VeOmniDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/VeOmni/VeOmniAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/VeOmni/VeOmniOps.cpp.inc"
      >();
  attachShardingRules(getContext());
}

Operation *VeOmniDialect::materializeConstant(OpBuilder &builder,
                                              Attribute value, Type type,
                                              Location loc) {
  auto elements = dyn_cast<ElementsAttr>(value);
  if (!elements || elements.getType() != type)
    return nullptr;
  return ConstantOp::create(builder, loc, elements);
}

LogicalResult VeOmniDialect::verifyRegionArgAttribute(Operation *op,
                                                      unsigned regionIndex,
                                                      unsigned argIndex,
                                                      NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kRoleAttrName) {
    if (!isa<ArgumentRoleAttr>(attr.getValue()))
      return op->emitError("'")
             << name << "' on argument #" << argIndex
             << " must be an argument role, got " << attr.getValue();
    return success();
  }
  // The argument's rank, or -1 when it is not a ranked tensor.
  auto argRank = [&]() -> int64_t {
    Region &region = op->getRegion(regionIndex);
    if (!region.empty() && argIndex < region.getNumArguments())
      if (auto t = dyn_cast<RankedTensorType>(
              region.getArgument(argIndex).getType()))
        return t.getRank();
    return -1;
  };
  if (name == kTokenDimsAttrName) {
    auto dims = dyn_cast<DenseI64ArrayAttr>(attr.getValue());
    int64_t rank = argRank();
    if (!dims || dims.size() != 2 || dims[0] < 0 || dims[1] <= dims[0] ||
        (rank >= 0 && dims[1] >= rank))
      return op->emitError("'")
             << name << "' on argument #" << argIndex
             << " must be array<i64: batch, sequence> of two of its "
                "dimensions, got "
             << attr.getValue();
    return success();
  }
  if (name == kPackDimAttrName) {
    auto dim = dyn_cast<IntegerAttr>(attr.getValue());
    int64_t rank = argRank();
    if (!dim || dim.getInt() < 0 || (rank >= 0 && dim.getInt() >= rank))
      return op->emitError("'")
             << name << "' on argument #" << argIndex
             << " must be one of its dimensions, got " << attr.getValue();
    return success();
  }
  if (name == kRouterBiasAttrName || name == kFrozenAttrName ||
      name == kAdapterAttrName || name == kRouterAttrName) {
    if (!isa<UnitAttr>(attr.getValue()))
      return op->emitError("'")
             << name << "' on argument #" << argIndex << " must be a unit";
    return success();
  }
  if (name != kParamAttrName && name != kInputAttrName &&
      name != kStateAttrName && name != kPlacementAttrName &&
      name != kInitAttrName && name != kInitFromAttrName &&
      name != kStateOfAttrName)
    return op->emitError("unknown veomni argument attribute '")
           << name << "' on argument #" << argIndex;
  auto str = dyn_cast<StringAttr>(attr.getValue());
  if (!str || str.getValue().empty())
    return op->emitError("'")
           << name << "' on argument #" << argIndex
           << " must be a non-empty string, got " << attr.getValue();
  if (name == kInitAttrName && str.getValue() != "normal" &&
      str.getValue() != "ones" && str.getValue() != "zeros" &&
      str.getValue() != "lora_a")
    return op->emitError("'")
           << name << "' on argument #" << argIndex
           << " must be \"normal\", \"ones\", \"zeros\" or \"lora_a\", got "
           << str;
  Region &region = op->getRegion(regionIndex);
  if (!region.empty() && argIndex < region.getNumArguments() &&
      !isa<RankedTensorType, MemRefType>(
          region.getArgument(argIndex).getType()))
    return op->emitError("'")
           << name << " = " << str << "' is on argument #" << argIndex
           << " of type " << region.getArgument(argIndex).getType()
           << ", neither a ranked tensor nor a buffer";
  return success();
}

LogicalResult VeOmniDialect::verifyRegionResultAttribute(Operation *op,
                                                         unsigned regionIndex,
                                                         unsigned resultIndex,
                                                         NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kRoleAttrName) {
    if (!isa<ResultRoleAttr>(attr.getValue()))
      return op->emitError("'")
             << name << "' on result #" << resultIndex
             << " must be a result role, got " << attr.getValue();
    return success();
  }
  if (name != "veomni.output" && name != "veomni.grad" &&
      name != "veomni.update")
    return op->emitError("unknown veomni result attribute '")
           << name << "' on result #" << resultIndex;
  auto str = dyn_cast<StringAttr>(attr.getValue());
  if (!str || str.getValue().empty())
    return op->emitError("'")
           << name << "' on result #" << resultIndex
           << " must be a non-empty string, got " << attr.getValue();
  return success();
}

LogicalResult VeOmniDialect::verifyOperationAttribute(Operation *op,
                                                      NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kRoleAttrName) {
    if (!isa<func::FuncOp>(op) || !isa<FunctionRoleAttr>(attr.getValue()))
      return op->emitError("'")
             << name << "' on an operation must be a function's role, got "
             << attr.getValue();
    return success();
  }
  if (name == kExpertsAttrName) {
    auto info = dyn_cast<DictionaryAttr>(attr.getValue());
    auto whole = [&](StringRef key) {
      auto v = info ? info.getAs<IntegerAttr>(key) : IntegerAttr();
      return v && v.getInt() >= 0;
    };
    if (!isa<GroupedMatmulOp>(op) || !info ||
        !info.getAs<StringAttr>("param") || !whole("order") ||
        !whole("column") || !whole("in"))
      return op->emitError("'")
             << name
             << "' belongs on a grouped_matmul as {param = \"<name>\", "
                "order, column, in} (non-negative integers), got "
             << attr.getValue();
    return success();
  }
  // Attributes the dialect lets other ops carry (`veomni.model_type` on the
  // module) are free-form.
  return success();
}
