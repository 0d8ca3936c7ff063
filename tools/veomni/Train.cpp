//===- Train.cpp - veomni train recipe.yaml -------------------------------===//
//
// Compile the model's training step (forward, autodiff, AdamW) and run it:
// a progress line per log interval, metrics.jsonl, checkpoints at the
// checkpoint interval and at the end, and loss_curve.svg when done, all in
// the recipe's output directory.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "compiler/Compile.h"
#include "compiler/Recipe.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "runtime/comm/mpi/MpiCommunicator.h"
#include "runtime/io/Init.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/TokenDataset.h"
#include "runtime/io/Weights.h"
#include "runtime/train/Trainer.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

int fail(const llvm::Twine &message) {
  llvm::errs() << "veomni: error: " << message << "\n";
  return 1;
}

/// Whether this process is one rank of a job a launcher started (Open
/// MPI's mpirun, MPICH's or PMIx's, or srun with several tasks).
bool launchedAsRank() {
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name))
      return true;
  const char *tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  return tasks && std::atoi(tasks) > 1 && std::getenv("SLURM_PROCID");
}

/// Starts `ranks` copies of this `veomni train` through mpirun and returns
/// its exit status (non-zero when any rank fails).
int launch(int64_t ranks, llvm::ArrayRef<std::string> trainArgs) {
  llvm::ErrorOr<std::string> mpirun = llvm::sys::findProgramByName("mpirun");
  if (!mpirun)
    return fail("--nproc " + llvm::Twine(ranks) +
                " needs mpirun on the PATH (Debian: openmpi-bin)");
  std::string self =
      llvm::sys::fs::getMainExecutable(nullptr, (void *)&launchedAsRank);
  std::vector<std::string> argv = {*mpirun};
  if (geteuid() == 0)
    argv.push_back("--allow-run-as-root");
  // More ranks than cores is fine for tests and small runs; no pinning, so
  // oversubscribed ranks share the cores.
  for (const char *a : {"--oversubscribe", "--bind-to", "none", "-np"})
    argv.push_back(a);
  argv.push_back(std::to_string(ranks));
  argv.push_back(self);
  argv.push_back("train");
  argv.insert(argv.end(), trainArgs.begin(), trainArgs.end());
  std::vector<llvm::StringRef> refs(argv.begin(), argv.end());
  std::string error;
  int code = llvm::sys::ExecuteAndWait(*mpirun, refs, std::nullopt, {}, 0, 0,
                                       &error);
  if (code < 0)
    return fail("mpirun: " + error);
  return code;
}

std::string checkpointPath(const std::string &dir, int64_t step) {
  return dir + "/checkpoint-" + std::to_string(step);
}

/// The newest complete checkpoint-N/ in `dir`, or "".
std::string latestCheckpoint(const std::string &dir) {
  std::error_code ec;
  int64_t best = -1;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec)) {
    llvm::StringRef name = llvm::sys::path::filename(it->path());
    int64_t step;
    if (name.consume_front("checkpoint-") && !name.getAsInteger(10, step) &&
        llvm::sys::fs::exists(it->path() + "/optimizer.safetensors"))
      best = std::max(best, step);
  }
  return best < 0 ? "" : checkpointPath(dir, best);
}

/// loss_curve.svg: the loss against the step, with its range labelled.
void writeLossCurve(const std::string &path,
                    const std::vector<std::pair<int64_t, double>> &points) {
  if (points.size() < 2)
    return;
  double lo = points[0].second, hi = lo;
  for (auto &p : points) {
    lo = std::min(lo, p.second);
    hi = std::max(hi, p.second);
  }
  if (hi - lo < 1e-9)
    hi = lo + 1;
  const double w = 640, h = 360, m = 48;
  int64_t first = points.front().first, last = points.back().first;
  std::ofstream f(path);
  f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='"
    << h << "'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << m
    << "' y='24' font-family='sans-serif' "
       "font-size='14'>training loss</text>\n<polyline fill='none' "
       "stroke='#1f77b4' stroke-width='2' points='";
  for (auto &[step, loss] : points) {
    double x = m + (w - 2 * m) * double(step - first) /
                       double(std::max<int64_t>(last - first, 1));
    double y = h - m - (h - 2 * m) * (loss - lo) / (hi - lo);
    f << x << "," << y << " ";
  }
  f << "'/>\n<line x1='" << m << "' y1='" << h - m << "' x2='" << w - m
    << "' y2='" << h - m << "' stroke='black'/>\n<line x1='" << m << "' y1='"
    << m << "' x2='" << m << "' y2='" << h - m << "' stroke='black'/>\n";
  auto label = [&](double x, double y, const std::string &s) {
    f << "<text x='" << x << "' y='" << y
      << "' font-family='sans-serif' font-size='12'>" << s << "</text>\n";
  };
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", hi);
  label(4, m + 4, buf);
  std::snprintf(buf, sizeof(buf), "%.3f", lo);
  label(4, h - m, buf);
  label(m, h - m + 20, "step " + std::to_string(first));
  label(w - m - 60, h - m + 20, "step " + std::to_string(last));
  f << "</svg>\n";
}

} // namespace

int runTrain(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs()
        << "usage: veomni train RECIPE.yaml [--nproc N] [--section.key VALUE "
           "...]\n\n"
           "Compiles the training step of the recipe's model and runs it: a\n"
           "progress line per log interval, metrics.jsonl, Hugging Face\n"
           "checkpoints (checkpoint-N/) and loss_curve.svg in the output\n"
           "directory (docs/training.md). Any setting can be overridden on\n"
           "the command line with its dotted name (--train.lr 3e-4).\n\n"
           "--nproc N (or a parallel section whose mesh has N ranks) starts\n"
           "N ranks through mpirun; dp_shard takes the ranks when the recipe\n"
           "names no mesh. Started by mpirun or srun itself, it takes rank\n"
           "and size from the launcher. Every plan trains on the same global\n"
           "batches and writes the same plan-independent checkpoints.\n\n"
           "settings:\n"
        << Recipe::settingsHelp();
    return 0;
  }
  // --nproc N: this command on N ranks, through mpirun.
  std::vector<std::string> rest;
  int64_t nproc = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef a = args[i];
    if (a != "--nproc") {
      rest.push_back(a.str());
      continue;
    }
    if (i + 1 >= args.size() || llvm::StringRef(args[i + 1]).getAsInteger(10, nproc) ||
        nproc < 1)
      return fail("--nproc needs a positive number of ranks");
    ++i;
  }
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(rest, {});
  if (!recipe.ok())
    return fail(std::string(recipe.status().message()));
  Recipe &r = *recipe;
  const bool asRank = launchedAsRank();
  if (!asRank) {
    // A mesh of several ranks starts them itself.
    int64_t ranks = nproc ? nproc : r.parallel.meshSize();
    if (ranks > 1)
      return launch(ranks, rest);
  }

  // One rank of a job: the communicator, and the mesh checked against the
  // ranks there are (dp_shard takes all of them when the recipe names no
  // mesh).
  std::unique_ptr<rt::mpi::MpiCommunicator> comm;
  if (asRank) {
    auto c = rt::mpi::MpiCommunicator::Create();
    if (!c.ok())
      return fail(std::string(c.status().message()));
    comm = *std::move(c);
    int64_t world = comm->WorldSize();
    if (r.parallel.meshSize() == 1 && world > 1)
      r.parallel.dpShard = world;
    if (r.parallel.meshSize() != world) {
      if (comm->Rank() == 0)
        fail(r.path + ": parallel: the mesh has " +
             llvm::Twine(r.parallel.meshSize()) + " ranks, the job " +
             llvm::Twine(world));
      return 1;
    }
  }
  const int rank = comm ? comm->Rank() : 0;
  // Rank 0 reports for the job; any rank's error ends every rank.
  llvm::raw_ostream &out = rank == 0 ? llvm::outs() : llvm::nulls();
  auto fail = [&](const llvm::Twine &message) -> int {
    if (comm && comm->WorldSize() > 1) {
      llvm::errs() << "veomni: error: rank " << rank << ": " << message
                   << "\n";
      llvm::errs().flush();
      comm->Abort(1);
    }
    return ::fail(message);
  };

  // Compile the training step.
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  if (!model.ok())
    return fail(std::string(model.status().message()));
  if (rank == 0)
    printWarnings(*model);
  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty())
      diagnostic = diag.str();
    return success();
  });
  CompileOptions co = trainingOptionsOf(r);
  const int64_t accumulation = co.accumulationSteps;
  CompileReport report;
  auto compileStart = std::chrono::steady_clock::now();
  FailureOr<std::string> bytes = compileToProgram(*model, report, co);
  if (failed(bytes))
    return fail(r.model.config +
                ": compiling the training step failed: " + diagnostic);
  double compileSeconds = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - compileStart)
                              .count();

  auto program = rt::ParseProgram(
      absl::Span<const uint8_t>(
          reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
      r.model.config);
  if (!program.ok())
    return fail(std::string(program.status().message()));
  auto device = rt::CreateDevice("cpu");
  if (!device.ok())
    return fail(std::string(device.status().message()));
  auto executor =
      rt::Executor::Create(*std::move(program), *std::move(device), comm.get());
  if (!executor.ok())
    return fail(std::string(executor.status().message()));
  rt::Executor &ex = **executor;
  auto trainer = rt::Trainer::Create(ex);
  if (!trainer.ok())
    return fail(std::string(trainer.status().message()));

  // Parameters and optimizer state: a checkpoint, weights, or a seeded init.
  absl::Status status;
  if (r.model.weights.empty())
    status = rt::InitParameters(ex, r.model.seed);
  else
    status = rt::LoadWeights(ex, r.model.weights);
  if (status.ok())
    status = trainer->InitState();
  if (!status.ok())
    return fail(std::string(status.message()));

  // Data.
  std::unique_ptr<rt::TokenDataset> dataset;
  std::unique_ptr<rt::Packer> packer;
  std::unique_ptr<rt::SafetensorsFile> batches;
  if (llvm::StringRef(r.data.path).ends_with(".safetensors")) {
    auto f = rt::SafetensorsFile::Open(r.data.path);
    if (!f.ok())
      return fail(std::string(f.status().message()));
    batches = *std::move(f);
    auto n = rt::CountBatches(ex, *batches);
    if (!n.ok())
      return fail(std::string(n.status().message()));
  } else if (!r.data.path.empty()) {
    auto d = rt::TokenDataset::Open(r.data.path);
    if (!d.ok())
      return fail(std::string(d.status().message()));
    dataset = *std::move(d);
    packer = std::make_unique<rt::Packer>(*dataset, r.data.seqLen);
  }

  if (std::error_code ec = llvm::sys::fs::create_directories(r.train.outputDir))
    return fail("cannot create " + r.train.outputDir + ": " + ec.message());
  int64_t start = 0;
  std::string resumeFrom = r.train.resume == "auto"
                               ? latestCheckpoint(r.train.outputDir)
                               : r.train.resume;
  if (!resumeFrom.empty()) {
    std::map<std::string, std::string> meta;
    auto step = trainer->Load(resumeFrom, meta);
    if (!step.ok())
      return fail(std::string(step.status().message()));
    start = *step;
    if (packer) {
      uint64_t doc = std::stoull("0" + meta["veomni.data_document"]);
      uint64_t at = std::stoull("0" + meta["veomni.data_token"]);
      if (doc >= dataset->documents())
        return fail(resumeFrom + ": its data position lies outside " +
                    r.data.path);
      packer->SetPosition(doc, at);
    }
    out << "resumed from " << resumeFrom << " at step " << start
                 << "\n";
  }

  // metrics.jsonl: rank 0's, for the whole job.
  std::error_code ec;
  std::string metricsPath = rank == 0 ? r.train.outputDir + "/metrics.jsonl"
                                      : std::string("/dev/null");
  llvm::raw_fd_ostream metrics(metricsPath, ec,
                               start > 0 ? llvm::sys::fs::OF_Append
                                         : llvm::sys::fs::OF_None);
  if (ec)
    return fail("cannot write " + metricsPath);
  if (comm)
    out << "job of " << comm->WorldSize() << " ranks: dp_replicate="
        << r.parallel.dpReplicate << " dp_shard=" << r.parallel.dpShard
        << " tp=" << r.parallel.tp << " sp=" << r.parallel.sp
        << " ep=" << r.parallel.ep << " (per-rank figures below)\n";
  out << "model " << model->modelType << ", " << report.kernels
               << " kernels, arena " << report.arenaBytes / (1 << 20)
               << " MiB (activations " << report.activationBytes / (1 << 10)
               << " KiB, remat " << r.train.remat << "), compiled in "
               << llvm::format("%.2f", compileSeconds) << " s\n";

  auto saveCheckpoint = [&](int64_t step) -> int {
    std::map<std::string, std::string> meta;
    if (packer) {
      auto [doc, at] = packer->Position();
      meta["veomni.data_document"] = std::to_string(doc);
      meta["veomni.data_token"] = std::to_string(at);
    }
    absl::Status s =
        trainer->Save(checkpointPath(r.train.outputDir, step), step, meta,
                      {r.model.config, r.train.maxShardBytes});
    if (!s.ok())
      return fail(std::string(s.message()));
    return 0;
  };

  const int64_t tokensPerStep = r.data.globalBatchSize * r.data.seqLen;
  // mpirun gives ranks a pseudo-terminal: a job prints whole lines.
  bool tty = !comm && llvm::sys::Process::StandardOutIsDisplayed();
  std::vector<std::pair<int64_t, double>> curve;
  auto t0 = std::chrono::steady_clock::now(), lastStep = t0;
  for (int64_t step = start + 1; step <= r.train.steps; ++step) {
    // One optimizer step: `accumulation` micro-batches, the loss their mean.
    absl::StatusOr<rt::StepMetrics> m;
    double lossSum = 0;
    for (int64_t micro = 0; micro < accumulation; ++micro) {
      int64_t index = (step - 1) * accumulation + micro;
      if (batches)
        status = rt::FillInputs(ex, *batches, index);
      else if (packer)
        status = rt::FillTextBatch(ex, *packer);
      else
        status = rt::SyntheticBatch(ex, r.model.seed * 1000003 + index);
      if (!status.ok())
        return fail(std::string(status.message()));
      m = trainer->Step(step, micro == accumulation - 1);
      if (!m.ok())
        return fail("step " + std::to_string(step) + ": " +
                    std::string(m.status().message()));
      lossSum += m->loss;
    }
    m->loss = lossSum / accumulation;
    if (!std::isfinite(m->loss))
      return fail("step " + std::to_string(step) + ": the loss is " +
                  std::to_string(m->loss));
    curve.push_back({step, m->loss});
    // This step's own time for the metrics; the running mean for the ETA.
    auto now = std::chrono::steady_clock::now();
    double stepSeconds = std::chrono::duration<double>(now - lastStep).count();
    lastStep = now;
    double perStep =
        std::chrono::duration<double>(now - t0).count() / double(step - start);
    metrics << llvm::format(
        "{\"step\": %lld, \"loss\": %#.9g, \"grad_norm\": %#.9g, \"lr\": %.9g, "
        "\"tokens_per_s\": %.1f, \"step_s\": %.6f}\n",
        (long long)step, m->loss, m->gradNorm, m->lr,
        tokensPerStep / stepSeconds, stepSeconds);
    if (step % r.train.logInterval == 0 || step == r.train.steps) {
      int64_t eta = static_cast<int64_t>(perStep * (r.train.steps - step));
      int width = 24, done = int(width * step / r.train.steps);
      out << (tty ? "\r" : "") << "[" << std::string(done, '#')
                   << std::string(width - done, '.') << "] "
                   << llvm::format(
                          "step %lld/%lld  loss %.4f  grad_norm %.3f  lr "
                          "%.2e  %.0f tok/s  eta %lld:%02lld",
                          (long long)step, (long long)r.train.steps, m->loss,
                          m->gradNorm, m->lr, tokensPerStep / perStep,
                          (long long)(eta / 60), (long long)(eta % 60))
                   << (tty ? "" : "\n");
      out.flush();
    }
    if (r.train.checkpointInterval > 0 &&
        step % r.train.checkpointInterval == 0 && step != r.train.steps)
      if (int code = saveCheckpoint(step))
        return code;
  }
  if (tty)
    out << "\n";
  if (int code = saveCheckpoint(r.train.steps))
    return code;
  if (rank == 0)
    writeLossCurve(r.train.outputDir + "/loss_curve.svg", curve);
  if (!curve.empty())
    out << llvm::format("loss %.4f -> %.4f over steps %lld..%lld",
                                 curve.front().second, curve.back().second,
                                 (long long)curve.front().first,
                                 (long long)curve.back().first)
                 << "; checkpoint, metrics.jsonl and loss_curve.svg in "
                 << r.train.outputDir << "\n";
  return 0;
}
