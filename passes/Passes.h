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

/// The mesh axes each dimension of a parameter of `shape` is split over
/// under the family's `placement` (tp:column, tp:row, tp:vocab,
/// ep:experts or replicated) and the mesh's axis sizes, then ZeRO-3's
/// split (veomni-apply-recipe's rule; the plan search sizes parameters
/// with it before building anything).
SmallVector<SmallVector<StringRef>>
parameterSplit(ArrayRef<int64_t> shape, StringRef placement,
               function_ref<int64_t(StringRef)> size, bool expertParallel);

} // namespace mlir::veomni

#endif // VEOMNI_PASSES_PASSES_H
