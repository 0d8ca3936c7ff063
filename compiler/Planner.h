//===- Planner.h - what a plan costs, and the search for the best --*- C++
//-*-===//
//
// The figures `veomni plan` reports for one plan (per-rank memory from the
// shardings and the memory plan, the traffic of the partitioned program,
// the FLOPs), the time model that turns them into a step time, and the
// search over plans (`veomni plan --search`, docs/parallel.md): every mesh
// of the world size, micro-batch size, recomputation policy and pipeline
// schedule that the model's sizes allow, pruned by closed-form estimates,
// the best of them measured exactly and ranked by step time.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_COMPILER_PLANNER_H
#define VEOMNI_COMPILER_PLANNER_H

#include "compiler/Compile.h"
#include "compiler/Recipe.h"
#include "passes/Communication.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include "absl/status/statusor.h"

#include <string>
#include <vector>

namespace mlir::veomni {

/// The mesh's axes and sizes, major to minor, as ranks are numbered
/// (row-major over dp_replicate, dp_shard, tp, sp, ep, pp).
std::vector<std::pair<std::string, int64_t>>
meshAxesOf(const ParallelSection &p);

/// The cluster section's links, each mesh axis placed in a node or across
/// nodes by where it falls in the rank numbering (sharding::placeAxes).
sharding::LinkModel linkModelOf(const Recipe &r);

/// FLOP/s one device sustains for the model's dtype: peak x MFU.
double sustainedFlops(const Recipe &r);

/// What one rank holds and does in one run of a training step's program
/// (one micro-batch). Bytes per rank.
struct StepFigures {
  double params = 0, grads = 0, optimizer = 0, activations = 0;
  double frozenBytes = 0, frozenCount = 0;   ///< train.freeze's
  double adapterBytes = 0, adapterCount = 0; ///< train.lora's
  /// The collectives of the fused per-rank program; the FLOPs of the step.
  sharding::StepTraffic traffic;
  double total() const { return params + grads + optimizer + activations; }
};

/// The training step a recipe's train section asks for.
CompileOptions trainingOptionsOf(const Recipe &r);

/// The import options a recipe's model and data sections ask for.
ImportOptions importOptionsOf(const Recipe &r);

/// Gives `module` (a training step, addTrainingStepPasses') the recipe's
/// mesh (pp = 1), propagates, analyses, partitions, fuses, lowers and
/// plans its memory. `onPartitioned` sees the partitioned program before
/// fusion (plan -o). Failures are MLIR diagnostics.
FailureOr<StepFigures>
measureStep(ModuleOp module, const Recipe &r, const sharding::LinkModel &link,
            llvm::function_ref<LogicalResult(ModuleOp)> onPartitioned = {});

/// One program run's time under the recipe's cluster: compute at the
/// sustained rate, and the communication that does not hide. FSDP's
/// gathers and reduce-scatters (groups over dp axes) run beside compute,
/// as the runtime's prefetch schedules them, and hide behind up to
/// cluster.overlap of it; tensor, sequence and expert parallelism's
/// collectives sit on the critical path.
struct StepTime {
  double compute = 0, hidden = 0, exposed = 0;
  double total() const { return compute + exposed; }
};
StepTime timeOf(const sharding::StepTraffic &traffic, const Recipe &r);

/// Per stage of a pipeline, what each of its ranks holds and sends in an
/// optimizer step. Bytes per rank.
struct StageFigures {
  double params = 0, optimizer = 0;
  /// A micro-batch chunk's kept stage inputs; the largest program's plan.
  double kept = 0, activations = 0;
  double bytes = 0, seconds = 0, flops = 0;
  int64_t held = 0; ///< micro-batch chunks in flight at the peak
  /// The kept inputs of the chunks in flight plus the largest chunk's plan.
  double peakActivations(int64_t chunks) const {
    return activations + kept * held / std::max<int64_t>(chunks, 1);
  }
  /// Parameters, their gradients (as large), optimizer state, activations.
  double total(int64_t chunks) const {
    return 2 * params + optimizer + peakActivations(chunks);
  }
};

struct PipelineFigures {
  std::vector<StageFigures> stages;
  std::vector<int64_t> firstLayers; ///< where each chunk starts
  double bubble = 0;                ///< of the simulated schedule
  /// The slowest stage's compute and communication over the busy fraction
  /// of the schedule.
  double stepSeconds(const Recipe &r) const;
};

/// Splits `module` (an imported forward) into the recipe's stages
/// (veomni-pipeline), propagates and partitions every chunk's forward and
/// backward, and measures each stage, as the runtime runs them (pp > 1).
/// Failures are MLIR diagnostics.
FailureOr<PipelineFigures> measurePipeline(ModuleOp module, const Recipe &r);

/// One plan of the search.
struct Candidate {
  Recipe recipe; ///< ready to train: mesh, batch, remat, schedule
  /// Closed-form estimates (pruning).
  double estimatedSeconds = 0, estimatedBytes = 0;
  /// Measured: per-rank figures of one program run, extrapolated over the
  /// decoder's depth from two shallow builds of the same plan; a pipeline
  /// from its stage's program (`stageModel`).
  bool measured = false, stageModel = false;
  StepFigures figures;
  double stepSeconds = 0; ///< an optimizer step (every micro-batch)
  double bytes = 0;       ///< per device
  double bubble = 0;      ///< of the pipeline schedule
  double tokensPerSecond = 0, mfu = 0; ///< per device
  std::string dominant;                ///< the communication that takes longest
  bool fits = false;
  /// "dp_shard=16 ep=8", "... pp=4 (1f1b x 2)".
  std::string meshText() const;
};

struct SearchOptions {
  int top = 5;
  /// Plans measured exactly at most, best estimates first.
  int measure = 48;
  /// Wall-clock seconds the exact measurements may take.
  double budgetSeconds = 8;
  /// Pipeline stages at most (0: any).
  int64_t maxPipelineStages = 0;
};

struct SearchResult {
  std::string modelType;
  double parameters = 0;
  int64_t meshes = 0; ///< factorizations of the world size
  int64_t plans = 0;  ///< with batch, remat and schedule, that divide
  int64_t estimatedFit = 0;
  int64_t measured = 0;
  double seconds = 0;
  /// Every measured plan, fitting ones first, then by step time.
  std::vector<Candidate> ranked;
  /// The recipe's own plan, measured (when its mesh is valid).
  std::optional<Candidate> given;
  int givenRank = 0; ///< its place in `ranked`, 1-based
};

/// The search (see the file comment); the recipe gives the model, the
/// global batch, the world size (parallel.world_size or its mesh) and the
/// cluster. An error names the recipe field.
absl::StatusOr<SearchResult> searchPlans(MLIRContext &context, const Recipe &r,
                                         const SearchOptions &options);

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_PLANNER_H
