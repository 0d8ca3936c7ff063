//===- veomni-run.cpp - train from a compiled job, runtime only -----------===//
//
//   veomni-run JOB/ [--data.path P] [--train.output_dir D] ...
//   mpirun -np N veomni-run JOB/
//
// Trains from the folder `veomni compile RECIPE.yaml -o JOB/` wrote: its
// program, manifest and config (runtime/train/Job.h). It links the runtime
// alone (no LLVM or MLIR), so a cluster needs only this executable and the
// files. Not started by mpirun or srun, it starts the job's ranks itself.
//
//===----------------------------------------------------------------------===//

#include "runtime/program/Program.h"
#include "runtime/train/Job.h"
#include "runtime/train/Launch.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace rt = ::veomni::rt;

namespace {

constexpr const char *kHelp =
    R"(usage: veomni-run JOB/ [--section.key VALUE ...]

Trains from a job folder that `veomni compile RECIPE.yaml -o JOB/` wrote
(manifest.json, step.vmb, config.json), with the runtime alone. A job of N
ranks runs under `mpirun -np N veomni-run JOB/` or srun; started on its own,
it starts the ranks through mpirun. Progress, metrics.jsonl, checkpoints and
loss_curve.svg go to the output folder, as with veomni train.

A run may change where things are and how often it reports:
  --model.weights PATH           initial weights (safetensors or a folder)
  --data.path PATH[,PATH...]     .jsonl, .txt, .vtd sources, or one
                                 .safetensors batch file
  --data.weights W[,W...]        the sources' mixing weights
  --data.tokenizer FILE          tokenizer.json or SentencePiece .model
  --data.chat FORMAT             how conversations are rendered: auto,
                                 chatml, llama3, gemma, deepseek or harmony
  --data.chat_date DATE          harmony's date, YYYY-MM-DD (default:
                                 today, UTC)
  --data.eos auto|none|TOKEN     end-of-text token after text samples
  --data.on_bad_sample stop|skip what a bad sample does
  --train.output_dir DIR         progress, checkpoints
  --train.resume PATH|auto       a checkpoint to continue from
  --train.log_interval N         steps between progress lines
  --train.checkpoint_interval N  steps between checkpoints (0: at the end)
  --train.max_shard_bytes N      checkpoint shard size
  --train.profile FILE.json      a Chrome trace of the second step's kernels
What the program was compiled for (mesh, batch, steps) needs a new compile.
)";

int fail(const std::string &message) {
  std::fprintf(stderr, "veomni-run: error: %s\n", message.c_str());
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string dir;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (a.rfind("--", 0) == 0) {
      if (i + 1 >= args.size())
        return fail(a + " needs a value");
      overrides.push_back({a.substr(2), args[++i]});
    } else if (dir.empty()) {
      dir = a;
    } else {
      return fail("more than one job folder given: '" + dir + "' and '" + a +
                  "'");
    }
  }
  if (dir.empty())
    return fail("no job folder given (see veomni-run --help)");

  absl::StatusOr<rt::JobSettings> job = rt::ReadJob(dir);
  if (!job.ok())
    return fail(std::string(job.status().message()));
  if (absl::Status s = rt::OverrideJob(*job, overrides); !s.ok())
    return fail(std::string(s.message()));

  // A job of several ranks, not started by a launcher: start them.
  if (job->worldSize > 1 && !rt::LaunchedAsRank()) {
    std::vector<std::string> argvOut = {rt::SelfExecutable()};
    argvOut.insert(argvOut.end(), args.begin(), args.end());
    absl::StatusOr<int> code = rt::LaunchRanks(job->worldSize, argvOut);
    if (!code.ok())
      return fail(std::string(code.status().message()));
    return *code;
  }
  absl::StatusOr<std::unique_ptr<rt::Communicator>> comm = rt::JoinJob();
  if (!comm.ok())
    return fail(std::string(comm.status().message()));
  // Every rank reads the same files: one says what is wrong with them.
  const bool reporter = !*comm || (*comm)->Rank() == 0;
  auto failOnce = [&](const absl::Status &s) {
    return reporter ? fail(std::string(s.message())) : 1;
  };
  if (job->pipeline.stages > 1) {
    absl::StatusOr<rt::PipelineSpec> spec = rt::LoadPipeline(dir, *job);
    if (!spec.ok())
      return failOnce(spec.status());
    return rt::TrainOnThisRank(*std::move(spec), *job, comm->get(),
                               "veomni-run");
  }
  absl::StatusOr<rt::Program> program =
      rt::LoadProgram(dir + "/" + rt::kJobProgram);
  if (!program.ok())
    return failOnce(program.status());
  std::optional<rt::Program> eval;
  if (!job->evalProgram.empty()) {
    absl::StatusOr<rt::Program> e =
        rt::LoadProgram(dir + "/" + job->evalProgram);
    if (!e.ok())
      return failOnce(e.status());
    eval = *std::move(e);
  }
  return rt::TrainOnThisRank(*std::move(program), *job, comm->get(),
                             "veomni-run", std::move(eval));
}
