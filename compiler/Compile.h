//===- Compile.h - from an imported model to a runtime program --*- C++ -*-===//

#ifndef VEOMNI_COMPILER_COMPILE_H
#define VEOMNI_COMPILER_COMPILE_H

#include "frontends/Importer.h"

#include <map>
#include <optional>
#include <string>

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace mlir::veomni {

struct CompileReport {
  int64_t arenaBytes = 0;    ///< the one allocation the runtime makes
  int64_t argumentBytes = 0; ///< parameters and batch inputs
  int64_t constantBytes = 0;
  int64_t activationBytes = 0; ///< planned peak of everything else
  int64_t kernels = 0;
};

struct TrainOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.1,
         maxGradNorm = 1.0, minLrRatio = 0.0;
  int64_t warmupSteps = 0, totalSteps = 1000;
  int64_t accumulationSteps = 1; ///< micro-batches per optimizer step
};

struct CompileOptions {
  /// Append the backward pass: the program also returns the gradient of
  /// every parameter, after the model's own results (veomni-autodiff).
  bool gradients = false;
  /// Make a training step: gradients, then AdamW (veomni-optimizer).
  std::optional<TrainOptions> train;
  /// Activation recomputation with gradients: none, selective or full.
  std::string remat = "none";
};

/// Adds the passes that turn a forward function into what `options` asks
/// for: the backward pass, recomputation and the optimizer step.
void addTrainingStepPasses(OpPassManager &pm, const CompileOptions &options);

/// Lowers `module` (consumed) to vrt, plans its memory and serializes it;
/// `placements` maps parameter names to their parallel-plan placement.
/// Errors are reported as MLIR diagnostics and give failure().
FailureOr<std::string>
compileModule(ModuleOp module,
              const std::map<std::string, std::string> &placements,
              const CompileOptions &options, CompileReport &report);

/// compileModule for an imported model, with its family's plan.
FailureOr<std::string> compileToProgram(ImportedModel &model,
                                        CompileReport &report,
                                        const CompileOptions &options = {});

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_COMPILE_H
