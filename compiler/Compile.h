//===- Compile.h - from an imported model to a runtime program --*- C++ -*-===//

#ifndef VEOMNI_COMPILER_COMPILE_H
#define VEOMNI_COMPILER_COMPILE_H

#include "frontends/Importer.h"
#include "frontends/RecipeSections.h"
#include "passes/Passes.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

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
  /// Its `prefetch` issues each all-gather of a parameter that many
  /// gathers ahead of its use (veomni-prefetch; 0: where the partitioner
  /// put it).
  ParallelSection parallel;
  /// Chains of elementwise ops become one kernel each (veomni-fuse).
  bool fusion = true;
  /// The LM head, loss and their VJP become one kernel over chunks of
  /// `lossChunk` tokens (veomni-fuse-loss; 0: 64 MiB of logits, >= 256).
  bool fusedLoss = true;
  int64_t lossChunk = 0;
};

/// The fusion passes `o` asks for (veomni-fuse-loss, veomni-fuse), which
/// run on the partitioned step right before lowering.
void addFusionPasses(OpPassManager &pm, const CompileOptions &o);

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

/// One program of a pipeline stage.
struct StageProgram {
  std::string name; ///< its function: forward_chunk0, stage1_update, ...
  int64_t stage = 0;
  int64_t chunk = -1; ///< the model chunk; -1 for the update and norm
  std::string bytes;  ///< the .vmb
};

/// A recipe with pipeline stages (parallel.pp > 1), compiled: every
/// stage's programs and the schedule that runs them
/// (runtime/train/Pipeline.h).
struct PipelinePrograms {
  std::string schedule; ///< 1f1b, interleaved or zb-h1
  int64_t stages = 1, microBatches = 1, chunksPerStage = 1;
  std::vector<StageProgram> programs;
  /// Per stage, its actions in order: "F m c" (forward micro-batch m
  /// through chunk c), "B m c", "BI m c", "BW m c" (whole backward, or its
  /// input and weight halves), "SA m c p" / "RA m c p" (send or receive
  /// chunk c's activations to or from stage p), "SG m c p" / "RG m c p"
  /// (the cotangents).
  std::vector<std::vector<std::string>> actions;
  /// Parameters read on several stages, whose gradients those sum.
  std::vector<std::string> tiedParams;
  std::string summary; ///< one line about the programs
};

/// Adds the passes that turn a forward function into a pipeline's
/// programs, shardings propagated: veomni-apply-recipe for the mesh (pp
/// included), veomni-pipeline, veomni-stage-update and each stage's
/// veomni-optimizer. What `veomni plan` reports on and compilePipeline
/// partitions.
void addPipelinePasses(OpPassManager &pm, const CompileOptions &options);

/// Compiles a training step with pipeline stages: the forward split into
/// chunks (veomni-pipeline), each chunk's forward and backward, and each
/// stage's update and gradient-norm share (veomni-stage-update,
/// veomni-optimizer), partitioned for the rest of the mesh and serialized
/// one program per function. The programs' mesh leaves out pp: a stage's
/// ranks run them as a world of their own.
FailureOr<PipelinePrograms>
compilePipeline(ModuleOp module,
                const std::map<std::string, std::string> &placements,
                const CompileOptions &options);

/// compileModule for an imported model, with its family's plan.
FailureOr<std::string> compileToProgram(ImportedModel &model,
                                        CompileReport &report,
                                        const CompileOptions &options = {});

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_COMPILE_H
