//===- VrtOps.h - the vrt dialect -------------------------------*- C++ -*-===//

#ifndef VEOMNI_DIALECTS_RUNTIME_VRTOPS_H
#define VEOMNI_DIALECTS_RUNTIME_VRTOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "runtime/program/KernelTable.h"

#include "dialects/Runtime/VrtDialect.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Runtime/VrtAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/Runtime/VrtOps.h.inc"

namespace mlir::vrt {
/// The buffer whose bytes `v` names, looking through views.
inline Value rootBuffer(Value v) {
  while (auto view = v.getDefiningOp<ViewOp>())
    v = view.getSource();
  return v;
}
} // namespace mlir::vrt

#endif // VEOMNI_DIALECTS_RUNTIME_VRTOPS_H
