//===- Trainer.h - run training steps and checkpoints -----------*- C++ -*-===//
//
// A training program (veomni-optimizer) takes the step number and returns
// the loss, gradient norm and learning rate plus the next value of every
// parameter and optimizer state; the Trainer writes those back after each
// step. Checkpoints are Hugging Face model folders with the optimizer state
// in a file of its own, the step and the data position in its metadata, and
// a hash of all tensor bytes that loading verifies. Everything is
// deterministic on the CPU backend: N steps, save, load, N steps equals 2N
// steps, bit for bit.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_TRAINER_H
#define VEOMNI_RUNTIME_TRAIN_TRAINER_H

#include "runtime/executor/Executor.h"

#include "absl/status/statusor.h"

#include <map>
#include <string>

namespace veomni::rt {

struct StepMetrics {
  double loss = 0, gradNorm = 0, lr = 0;
};

/// Optimizer moments to zero, f32 masters to copies of their parameters,
/// for every state argument of `executor`'s program (a training step or a
/// pipeline stage's update). Call after the parameters are filled.
absl::Status InitOptimizerState(Executor &executor);

class Trainer {
public:
  /// Fails unless `executor` runs a training program (a `step` input, the
  /// loss / grad_norm / lr outputs, and updates).
  static absl::StatusOr<Trainer> Create(Executor &executor);

  /// Optimizer moments to zero, f32 masters to copies of their parameters.
  /// Call after the parameters are filled.
  absl::Status InitState();
  /// Runs step `step` (1-based) on the batch already in the inputs and
  /// applies the updates. With gradient accumulation, call it once per
  /// micro-batch with `last` true on the final one: only that one moves the
  /// parameters (the others add into the accumulators).
  absl::StatusOr<StepMetrics> Step(int64_t step, bool last = true);
  /// StepRunner::Probe: the step's kernels run again on the batch in the
  /// inputs, with nothing applied; gradient accumulators restart.
  absl::StatusOr<std::string> Probe();
  /// Whether the program accumulates gradients over micro-batches.
  bool Accumulates() const { return hasApply_; }

  struct CheckpointOptions {
    std::string config; ///< the model's config.json, copied in; "" for none
    uint64_t maxShardBytes = 5000000000ull;
    /// A LoRA run's adapter_config.json text ("" for none).
    std::string adapterConfig;
  };
  /// Writes the folder `dir` (checkpoint-N/) atomically: config.json, the
  /// parameters as Hugging Face weights (model.safetensors, or shards and
  /// an index above options.maxShardBytes; experts per expert), and
  /// optimizer.safetensors with the optimizer state, the step, a hash of
  /// every tensor, and `metadata`. transformers' from_pretrained loads the
  /// folder as it is. On a partitioned program every tensor is whole (the
  /// ranks' slices gathered, rank 0 writing): the checkpoint does not
  /// depend on the plan. Every rank calls it; it returns on each once the
  /// folder is in place, or with the error.
  absl::Status Save(const std::string &dir, int64_t step,
                    const std::map<std::string, std::string> &metadata,
                    const CheckpointOptions &options) const;
  /// Restores parameters and state from a folder Save wrote; returns the
  /// step saved and fills `metadata`. Every name, type and shape and the
  /// hash are checked before anything is copied. Each rank reads the whole
  /// tensors and keeps its slices, so a checkpoint of any plan (or of one
  /// rank) resumes under any other.
  absl::StatusOr<int64_t> Load(const std::string &dir,
                               std::map<std::string, std::string> &metadata);

private:
  explicit Trainer(Executor &executor) : executor_(&executor) {}
  /// Save's work on this rank: its part of the gathers, and the files on
  /// rank 0.
  absl::Status Write(const std::string &dir, int64_t step,
                     const std::map<std::string, std::string> &metadata,
                     const CheckpointOptions &options) const;
  /// Load's work on this rank.
  absl::StatusOr<int64_t> Read(const std::string &dir,
                               std::map<std::string, std::string> &metadata);
  Executor *executor_;
  uint32_t stepBuffer_ = 0, applyBuffer_ = 0;
  bool hasApply_ = false;
  int lossOut_ = -1, normOut_ = -1, lrOut_ = -1;
};

/// Whether a checkpoint holds argument `a`: parameters and optimizer state
/// (moments, masters), less, in a LoRA run's checkpoint (`lora`), the
/// frozen base weights it never changes.
bool InCheckpoint(const ArgumentDesc &a, bool lora);

/// Whether the checkpoint folder `dir` is a LoRA run's (adapters).
bool IsLoraCheckpoint(const std::string &dir);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_TRAINER_H
