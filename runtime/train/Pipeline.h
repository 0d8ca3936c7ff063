//===- Pipeline.h - run a pipeline's schedule -------------------*- C++ -*-===//
//
// With pipeline stages (parallel.pp > 1) the compiler writes, per stage,
// one program per chunk and part of the step (compiler/Compile.h,
// compilePipeline): each chunk's forward, its backward (or, for ZB-H1, the
// input and weight halves), the stage's share of the squared gradient norm
// and its AdamW update. This runner is what a rank of stage s does with
// them each step, as the schedule's action list for s says:
//
//  - F m c: chunk c's forward of micro-batch m, on the activations chunk
//    c - 1 sent (kept until the backward); the last chunk gives the loss;
//  - B / BI / BW m c: the backward (recomputing the chunk's forward from
//    the kept activations), its gradients summed into the stage's
//    accumulators in f32;
//  - SA / SG: activations or cotangents sent to the next or previous stage
//    without waiting for the receiver; RA / RG: received, blocking.
//
// After the last action: tied parameters' gradients summed over the
// stages that read them, the squared norm summed over all stages, then
// each stage's update, whose new parameters every chunk program of the
// stage takes. The stage's ranks are a world of their own to its programs
// (their mesh leaves out pp); pp is the mesh's last axis, so stage s is
// ranks s, s + pp, s + 2 pp, ...
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_PIPELINE_H
#define VEOMNI_RUNTIME_TRAIN_PIPELINE_H

#include "runtime/executor/Executor.h"
#include "runtime/train/Trainer.h"

#include "absl/status/statusor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace veomni::rt {

/// What compilePipeline wrote, loaded.
struct PipelineSpec {
  std::string schedule; ///< 1f1b, interleaved or zb-h1
  int64_t stages = 2, microBatches = 1;
  struct Part {
    std::string name; ///< forward_chunk0, stage0_update, ...
    int64_t stage = 0, chunk = -1;
    Program program;
  };
  /// Every stage's programs (a rank runs its own stage's; the others give
  /// the batch's inputs).
  std::vector<Part> parts;
  /// Per stage: "F m c", "SA m c peer", ... (compiler/Compile.h).
  std::vector<std::vector<std::string>> actions;
  std::vector<std::string> tiedParams;
};

class PipelineTrainer {
public:
  /// This rank's stage of `spec`, on `world` (pp x the programs' world
  /// ranks). Errors name the program or action that does not fit.
  static absl::StatusOr<std::unique_ptr<PipelineTrainer>>
  Create(PipelineSpec spec, Communicator &world);
  ~PipelineTrainer();

  int Stage() const { return stage_; }
  /// The stage's update program: its parameters and optimizer state.
  Executor &Update() { return *update_; }
  /// One micro-batch's inputs, whole (every rank fills the same), for the
  /// loop's data (SyntheticBatch, FillTextBatch, FillInputs).
  Executor &Inputs() { return *inputs_; }
  /// Keeps what Inputs() holds as the step's next micro-batch.
  absl::Status AddMicroBatch();
  /// Runs the schedule over the micro-batches added since the last step
  /// (exactly microBatches of them) and the update; every rank gets the
  /// loss (the micro-batches' mean), the norm and the learning rate.
  absl::StatusOr<StepMetrics> Step(int64_t step);
  /// After a step that was not finite: the first parameter, in this
  /// stage's order, whose summed gradient is not finite, or "another
  /// pipeline stage" when this stage's are finite.
  absl::StatusOr<std::string> Probe();

  /// Seeded parameters as one rank would have them (InitParameters).
  absl::Status InitParameters(uint64_t seed);
  /// Hugging Face weights (LoadWeights); LoRA adapters they lack are
  /// seeded by `seed`.
  absl::Status LoadWeights(const std::string &path, uint64_t seed = 0);
  /// LoRA adapters saved in PEFT's layout (LoadAdapters).
  absl::Status LoadAdapters(const std::string &path);
  /// Moments to zero, masters to their parameters (Trainer::InitState).
  absl::Status InitState();
  /// A checkpoint of the whole model, as one rank writes it: each stage's
  /// tensors gathered, sent to rank 0, which writes the folder.
  absl::Status Save(const std::string &dir, int64_t step,
                    const std::map<std::string, std::string> &metadata,
                    const Trainer::CheckpointOptions &options);
  /// Restores this stage's parameters and state from any checkpoint of the
  /// model, whatever plan wrote it.
  absl::StatusOr<int64_t> Load(const std::string &dir,
                               std::map<std::string, std::string> &metadata);

  /// `mine`, or the error of the lowest failing rank of the whole job.
  absl::Status SyncStatus(absl::Status mine);

  /// Records the kernels of this stage's programs in `trace` (null stops).
  void SetTrace(KernelTrace *trace);
  /// This stage's programs and their names (forward_chunk0, ...).
  std::vector<std::pair<const Program *, std::string>> ProgramNames() const;

private:
  PipelineTrainer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int stage_ = 0;
  Executor *update_ = nullptr;
  std::unique_ptr<Executor> inputs_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_PIPELINE_H
