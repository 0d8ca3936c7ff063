//===- Communication.h - what one rank sends and computes in a step -*- C++
//-*-===//
//
// The figures of `veomni plan --report`: per mesh axis (or group of axes)
// and collective, the bytes one rank sends in a training step and their
// time under the alpha-beta LinkModel; and the FLOPs it computes. Read off
// the propagated step, walking its ops exactly as veomni-partition does
// (the same resolution, the same reshards, all-reduces sunk through sums
// the same way), so the figures are those of the partitioned program; the
// collectives a partitioned program holds can be counted too, to check
// that. Expert parallelism adds what its grouped matmuls exchange inside
// (their group sizes, all-gathered; their rows to the experts' ranks and
// the products back, an all-to-all each way).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_PASSES_COMMUNICATION_H
#define VEOMNI_PASSES_COMMUNICATION_H

#include "passes/Sharding.h"

#include <map>
#include <string>
#include <vector>

namespace mlir::func {
class FuncOp;
} // namespace mlir::func

namespace mlir::veomni::sharding {

struct Traffic {
  double bytes = 0;   ///< sent by one rank
  double seconds = 0; ///< alpha-beta time
  int64_t count = 0;
};

struct StepTraffic {
  /// group ("tp", "dp_shard+ep") -> collective ("all_gather") -> traffic
  std::map<std::string, std::map<std::string, Traffic>> byGroup;
  double flops = 0; ///< matmul, attention and convolution FLOPs of one rank

  void add(llvm::ArrayRef<StringAttr> axes, StringRef kind, double bytes,
           double seconds);
  double totalBytes() const;
  double totalSeconds() const;
};

/// FLOPs of `op` on its (global) types: matmuls, grouped matmuls,
/// attention and convolutions and their gradients; 0 for the rest.
double opFlops(Operation *op);

/// One rank's traffic and FLOPs in the step `func`, annotated by
/// veomni-propagate-sharding (global shapes).
FailureOr<StepTraffic> analyzeStep(func::FuncOp func, const Mesh &mesh,
                                   const LinkModel &link);

/// One pipeline stage's traffic and FLOPs per rank and step.
struct StageTraffic {
  double bytes = 0, seconds = 0, flops = 0;
};

/// Per stage, what one rank sends in a step of the pipelined training step
/// `module` (veomni-pipeline, veomni-stage-update and veomni-optimizer,
/// propagated): every chunk function `microBatches` times, the stage's
/// update and norm once, the tied parameters' f32 gradients all-reduced
/// over the stages that hold them, and the step's loss and squared norm
/// (two f32) all-reduced over the stages. This is what the runtime's
/// communicator counts (runtime/train/Pipeline.cpp).
FailureOr<std::vector<StageTraffic>>
analyzePipeline(ModuleOp module, int64_t microBatches, const LinkModel &link);

/// The traffic of the collectives in a partitioned `func` (local shapes),
/// and of the ops that communicate inside (vocab-parallel cross entropy).
StepTraffic countCollectives(func::FuncOp func, const Mesh &mesh,
                             const LinkModel &link);

} // namespace mlir::veomni::sharding

#endif // VEOMNI_PASSES_COMMUNICATION_H
