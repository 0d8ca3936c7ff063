//===- Launch.h - starting the ranks of a job -------------------*- C++ -*-===//
//
// A job of N ranks is N processes that mpirun (or srun) starts; each learns
// its rank and the world size from the launcher's environment. `veomni
// train --nproc N` and `veomni-run job/` start them themselves through
// mpirun when they are not already one of them.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_LAUNCH_H
#define VEOMNI_RUNTIME_TRAIN_LAUNCH_H

#include "runtime/device/Communicator.h"
#include "runtime/program/Program.h"
#include "runtime/train/Job.h"

#include "runtime/train/Pipeline.h"

#include "absl/status/statusor.h"

#include <memory>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

/// Whether this process is one rank of a job a launcher started (Open
/// MPI's mpirun, MPICH's or PMIx's, or srun with several tasks).
bool LaunchedAsRank();

/// This process's rank as the launcher's environment gives it (0 when none
/// does): for deciding who reports before the communicator exists.
int LauncherRank();

/// This executable's path (/proc/self/exe).
std::string SelfExecutable();

/// Runs `ranks` copies of `argv` (argv[0] the executable) through mpirun
/// on this machine, oversubscribing its cores when there are more ranks
/// than cores, and returns mpirun's exit status: non-zero when any rank
/// failed. An error when mpirun cannot be started.
absl::StatusOr<int> LaunchRanks(int64_t ranks,
                                const std::vector<std::string> &argv);

/// This process's communicator when a launcher started it as one rank of a
/// job (MPI on the CPU); null when it runs alone.
absl::StatusOr<std::unique_ptr<Communicator>> JoinJob();

/// Trains `program` as `job` says on this process: one rank of `comm`'s
/// job, or alone when `comm` is null; `eval` (the job's evalProgram) takes
/// the held-out losses. On failure prints `tool: error: rank R: ...` and
/// ends every rank of the job; returns the exit status.
int TrainOnThisRank(Program program, const JobSettings &job, Communicator *comm,
                    const char *tool, std::optional<Program> eval = {});
/// The same for this rank's stage of a pipeline (`comm` spans the job).
int TrainOnThisRank(PipelineSpec spec, const JobSettings &job,
                    Communicator *comm, const char *tool);
/// The pipeline job.pipeline lists, its programs loaded from `dir`.
absl::StatusOr<PipelineSpec> LoadPipeline(const std::string &dir,
                                          const JobSettings &job);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_LAUNCH_H
