//===- Launch.cpp - starting the ranks of a job ---------------------------===//

#include "runtime/train/Launch.h"

#include "runtime/comm/mpi/MpiCommunicator.h"
#include "runtime/device/Device.h"
#include "runtime/executor/Executor.h"
#include "runtime/train/Loop.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace veomni::rt {

bool LaunchedAsRank() {
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name))
      return true;
  const char *tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  return tasks && std::atoi(tasks) > 1 && std::getenv("SLURM_PROCID");
}

int LauncherRank() {
  for (const char *name :
       {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char *v = std::getenv(name))
      return std::atoi(v);
  return 0;
}

std::string SelfExecutable() {
  std::string path(4096, '\0');
  ssize_t n = readlink("/proc/self/exe", path.data(), path.size() - 1);
  path.resize(n > 0 ? n : 0);
  return path;
}

absl::StatusOr<int> LaunchRanks(int64_t ranks,
                                const std::vector<std::string> &argv) {
  std::vector<std::string> args = {"mpirun"};
  if (geteuid() == 0)
    args.push_back("--allow-run-as-root");
  // More ranks than cores is fine for tests and small runs; no pinning, so
  // oversubscribed ranks share the cores.
  for (const char *a : {"--oversubscribe", "--bind-to", "none"})
    args.push_back(a);
  // The ranks share this machine's cores: unless told otherwise, each
  // rank's BLAS and OpenMP threads get an equal part of them (as torchrun
  // does), rather than every rank spinning a thread per core.
  const int64_t threads =
      std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()) /
                               std::max<int64_t>(ranks, 1));
  for (const char *var : {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"})
    if (!std::getenv(var)) {
      args.push_back("-x");
      args.push_back(std::string(var) + "=" + std::to_string(threads));
    }
  args.push_back("-np");
  args.push_back(std::to_string(ranks));
  args.insert(args.end(), argv.begin(), argv.end());
  std::vector<char *> raw;
  for (std::string &a : args)
    raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid;
  if (int e =
          posix_spawnp(&pid, "mpirun", nullptr, nullptr, raw.data(), environ))
    return absl::NotFoundError(absl::StrCat(
        "cannot start mpirun (", std::strerror(e), "): starting ", ranks,
        " ranks needs Open MPI's mpirun on the PATH (Debian: "
        "openmpi-bin)"));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return absl::InternalError(
          absl::StrCat("waiting for mpirun: ", std::strerror(errno)));
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

absl::StatusOr<std::unique_ptr<Communicator>> JoinJob() {
  if (!LaunchedAsRank())
    return nullptr;
  absl::StatusOr<std::unique_ptr<mpi::MpiCommunicator>> comm =
      mpi::MpiCommunicator::Create();
  if (!comm.ok())
    return comm.status();
  return std::unique_ptr<Communicator>(std::move(*comm));
}

int TrainOnThisRank(Program program, const JobSettings &job, Communicator *comm,
                    const char *tool, std::optional<Program> eval) {
  const int world = comm ? comm->WorldSize() : 1;
  const int rank = comm ? comm->Rank() : 0;
  auto fail = [&](const absl::Status &s) {
    if (world > 1) {
      std::fprintf(stderr, "%s: error: rank %d: %s\n", tool, rank,
                   std::string(s.message()).c_str());
      comm->Abort(1);
    }
    std::fprintf(stderr, "%s: error: %s\n", tool,
                 std::string(s.message()).c_str());
    return 1;
  };
  if (program.worldSize != uint32_t(world)) {
    // Every rank sees it; one says it.
    if (rank == 0)
      std::fprintf(stderr,
                   "%s: error: the program is partitioned for %u ranks and "
                   "the job has %d: run it with mpirun -np %u\n",
                   tool, program.worldSize, world, program.worldSize);
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Device>> device =
      CreateDevice(job.device.empty() ? "cpu" : job.device);
  if (!device.ok())
    return fail(device.status());
  absl::StatusOr<std::unique_ptr<Executor>> ex =
      Executor::Create(std::move(program), *std::move(device), comm);
  if (!ex.ok())
    return fail(ex.status());
  std::unique_ptr<Executor> evaluator;
  if (eval) {
    absl::StatusOr<std::unique_ptr<Device>> evalDevice =
        CreateDevice(job.device.empty() ? "cpu" : job.device);
    if (!evalDevice.ok())
      return fail(evalDevice.status());
    absl::StatusOr<std::unique_ptr<Executor>> e =
        Executor::Create(*std::move(eval), *std::move(evalDevice), comm);
    if (!e.ok())
      return fail(e.status());
    evaluator = *std::move(e);
  }
  if (absl::Status s = RunTraining(**ex, job, stdout, evaluator.get()); !s.ok())
    return fail(s);
  return 0;
}

int TrainOnThisRank(PipelineSpec spec, const JobSettings &job,
                    Communicator *comm, const char *tool) {
  const int world = comm ? comm->WorldSize() : 1;
  const int rank = comm ? comm->Rank() : 0;
  if (world != job.worldSize || !comm) {
    if (rank == 0)
      std::fprintf(stderr,
                   "%s: error: the pipeline is compiled for %lld ranks and "
                   "the job has %d: run it with mpirun -np %lld\n",
                   tool, static_cast<long long>(job.worldSize), world,
                   static_cast<long long>(job.worldSize));
    return 1;
  }
  if (!job.device.empty() && job.device != "cpu") {
    if (rank == 0)
      std::fprintf(stderr,
                   "%s: error: train.device %s: pipeline stages run on the "
                   "cpu backend only (the CUDA backend has no communicator "
                   "yet)\n",
                   tool, job.device.c_str());
    return 1;
  }
  auto fail = [&](const absl::Status &s) {
    std::fprintf(stderr, "%s: error: rank %d: %s\n", tool, rank,
                 std::string(s.message()).c_str());
    comm->Abort(1);
    return 1;
  };
  absl::StatusOr<std::unique_ptr<PipelineTrainer>> trainer =
      PipelineTrainer::Create(std::move(spec), *comm);
  if (!trainer.ok())
    return fail(trainer.status());
  std::unique_ptr<StepRunner> runner = StepRunnerFor(**trainer, *comm);
  if (absl::Status s = RunTraining(*runner, job, stdout); !s.ok())
    return fail(s);
  return 0;
}

absl::StatusOr<PipelineSpec> LoadPipeline(const std::string &dir,
                                          const JobSettings &job) {
  PipelineSpec spec;
  spec.schedule = job.pipeline.schedule;
  spec.stages = job.pipeline.stages;
  spec.microBatches = job.pipeline.microBatches;
  spec.actions = job.pipeline.actions;
  spec.tiedParams = job.pipeline.tiedParams;
  for (const JobSettings::StageFile &f : job.pipeline.programs) {
    absl::StatusOr<Program> p = LoadProgram(dir + "/" + f.file);
    if (!p.ok())
      return p.status();
    spec.parts.push_back({f.name, f.stage, f.chunk, *std::move(p)});
  }
  return spec;
}

} // namespace veomni::rt
