//===- Passes.h - every veomni pass -----------------------------*- C++ -*-===//

#ifndef VEOMNI_PASSES_PASSES_H
#define VEOMNI_PASSES_PASSES_H

#include "dialects/Dist/DistOps.h"
#include "dialects/Runtime/VrtOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::veomni {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_PASSES_H
