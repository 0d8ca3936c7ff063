//===- Translate.h - planned vrt IR to a .vmb program -----------*- C++ -*-===//

#ifndef VEOMNI_COMPILER_TRANSLATE_H
#define VEOMNI_COMPILER_TRANSLATE_H

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <string>

namespace mlir::veomni {

/// Serializes a module after veomni-lower-to-vrt and veomni-plan-memory into
/// the bytes of a .vmb file (header + Program FlatBuffer). `placements` maps
/// parameter names to their parallel-plan placement, recorded for later
/// distributed compiles and for people reading the program.
LogicalResult
translateToProgram(ModuleOp module,
                   const std::map<std::string, std::string> &placements,
                   std::string &out);

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_TRANSLATE_H
