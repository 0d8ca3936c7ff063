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

#endif // VEOMNI_DIALECTS_RUNTIME_VRTOPS_H
