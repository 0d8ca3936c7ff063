//===- GoldenTrainingTest.cpp - gradients and AdamW against torch ---------===//
//
// test/goldens/<family>/grads.safetensors holds d loss / d parameter from
// transformers + torch autograd, and adamw.safetensors every parameter after
// one torch.optim.AdamW step (lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight
// decay 0.1 on matrices only, clip_grad_norm_ 1.0) from the same weights and
// batch (tools/goldens/make_goldens.py). Here the compiled backward pass and
// the compiled training step must agree with them.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"
#include "runtime/train/Trainer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

struct Case {
  const char *family;
  int64_t imagePatches = 0, audioFrames = 0;
  int64_t images = 0; ///< Gemma 3's whole images
  /// Gradients within this of each tensor's largest magnitude.
  double gradTolerance = 1e-5;
};

std::string Root() { return std::string(VEOMNI_SOURCE_DIR); }

class GoldenTrainingTest : public ::testing::TestWithParam<Case> {
protected:
  GoldenTrainingTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  std::string Dir() const {
    return Root() + "/test/goldens/" + GetParam().family;
  }

  /// Compiles the tiny config; loads the golden weights and batch.
  std::unique_ptr<rt::Executor> Build(const CompileOptions &options) {
    const Case &c = GetParam();
    ImportOptions io;
    io.model.dtype = "f32";
    io.data.batchSize = 1;
    io.data.seqLen = 32;
    io.data.imagePatches = c.imagePatches;
    io.data.audioFrames = c.audioFrames;
    io.data.images = c.images;
    auto model = importHFConfig(context, Dir() + "/config.json", io);
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok())
      return nullptr;
    CompileReport report;
    auto bytes = compileToProgram(*model, report, options);
    EXPECT_TRUE(succeeded(bytes));
    if (failed(bytes))
      return nullptr;
    auto program = rt::ParseProgram(
        absl::Span<const uint8_t>(
            reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
        c.family);
    EXPECT_TRUE(program.ok()) << program.status();
    auto ex = rt::Executor::Create(*std::move(program));
    EXPECT_TRUE(ex.ok());
    if (!ex.ok())
      return nullptr;
    auto weights = rt::SafetensorsFile::Open(Dir() + "/model.safetensors");
    auto batch = rt::SafetensorsFile::Open(Dir() + "/batch.safetensors");
    EXPECT_TRUE(weights.ok() && batch.ok());
    absl::Status s = rt::LoadParameters(**ex, **weights);
    if (s.ok())
      s = rt::FillInputs(**ex, **batch, 0);
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? *std::move(ex) : nullptr;
  }

  /// Compares `got` (a parameter-shaped tensor; stacked experts included)
  /// with the golden tensors of `name` in `file`; returns the worst error
  /// relative to the largest golden magnitude.
  double Compare(const rt::SafetensorsFile &file, const std::string &name,
                 const rt::TensorView &got) {
    std::vector<std::pair<std::string, rt::TensorView>> parts;
    if (name.find('*') == std::string::npos) {
      parts.push_back({name, got});
    } else {
      rt::TensorView slice = got;
      slice.shape.erase(slice.shape.begin());
      for (int64_t i = 0; i < got.shape[0]; ++i) {
        slice.data = static_cast<uint8_t *>(got.data) + i * slice.bytes();
        parts.push_back(
            {absl::StrReplaceAll(name, {{"*", std::to_string(i)}}), slice});
      }
    }
    // A gradient that is zero in exact arithmetic is f32 round-off on both
    // sides, 1e-13 to 1e-11 here: an attention key's bias (softmax ignores
    // a shift of every score; Qwen3-Omni's audio k_proj and SigLIP's have
    // one). The tiny models' gradients reach 0.1 to 1.5: errors are
    // measured against at least 1e-5 (an absolute 1e-10 at the tolerance).
    double worst = 0, scale = 1e-5;
    for (auto &[tensor, view] : parts) {
      const rt::SafetensorsFile::Entry *e = file.Find(tensor);
      EXPECT_TRUE(e) << tensor;
      if (!e)
        return 1e9;
      rt::TensorView want = file.View(*e);
      EXPECT_EQ(want.shape, view.shape) << tensor;
      for (int64_t i = 0; i < view.numel(); ++i) {
        scale = std::max(scale, double(std::abs(rt::LoadF(want, i))));
        worst = std::max(
            worst, std::abs(double(rt::LoadF(view, i)) - rt::LoadF(want, i)));
      }
    }
    return worst / scale;
  }

  MLIRContext context;
};

TEST_P(GoldenTrainingTest, GradientsMatchTorchAutograd) {
  if (!std::ifstream(Dir() + "/grads.safetensors").good())
    GTEST_FAIL() << "missing " << Dir() << "/grads.safetensors";
  CompileOptions options;
  options.gradients = true;
  auto ex = Build(options);
  ASSERT_TRUE(ex);
  ASSERT_TRUE(ex->Run().ok());
  auto grads = rt::SafetensorsFile::Open(Dir() + "/grads.safetensors");
  ASSERT_TRUE(grads.ok()) << grads.status();
  size_t output = 1;
  double worst = 0;
  for (const rt::ArgumentDesc &a : ex->program().arguments) {
    if (!a.isParam)
      continue;
    double err = Compare(**grads, a.name, ex->Output(output++));
    EXPECT_LT(err, GetParam().gradTolerance) << a.name;
    worst = std::max(worst, err);
  }
  std::printf("%s: worst gradient error %.2e of the tensor's largest "
              "magnitude\n",
              GetParam().family, worst);
}

TEST_P(GoldenTrainingTest, OneAdamWStepMatchesTorch) {
  if (!std::ifstream(Dir() + "/adamw.safetensors").good())
    GTEST_FAIL() << "missing " << Dir() << "/adamw.safetensors";
  CompileOptions options;
  // One warmup step makes lr(1) exactly the peak lr, as torch uses.
  TrainOptions train; // lr 1e-3, betas (0.9, 0.95), eps 1e-8, decay 0.1
  train.warmupSteps = 1;
  train.steps = 10;
  options.train = train;
  auto ex = Build(options);
  ASSERT_TRUE(ex);
  auto trainer = rt::Trainer::Create(*ex);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE(trainer->InitState().ok());
  auto metrics = trainer->Step(1);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NEAR(metrics->lr, 1e-3, 1e-9);

  auto after = rt::SafetensorsFile::Open(Dir() + "/adamw.safetensors");
  auto grads = rt::SafetensorsFile::Open(Dir() + "/grads.safetensors");
  ASSERT_TRUE(after.ok() && grads.ok());
  // The metadata is one JSON object of strings: {..., "grad_norm": "2.66"}
  double norm = 0;
  for (auto &[key, json] : (*after)->metadata()) {
    size_t at = json.find("\"grad_norm\"");
    if (at != std::string::npos)
      norm =
          std::atof(json.c_str() + json.find_first_of("0123456789", at + 11));
  }
  ASSERT_GT(norm, 0) << "adamw.safetensors has no grad_norm";
  EXPECT_NEAR(metrics->gradNorm, norm, 1e-5 * norm);

  // At step 1 AdamW moves each element by about lr * sign(g): an element
  // whose gradient is rounding noise may go either way in any two
  // implementations, so those are counted, not compared. Noise grows with
  // the gradients (float32 sums in another order): below 1e-6 times the
  // gradient norm when that exceeds 1 (Gemma's scaled embeddings and
  // (1 + w) norms: 23.5), else below 1e-6.
  const double noise = 1e-6 * std::max(1.0, norm);
  int64_t compared = 0, skipped = 0;
  double worst = 0;
  for (const rt::ArgumentDesc &a : ex->program().arguments) {
    if (!a.isParam)
      continue;
    rt::TensorView got = ex->View(a.buffer);
    std::vector<std::string> names;
    int64_t parts = a.name.find('*') == std::string::npos ? 1 : got.shape[0];
    for (int64_t i = 0; i < parts; ++i)
      names.push_back(
          parts == 1 ? a.name
                     : absl::StrReplaceAll(a.name, {{"*", std::to_string(i)}}));
    int64_t per = got.numel() / parts;
    for (int64_t part = 0; part < parts; ++part) {
      const auto *w = (*after)->Find(names[part]);
      const auto *g = (*grads)->Find(names[part]);
      ASSERT_TRUE(w && g) << names[part];
      rt::TensorView want = (*after)->View(*w), grad = (*grads)->View(*g);
      for (int64_t i = 0; i < per; ++i) {
        float gi = std::abs(rt::LoadF(grad, i));
        if (gi > 0 && gi < noise) {
          ++skipped;
          continue;
        }
        ++compared;
        double diff = std::abs(double(rt::LoadF(got, part * per + i)) -
                               rt::LoadF(want, i));
        worst = std::max(worst, diff);
        if (diff > 1e-6)
          ADD_FAILURE() << names[part] << "[" << i
                        << "]: " << rt::LoadF(got, part * per + i)
                        << " vs torch " << rt::LoadF(want, i);
      }
    }
  }
  std::printf("%s: grad norm %.6f (torch %.6f); after one step, %lld "
              "elements within %.1e of torch (%lld with 0 < |g| < %.1e not "
              "compared)\n",
              GetParam().family, metrics->gradNorm, norm, (long long)compared,
              worst, (long long)skipped, noise);
}

INSTANTIATE_TEST_SUITE_P(
    Families, GoldenTrainingTest,
    ::testing::Values(
        Case{"llama"}, Case{"qwen2"}, Case{"qwen3"}, Case{"qwen3_moe"},
        Case{"qwen2_vl", 16}, Case{"qwen2_5_vl", 16},
        Case{"qwen2_5_omni", 16, 16},
        // What broke with transformers 5: scaled rope, head_dim != hidden /
        // heads, MoE without top-k renormalisation and with dense layers, ties.
        Case{"llama3_tied"}, Case{"qwen2_yarn"}, Case{"qwen3_head_dim"},
        Case{"qwen3_moe_dense"},
        // The router's load-balancing loss in the loss (output_router_logits).
        Case{"qwen3_moe_aux"},
        // Qwen2's sliding window in the layers from max_window_layers on.
        Case{"qwen2_window"},
        // gpt-oss: sinks, sliding windows, yarn, biased experts; and with
        // its SwiGLU clamped where the values are, with the load-balancing
        // loss.
        Case{"gpt_oss"}, Case{"gpt_oss_clamped"},
        // Gemma 3: (1 + w) norms, sandwich norms, GeGLU, scaled embeddings
        // and scores, a local rope and a window in the sliding layer.
        Case{"gemma3_text"},
        // Gemma 3 with its SigLIP tower and bidirectional image blocks.
        // torch's own f32 gradients of the tower are up to 4.3e-6 of their
        // largest from the float64 ones (make_goldens' reference run in
        // float64): the two f32 sums may be twice that apart, and more on
        // another CPU's BLAS; measured 8.3e-6.
        Case{"gemma3", 0, 0, 2, 3e-5},
        // DeepSeek-V3: multi-head latent attention with interleaved yarn
        // rope, the group-limited sigmoid router with its choice bias,
        // shared experts, a dense first layer.
        Case{"deepseek_v3"},
        // Qwen3-VL(-MoE): interleaved MRoPE, DeepStack, learned vision
        // positions; fused experts.
        Case{"qwen3_vl", 24}, Case{"qwen3_vl_moe", 24},
        // Qwen3-Omni-MoE's thinker: Conv2d audio encoder, DeepStack, MoE.
        Case{"qwen3_omni_moe", 24, 64}),
    [](const ::testing::TestParamInfo<Case> &info) {
      return std::string(info.param.family);
    });

// DeepSeek-V3's auxiliary-loss-free balancing (train.router_bias_update_rate):
// after a step every e_score_correction_bias moved by rate * sign(mean load
// - load), the loads being the tokens transformers routes to each expert on
// the golden batch (tools/goldens/make_router_load_golden.py); with two
// micro-batches of it, the loads of both, so the same step.
class RouterBiasTest : public GoldenTrainingTest {};

TEST_P(RouterBiasTest, BiasesFollowTheAuxiliaryLossFreeRule) {
  auto loads = rt::SafetensorsFile::Open(Dir() + "/router_loads.safetensors");
  auto before = rt::SafetensorsFile::Open(Dir() + "/model.safetensors");
  ASSERT_TRUE(loads.ok() && before.ok());
  const float rate = 0.01f;
  for (int64_t accumulation : {1, 2}) {
    SCOPED_TRACE(accumulation);
    CompileOptions options;
    TrainOptions train;
    train.warmupSteps = 1;
    train.steps = 10;
    train.routerBiasUpdateRate = rate;
    options.train = train;
    options.accumulationSteps = accumulation;
    auto ex = Build(options);
    ASSERT_TRUE(ex);
    auto trainer = rt::Trainer::Create(*ex);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE(trainer->InitState().ok());
    for (int64_t micro = 0; micro < accumulation; ++micro)
      ASSERT_TRUE(trainer->Step(1, micro == accumulation - 1).ok());
    int64_t biases = 0, up = 0, down = 0, kept = 0;
    for (const rt::ArgumentDesc &a : ex->program().arguments) {
      if (!a.isParam || !absl::EndsWith(a.name, ".e_score_correction_bias"))
        continue;
      ++biases;
      const auto *load = (*loads)->Find(a.name);
      const auto *b0 = (*before)->Find(a.name);
      ASSERT_TRUE(load && b0) << a.name;
      rt::TensorView l = (*loads)->View(*load), w = (*before)->View(*b0);
      rt::TensorView got = ex->View(a.buffer);
      const int64_t experts = l.numel();
      double mean = 0;
      for (int64_t e = 0; e < experts; ++e)
        mean += rt::LoadF(l, e) / experts;
      for (int64_t e = 0; e < experts; ++e) {
        double offset = mean - rt::LoadF(l, e);
        float sign = offset > 0 ? 1.f : offset < 0 ? -1.f : 0.f;
        up += sign > 0;
        down += sign < 0;
        kept += sign == 0;
        EXPECT_EQ(rt::LoadF(got, e), rt::LoadF(w, e) + rate * sign)
            << a.name << "[" << e << "]";
      }
    }
    EXPECT_EQ(biases, 1);
    EXPECT_GT(up, 0);
    EXPECT_GT(down, 0);
    EXPECT_GT(kept, 0) << "an expert at the mean load stays";
  }
}

INSTANTIATE_TEST_SUITE_P(DeepSeek, RouterBiasTest,
                         ::testing::Values(Case{"deepseek_v3"}),
                         [](const ::testing::TestParamInfo<Case> &info) {
                           return std::string(info.param.family);
                         });

} // namespace
