//===- Compile.h - from an imported model to a runtime program --*- C++ -*-===//

#ifndef VEOMNI_COMPILER_COMPILE_H
#define VEOMNI_COMPILER_COMPILE_H

#include "frontends/Importer.h"
#include "frontends/RecipeSections.h"
#include "passes/Passes.h"

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

/// The optimizer and its schedule: a recipe's train section.
using TrainOptions = TrainSection;

struct CompileOptions {
  /// Append the backward pass: the program also returns the gradient of
  /// every parameter, after the model's own results (veomni-autodiff).
  bool gradients = false;
  /// Make a training step: gradients, then AdamW (veomni-optimizer).
  std::optional<TrainOptions> train;
  /// Micro-batches whose gradients one optimizer step sums (the data
  /// section's global_batch_size / batch_size).
  int64_t accumulationSteps = 1;
  /// Activation recomputation with gradients: none, selective or full.
  std::string remat = "none";
  /// The mesh to partition the step for (the recipe's parallel section):
  /// with more than one rank, the family's plan is applied
  /// (veomni-apply-recipe), shardings propagated and the step partitioned
  /// into the one program every rank runs, its arguments and results
  /// marked with the slice each rank holds.
  ParallelSection parallel;
};

/// veomni-apply-recipe's options for the mesh `mesh` names.
ApplyRecipeOptions applyRecipeOptionsOf(const ParallelSection &mesh);

/// Adds the passes that give a training step the mesh `mesh` names and the
/// family's plan (veomni-apply-recipe) and propagate shardings through it
/// (veomni-propagate-sharding): what `veomni plan` reports on and what
/// veomni-partition turns into the per-rank program.
void addShardingPasses(OpPassManager &pm, const ParallelSection &mesh);

/// Adds the passes that turn a forward function into what `options` asks
/// for: kv heads repeated up to the mesh's sp (veomni-repeat-kv-heads), the
/// backward pass, recomputation and the optimizer step.
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
