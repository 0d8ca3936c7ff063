//===- Compile.cpp - from an imported model to a runtime program ----------===//

#include "compiler/Compile.h"
#include "compiler/Translate.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

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

void mlir::veomni::addShardingPasses(OpPassManager &pm,
                                     const ParallelSection &mesh) {
  pm.addPass(createApplyRecipe(applyRecipeOptionsOf(mesh)));
  pm.addPass(createPropagateSharding());
}

void mlir::veomni::addTrainingStepPasses(OpPassManager &pm,
                                         const CompileOptions &options) {
  bool differentiate = options.gradients || options.train;
  // Before autodiff, so that the backward sums the copies' cotangents.
  if (options.parallel.sp > 1) {
    RepeatKVHeadsOptions r;
    r.sp = options.parallel.sp;
    pm.addPass(createRepeatKVHeads(r));
  }
  if (differentiate)
    pm.addPass(createAutodiff());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // After CSE, which would merge recomputed ops back into their originals.
  if (differentiate && options.remat != "none") {
    RematOptions r;
    r.policy = options.remat;
    pm.addPass(createRemat(r));
  }
  if (options.train) {
    const TrainOptions &t = *options.train;
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
    o.accumulationSteps = options.accumulationSteps;
    pm.addPass(createOptimizer(o));
  }
}

FailureOr<std::string> mlir::veomni::compileModule(
    ModuleOp module, const std::map<std::string, std::string> &placements,
    const CompileOptions &options, CompileReport &report) {
  const ParallelSection &mesh = options.parallel;
  if (mesh.pp > 1)
    return module.emitError("pipeline stages (parallel.pp ")
           << mesh.pp << ") are planned but not run yet: veomni plan reports "
           << "them; train with parallel.pp 1";
  PassManager pm(module.getContext());
  addTrainingStepPasses(pm, options);
  if (mesh.meshSize() > 1) {
    addShardingPasses(pm, mesh);
    pm.addPass(createPartition());
  }
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
