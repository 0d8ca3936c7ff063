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

class BroadcastOp;
/// How a fused kernel reads the input of `broadcast` (a value of `op`'s
/// input type) over the result's elements, as runtime/program/Fused.h's
/// Mode: 0 Full (as many elements), 1 Inner (broadcast over leading
/// dimensions, or a single element), 2 Outer (over trailing dimensions);
/// -1 when neither fits (Fuse.cpp).
int64_t fusedInputMode(BroadcastOp broadcast);

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_PASSES_H
