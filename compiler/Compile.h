//===- Compile.h - from an imported model to a runtime program --*- C++ -*-===//

#ifndef VEOMNI_COMPILER_COMPILE_H
#define VEOMNI_COMPILER_COMPILE_H

#include "frontends/Importer.h"

#include <string>

namespace mlir::veomni {

struct CompileReport {
  int64_t arenaBytes = 0;    ///< the one allocation the runtime makes
  int64_t argumentBytes = 0; ///< parameters and batch inputs
  int64_t constantBytes = 0;
  int64_t activationBytes = 0; ///< planned peak of everything else
  int64_t kernels = 0;
};

/// Lowers `model` (consumed) to vrt, plans its memory and serializes it.
/// Errors are reported as MLIR diagnostics and give failure().
FailureOr<std::string> compileToProgram(ImportedModel &model,
                                        CompileReport &report);

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_COMPILE_H
