//===- Loop.h - the training loop -------------------------------*- C++ -*-===//
//
// What `veomni train` and `veomni-run` run once the program exists:
// parameters from a checkpoint, weights or a seeded init; batches from a
// token dataset, a safetensors file or synthetic data; one optimizer step
// per `accumulationSteps` micro-batches; a progress line per log interval,
// metrics.jsonl, Hugging Face checkpoints and loss_curve.svg in the output
// folder (docs/training.md). On several ranks every rank runs it with the
// same settings: each builds the same global batches and keeps its slice,
// rank 0 alone prints and writes files.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_LOOP_H
#define VEOMNI_RUNTIME_TRAIN_LOOP_H

#include "runtime/executor/Executor.h"
#include "runtime/train/Job.h"
#include "runtime/train/Pipeline.h"
#include "runtime/train/Trainer.h"

#include "absl/status/status.h"

#include <cstdio>
#include <functional>
#include <map>
#include <memory>

namespace veomni::rt {

/// What the loop trains: one training-step program (Trainer), or a
/// pipeline's stages (PipelineTrainer).
class StepRunner {
public:
  virtual ~StepRunner() = default;
  virtual int Rank() const = 0;
  virtual int WorldSize() const = 0;
  /// Seconds in collectives, and of those the ones compute did not hide
  /// (a pipeline stage counts all of them as waited: its receives block,
  /// and its programs' hidden share is not measured yet).
  virtual double CommSeconds() const = 0;
  virtual double CommWaitSeconds() const = 0;
  /// Where a micro-batch's inputs go (whole tensors, as every rank makes
  /// them).
  virtual Executor &Inputs() = 0;
  virtual absl::Status InitParameters(uint64_t seed) = 0;
  /// The weights at `path`; what they lack of a LoRA run's adapters is
  /// seeded by `seed`.
  virtual absl::Status LoadWeights(const std::string &path, uint64_t seed) = 0;
  /// The LoRA adapters saved at `path` (PEFT's layout; LoadAdapters).
  virtual absl::Status LoadAdapters(const std::string &path) = 0;
  virtual absl::Status InitState() = 0;
  /// One optimizer step over `micro` micro-batches, each put into Inputs()
  /// by `fill(i)` first; the loss is their mean.
  virtual absl::StatusOr<StepMetrics>
  Step(int64_t step, int64_t micro,
       const std::function<absl::Status(int64_t)> &fill) = 0;
  virtual absl::Status Save(const std::string &dir, int64_t step,
                            const std::map<std::string, std::string> &metadata,
                            const Trainer::CheckpointOptions &options) = 0;
  virtual absl::StatusOr<int64_t>
  Load(const std::string &dir,
       std::map<std::string, std::string> &metadata) = 0;
  /// After a step whose loss or gradients were not finite (which changed
  /// no weight): where the first value that is not finite appeared, found
  /// by running the last micro-batch again and checking every kernel's
  /// outputs; "" if they stayed finite. Changes no weight. Collective.
  virtual absl::StatusOr<std::string> Probe() = 0;
  /// Records the kernels of the next steps in `trace` (null stops).
  virtual void SetTrace(KernelTrace *trace) = 0;
  /// Copies this rank's parameter slices into `to`'s parameters of the
  /// same names (a forward program partitioned the same way: the
  /// held-out loss's).
  virtual absl::Status CopyParametersTo(Executor &to) const = 0;
  /// The programs this rank runs, by name, for a profile.
  virtual std::vector<std::pair<const Program *, std::string>>
  ProgramNames() const = 0;
};

/// A runner for `executor`'s training step.
absl::StatusOr<std::unique_ptr<StepRunner>> StepRunnerFor(Executor &executor);
/// A runner for a pipeline's stage (`trainer`, not owned).
std::unique_ptr<StepRunner> StepRunnerFor(PipelineTrainer &trainer,
                                          Communicator &world);

/// Trains as `job` says, printing progress to `out` on rank 0. Errors name
/// the step, file or setting. `eval` (the job's forward program, or null)
/// takes the held-out loss on data.eval_path every train.eval_interval
/// steps and at the end.
absl::Status RunTraining(StepRunner &runner, const JobSettings &job,
                         std::FILE *out, Executor *eval = nullptr);
/// RunTraining on `executor`'s training step.
absl::Status RunTraining(Executor &executor, const JobSettings &job,
                         std::FILE *out, Executor *eval = nullptr);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_LOOP_H
