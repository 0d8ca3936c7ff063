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

/// Per stage of the recipe's pipeline: what its ranks hold and send.
struct StageFigures {
  std::string layers;
  double params = 0, optimizer = 0, kept = 0, activations = 0;
  double bytes = 0, seconds = 0, flops = 0;
  llvm::StringSet<> seen;
  std::set<int64_t> keptChunks;
};

/// Splits the forward into the recipe's stages (veomni-pipeline),
/// propagates and partitions every chunk's forward and backward, and
/// reports per stage, per rank and per step; nullopt on failure (a
/// diagnostic says why).
std::optional<std::string> planStages(MLIRContext &context, ModuleOp module,
                                      const Recipe &r) {
  int64_t micro =
      std::max<int64_t>(r.data.globalBatchSize / r.data.batchSize, 1);
  // The programs the runtime runs (compilePipeline's), before partitioning:
  // each chunk's forward and backward (ZB-H1's halves as they are), each
  // stage's update and norm.
  OwningOpRef<ModuleOp> copy(module.clone());
  {
    PassManager pm(&context);
    addPipelinePasses(pm, trainingOptionsOf(r));
    if (failed(pm.run(*copy)))
      return std::nullopt;
  }
  auto info = (*copy)->getAttrOfType<DictionaryAttr>(
      dist::DistDialect::kPipelineAttrName);

  sharding::Mesh mesh((*copy->getOps<dist::MeshOp>().begin()).getMesh());
  sharding::LinkModel link;
  link.intraBandwidth = r.cluster.intraNodeGBps * 1e9;
  link.interBandwidth = r.cluster.interNodeGBps * 1e9;
  link.intraLatency = r.cluster.intraNodeLatencyUs * 1e-6;
  link.interLatency = r.cluster.interNodeLatencyUs * 1e-6;
  auto firstLayers = info.getAs<ArrayAttr>("first_layers");
  std::vector<StageFigures> stages(r.parallel.pp);
  auto localBytes = [&](func::FuncOp func, unsigned i) {
    auto type = cast<RankedTensorType>(func.getArgument(i).getType());
    auto attr = func.getArgAttrOfType<dist::ShardingAttr>(i, "dist.sharding");
    auto local =
        sharding::localType(type, sharding::Layout::fromAttr(attr), mesh);
    return double(local.getNumElements()) * type.getElementTypeBitWidth() / 8;
  };
  for (auto func : copy->getOps<func::FuncOp>()) {
    auto chunk =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kChunkAttrName);
    if (!chunk)
      continue; // a stage's update and norm
    int64_t s =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
            .getInt();
    int64_t g = chunk.getInt();
    StageFigures &f = stages[s];
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto name =
          func.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
      if (!name || !f.seen.insert(name.getValue()).second)
        continue;
      double bytes = localBytes(func, i);
      auto type = cast<RankedTensorType>(func.getArgument(i).getType());
      f.params += bytes;
      f.optimizer += bytes / (type.getElementTypeBitWidth() / 8) *
                     (type.getElementType().isF32() ? 8 : 12);
    }
    if (auto keptFrom = func->getAttrOfType<IntegerAttr>(
            dist::DistDialect::kKeptFromAttrName))
      if (f.keptChunks.insert(g).second)
        for (unsigned i = keptFrom.getInt(); i < func.getNumArguments(); ++i)
          if (auto role = func.getArgAttrOfType<ArgumentRoleAttr>(
                  i, VeOmniDialect::kRoleAttrName);
              role && role.getValue() == ArgumentRole::Activation)
            f.kept += localBytes(func, i);
  }
  // Every program's collectives, the sends between stages, the tied
  // gradients and the step's scalars: what the runtime counts.
  FailureOr<std::vector<sharding::StageTraffic>> traffic =
      sharding::analyzePipeline(*copy, micro, link);
  if (failed(traffic))
    return std::nullopt;
  for (auto [s, t] : llvm::enumerate(*traffic)) {
    stages[s].bytes = t.bytes;
    stages[s].seconds = t.seconds;
    stages[s].flops = t.flops;
  }
  PassManager lower(&context);
  lower.addPass(createPartition());
  PrefetchOptions prefetch;
  prefetch.distance = r.parallel.prefetch;
  lower.addPass(createPrefetch(prefetch));
  lower.addPass(createLowerToVrt());
  lower.addPass(createPlanMemory());
  if (failed(lower.run(*copy)))
    return std::nullopt;
  for (auto func : copy->getOps<func::FuncOp>()) {
    int64_t s =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
            .getInt();
    stages[s].activations = std::max(
        stages[s].activations,
        double(
            func->getAttrOfType<IntegerAttr>("vrt.activation_bytes").getInt()));
  }

  auto peaks = info.getAs<ArrayAttr>("peak_activations");
  double bubble = info.getAs<FloatAttr>("bubble").getValueAsDouble();
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "pipeline: " << r.parallel.ppSchedule << " over " << r.parallel.pp
     << " stages x " << r.parallel.ppChunks << " chunks, " << micro
     << " micro-batches; chunks start at layers [";
  llvm::interleaveComma(firstLayers, os, [&](Attribute a) {
    os << cast<IntegerAttr>(a).getInt();
  });
  os << "]; bubble " << llvm::format("%.1f%%", 100 * bubble)
     << "; micro-batch chunks held per stage [";
  llvm::interleaveComma(
      peaks, os, [&](Attribute a) { os << cast<IntegerAttr>(a).getInt(); });
  os << "]\n"
     << "per stage, per rank and step (activations: the kept stage inputs "
        "of the micro-batches in flight plus the largest chunk's plan):\n"
     << "  stage  parameters   optimizer    activations  sent         "
        "comm        compute\n";
  double slowest = 0;
  double flopsPerSecond = r.cluster.peakTflops * 1e12 * r.cluster.mfu;
  for (auto [s, f] : llvm::enumerate(stages)) {
    int64_t held = cast<IntegerAttr>(peaks[s]).getInt();
    double activations =
        f.activations +
        f.kept * held / std::max<int64_t>(r.parallel.ppChunks, 1);
    double compute = f.flops / flopsPerSecond;
    slowest = std::max(slowest, compute + f.seconds);
    os << llvm::format("  %-5zu  %-11s  %-11s  %-11s  %-11s  %10s  %10s\n", s,
                       gib(f.params).c_str(), gib(f.optimizer).c_str(),
                       gib(activations).c_str(), human(f.bytes).c_str(),
                       ms(f.seconds).c_str(), ms(compute).c_str());
  }
  os << "predicted step time with the pipeline: "
     << ms(slowest / std::max(1e-9, 1 - bubble))
     << " (the slowest stage's compute and communication over the busy "
        "fraction of the schedule)\n";
  return text;
}

} // namespace

int runPlan(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs()
        << "usage: veomni plan RECIPE.yaml [--report] [-o FILE.mlir] "
           "[--section.key VALUE ...]\n\n"
           "Checks the recipe's mesh against the model and derives the\n"
           "parallel plan of its training step (docs/parallel.md).\n\n"
           "options:\n"
           "  --report   per-rank memory, bytes per mesh axis, FLOPs and\n"
           "             the predicted step time\n"
           "  -o FILE    write the partitioned per-rank step\n\n"
           "settings:\n"
        << Recipe::settingsHelp();
    return 0;
  }
  // -o FILE: also write the partitioned per-rank step.
  std::string output;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (llvm::StringRef(args[i]) != "-o") {
      rest.push_back(args[i]);
      continue;
    }
    if (i + 1 >= args.size())
      return fail("-o needs a file name");
    output = args[++i];
  }
  absl::StatusOr<Recipe> recipe = Recipe::fromCommandLine(rest, {"--report"});
  if (!recipe.ok())
    return fail(std::string(recipe.status().message()));
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
    std::optional<std::string> text = planStages(context, module, r);
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
  {
    PassManager pm(&context);
    addShardingPasses(pm, r.parallel);
    if (failed(pm.run(module)))
      return fail(r.path + ": the mesh does not fit the model: " + diagnostic);
  }

  auto meshOp = *module.getOps<dist::MeshOp>().begin();
  sharding::Mesh mesh(meshOp.getMesh());
  func::FuncOp func = *module.getOps<func::FuncOp>().begin();

  // Per-rank bytes of parameters (and their gradients) and optimizer state.
  double params = 0, grads = 0, optimizer = 0, globalParams = 0;
  double frozenBytes = 0, frozenCount = 0;   // train.freeze's, per rank
  double adapterBytes = 0, adapterCount = 0; // train.lora's
  for (BlockArgument arg : func.getArguments()) {
    unsigned i = arg.getArgNumber();
    bool param = func.getArgAttr(i, VeOmniDialect::kParamAttrName) != nullptr;
    bool state = func.getArgAttr(i, VeOmniDialect::kStateAttrName) != nullptr;
    if (!param && !state)
      continue;
    auto type = cast<RankedTensorType>(arg.getType());
    auto sharding =
        func.getArgAttrOfType<dist::ShardingAttr>(i, "dist.sharding");
    auto local =
        sharding::localType(type, sharding::Layout::fromAttr(sharding), mesh);
    double bytes =
        double(local.getNumElements()) * type.getElementTypeBitWidth() / 8;
    if (state) {
      optimizer += bytes;
      continue;
    }
    params += bytes;
    if (func.getArgAttr(i, VeOmniDialect::kAdapterAttrName)) {
      adapterBytes += bytes;
      adapterCount += double(type.getNumElements());
    }
    if (func.getArgAttr(i, VeOmniDialect::kFrozenAttrName)) {
      frozenBytes += bytes;
      frozenCount += double(type.getNumElements());
      continue;
    }
    grads += bytes;
    // f32 parameters are their own masters; the step updates them in place.
  }

  sharding::LinkModel link;
  link.intraBandwidth = r.cluster.intraNodeGBps * 1e9;
  link.interBandwidth = r.cluster.interNodeGBps * 1e9;
  link.intraLatency = r.cluster.intraNodeLatencyUs * 1e-6;
  link.interLatency = r.cluster.interNodeLatencyUs * 1e-6;
  FailureOr<sharding::StepTraffic> traffic =
      sharding::analyzeStep(func, mesh, link);
  if (failed(traffic))
    return fail(r.path + ": " + diagnostic);

  // The partitioned program and its memory plan (activations per rank).
  std::string activations;
  {
    PassManager pm(&context);
    pm.addPass(createPartition());
    PrefetchOptions prefetch;
    prefetch.distance = r.parallel.prefetch;
    pm.addPass(createPrefetch(prefetch));
    if (failed(pm.run(module)))
      return fail(r.path + ": partitioning failed: " + diagnostic);
    if (!output.empty()) {
      std::string message;
      auto file = openOutputFile(output, &message);
      if (!file)
        return fail(output + ": " + message);
      module.print(file->os());
      file->keep();
    }
    // The fusions training compiles with: they change what memory holds,
    // and what is sent (a fused LM head gathers its weight once). The
    // traffic reported is that of the collectives of this program, the one
    // every rank runs; the FLOPs are the step's, which fusion leaves.
    PassManager fuse(&context);
    addFusionPasses(fuse, trainingOptionsOf(r));
    if (failed(fuse.run(module)))
      return fail(r.path + ": fusing the per-rank step failed: " + diagnostic);
    func = *module.getOps<func::FuncOp>().begin();
    double flops = traffic->flops;
    *traffic = sharding::countCollectives(func, mesh, link);
    traffic->flops = flops;
    PassManager lower(&context);
    lower.addPass(createLowerToVrt());
    lower.addPass(createPlanMemory());
    if (failed(lower.run(module)))
      return fail(r.path +
                  ": planning the per-rank memory failed: " + diagnostic);
    func = *module.getOps<func::FuncOp>().begin();
    double bytes =
        func->getAttrOfType<IntegerAttr>("vrt.activation_bytes").getInt();
    activations = gib(bytes) + " (planned peak of the partitioned step, " +
                  "remat " + r.train.remat + ")";
  }
  double compileSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  // The parameters as transformers counts them (buffers apart).
  globalParams = double(summarizeParameters(*model).total);
  llvm::outs() << "model: " << model->modelType << ", "
               << llvm::format("%.0f", globalParams) << " parameters\n"
               << "mesh: dp_replicate=" << r.parallel.dpReplicate
               << " dp_shard=" << r.parallel.dpShard << " tp=" << r.parallel.tp
               << " sp=" << r.parallel.sp << " ep=" << r.parallel.ep
               << " pp=" << r.parallel.pp << " (world size "
               << r.parallel.worldSize << ")\n"
               << "per rank (from the shardings):\n"
               << "  parameters        " << gib(params) << "\n"
               << "  gradients         " << gib(grads) << "\n"
               << "  optimizer state   " << gib(optimizer) << " (f32 moments"
               << (r.model.dtype == "f32" ? "" : " and masters") << ")\n";
  if (frozenCount > 0)
    llvm::outs() << "  frozen            " << llvm::format("%.0f", frozenCount)
                 << " parameters, " << gib(frozenBytes)
                 << " a rank: no gradient, no optimizer state\n";
  if (adapterCount > 0)
    llvm::outs() << "  LoRA adapters     " << llvm::format("%.0f", adapterCount)
                 << " parameters (rank " << r.train.loraRank << "), "
                 << gib(adapterBytes)
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
  double flopsPerSecond = r.cluster.peakTflops * 1e12 * r.cluster.mfu;
  double computeSeconds = traffic->flops / flopsPerSecond;
  double tokens =
      double(r.data.batchSize) * r.data.seqLen; // per step, all ranks
  llvm::outs() << llvm::format("  %-14s %-15s %21.0f B  %11s  %10s\n", "total",
                               "", traffic->totalBytes(),
                               human(traffic->totalBytes()).c_str(),
                               ms(commSeconds).c_str())
               << llvm::format("compute per rank and step: %.3f TFLOP, %s at "
                               "%.1f TFLOP/s (%.0f peak x %.2f)\n",
                               traffic->flops / 1e12,
                               ms(computeSeconds).c_str(),
                               flopsPerSecond / 1e12, r.cluster.peakTflops,
                               r.cluster.mfu)
               << "predicted step time: " << ms(computeSeconds + commSeconds)
               << " with no overlap, "
               << ms(std::max(computeSeconds, commSeconds))
               << " if communication hides behind compute; "
               << llvm::format("%.0f", tokens / (computeSeconds + commSeconds) /
                                           r.parallel.worldSize)
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
