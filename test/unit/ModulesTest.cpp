//===- ModulesTest.cpp - every op knows which model module it computes ----===//
//
// Passes decide with #veomni.module (pipeline stages, remat), never with a
// name. That only works if every op of a compiled training step carries one:
// the importer sets it, autodiff gives each op it builds the module of the
// forward op it differentiates (marked backward), the optimizer its own, and
// canonicalize, CSE and remat keep them.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

using namespace mlir;
using namespace mlir::veomni;

namespace {

class ModulesTest : public ::testing::TestWithParam<std::string> {
protected:
  ModulesTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }
  MLIRContext context;
};

TEST_P(ModulesTest, EveryOpOfATrainingStepCarriesItsModule) {
  ImportOptions options;
  options.model.dtype = "f32";
  options.data.seqLen = 32;
  options.data.imagePatches = 16;
  options.data.audioFrames = 32;
  absl::StatusOr<ImportedModel> model = importHFConfig(
      context,
      std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + GetParam() + ".json",
      options);
  ASSERT_TRUE(model.ok()) << model.status();

  CompileOptions compile;
  compile.train = TrainOptions{};
  compile.remat = "full";
  PassManager pm(&context);
  addTrainingStepPasses(pm, compile);
  ASSERT_TRUE(succeeded(pm.run(*model->module)));

  func::FuncOp step = *model->module->getOps<func::FuncOp>().begin();
  std::set<int64_t> layers, backwardLayers;
  std::set<ModuleKind> kinds;
  int backward = 0, optimizer = 0;
  int shared = 0;
  for (Operation &op : step.getBody().front().without_terminator()) {
    // The one exception: canonicalize merges equal constants of several
    // modules into one at the top, located nowhere (MLIR's folder does so
    // on purpose). Such a constant belongs to no one module.
    if (op.hasTrait<OpTrait::ConstantLike>() && isa<UnknownLoc>(op.getLoc())) {
      ++shared;
      continue;
    }
    ModuleAttr m = getModule(op.getLoc());
    std::string where;
    llvm::raw_string_ostream os(where);
    op.getLoc().print(os);
    ASSERT_TRUE(m) << "no module on " << op.getName().getStringRef().str()
                   << " at " << where;
    kinds.insert(m.getKind());
    if (m.isDecoderLayer())
      (m.getBackward() ? backwardLayers : layers).insert(m.getLayer());
    backward += m.getBackward();
    optimizer += m.getKind() == ModuleKind::Optimizer;
  }
  // Every decoder layer is there, forward and backward, and nothing else
  // claims to be one.
  ASSERT_FALSE(layers.empty());
  EXPECT_EQ(*layers.begin(), 0);
  EXPECT_EQ(*layers.rbegin() + 1, static_cast<int64_t>(layers.size()));
  EXPECT_EQ(layers, backwardLayers);
  EXPECT_GT(backward, 0);
  EXPECT_GT(optimizer, 0);
  EXPECT_LT(shared, 20);
  for (ModuleKind k :
       {ModuleKind::Embedding, ModuleKind::InputNorm, ModuleKind::Attention,
        ModuleKind::Mlp, ModuleKind::FinalNorm, ModuleKind::LmHead})
    EXPECT_TRUE(kinds.count(k)) << stringifyModuleKind(k).str();
  if (GetParam().find("vl") != std::string::npos ||
      GetParam().find("omni") != std::string::npos) {
    EXPECT_TRUE(kinds.count(ModuleKind::VisionBlock));
  }
}

// The importer declares how each parameter starts without weights: ones for
// what it uses as a norm weight, zeros for biases, normal for the rest.
// (The test may read names; the compiler does not.)
TEST_P(ModulesTest, ParameterInitialisationIsDeclaredByTheImporter) {
  ImportOptions options;
  options.model.dtype = "bf16"; // so that the optimizer adds f32 masters
  options.data.seqLen = 32;
  options.data.imagePatches = 16;
  options.data.audioFrames = 32;
  absl::StatusOr<ImportedModel> model = importHFConfig(
      context,
      std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + GetParam() + ".json",
      options);
  ASSERT_TRUE(model.ok()) << model.status();
  func::FuncOp forward = *model->module->getOps<func::FuncOp>().begin();
  std::set<unsigned> normWeights;
  forward.walk([&](Operation *op) {
    if (isa<RMSNormOp, LayerNormOp>(op))
      if (auto arg = dyn_cast<BlockArgument>(op->getOperand(1)))
        normWeights.insert(arg.getArgNumber());
  });
  int ones = 0, zeros = 0;
  for (unsigned i = 0; i < forward.getNumArguments(); ++i) {
    auto name =
        forward.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kParamAttrName);
    if (!name)
      continue;
    auto init =
        forward.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kInitAttrName);
    std::string declared = init ? init.getValue().str() : "normal";
    std::string expected = normWeights.count(i)                 ? "ones"
                           : name.getValue().ends_with(".bias") ? "zeros"
                                                                : "normal";
    EXPECT_EQ(declared, expected) << name.getValue().str();
    ones += declared == "ones";
    zeros += declared == "zeros";
  }
  EXPECT_GT(ones, 0);

  // The optimizer declares which state starts as a copy of which parameter.
  CompileOptions compile;
  compile.train = TrainOptions{};
  PassManager pm(&context);
  addTrainingStepPasses(pm, compile);
  ASSERT_TRUE(succeeded(pm.run(*model->module)));
  func::FuncOp step = *model->module->getOps<func::FuncOp>().begin();
  int masters = 0;
  std::set<std::string> params;
  for (const ArgumentInfo &a : model->arguments)
    if (a.isParam)
      params.insert(a.name);
  for (unsigned i = 0; i < step.getNumArguments(); ++i) {
    // Every optimizer state names the parameter it belongs to.
    if (step.getArgAttr(i, VeOmniDialect::kStateAttrName)) {
      auto of =
          step.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kStateOfAttrName);
      ASSERT_TRUE(of) << "state #" << i << " belongs to no parameter";
      EXPECT_TRUE(params.count(of.getValue().str())) << of.getValue().str();
    }
    auto from =
        step.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kInitFromAttrName);
    if (!from)
      continue;
    ++masters;
    auto state =
        step.getArgAttrOfType<StringAttr>(i, VeOmniDialect::kStateAttrName);
    ASSERT_TRUE(state);
    EXPECT_EQ(state.getValue().str(),
              "optimizer.master." + from.getValue().str());
  }
  EXPECT_EQ(masters,
            static_cast<int>(model->arguments.size()) -
                static_cast<int>(std::count_if(
                    model->arguments.begin(), model->arguments.end(),
                    [](const ArgumentInfo &a) { return !a.isParam; })));
}

INSTANTIATE_TEST_SUITE_P(Families, ModulesTest,
                         ::testing::Values("llama", "qwen3_moe", "qwen2_vl",
                                           "qwen2_5_omni"));

} // namespace
