//===- Plan.cpp - veomni plan recipe.yaml ---------------------------------===//
//
// Checks the recipe's mesh against the model and reports, per rank, the
// memory its parameters, gradients and optimizer state take under the
// shardings veomni-apply-recipe derives from the family's plan. The
// communication volume and step time come from the collectives that
// sharding propagation inserts, which are not built yet: the report says so
// rather than estimating them.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "compiler/Recipe.h"
#include "compiler/Registration.h"
#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "frontends/Importer.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

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

} // namespace

int runPlan(llvm::ArrayRef<const char *> args) {
  std::string error;
  std::optional<Recipe> recipe = Recipe::fromCommandLine(
      std::vector<std::string>(args.begin(), args.end()), {"--report"}, error);
  if (!recipe)
    return fail(error);
  const Recipe &r = *recipe;

  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  FailureOr<ImportedModel> model =
      importHFConfig(context, r.config, importOptionsOf(r), error);
  if (failed(model))
    return fail(error);

  // What the mesh must divide in the model, named by the recipe field.
  auto check = [&](const char *field, int64_t axis, int64_t value,
                   const std::string &what) -> bool {
    if (axis > 1 && (value <= 0 || value % axis != 0)) {
      error = r.path + ": field '" + field + "': " + std::to_string(axis) +
              " does not divide " + what + " " + std::to_string(value);
      return false;
    }
    return true;
  };
  if (!check("parallel.tp", r.tp, model->numHeads, "num_attention_heads") ||
      !check("parallel.tp", r.tp, model->numKVHeads, "num_key_value_heads") ||
      !check("parallel.sp", r.sp, r.seqLen, "data.seq_len") ||
      !check("parallel.sp", r.sp, model->numHeads / std::max<int64_t>(r.tp, 1),
             "the attention heads per tp rank") ||
      !check("parallel.pp", r.pp, model->numLayers, "num_hidden_layers"))
    return fail(error);
  if (r.ep > 1 && model->numExperts == 0)
    return fail(r.path + ": field 'parallel.ep': " + std::to_string(r.ep) +
                " needs a mixture-of-experts model; " + model->modelType +
                " has no experts");
  if (!check("parallel.ep", r.ep, model->numExperts, "num_experts"))
    return fail(error);
  // With experts split on ep, the ep ranks take their own batches too.
  bool expertParallel = r.ep > 1 && model->numExperts > 0;
  if (!check("parallel.dp_shard",
             r.dpReplicate * r.dpShard * (expertParallel ? r.ep : 1),
             r.batchSize,
             expertParallel ? "data.batch_size (dp_replicate x dp_shard x ep)"
                            : "data.batch_size (dp_replicate x dp_shard)"))
    return fail(error);

  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty())
      diagnostic = diag.str();
    return success();
  });
  PassManager pm(&context);
  ApplyRecipeOptions o;
  o.dpReplicate = r.dpReplicate;
  o.dpShard = r.dpShard;
  o.tp = r.tp;
  o.sp = r.sp;
  o.ep = r.ep;
  o.pp = r.pp;
  pm.addPass(createApplyRecipe(o));
  if (failed(pm.run(*model->module)))
    return fail(r.path + ": the mesh does not fit the model: " + diagnostic);

  // Per-rank bytes from each parameter's sharding.
  ModuleOp module = *model->module;
  auto mesh = *module.getOps<dist::MeshOp>().begin();
  func::FuncOp func = *module.getOps<func::FuncOp>().begin();
  double params = 0, grads = 0, optimizer = 0, globalParams = 0;
  for (BlockArgument arg : func.getArguments()) {
    if (!func.getArgAttr(arg.getArgNumber(), VeOmniDialect::kParamAttrName))
      continue;
    auto type = cast<RankedTensorType>(arg.getType());
    auto sharding = func.getArgAttrOfType<dist::ShardingAttr>(
        arg.getArgNumber(), "dist.sharding");
    int64_t split = 1;
    for (dist::DimShardingAttr d : sharding.getDims())
      for (StringAttr a : d.getAxes())
        split *= mesh.getMesh().getAxis(a.getValue()).getSize();
    double local = double(type.getNumElements()) / split;
    double width = type.getElementTypeBitWidth() / 8.0;
    params += local * width;
    grads += local * width;
    optimizer += local * (8 + (width == 4 ? 0 : 4)); // m, v (+ f32 master)
    globalParams += double(type.getNumElements());
  }
  llvm::outs() << "model: " << model->modelType << ", "
               << llvm::format("%.0f", globalParams) << " parameters\n"
               << "mesh: dp_replicate=" << r.dpReplicate
               << " dp_shard=" << r.dpShard << " tp=" << r.tp << " sp=" << r.sp
               << " ep=" << r.ep << " pp=" << r.pp << " (world size "
               << r.worldSize << ")\n"
               << "per rank (from the shardings):\n"
               << "  parameters        " << gib(params) << "\n"
               << "  gradients         " << gib(grads) << "\n"
               << "  optimizer state   " << gib(optimizer) << " (f32 moments"
               << (r.dtype == "f32" ? "" : " and masters") << ")\n"
               << "  activations, communication per step, step time: not "
                  "derived yet (need sharding propagation and collective "
                  "insertion)\n";
  return 0;
}
