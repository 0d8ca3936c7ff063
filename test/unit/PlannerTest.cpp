//===- PlannerTest.cpp - the plan search and its cost model ---------------===//
//
// The search measures each plan on two or a few shallow builds of the
// decoder and extrapolates over its depth: what it reports must be what
// the whole model's build gives (veomni plan --report), for uniform
// decoders, decoders that open with dense layers (DeepSeek), that
// alternate sliding and full attention (Gemma 3) and whose first layers
// take DeepStack features (Qwen3-VL). Also: mesh axes placed in nodes by
// the rank numbering, and recipes written back as YAML.
//
//===----------------------------------------------------------------------===//

#include "compiler/Planner.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <fstream>

using namespace mlir;
using namespace mlir::veomni;

namespace {

std::string tempPath(const std::string &name) {
  llvm::SmallString<128> dir;
  llvm::sys::fs::createUniqueDirectory("veomni-planner", dir);
  return (dir + "/" + name).str();
}

void writeFile(const std::string &path, const std::string &text) {
  std::ofstream(path) << text;
}

/// examples/tiny/FAMILY.json with its (text) config's fields changed.
std::string tinyConfig(const std::string &family,
                       const llvm::json::Object &changes) {
  auto buffer = llvm::MemoryBuffer::getFile(
      std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + family + ".json");
  EXPECT_TRUE(bool(buffer));
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*buffer)->getBuffer());
  EXPECT_TRUE(bool(json));
  llvm::json::Object *root = json->getAsObject();
  llvm::json::Object *text = root->getObject("text_config");
  for (auto &[key, value] : changes)
    (*(text ? text : root))[key] = value;
  std::string path = tempPath(family + ".json");
  std::string out;
  llvm::raw_string_ostream os(out);
  os << *json;
  writeFile(path, out);
  return path;
}

Recipe recipeFor(const std::string &config, const std::string &extra) {
  std::string path = tempPath("recipe.yaml");
  writeFile(path, "model:\n  config: " + config +
                      "\n  dtype: bf16\ndata:\n  seq_len: 32\n"
                      "  batch_size: 8\n" +
                      extra);
  absl::StatusOr<Recipe> r = Recipe::load(path, {});
  EXPECT_TRUE(r.ok()) << r.status().message();
  return *r;
}

/// The whole model's figures for `r`'s plan, as veomni plan --report
/// builds them.
StepFigures wholeModel(MLIRContext &context, const Recipe &r) {
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, r.model.config, importOptionsOf(r));
  EXPECT_TRUE(model.ok()) << model.status().message();
  PassManager pm(&context);
  addTrainingStepPasses(pm, trainingOptionsOf(r));
  EXPECT_TRUE(succeeded(pm.run(*model->module)));
  FailureOr<StepFigures> f = measureStep(*model->module, r, linkModelOf(r));
  EXPECT_TRUE(succeeded(f));
  return *f;
}

void expectSameFigures(const StepFigures &searched, const StepFigures &whole,
                       const std::string &plan) {
  SCOPED_TRACE(plan);
  auto near = [](double a, double b) {
    return std::abs(a - b) <= 1e-6 * std::max(1.0, std::abs(b));
  };
  EXPECT_PRED2(near, searched.params, whole.params);
  EXPECT_PRED2(near, searched.grads, whole.grads);
  EXPECT_PRED2(near, searched.optimizer, whole.optimizer);
  EXPECT_PRED2(near, searched.traffic.flops, whole.traffic.flops);
  // The memory plan's peak need not grow by exactly a layer's worth: on
  // these tiny layers (kilobytes, where alignment and which buffer peaks
  // matter) within 10%; on Qwen3-30B-A3B's, 0.06%.
  EXPECT_NEAR(searched.activations, whole.activations, 0.1 * whole.activations);
  for (auto &[group, kinds] : whole.traffic.byGroup)
    for (auto &[kind, t] : kinds) {
      SCOPED_TRACE(group + " " + kind);
      auto g = searched.traffic.byGroup.find(group);
      ASSERT_NE(g, searched.traffic.byGroup.end());
      auto k = g->second.find(kind);
      ASSERT_NE(k, g->second.end());
      EXPECT_EQ(k->second.count, t.count);
      EXPECT_PRED2(near, k->second.bytes, t.bytes);
      EXPECT_PRED2(near, k->second.seconds, t.seconds);
    }
  for (auto &[group, kinds] : searched.traffic.byGroup)
    for (auto &[kind, t] : kinds)
      if (t.count != 0 || t.bytes != 0) {
        EXPECT_TRUE(whole.traffic.byGroup.count(group) &&
                    whole.traffic.byGroup.at(group).count(kind))
            << group << " " << kind << " only in the search's figures";
      }
}

class SearchTest : public ::testing::Test {
protected:
  SearchTest() : context(registry()) { context.loadAllAvailableDialects(); }
  static DialectRegistry registry() {
    DialectRegistry r;
    registerAllVeOmni(r);
    return r;
  }
  /// Searches `r` and checks every measured plan without pipeline stages
  /// against its whole-model build; returns how many it checked.
  int checkSearch(const Recipe &r) {
    SearchOptions options;
    options.top = 6;
    options.measure = 24;
    options.budgetSeconds = 120;
    options.maxPipelineStages = 1; // pipelines take the stage model
    absl::StatusOr<SearchResult> s = searchPlans(context, r, options);
    EXPECT_TRUE(s.ok()) << s.status().message();
    if (!s.ok())
      return 0;
    EXPECT_GT(s->plans, 0);
    EXPECT_GE(s->measured, 1);
    int checked = 0;
    for (const Candidate &c : s->ranked) {
      EXPECT_TRUE(c.measured);
      if (c.recipe.parallel.pp > 1)
        continue;
      expectSameFigures(c.figures, wholeModel(context, c.recipe),
                        c.meshText() + ", remat " + c.recipe.train.remat +
                            ", batch " +
                            std::to_string(c.recipe.data.batchSize));
      // The step time is the report's: the figures' time, per micro-batch.
      StepTime t = timeOf(c.figures.traffic, c.recipe);
      EXPECT_NEAR(c.stepSeconds, t.total() * c.recipe.data.accumulationSteps(),
                  1e-9 * c.stepSeconds);
      ++checked;
    }
    // Fitting plans first, fastest first.
    for (size_t i = 1; i < s->ranked.size(); ++i) {
      if (s->ranked[i].fits) {
        EXPECT_LE(s->ranked[i - 1].stepSeconds, s->ranked[i].stepSeconds);
      }
    }
    return checked;
  }
  MLIRContext context;
};

TEST_F(SearchTest, UniformMoEDecoder) {
  std::string config =
      tinyConfig("qwen3_moe", llvm::json::Object{{"num_hidden_layers", 5}});
  EXPECT_GE(checkSearch(recipeFor(config, "parallel:\n  world_size: 8\n"
                                          "  dp_shard: 8\n")),
            3);
}

TEST_F(SearchTest, DenseLayersThenExperts) {
  std::string config = tinyConfig(
      "deepseek_v3", llvm::json::Object{{"num_hidden_layers", 6},
                                        {"first_k_dense_replace", 2}});
  EXPECT_GE(checkSearch(recipeFor(config, "parallel:\n  dp_shard: 4\n")), 3);
}

TEST_F(SearchTest, SlidingAndFullAttention) {
  std::string config = tinyConfig(
      "gemma3_text",
      llvm::json::Object{
          {"num_hidden_layers", 7},
          {"layer_types",
           llvm::json::Array{"sliding_attention", "sliding_attention",
                             "full_attention", "sliding_attention",
                             "sliding_attention", "full_attention",
                             "sliding_attention"}}});
  EXPECT_GE(checkSearch(recipeFor(config, "parallel:\n  dp_shard: 4\n")), 3);
}

TEST_F(SearchTest, DeepStackLayers) {
  std::string config =
      tinyConfig("qwen3_vl_moe", llvm::json::Object{{"num_hidden_layers", 5}});
  EXPECT_GE(checkSearch(recipeFor(config, "  image_patches: 64\n"
                                          "parallel:\n  dp_shard: 2\n")),
            3);
}

TEST_F(SearchTest, PipelinesAmongTheTopAreMeasuredStageByStage) {
  // On a tiny decoder latency dominates, and pipelines rank first: each of
  // the first plans is then measured at the whole depth, as --report
  // plans it, not by its stage model.
  std::string config =
      tinyConfig("qwen3_moe", llvm::json::Object{{"num_hidden_layers", 4}});
  Recipe r = recipeFor(config, "parallel:\n  dp_shard: 8\n");
  SearchOptions options;
  options.top = 3;
  options.budgetSeconds = 120;
  absl::StatusOr<SearchResult> s = searchPlans(context, r, options);
  ASSERT_TRUE(s.ok()) << s.status().message();
  int pipelines = 0;
  for (int i = 0; i < 3 && i < int(s->ranked.size()); ++i) {
    const Candidate &c = s->ranked[i];
    if (c.recipe.parallel.pp == 1)
      continue;
    ++pipelines;
    SCOPED_TRACE(c.meshText());
    EXPECT_FALSE(c.stageModel);
    absl::StatusOr<ImportedModel> forward = importHFConfig(
        context, c.recipe.model.config, importOptionsOf(c.recipe));
    ASSERT_TRUE(forward.ok());
    FailureOr<PipelineFigures> p = measurePipeline(*forward->module, c.recipe);
    ASSERT_TRUE(succeeded(p));
    EXPECT_DOUBLE_EQ(c.stepSeconds, p->stepSeconds(c.recipe));
    double most = 0;
    for (const StageFigures &f : p->stages)
      most = std::max(most, f.total(c.recipe.parallel.ppChunks));
    EXPECT_DOUBLE_EQ(c.bytes, most);
  }
  EXPECT_GE(pipelines, 1);
}

TEST(LinkPlacement, AxesFallInNodesByTheRankNumbering) {
  // Ranks are numbered row-major over dp_replicate, dp_shard, tp, sp, ep,
  // pp: the minor axes' groups are consecutive ranks.
  sharding::LinkModel link;
  sharding::placeAxes(link, {{"dp_shard", 16}, {"ep", 8}, {"pp", 1}}, 8);
  EXPECT_TRUE(link.isIntraNode("ep"));
  EXPECT_FALSE(link.isIntraNode("dp_shard"));
  // pp=2 takes the two consecutive ranks; tp=8 then strides 2 and spans
  // 16 ranks: across nodes, whatever its name.
  sharding::placeAxes(link, {{"dp_shard", 4}, {"tp", 8}, {"pp", 2}}, 8);
  EXPECT_TRUE(link.isIntraNode("pp"));
  EXPECT_FALSE(link.isIntraNode("tp"));
  sharding::placeAxes(link, {{"dp_shard", 4}, {"tp", 4}, {"pp", 2}}, 8);
  EXPECT_TRUE(link.isIntraNode("tp"));
  EXPECT_FALSE(link.isIntraNode("dp_shard"));
  // Nodes of 6: an axis of 4 does not divide them.
  sharding::placeAxes(link, {{"dp_shard", 3}, {"tp", 4}}, 6);
  EXPECT_FALSE(link.isIntraNode("tp"));
}

TEST(RecipeYaml, WrittenRecipesLoadBackTheSame) {
  std::string source = std::string(VEOMNI_SOURCE_DIR) +
                       "/examples/recipes/qwen3_30b_a3b_128_ranks.yaml";
  absl::StatusOr<Recipe> r =
      Recipe::load(source, {{"train.lr", "0.000123456789"},
                            {"parallel.pp", "4"},
                            {"data.global_batch_size", "512"},
                            {"cluster", std::string(VEOMNI_SOURCE_DIR) +
                                            "/examples/clusters/h100_sxm.yaml"},
                            {"train.betas", "0.9,0.95"},
                            {"cluster.name", "it's a 'quoted' name: yes"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->cluster.devicesPerNode, 8);
  EXPECT_DOUBLE_EQ(r->cluster.memoryGib, 79.6);
  std::string yaml = r->toYaml();
  std::string path = tempPath("written.yaml");
  writeFile(path, yaml);
  absl::StatusOr<Recipe> back = Recipe::load(path, {});
  ASSERT_TRUE(back.ok()) << back.status().message() << "\n" << yaml;
  EXPECT_EQ(back->toYaml(), yaml);
  EXPECT_EQ(back->train.lr, r->train.lr);
  EXPECT_EQ(back->cluster.name, "it's a 'quoted' name: yes");
  EXPECT_EQ(back->parallel.pp, 4);
  EXPECT_EQ(back->data.globalBatchSize, 512);
}

TEST(RecipeYaml, ClusterFilesHoldTheClusterSectionOnly) {
  std::string path = tempPath("cluster.yaml");
  writeFile(path, "cluster:\n  memory_gib: 40\nmodel:\n  dtype: f32\n");
  absl::StatusOr<Recipe> r = Recipe::load(
      std::string(VEOMNI_SOURCE_DIR) + "/examples/recipes/tiny_llama.yaml",
      {{"cluster", path}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("field 'model.dtype': a cluster file "
                                      "holds the cluster section only"),
            std::string::npos)
      << r.status().message();
}

} // namespace
