//===- ImporterTest.cpp - Hugging Face config import ----------------------===//

#include "frontends/Importer.h"
#include "compiler/Registration.h"
#include "frontends/ConfigReader.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringRef.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

using namespace mlir;
using namespace mlir::veomni;

namespace {

std::string examplePath(const std::string &family) {
  return std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + family + ".json";
}

class ImporterTest : public ::testing::TestWithParam<std::string> {
protected:
  ImporterTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }
  MLIRContext context;
};

// Every tiny family imports, verifies, and its plan covers every parameter
// with tensor-parallel column/row pairs that match up layer by layer.
TEST_P(ImporterTest, TinyFamilyImportsWithACompletePlan) {
  ImportOptions options;
  options.model.dtype = "f32";
  options.data.seqLen = 64;
  options.data.imagePatches = 16;
  options.data.audioFrames = 32;
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, examplePath(GetParam()), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(succeeded(verify(*model->module)));

  ParameterSummary summary = summarizeParameters(*model);
  EXPECT_GT(summary.total, 50'000);
  EXPECT_LT(summary.total, 5'000'000) << "tiny configs stay tiny";
  EXPECT_LE(summary.active, summary.total);
  EXPECT_EQ(summary.active<summary.total, model->numExperts> 0);

  bool seenInput = false;
  std::map<std::string, std::set<std::string>> pairs; // layer -> placements
  for (const ArgumentInfo &arg : model->arguments) {
    // Parameters come first, then the batch inputs.
    if (!arg.isParam) {
      seenInput = true;
      continue;
    }
    EXPECT_FALSE(seenInput) << arg.name << " follows a batch input";
    std::optional<Placement> p = placementOf(model->plan, arg.name);
    ASSERT_TRUE(p) << arg.name;
    llvm::StringRef name = arg.name;
    const std::string &shown = arg.name;
    if (*p == Placement::Column || *p == Placement::Row) {
      size_t at = name.find(".self_attn.");
      if (at == llvm::StringRef::npos)
        at = name.find(".mlp.");
      ASSERT_NE(at, llvm::StringRef::npos) << shown;
      std::string block = name.substr(0, at).str() +
                          (name.contains(".self_attn.") ? "/attn" : "/mlp");
      pairs[block].insert(placementName(*p).str());
    }
    if (*p == Placement::Expert) {
      // Per expert (experts.*.gate_proj...) or fused as transformers 5
      // holds them (Qwen3-VL-MoE: experts.gate_up_proj, experts.down_proj).
      EXPECT_TRUE(name.contains(".experts.*.") ||
                  name.ends_with(".experts.gate_up_proj") ||
                  name.ends_with(".experts.down_proj"))
          << shown;
      EXPECT_EQ(arg.type.getDimSize(0), model->numExperts) << shown;
    }
    if (name.ends_with("embed_tokens.weight") ||
        name.ends_with("lm_head.weight")) {
      EXPECT_EQ(*p, Placement::Vocab) << shown;
    }
  }
  EXPECT_TRUE(seenInput);
  EXPECT_FALSE(pairs.empty());
  for (const auto &[block, placements] : pairs)
    EXPECT_EQ(placements, (std::set<std::string>{"tp:column", "tp:row"}))
        << block << " has an unpaired tensor-parallel split";
}

INSTANTIATE_TEST_SUITE_P(Families, ImporterTest,
                         ::testing::Values("llama", "qwen2", "qwen3",
                                           "qwen3_moe", "qwen2_vl",
                                           "qwen2_5_vl", "qwen2_5_omni",
                                           "omni_moe", "qwen3_vl",
                                           "qwen3_vl_moe", "qwen3_omni_moe"));

TEST(ConfigReader, ReportsTheFirstErrorOnceWithTheDottedField) {
  ConfigReader r = ConfigReader::fromText(
      R"({"a": 1, "nested": {"b": "x", "c": [1, 2]}, "n": null})", "cfg.json");
  EXPECT_EQ(r.getInt("a"), 1);
  EXPECT_EQ(r.getInt("n", 7), 7) << "null reads as missing";
  std::optional<ConfigReader> nested = r.getObject("nested");
  ASSERT_TRUE(nested);
  EXPECT_EQ(nested->getIntList("c"), (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(nested->getInt("b", 5), 5);
  EXPECT_TRUE(r.failed()) << "nested readers share the error";
  EXPECT_EQ(r.error(),
            "cfg.json: field 'nested.b': expected an integer, got \"x\"");
  // Later errors do not overwrite the first.
  r.getInt("missing");
  EXPECT_EQ(r.error(),
            "cfg.json: field 'nested.b': expected an integer, got \"x\"");
}

} // namespace
