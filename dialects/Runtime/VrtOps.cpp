//===- VrtOps.cpp - the vrt dialect ---------------------------------------===//

#include "dialects/Runtime/VrtOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace mlir::vrt;

#include "dialects/Runtime/VrtDialect.cpp.inc"

void VrtDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Runtime/VrtOps.cpp.inc"
      >();
}

#define GET_OP_CLASSES
#include "dialects/Runtime/VrtOps.cpp.inc"

static int64_t byteSize(MemRefType type) {
  return type.getNumElements() * type.getElementTypeBitWidth() / 8;
}

LogicalResult ConstantOp::verify() {
  auto type = cast<MemRefType>(getBuffer().getType());
  auto value = cast<ShapedType>(getValue().getType());
  if (value.getShape() != type.getShape() ||
      value.getElementType() != type.getElementType())
    return emitOpError("value of type ")
           << value << " does not fill buffer " << type;
  return success();
}

LogicalResult ViewOp::verify() {
  auto in = cast<MemRefType>(getSource().getType());
  auto out = cast<MemRefType>(getResult().getType());
  if (byteSize(in) != byteSize(out))
    return emitOpError("views ") << in << " (" << byteSize(in) << " bytes) as "
                                 << out << " (" << byteSize(out) << " bytes)";
  return success();
}

LogicalResult KernelOp::verify() {
  // A pipeline send only reads; every other kernel writes.
  if (getOuts().empty() && getKind() != "send")
    return emitOpError("kernel '") << getKind() << "' writes no buffer";
  return success();
}
