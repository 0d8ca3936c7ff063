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

#include "absl/status/status.h"

#include <cstdio>

namespace veomni::rt {

/// Trains `executor`'s program (a training step) as `job` says, printing
/// progress to `out` on rank 0. Errors name the step, file or setting.
absl::Status RunTraining(Executor &executor, const JobSettings &job,
                         std::FILE *out);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_LOOP_H
