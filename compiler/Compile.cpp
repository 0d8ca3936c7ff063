//===- Compile.cpp - from an imported model to a runtime program ----------===//

#include "compiler/Compile.h"
#include "compiler/Translate.h"
#include "dialects/Dist/DistOps.h"
#include "dialects/Runtime/VrtOps.h"
#include "passes/Passes.h"
#include "passes/PipelineSchedule.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mlir::veomni;

ApplyRecipeOptions
mlir::veomni::applyRecipeOptionsOf(const ParallelSection &mesh) {
  ApplyRecipeOptions o;
  o.dpReplicate = mesh.dpReplicate;
  o.dpShard = mesh.dpShard;
  o.tp = mesh.tp;
  o.sp = mesh.sp;
  o.ep = mesh.ep;
  o.pp = mesh.pp;
  return o;
}

/// The ranks a text batch is split over (veomni-apply-recipe: the
/// data-parallel axes, and ep, which only a MoE model may have).
static int64_t batchSplitOf(const ParallelSection &m) {
  return m.dpReplicate * m.dpShard * m.ep;
}

/// veomni-optimizer's options for a recipe's train section.
static OptimizerOptions optimizerOptionsOf(const TrainOptions &t) {
  OptimizerOptions o;
  o.lr = t.lr;
  o.beta1 = t.betas[0];
  o.beta2 = t.betas[1];
  o.epsilon = t.eps;
  o.weightDecay = t.weightDecay;
  o.maxGradNorm = t.maxGradNorm;
  o.warmupSteps = t.warmupSteps;
  o.totalSteps = t.steps;
  o.minLrRatio = t.minLrRatio;
  o.routerBiasRate = t.routerBiasUpdateRate;
  return o;
}

void mlir::veomni::addFusionPasses(OpPassManager &pm, const CompileOptions &o) {
  if (o.fusedLoss) {
    FuseLossOptions loss;
    loss.chunk = o.lossChunk;
    pm.addPass(createFuseLoss(loss));
  }
  if (o.fusion)
    pm.addPass(createFuse());
}

void mlir::veomni::addShardingPasses(OpPassManager &pm,
                                     const ParallelSection &mesh) {
  pm.addPass(createApplyRecipe(applyRecipeOptionsOf(mesh)));
  pm.addPass(createPropagateSharding());
}

/// What trains: LoRA adapters (veomni-lora) and frozen parameters
/// (veomni-freeze), as the train section asks.
static void addTrainablePasses(OpPassManager &pm,
                               const CompileOptions &options) {
  if (options.train && (!options.train->loraTargets.empty() ||
                        !options.train->loraTargetParameters.empty())) {
    LoraOptions l;
    for (StringRef t : llvm::split(options.train->loraTargets, ','))
      if (!t.trim().empty())
        l.targets.push_back(t.trim().str());
    for (StringRef t : llvm::split(options.train->loraTargetParameters, ','))
      if (!t.trim().empty())
        l.targetParameters.push_back(t.trim().str());
    l.rank = options.train->loraRank;
    l.alpha = options.train->loraAlpha;
    l.rslora = options.train->loraRslora == "true";
    pm.addPass(createLora(l));
  }
  if (options.train && !options.train->freeze.empty()) {
    FreezeOptions f;
    for (StringRef p : llvm::split(options.train->freeze, ','))
      if (!p.trim().empty())
        f.patterns.push_back(p.trim().str());
    pm.addPass(createFreeze(f));
  }
}

void mlir::veomni::addTrainingStepPasses(OpPassManager &pm,
                                         const CompileOptions &options) {
  bool differentiate = options.gradients || options.train;
  addTrainablePasses(pm, options);
  // Before autodiff, so that the backward sums the copies' cotangents.
  if (options.parallel.sp > 1) {
    RepeatKVHeadsOptions r;
    r.sp = options.parallel.sp;
    pm.addPass(createRepeatKVHeads(r));
    UlyssesMoETokensOptions u;
    u.sp = options.parallel.sp;
    u.batchSplit = batchSplitOf(options.parallel);
    pm.addPass(createUlyssesMoETokens(u));
  }
  if (differentiate) {
    pm.addPass(createAutodiff());
    if (options.parallel.sp > 1) {
      UlyssesMoETokensOptions u;
      u.sp = options.parallel.sp;
      u.contractions = true;
      u.batchSplit = batchSplitOf(options.parallel);
      pm.addPass(createUlyssesMoETokens(u));
    }
  }
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // After CSE, which would merge recomputed ops back into their originals.
  if (differentiate && options.remat != "none") {
    RematOptions r;
    r.policy = options.remat;
    pm.addPass(createRemat(r));
  }
  if (options.train) {
    OptimizerOptions o = optimizerOptionsOf(*options.train);
    o.accumulationSteps = options.accumulationSteps;
    pm.addPass(createOptimizer(o));
  }
}

void mlir::veomni::addPipelinePasses(OpPassManager &pm,
                                     const CompileOptions &options) {
  const ParallelSection &mesh = options.parallel;
  if (mesh.sp > 1) {
    RepeatKVHeadsOptions r;
    r.sp = mesh.sp;
    pm.addPass(createRepeatKVHeads(r));
    UlyssesMoETokensOptions u;
    u.sp = mesh.sp;
    u.batchSplit = batchSplitOf(mesh);
    pm.addPass(createUlyssesMoETokens(u));
  }
  addTrainablePasses(pm, options);
  pm.addPass(createApplyRecipe(applyRecipeOptionsOf(mesh)));
  PipelineOptions po;
  po.stages = mesh.pp;
  po.chunksPerStage = mesh.ppChunks;
  po.microBatches = options.accumulationSteps;
  po.schedule = mesh.ppSchedule;
  po.routerLoads = options.train && options.train->routerBiasUpdateRate > 0;
  pm.addPass(createPipeline(po));
  if (mesh.sp > 1) {
    UlyssesMoETokensOptions u;
    u.sp = mesh.sp;
    u.contractions = true;
    u.batchSplit = batchSplitOf(mesh);
    pm.addPass(createUlyssesMoETokens(u));
  }
  // Before the optimizer, as for one program: CSE would merge the update's
  // constants across parameters that are laid out differently (a tp column
  // and a tp row weight of one shape).
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  StageUpdateOptions su;
  su.microBatches = options.accumulationSteps;
  pm.addPass(createStageUpdate(su));
  if (options.train)
    for (int64_t s = 0; s < mesh.pp; ++s) {
      OptimizerOptions o = optimizerOptionsOf(*options.train);
      o.funcName = "stage" + std::to_string(s) + "_update";
      o.externalNorm = true;
      pm.addPass(createOptimizer(o));
    }
  pm.addPass(createPropagateSharding());
}

FailureOr<PipelinePrograms> mlir::veomni::compilePipeline(
    ModuleOp module, const std::map<std::string, std::string> &placements,
    const CompileOptions &options) {
  const ParallelSection &mesh = options.parallel;
  if (!options.train)
    return module.emitError("pipeline stages compile training steps only");
  if (options.remat != "none")
    return module.emitError("pipeline stages recompute each chunk's forward "
                            "in its backward already: use train.remat none "
                            "with parallel.pp > 1");
  PipelinePrograms out;
  out.schedule = mesh.ppSchedule;
  out.stages = mesh.pp;
  out.microBatches = options.accumulationSteps;
  out.chunksPerStage = mesh.ppChunks;

  PassManager pm(module.getContext());
  addPipelinePasses(pm, options);
  pm.addPass(createPartition());
  PrefetchOptions prefetch;
  prefetch.distance = mesh.prefetch;
  pm.addPass(createPrefetch(prefetch));
  pm.addPass(createPipelineBoundaries());
  addFusionPasses(pm, options);
  pm.addPass(createLowerToVrt());
  pm.addPass(createPlanMemory());
  if (failed(pm.run(module)))
    return failure();

  // The schedule, as the pass wrote it.
  auto info = module->getAttrOfType<DictionaryAttr>(
      dist::DistDialect::kPipelineAttrName);
  absl::StatusOr<pipeline::Schedule> plan = pipeline::makeSchedule(
      mesh.ppSchedule == "zb-h1"         ? pipeline::Kind::ZeroBubbleH1
      : mesh.ppSchedule == "interleaved" ? pipeline::Kind::Interleaved
                                         : pipeline::Kind::OneFOneB,
      mesh.pp, out.microBatches, mesh.ppChunks);
  if (!plan.ok())
    return module.emitError(std::string(plan.status().message()));
  static const char *codes[] = {"F", "B", "BI", "BW", "SA", "RA", "SG", "RG"};
  for (const auto &list : plan->perStage) {
    std::vector<std::string> &actions = out.actions.emplace_back();
    for (const pipeline::Action &a : list) {
      std::string text = std::string(codes[static_cast<int>(a.op)]) + " " +
                         std::to_string(a.microBatch) + " " +
                         std::to_string(a.chunk);
      if (a.peer >= 0)
        text += " " + std::to_string(a.peer);
      actions.push_back(text);
    }
  }
  if (info)
    if (auto tied = info.getAs<ArrayAttr>("tied_params"))
      for (Attribute a : tied)
        out.tiedParams.push_back(cast<StringAttr>(a).getValue().str());

  // One program per function, each on the mesh without pp.
  SmallVector<std::string> names;
  for (auto func : module.getOps<func::FuncOp>())
    names.push_back(func.getName().str());
  int64_t kernels = 0;
  for (const std::string &name : names) {
    OwningOpRef<ModuleOp> one(module.clone());
    for (auto func : llvm::to_vector(one->getOps<func::FuncOp>()))
      if (func.getName() != name)
        func.erase();
    func::FuncOp func = *one->getOps<func::FuncOp>().begin();
    for (auto meshOp : one->getOps<dist::MeshOp>()) {
      SmallVector<dist::MeshAxisAttr> axes;
      for (dist::MeshAxisAttr a : meshOp.getMesh().getAxes())
        if (a.getName() != "pp")
          axes.push_back(a);
      meshOp.setMeshAttr(dist::MeshAttr::get(module.getContext(), axes));
    }
    StageProgram p;
    p.name = name;
    p.stage =
        func->getAttrOfType<IntegerAttr>(dist::DistDialect::kStageAttrName)
            .getInt();
    if (auto chunk =
            func->getAttrOfType<IntegerAttr>(dist::DistDialect::kChunkAttrName))
      p.chunk = chunk.getInt();
    func.walk([&](vrt::KernelOp) { ++kernels; });
    if (failed(translateToProgram(*one, placements, p.bytes)))
      return failure();
    out.programs.push_back(std::move(p));
  }
  out.summary = std::to_string(out.programs.size()) + " programs for " +
                std::to_string(mesh.pp) + " stages (" + mesh.ppSchedule + ", " +
                std::to_string(out.microBatches) + " micro-batches), " +
                std::to_string(kernels) + " kernels";
  return out;
}

FailureOr<std::string> mlir::veomni::compileModule(
    ModuleOp module, const std::map<std::string, std::string> &placements,
    const CompileOptions &options, CompileReport &report) {
  const ParallelSection &mesh = options.parallel;
  if (mesh.pp > 1)
    return module.emitError("pipeline stages (parallel.pp ")
           << mesh.pp << ") make one program per chunk and part of the step: "
           << "compile them with compilePipeline (veomni train and veomni "
           << "compile RECIPE do)";
  PassManager pm(module.getContext());
  addTrainingStepPasses(pm, options);
  if (mesh.meshSize() > 1) {
    addShardingPasses(pm, mesh);
    pm.addPass(createPartition());
    PrefetchOptions p;
    p.distance = mesh.prefetch;
    pm.addPass(createPrefetch(p));
  }
  addFusionPasses(pm, options);
  pm.addPass(createLowerToVrt());
  pm.addPass(createPlanMemory());
  if (failed(pm.run(module)))
    return failure();

  std::string bytes;
  if (failed(translateToProgram(module, placements, bytes)))
    return failure();

  func::FuncOp func = *module.getOps<func::FuncOp>().begin();
  report = {};
  report.arenaBytes =
      func->getAttrOfType<IntegerAttr>(vrt::VrtDialect::kArenaBytesAttrName)
          .getInt();
  report.activationBytes =
      func->getAttrOfType<IntegerAttr>("vrt.activation_bytes").getInt();
  for (Type t : func.getArgumentTypes()) {
    auto m = cast<MemRefType>(t);
    report.argumentBytes += m.getNumElements() * m.getElementTypeBitWidth() / 8;
  }
  func.walk([&](vrt::ConstantOp c) {
    auto m = cast<MemRefType>(c.getBuffer().getType());
    report.constantBytes += m.getNumElements() * m.getElementTypeBitWidth() / 8;
  });
  func.walk([&](vrt::KernelOp) { ++report.kernels; });
  return bytes;
}

FailureOr<std::string>
mlir::veomni::compileToProgram(ImportedModel &model, CompileReport &report,
                               const CompileOptions &options) {
  std::map<std::string, std::string> placements;
  for (const ArgumentInfo &arg : model.arguments)
    if (arg.isParam)
      if (std::optional<Placement> p = placementOf(model.plan, arg.name))
        placements[arg.name] = placementName(*p).str();
  return compileModule(*model.module, placements, options, report);
}
