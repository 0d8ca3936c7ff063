//===- Plan.cpp - veomni plan recipe.yaml ---------------------------------===//
//
// Checks the recipe's mesh against the model, then builds the training
// step the recipe asks for (forward, backward, AdamW), applies the mesh and
// the family's plan, propagates shardings through the whole step and
// reports per rank: parameter, gradient, optimizer and activation memory,
// the bytes each collective sends per mesh axis, the FLOPs, and a step
// time predicted from the recipe's cluster section (alpha-beta links, peak
// x MFU). The activation figure is the memory plan of the partitioned
// per-rank program. One SPMD program serves every rank, so none of this
// depends on the number of ranks.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "compiler/Recipe.h"
#include "compiler/Registration.h"
#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "frontends/Importer.h"
#include "passes/Communication.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"
#include <chrono>
#include <map>
#include <set>

using namespace mlir;
using namespace mlir::veomni;

namespace {

int fail(const llvm::Twine &message) {
  llvm::errs() << "veomni: error: " << message << "\n";
  return 1;
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f GiB", bytes / (1024.0 * 1024 * 1024));
  return buf;
}

/// Bytes in the largest binary unit that keeps them above one.
std::string human(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u ? "%.3f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

std::string ms(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f ms", seconds * 1e3);
  return buf;
}

/// "tp, ep in a node of 8; dp_shard across nodes": where the mesh's axes
/// (those over one rank) fall.
std::string linksText(const Recipe &r, const sharding::LinkModel &link) {
  std::vector<std::string> in, across;
  for (auto &[name, size] : meshAxesOf(r.parallel))
    if (size > 1)
      (link.isIntraNode(name) ? in : across).push_back(name);
  auto list = [](const std::vector<std::string> &names) {
    return names.empty() ? std::string("none") : llvm::join(names, ", ");
  };
  return list(in) + " in a node of " +
         std::to_string(r.cluster.devicesPerNode) + "; " + list(across) +
         " across nodes";
}

/// The recipe's pipeline stages (measurePipeline), per stage, per rank and
/// per step; nullopt on failure (a diagnostic says why).
std::optional<std::string> planStages(ModuleOp module, const Recipe &r) {
  FailureOr<PipelineFigures> pipeline = measurePipeline(module, r);
  if (failed(pipeline))
    return std::nullopt;
  int64_t micro = r.data.accumulationSteps();
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "pipeline: " << r.parallel.ppSchedule << " over " << r.parallel.pp
     << " stages x " << r.parallel.ppChunks << " chunks, " << micro
     << " micro-batches; chunks start at layers ["
     << llvm::join(llvm::map_range(pipeline->firstLayers,
                                   [](int64_t l) { return std::to_string(l); }),
                   ", ")
     << "]; bubble " << llvm::format("%.1f%%", 100 * pipeline->bubble)
     << "; micro-batch chunks held per stage ["
     << llvm::join(llvm::map_range(pipeline->stages,
                                   [](const StageFigures &f) {
                                     return std::to_string(f.held);
                                   }),
                   ", ")
     << "]\n"
     << "per stage, per rank and step (activations: the kept stage inputs "
        "of the micro-batches in flight plus the largest chunk's plan):\n"
     << "  stage  parameters   optimizer    activations  sent         "
        "comm        compute\n";
  double flopsPerSecond = sustainedFlops(r);
  for (auto [s, f] : llvm::enumerate(pipeline->stages))
    os << llvm::format("  %-5zu  %-11s  %-11s  %-11s  %-11s  %10s  %10s\n", s,
                       gib(f.params).c_str(), gib(f.optimizer).c_str(),
                       gib(f.peakActivations(r.parallel.ppChunks)).c_str(),
                       human(f.bytes).c_str(), ms(f.seconds).c_str(),
                       ms(f.flops / flopsPerSecond).c_str());
  os << "predicted step time with the pipeline: "
     << ms(pipeline->stepSeconds(r))
     << " (the slowest stage's compute and communication over the busy "
        "fraction of the schedule)\n";
  return text;
}
} // namespace

int runPlan(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs()
        << "usage: veomni plan RECIPE.yaml [--report] [-o FILE.mlir] "
           "[--section.key VALUE ...]\n"
           "       veomni plan RECIPE.yaml --search [--cluster FILE] "
           "[--top K] [--write-recipe DIR]\n\n"
           "Checks the recipe's mesh against the model and derives the\n"
           "parallel plan of its training step (docs/parallel.md); or\n"
           "searches every plan of its world size for the fastest that\n"
           "fits (docs/parallel.md, \"Searching for a plan\").\n\n"
           "options:\n"
           "  --report            per-rank memory, bytes per mesh axis,\n"
           "                      FLOPs and the predicted step time\n"
           "  -o FILE             write the partitioned per-rank step\n"
           "  --search            rank the plans: meshes, micro-batches,\n"
           "                      remat and pipeline schedules\n"
           "  --cluster FILE      the cluster section from FILE\n"
           "                      (examples/clusters/)\n"
           "  --top K             plans to print (5)\n"
           "  --max-pp N          pipeline stages at most\n"
           "  --write-recipe DIR  write them as DIR/plan-N.yaml\n"
           "  --report-html FILE  a page with the mesh, memory, traffic,\n"
           "                      the pipeline schedule and the plans\n\n"
           "settings:\n"
        << Recipe::settingsHelp();
    return 0;
  }
  // -o FILE: also write the partitioned per-rank step; --search and its
  // options.
  std::string output, writeDir, html;
  bool search = false;
  int top = 5;
  int64_t maxPP = 0;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    if (arg == "--search") {
      search = true;
      continue;
    }
    if (arg != "-o" && arg != "--top" && arg != "--write-recipe" &&
        arg != "--max-pp" && arg != "--report-html") {
      rest.push_back(args[i]);
      continue;
    }
    if (i + 1 >= args.size())
      return fail(arg + " needs a value");
    llvm::StringRef value = args[++i];
    if (arg == "-o")
      output = value.str();
    else if (arg == "--write-recipe")
      writeDir = value.str();
    else if (arg == "--report-html")
      html = value.str();
    else if (arg == "--max-pp") {
      if (value.getAsInteger(10, maxPP) || maxPP < 1)
        return fail("--max-pp: expected a positive integer, got '" + value +
                    "'");
    } else if (value.getAsInteger(10, top) || top < 1 || top > 1000)
      return fail("--top: expected an integer in [1, 1000], got '" + value +
                  "'");
  }
  if (!search && (!writeDir.empty() || !html.empty() || top != 5 || maxPP))
    return fail("--top, --max-pp, --write-recipe and --report-html go with "
                "--search");
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(rest, {"--report"});
  if (!recipe.ok())
    return fail(std::string(recipe.status().message()));
  if (search)
    return runPlanSearch(*recipe, top, maxPP, writeDir, html);
  const Recipe &r = *recipe;

  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  if (!model.ok())
    return fail(std::string(model.status().message()));
  printWarnings(*model);

  if (absl::Status fits = checkMeshFits(r, *model); !fits.ok())
    return fail(std::string(fits.message()));

  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty())
      diagnostic = diag.str();
    return success();
  });
  auto start = std::chrono::steady_clock::now();
  ModuleOp module = *model->module;

  // Pipeline stages: the forward split, scheduled, propagated and
  // partitioned stage by stage (on a copy).
  std::string pipelineReport;
  if (r.parallel.pp > 1) {
    std::optional<std::string> text = planStages(module, r);
    if (!text)
      return fail(r.path + ": pipeline stages: " + diagnostic);
    pipelineReport = *text;
  }
  {
    PassManager pm(&context);
    addTrainingStepPasses(pm, trainingOptionsOf(r));
    if (failed(pm.run(module)))
      return fail(r.model.config +
                  ": building the training step failed: " + diagnostic);
  }
  std::string activations;
  sharding::LinkModel link = linkModelOf(r);
  FailureOr<StepFigures> figures =
      measureStep(module, r, link, [&](ModuleOp partitioned) {
        if (output.empty())
          return success();
        std::string message;
        auto file = openOutputFile(output, &message);
        if (!file) {
          diagnostic = output + ": " + message;
          return failure();
        }
        partitioned.print(file->os());
        file->keep();
        return success();
      });
  if (failed(figures))
    return fail(r.path + ": the mesh does not fit the model: " + diagnostic);
  const StepFigures &f = *figures;
  const sharding::StepTraffic *traffic = &f.traffic;
  activations = gib(f.activations) +
                " (planned peak of the partitioned step, remat " +
                r.train.remat + ")";
  double compileSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  // The parameters as transformers counts them (buffers apart).
  double globalParams = double(summarizeParameters(*model).total);
  llvm::outs() << "model: " << model->modelType << ", "
               << llvm::format("%.0f", globalParams) << " parameters\n"
               << "mesh: dp_replicate=" << r.parallel.dpReplicate
               << " dp_shard=" << r.parallel.dpShard << " tp=" << r.parallel.tp
               << " sp=" << r.parallel.sp << " ep=" << r.parallel.ep
               << " pp=" << r.parallel.pp << " (world size "
               << r.parallel.worldSize << ")\n"
               << "links: " << linksText(r, link) << "\n"
               << "per rank (from the shardings):\n"
               << "  parameters        " << gib(f.params) << "\n"
               << "  gradients         " << gib(f.grads) << "\n"
               << "  optimizer state   " << gib(f.optimizer) << " (f32 moments"
               << (r.model.dtype == "f32" ? "" : " and masters") << ")\n";
  if (f.frozenCount > 0)
    llvm::outs() << "  frozen            "
                 << llvm::format("%.0f", f.frozenCount) << " parameters, "
                 << gib(f.frozenBytes)
                 << " a rank: no gradient, no optimizer state\n";
  if (f.adapterCount > 0)
    llvm::outs() << "  LoRA adapters     "
                 << llvm::format("%.0f", f.adapterCount) << " parameters (rank "
                 << r.train.loraRank << "), " << gib(f.adapterBytes)
                 << " a rank: all that trains (in parameters above)\n";
  llvm::outs() << "  activations       " << activations << "\n"
               << "communication per rank and step (bytes sent, alpha-beta "
                  "time):\n";
  for (auto &[group, kinds] : traffic->byGroup)
    for (auto &[kind, t] : kinds)
      llvm::outs() << llvm::format(
          "  %-14s %-15s x%-5lld %15.0f B  %11s  %10s\n", group.c_str(),
          kind.c_str(), (long long)t.count, t.bytes, human(t.bytes).c_str(),
          ms(t.seconds).c_str());
  double commSeconds = traffic->totalSeconds();
  double flopsPerSecond = sustainedFlops(r);
  double computeSeconds = traffic->flops / flopsPerSecond;
  StepTime time = timeOf(*traffic, r);
  double tokens =
      double(r.data.batchSize) * r.data.seqLen; // per step, all ranks
  llvm::outs()
      << llvm::format("  %-14s %-15s %21.0f B  %11s  %10s\n", "total", "",
                      traffic->totalBytes(),
                      human(traffic->totalBytes()).c_str(),
                      ms(commSeconds).c_str())
      << llvm::format("compute per rank and step: %.3f TFLOP, %s at "
                      "%.1f TFLOP/s (%.0f peak x %.2f)\n",
                      traffic->flops / 1e12, ms(computeSeconds).c_str(),
                      flopsPerSecond / 1e12,
                      flopsPerSecond / 1e12 / r.cluster.mfu, r.cluster.mfu)
      << "predicted step time: " << ms(time.total()) << " (compute "
      << ms(time.compute) << ", communication " << ms(commSeconds)
      << " of which FSDP's " << ms(time.hidden) << " hides behind compute); "
      << llvm::format("%.0f", tokens / time.total() / r.parallel.worldSize)
      << " tokens/s/rank\n"
      << llvm::format("compile: %.2f s (training step, propagation, "
                      "partitioning and memory plan, for any number "
                      "of ranks)\n",
                      compileSeconds);
  if (r.parallel.pp > 1)
    llvm::outs() << "(the figures above are those of the whole step on one "
                    "stage)\n"
                 << pipelineReport;
  return 0;
}
