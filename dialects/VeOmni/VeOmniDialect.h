//===- VeOmniDialect.h - the veomni dialect ---------------------*- C++ -*-===//

#ifndef VEOMNI_DIALECTS_VEOMNI_VEOMNIDIALECT_H
#define VEOMNI_DIALECTS_VEOMNI_VEOMNIDIALECT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Dialect.h"

#include "dialects/VeOmni/VeOmniDialect.h.inc"

#endif // VEOMNI_DIALECTS_VEOMNI_VEOMNIDIALECT_H
