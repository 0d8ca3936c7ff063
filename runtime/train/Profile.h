//===- Profile.h - a step's kernels as a Chrome trace -----------*- C++ -*-===//
//
// `veomni train RECIPE --profile FILE.json` (train.profile) records the
// kernels of one step (the second of the run, the first when it runs one)
// and writes them as a Chrome trace: open it in Perfetto
// (ui.perfetto.dev) or chrome://tracing. Every kernel is one event named
// by its kind, with the model module it came from, its program, its
// operands' shapes and, for matmuls, its FLOPs. It also prints the kernels
// that took the most time, summed over the model's layers.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_PROFILE_H
#define VEOMNI_RUNTIME_TRAIN_PROFILE_H

#include "runtime/executor/Executor.h"

#include "absl/status/status.h"

#include <string>
#include <utility>
#include <vector>

namespace veomni::rt {

using ProgramNames = std::vector<std::pair<const Program *, std::string>>;

/// Floating-point operations of kernel `k` of `p` when it is a matmul (2 M
/// N K, summed over batches and experts), else 0.
double KernelFlops(const Program &p, const KernelDesc &k);

/// Writes `trace` to `path` as Chrome trace JSON (process `rank`; main
/// thread 0, the collectives' thread 1). The file is written whole or not
/// at all.
absl::Status WriteChromeTrace(const KernelTrace &trace,
                              const ProgramNames &names, int rank,
                              const std::string &path);

/// The `top` kernels by time, summed over calls whose kind and module agree
/// once layer numbers are replaced by `*` ("matmul model.layers.*.mlp.
/// down_proj"), with their share of the step; then each kind's total and
/// the matmuls' GFLOP/s.
std::string ProfileSummary(const KernelTrace &trace, size_t top);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_PROFILE_H
