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
  if (name != kParamAttrName && name != kInputAttrName &&
      name != kStateAttrName && name != kPlacementAttrName)
    return op->emitError("unknown veomni argument attribute '")
           << name << "' on argument #" << argIndex;
  auto str = dyn_cast<StringAttr>(attr.getValue());
  if (!str || str.getValue().empty())
    return op->emitError("'")
           << name << "' on argument #" << argIndex
           << " must be a non-empty string, got " << attr.getValue();
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
