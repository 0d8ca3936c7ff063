//===- PipelineSchedule.h - pipeline schedules as action lists --*- C++ -*-===//
//
// A pipeline schedule is, per stage, the ordered list of what that stage
// does: forward a micro-batch through one of its model chunks, the backward
// for the input (B) and for the weights (W) split apart or as one, and the
// sends and receives of activations and their cotangents between stages.
// Schedules here: 1F1B (PipeDream-flush, Megatron), interleaved 1F1B
// (Megatron's virtual stages) and ZB-H1 (1F1B with the weight backward of
// the last micro-batches deferred into the cooldown bubble, Qi et al.,
// "Zero Bubble Pipeline Parallelism"). simulate() runs a schedule with per
// action costs, checks every dependency and every send/receive pairing,
// and measures the bubble and the activations each stage holds.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_PASSES_PIPELINESCHEDULE_H
#define VEOMNI_PASSES_PIPELINESCHEDULE_H

#include "absl/status/statusor.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::veomni::pipeline {

enum class Op {
  Forward,        ///< forward of (micro-batch, chunk)
  Backward,       ///< input and weight cotangents together
  BackwardInput,  ///< the input cotangent only (B)
  BackwardWeight, ///< the weight cotangents only (W)
  SendActivation, ///< to the stage of the next chunk
  RecvActivation, ///< from the stage of the previous chunk
  SendGrad,       ///< the input cotangent, to the previous chunk's stage
  RecvGrad,       ///< the output cotangent, from the next chunk's stage
};

struct Action {
  Op op;
  int microBatch;
  int chunk; ///< global model chunk: stage + local chunk x stages
  int peer;  ///< the other stage of a send or receive, else -1
};

enum class Kind { OneFOneB, Interleaved, ZeroBubbleH1 };

struct Schedule {
  Kind kind;
  int stages, microBatches, chunksPerStage;
  std::vector<std::vector<Action>> perStage;
};

/// Costs in any time unit of one micro-batch through one chunk.
struct Costs {
  double forward = 1, backwardInput = 1, backwardWeight = 1;
};

/// The schedule, or nullopt with the reason in `error` (micro-batches must
/// be >= 1 and, interleaved, a multiple of the stages). ZB-H1 places the
/// weight backwards by `costs`: 1F1B's forwards and input backwards, each
/// W run where the stage would otherwise wait, never holding more
/// activations than 1F1B does (stages - stage).
absl::StatusOr<Schedule> makeSchedule(Kind kind, int stages, int microBatches,
                                      int chunksPerStage,
                                      const Costs &costs = {});

/// When a stage computed an action (forwards and backwards; sends and
/// receives take no time here).
struct Span {
  int stage;
  Op op;
  int microBatch, chunk;
  double start, end;
};

struct Simulation {
  double makespan = 0;
  /// Every forward and backward, in the order the stages ran them.
  std::vector<Span> spans;
  /// Idle time over stages x makespan.
  double bubble = 0;
  /// Most micro-batch chunks whose activations a stage holds at once
  /// (forwarded, weight cotangent not yet taken).
  std::vector<int> peakActivations;
};

/// Runs `s`; nullopt with the reason in `error` on a missing or repeated
/// action, an unmatched send or receive, or a deadlock.
absl::StatusOr<Simulation> simulate(const Schedule &s, const Costs &costs);

std::string toString(const Action &a);

} // namespace mlir::veomni::pipeline

#endif // VEOMNI_PASSES_PIPELINESCHEDULE_H
