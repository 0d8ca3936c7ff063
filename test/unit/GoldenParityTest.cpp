//===- GoldenParityTest.cpp - the compiled model against transformers -----===//
//
// test/goldens/<family>/ holds what Hugging Face transformers computes for a
// tiny model (tools/goldens/make_goldens.py, run only to regenerate them):
// seeded weights under their checkpoint names, one batch of inputs, and the
// logits and loss. Here the same config is imported, compiled and run on
// the CPU backend from those files, and must agree. The test needs no
// Python.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

/// A directory of test/goldens and the config it is read from: the form
/// transformers 5 saves (config.json) or the 4.x form (config.v4.json).
struct Case {
  const char *family;
  int64_t imagePatches = 0, audioFrames = 0;
  const char *config = "config.json";
  int64_t images = 0; ///< Gemma 3's whole images
};

Case v4(Case c) {
  c.config = "config.v4.json";
  return c;
}

std::string Root() { return std::string(VEOMNI_SOURCE_DIR); }

class GoldenParityTest : public ::testing::TestWithParam<Case> {
protected:
  GoldenParityTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }
  MLIRContext context;
};

TEST_P(GoldenParityTest, LogitsAndLossMatchTransformers) {
  const Case &c = GetParam();
  std::string dir = Root() + "/test/goldens/" + c.family;
  ASSERT_TRUE(std::ifstream(dir + "/expected.safetensors").good())
      << "missing golden files in " << dir
      << " (regenerate: python tools/goldens/make_goldens.py)";

  ImportOptions options;
  options.model.dtype = "f32";
  options.data.batchSize = 1;
  options.data.seqLen = 32;
  options.data.imagePatches = c.imagePatches;
  options.data.audioFrames = c.audioFrames;
  options.data.images = c.images;
  options.returnLogits = true;
  absl::StatusOr<ImportedModel> model =
      importHFConfig(context, dir + "/" + c.config, options);
  ASSERT_TRUE(model.ok()) << model.status();
  // Every key of a config transformers wrote is known to veomni.
  EXPECT_TRUE(model->warnings.empty()) << model->warnings.front();
  CompileReport report;
  FailureOr<std::string> bytes = compileToProgram(*model, report);
  ASSERT_TRUE(succeeded(bytes));

  absl::StatusOr<rt::Program> program = rt::ParseProgram(
      absl::Span<const uint8_t>(
          reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
      c.family);
  ASSERT_TRUE(program.ok()) << program.status();
  auto executor = rt::Executor::Create(*std::move(program));
  ASSERT_TRUE(executor.ok()) << executor.status();
  rt::Executor &ex = **executor;
  // The memory plan made at compile time is the memory the runtime holds.
  EXPECT_EQ(ex.ArenaBytes(), static_cast<uint64_t>(report.arenaBytes));

  auto weights = rt::SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(weights.ok()) << weights.status();
  absl::Status loaded = rt::LoadParameters(ex, **weights);
  ASSERT_TRUE(loaded.ok()) << loaded;

  auto batch = rt::SafetensorsFile::Open(dir + "/batch.safetensors");
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (const rt::ArgumentDesc &a : ex.program().arguments) {
    if (a.isParam)
      continue;
    const rt::SafetensorsFile::Entry *e = (*batch)->Find(a.name);
    ASSERT_TRUE(e) << "batch has no input '" << a.name << "'";
    absl::Status s = rt::CopyConvert((*batch)->View(*e), ex.View(a.buffer));
    ASSERT_TRUE(s.ok()) << a.name << ": " << s;
  }
  absl::Status ran = ex.Run();
  ASSERT_TRUE(ran.ok()) << ran;

  auto expected = rt::SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  rt::TensorView wantLogits = (*expected)->View(*(*expected)->Find("logits"));
  rt::TensorView wantLoss = (*expected)->View(*(*expected)->Find("loss"));
  rt::TensorView gotLoss = ex.Output(0), gotLogits = ex.Output(1);
  ASSERT_EQ(gotLogits.shape, wantLogits.shape);

  // f32, and the kernels accumulate in another order than torch: the
  // differences measured are below 5e-7 for every family.
  double worst = 0;
  for (int64_t i = 0; i < gotLogits.numel(); ++i)
    worst = std::max(worst, std::abs(double(rt::LoadF(gotLogits, i)) -
                                     rt::LoadF(wantLogits, i)));
  double lossDiff =
      std::abs(double(rt::LoadF(gotLoss, 0)) - rt::LoadF(wantLoss, 0));
  std::printf("%s/%s: loss %.6f (transformers %.6f), max |logit diff| "
              "%.2e\n",
              c.family, c.config, rt::LoadF(gotLoss, 0), rt::LoadF(wantLoss, 0),
              worst);
  EXPECT_LT(worst, 2e-5) << "largest logit difference";
  EXPECT_LT(lossDiff, 2e-5);
}

const Case kCases[] = {
    Case{"llama"}, Case{"qwen2"}, Case{"qwen3"}, Case{"qwen3_moe"},
    Case{"qwen2_vl", 16}, Case{"qwen2_5_vl", 16}, Case{"qwen2_5_omni", 16, 16},
    // What broke with transformers 5: scaled rope, head_dim != hidden /
    // heads, MoE without top-k renormalisation and with dense layers, ties.
    Case{"llama3_tied"}, Case{"qwen2_yarn"}, Case{"qwen3_head_dim"},
    Case{"qwen3_moe_dense"},
    // The router's load-balancing loss in the loss (output_router_logits).
    Case{"qwen3_moe_aux"},
    // Qwen2's sliding window in the layers from max_window_layers on.
    Case{"qwen2_window"},
    // gpt-oss: sinks, sliding windows, yarn, biased experts; and with its
    // SwiGLU clamped where the values are, with the load-balancing loss.
    Case{"gpt_oss"}, Case{"gpt_oss_clamped"},
    // Gemma 3: (1 + w) norms, sandwich norms, GeGLU, scaled embeddings and
    // scores, a local rope and a window in the sliding layer.
    Case{"gemma3_text"},
    // Gemma 3 with its SigLIP tower: two images pooled to 4 tokens each,
    // each run of image tokens attending to itself bidirectionally.
    Case{"gemma3", 0, 0, "config.json", 2},
    // DeepSeek-V3: multi-head latent attention with interleaved yarn rope,
    // the group-limited sigmoid router with its choice bias, shared experts,
    // a dense first layer.
    Case{"deepseek_v3"},
    // Qwen3-VL and Qwen3-VL-MoE: interleaved MRoPE, DeepStack features in
    // the first layers, learned vision positions resampled to a 4 x 6 grid;
    // fused experts. transformers 4.55 has no config for them.
    Case{"qwen3_vl", 24}, Case{"qwen3_vl_moe", 24},
    // Qwen3-Omni-MoE's thinker saved alone: the Qwen3-VL tower, a Conv2d
    // audio encoder (a 64-frame clip: 8 features), a Qwen3-MoE LLM.
    Case{"qwen3_omni_moe", 24, 64}};

/// Families transformers 4.x never wrote a config of.
bool hasV4(const Case &c) {
  return std::string(c.family).rfind("qwen3_vl", 0) != 0 &&
         std::string(c.family) != "qwen3_omni_moe";
}

std::vector<Case> bothForms() {
  std::vector<Case> out;
  for (const Case &c : kCases) {
    out.push_back(c);
    if (hasV4(c))
      out.push_back(v4(c));
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Families, GoldenParityTest, ::testing::ValuesIn(bothForms()),
    [](const ::testing::TestParamInfo<Case> &info) {
      return std::string(info.param.family) +
             (std::string(info.param.config) == "config.json" ? "_v5" : "_v4");
    });

} // namespace
