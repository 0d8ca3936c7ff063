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
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cmath>
#include <fstream>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

int fail(const llvm::Twine &message) {
  llvm::errs() << "veomni: error: " << message << "\n";
  return 1;
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
        << "usage: veomni train RECIPE.yaml [--section.key VALUE ...]\n\n"
           "Compiles the training step of the recipe's model and runs it: a\n"
           "progress line per log interval, metrics.jsonl, Hugging Face\n"
           "checkpoints (checkpoint-N/) and loss_curve.svg in the output\n"
           "directory (docs/training.md). Any setting can be overridden on\n"
           "the command line with its dotted name (--train.lr 3e-4).\n\n"
           "settings:\n"
        << Recipe::settingsHelp();
    return 0;
  }
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(
      std::vector<std::string>(args.begin(), args.end()), {});
  if (!recipe.ok())
    return fail(std::string(recipe.status().message()));
  const Recipe &r = *recipe;

  // Compile the training step.
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  if (!model.ok())
    return fail(std::string(model.status().message()));
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
  auto executor = rt::Executor::Create(*std::move(program));
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
    llvm::outs() << "resumed from " << resumeFrom << " at step " << start
                 << "\n";
  }

  std::error_code ec;
  llvm::raw_fd_ostream metrics(r.train.outputDir + "/metrics.jsonl", ec,
                               start > 0 ? llvm::sys::fs::OF_Append
                                         : llvm::sys::fs::OF_None);
  if (ec)
    return fail("cannot write " + r.train.outputDir + "/metrics.jsonl");
  llvm::outs() << "model " << model->modelType << ", " << report.kernels
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
  bool tty = llvm::sys::Process::StandardOutIsDisplayed();
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
      llvm::outs() << (tty ? "\r" : "") << "[" << std::string(done, '#')
                   << std::string(width - done, '.') << "] "
                   << llvm::format(
                          "step %lld/%lld  loss %.4f  grad_norm %.3f  lr "
                          "%.2e  %.0f tok/s  eta %lld:%02lld",
                          (long long)step, (long long)r.train.steps, m->loss,
                          m->gradNorm, m->lr, tokensPerStep / perStep,
                          (long long)(eta / 60), (long long)(eta % 60))
                   << (tty ? "" : "\n");
      llvm::outs().flush();
    }
    if (r.train.checkpointInterval > 0 &&
        step % r.train.checkpointInterval == 0 && step != r.train.steps)
      if (int code = saveCheckpoint(step))
        return code;
  }
  if (tty)
    llvm::outs() << "\n";
  if (int code = saveCheckpoint(r.train.steps))
    return code;
  writeLossCurve(r.train.outputDir + "/loss_curve.svg", curve);
  if (!curve.empty())
    llvm::outs() << llvm::format("loss %.4f -> %.4f over steps %lld..%lld",
                                 curve.front().second, curve.back().second,
                                 (long long)curve.front().first,
                                 (long long)curve.back().first)
                 << "; checkpoint, metrics.jsonl and loss_curve.svg in "
                 << r.train.outputDir << "\n";
  return 0;
}
