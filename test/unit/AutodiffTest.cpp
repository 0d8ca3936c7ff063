//===- AutodiffTest.cpp - every VJP rule against finite differences -------===//
//
// Each case is a small function of parameters (f32, values in [-1, 1]) whose
// loss is sum(op(params...) * cot) for a random cotangent input `cot`. It is
// compiled twice, with and without veomni-autodiff, and run on the CPU
// backend; every gradient element (up to 48 per parameter) must equal the
// central difference (L(p + h) - L(p - h)) / 2h of the forward program.
//
// Tolerance: |analytic - numeric| <= 3e-3 + 3e-2 |numeric|, with h = 1e-2.
// Both sides are f32: the numeric side carries about 1e-5 / h = 1e-3 of
// rounding noise, and the second-order error of central differences is
// h^2 f''' ~ 1e-4 for these functions.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "runtime/executor/Executor.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

struct Case {
  const char *name;
  /// Function arguments after the parameters' (named p0, p1, ...).
  const char *params; ///< e.g. "%a: tensor<3x4xf32>, %b: tensor<4x5xf32>"
  const char *inputs; ///< integer inputs, may be empty
  const char *body;   ///< ops defining %y
  const char *yType;  ///< type of %y (f32)
};

std::string ModuleText(const Case &c) {
  // Parameters get veomni.param names; integer inputs veomni.input names.
  auto annotate = [](std::string list, const char *attr) {
    std::string out;
    size_t at = 0;
    while (at < list.size()) {
      size_t comma = list.find(", %", at);
      std::string arg = list.substr(
          at, comma == std::string::npos ? std::string::npos : comma - at);
      std::string name = arg.substr(1, arg.find(':') - 1);
      out += (out.empty() ? "" : ", ") + arg + " {" + attr + " = \"" + name +
             "\"}";
      if (comma == std::string::npos)
        break;
      at = comma + 2;
    }
    return out;
  };
  std::string args = annotate(c.params, "veomni.param");
  if (*c.inputs)
    args += ", " + annotate(c.inputs, "veomni.input");
  args += std::string(", %cot: ") + c.yType + " {veomni.input = \"cot\"}";
  std::string y = c.yType;
  int rank = 0;
  for (char ch : y)
    rank += ch == 'x';
  std::string dims;
  for (int d = 0; d < rank; ++d)
    dims += (d ? ", " : "") + std::to_string(d);
  return "func.func @forward(" + args + ") -> tensor<f32> {\n" + c.body +
         "\n  %yc = veomni.mul %y, %cot : " + y +
         "\n  %loss = veomni.reduce sum %yc dims = [" + dims + "] : " + y +
         "\n  return %loss : tensor<f32>\n}\n";
}

class AutodiffTest : public ::testing::TestWithParam<Case> {
protected:
  AutodiffTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  std::unique_ptr<rt::Executor> Compile(const std::string &text,
                                        bool gradients) {
    OwningOpRef<ModuleOp> module =
        parseSourceString<ModuleOp>(text, ParserConfig(&context));
    EXPECT_TRUE(module) << text;
    if (!module)
      return nullptr;
    CompileOptions options;
    options.gradients = gradients;
    CompileReport report;
    FailureOr<std::string> bytes = compileModule(*module, {}, options, report);
    EXPECT_TRUE(succeeded(bytes)) << text;
    if (failed(bytes))
      return nullptr;
    auto program = rt::ParseProgram(
        absl::Span<const uint8_t>(
            reinterpret_cast<const uint8_t *>(bytes->data()), bytes->size()),
        "case");
    EXPECT_TRUE(program.ok()) << program.status();
    auto ex = rt::Executor::Create(*std::move(program));
    EXPECT_TRUE(ex.ok());
    return ex.ok() ? *std::move(ex) : nullptr;
  }

  MLIRContext context;
};

/// Same values into both programs: parameters and `cot` uniform in [-1, 1],
/// integer inputs by name (ids below their bound, positions, segments,
/// labels with an ignored one).
void Fill(rt::Executor &ex, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const rt::ArgumentDesc &a : ex.program().arguments) {
    rt::TensorView v = ex.View(a.buffer);
    int64_t n = v.numel(), last = v.shape.empty() ? 1 : v.shape.back();
    for (int64_t i = 0; i < n; ++i) {
      if (rt::IsFloat(v.dtype))
        rt::StoreF(v, i, uniform(rng));
      else if (a.name == "pos")
        rt::StoreI(v, i, i % last);
      else if (a.name == "seg")
        rt::StoreI(v, i, (i % last) * 2 / last); // two segments a row
      else if (a.name == "labels")
        rt::StoreI(v, i, i == 1 ? -100 : int64_t(rng() % 7));
      else
        rt::StoreI(v, i, a.bound > 0 ? int64_t(rng() % a.bound) : 0);
    }
  }
}

TEST_P(AutodiffTest, GradientsMatchFiniteDifferences) {
  const Case &c = GetParam();
  std::string text = ModuleText(c);
  auto grad = Compile(text, /*gradients=*/true);
  auto fwd = Compile(text, /*gradients=*/false);
  ASSERT_TRUE(grad && fwd);
  Fill(*grad, 7);
  Fill(*fwd, 7);
  ASSERT_TRUE(grad->Run().ok());

  const double h = 1e-2;
  size_t output = 1; // gradients follow the loss, in parameter order
  for (const rt::ArgumentDesc &a : fwd->program().arguments) {
    if (!a.isParam)
      continue;
    rt::TensorView p = fwd->View(a.buffer);
    rt::TensorView g = grad->Output(output++);
    ASSERT_EQ(g.shape, p.shape) << a.name;
    int64_t n = p.numel(), stride = std::max<int64_t>(1, n / 48);
    for (int64_t i = 0; i < n; i += stride) {
      float saved = rt::LoadF(p, i);
      rt::StoreF(p, i, saved + h);
      ASSERT_TRUE(fwd->Run().ok());
      double up = rt::LoadF(fwd->Output(0), 0);
      rt::StoreF(p, i, saved - h);
      ASSERT_TRUE(fwd->Run().ok());
      double down = rt::LoadF(fwd->Output(0), 0);
      rt::StoreF(p, i, saved);
      double numeric = (up - down) / (2 * h);
      double analytic = rt::LoadF(g, i);
      EXPECT_NEAR(analytic, numeric, 3e-3 + 3e-2 * std::abs(numeric))
          << c.name << ": d loss / d " << a.name << "[" << i << "]";
    }
  }
}

// The cases read as MLIR, one op per line.
// clang-format off
#define T(shape) "tensor<" shape "xf32>"

INSTANTIATE_TEST_SUITE_P(
    Ops, AutodiffTest,
    ::testing::Values(
        Case{
            "add_sub_neg", "%a: " T("3x5") ", %b: " T("3x5"), "",
            "  %s = veomni.add %a, %b : " T(
                "3x5") "\n"
                       "  %d = veomni.sub %s, %b : " T(
                           "3x5") "\n"
                                  "  %m = veomni.mul %d, %b : " T(
                                      "3x5") "\n"
                                             "  %y = veomni.neg %m : " T("3x5"),
            T("3x5")},
        Case{"div_exp", "%a: " T("4x3") ", %b: " T("4x3"), "",
             "  %e = veomni.exp %b : " T("4x3") "\n"
                                                "  %y = veomni.div %a, %e : " T(
                                                    "4x3"),
             T("4x3")},
        Case{
            "log_sqrt_rsqrt", "%a: " T("7"), "",
            "  %one = veomni.constant dense<1.5> : " T(
                "7") "\n"
                     "  %sq = veomni.mul %a, %a : " T(
                         "7") "\n"
                              "  %p = veomni.add %sq, %one : " T(
                                  "7") "\n"
                                       "  %l = veomni.log %p : " T(
                                           "7") "\n"
                                                "  %r = veomni.sqrt %p : " T(
                                                    "7") "\n"
                                                         "  %q = veomni.rsqrt "
                                                         "%p : " T(
                                                             "7") "\n"
                                                                  "  %lr = "
                                                                  "veomni.add "
                                                                  "%l, %r : " T(
                                                                      "7") "\n"
                                                                           "  "
                                                                           "%y "
                                                                           "= "
                                                                           "veo"
                                                                           "mni"
                                                                           ".ad"
                                                                           "d "
                                                                           "%lr"
                                                                           ", "
                                                                           "%q "
                                                                           ":"
                                                                           " " T(
                                                                               "7"),
            T("7")},
        Case{"sin_cos_tanh_sigmoid_silu", "%a: " T("2x9"), "",
             "  %s = veomni.sin %a : " T(
                 "2x9") "\n"
                        "  %c = veomni.cos %s : " T(
                            "2x9") "\n"
                                   "  %t = veomni.tanh %c : " T(
                                       "2x9") "\n"
                                              "  %g = veomni.sigmoid %t : " T(
                                                  "2x9") "\n"
                                                         "  %u = veomni.silu "
                                                         "%a : " T(
                                                             "2x9") "\n"
                                                                    "  %y = "
                                                                    "veomni."
                                                                    "mul %g, "
                                                                    "%u : " T(
                                                                        "2x9"),
             T("2x9")},
        Case{"matmul", "%a: " T("3x4") ", %b: " T("4x5"), "",
             "  %y = veomni.matmul %a, %b : " T("3x4") ", " T("4x5"), T("3x5")},
        Case{"matmul_transposed", "%a: " T("4x3") ", %b: " T("5x4"), "",
             "  %y = veomni.matmul %a, %b {transpose_lhs, transpose_rhs} : " T(
                 "4x3") ", " T("5x4"),
             T("3x5")},
        Case{"matmul_shared_rhs", "%a: " T("2x3x4") ", %b: " T("5x4"), "",
             "  %y = veomni.matmul %a, %b {transpose_rhs} : " T("2x3x4") ", " T(
                 "5x4"),
             T("2x3x5")},
        Case{"matmul_batched_transposed_lhs",
             "%a: " T("2x4x3") ", %b: " T("2x4x5"), "",
             "  %y = veomni.matmul %a, %b {transpose_lhs} : " T("2x4x3") ", " T(
                 "2x4x5"),
             T("2x3x5")},
        Case{
            "reduce_broadcast_softmax", "%a: " T("3x6"), "",
            "  %s = veomni.reduce sum %a dims = [1] : " T(
                "3x6") "\n"
                       "  %m = veomni.reduce mean %a dims = [0] keep_dims : " T(
                           "3x6") "\n"
                                  "  %sb = veomni.broadcast %s dims = [0] : " T("3") " to " T(
                                      "3x6") "\n"
                                             "  %mb = veomni.broadcast %m dims "
                                             "= [0, 1] : " T("1x6") " to " T(
                                                 "3x6") "\n"
                                                        "  %x = veomni.add "
                                                        "%sb, %mb : " T(
                                                            "3x6") "\n"
                                                                   "  %z = "
                                                                   "veomni.mul "
                                                                   "%x, %a "
                                                                   ": " T(
                                                                       "3x6") "\n"
                                                                              "  %y = veomni.softmax %z dim = 1 : " T(
                                                                                  "3x6"),
            T("3x6")},
        Case{"reshape_transpose_concat", "%a: " T("2x6") ", %b: " T("3x4"), "",
             "  %r = veomni.reshape %a : " T("2x6") " to " T(
                 "3x4") "\n"
                        "  %t = veomni.transpose %b perm = [1, 0] : " T(
                            "3x4") "\n"
                                   "  %tt = veomni.transpose %t perm = [1, 0] "
                                   ": " T("4x3") "\n"
                                                 "  %y = veomni.concat %r, %tt "
                                                 "dim = 0 : " T("3x4") ", " T(
                                                     "3x4"),
             T("6x4")},
        Case{"rms_norm", "%x: " T("3x8") ", %w: " T("8"), "",
             "  %y = veomni.rms_norm %x, %w {epsilon = 1.0e-5 : f64} : " T(
                 "3x8") ", " T("8"),
             T("3x8")},
        Case{"gather_embedding", "%table: " T("7x4"), "%ids: tensor<2x3xi32>",
             "  %y = veomni.gather %table[%ids] axis = 0 : " T(
                 "7x4") ", tensor<2x3xi32>",
             T("2x3x4")},
        Case{"scatter_add", "%d: " T("5x3") ", %u: " T("4x3"),
             "%ids: tensor<4xi32>",
             "  %y = veomni.scatter_add %u into %d[%ids] axis = 0 : " T(
                 "4x3") ", " T("5x3") ", tensor<4xi32>",
             T("5x3")},
        Case{"rope", "%x: " T("1x5x2x8"), "%pos: tensor<1x5xi32>",
             "  %y = veomni.rope %x, %pos {theta = 100.0 : f64, "
             "attention_scaling = 1.3 : f64} : " T("1x5x2x8") ", "
                                                              "tensor<1x5xi32>",
             T("1x5x2x8")},
        Case{"rope_multimodal", "%x: " T("1x4x1x8"), "%pos: tensor<2x1x4xi32>",
             "  %y = veomni.rope %x, %pos {theta = 50.0 : f64, mrope_section "
             "= array<i64: 1, 3>} : " T("1x4x1x8") ", tensor<2x1x4xi32>",
             T("1x4x1x8")},
        Case{"attention_gqa_causal_segments",
             "%q: " T("1x6x4x4") ", %k: " T("1x6x2x4") ", %v: " T("1x6x2x4"),
             "%seg: tensor<1x6xi32>",
             "  %y = veomni.attention %q, %k, %v segments %seg {causal, scale "
             "= 0.5 : f64} : " T("1x6x4x4") ", " T("1x6x2x4") ", " T(
                 "1x6x2x4") ", tensor<1x6xi32>",
             T("1x6x4x4")},
        Case{"attention_window_sinks_segments",
             "%q: " T("1x7x4x4") ", %k: " T("1x7x2x4") ", %v: " T(
                 "1x7x2x4") ", %s: " T("4"),
             "%seg: tensor<1x7xi32>",
             "  %y = veomni.attention %q, %k, %v segments %seg sinks %s "
             "{causal, scale = 0.5 : f64, window = 3 : i64} : " T(
                 "1x7x4x4") ", " T("1x7x2x4") ", " T(
                 "1x7x2x4") ", tensor<1x7xi32> sinks " T("4"),
             T("1x7x4x4")},
        Case{"clamp", "%x: " T("3x7"), "",
             "  %k = veomni.constant dense<4.0> : " T("3x7")
             "\n  %s = veomni.mul %x, %k : " T("3x7")
             "\n  %y = veomni.clamp %s {min = -2.5 : f64, max = 1.5 : f64} : "
             T("3x7"),
             T("3x7")},
        Case{"attention_full",
             "%q: " T("2x3x2x4") ", %k: " T("2x5x2x4") ", %v: " T("2x5x2x3"),
             "",
             "  %y = veomni.attention %q, %k, %v {scale = 0.7 : f64} : " T(
                 "2x3x2x4") ", " T("2x5x2x4") ", " T("2x5x2x3"),
             T("2x3x2x3")},
        Case{"cross_entropy", "%logits: " T("2x3x7"),
             "%labels: tensor<2x3xi32>",
             "  %l = veomni.cross_entropy %logits, %labels : " T(
                 "2x3x7") ", tensor<2x3xi32>\n"
                          "  %y = veomni.reshape %l : tensor<f32> to " T("1"),
             T("1")},
        Case{"gelu_exact", "%a: " T("3x7"), "",
             "  %k = veomni.constant dense<3.0> : " T("3x7")
             "\n  %x = veomni.mul %a, %k : " T("3x7")
             "\n  %y = veomni.gelu %x : " T("3x7"),
             T("3x7")},
        Case{"gelu_tanh", "%a: " T("3x7"), "",
             "  %k = veomni.constant dense<3.0> : " T("3x7")
             "\n  %x = veomni.mul %a, %k : " T("3x7")
             "\n  %y = veomni.gelu %x {approximation = "
             "#veomni<gelu_approximation tanh>} : " T("3x7"),
             T("3x7")},
        Case{"layer_norm_bias", "%x: " T("3x8") ", %w: " T("8") ", %b: " T("8"),
             "",
             "  %y = veomni.layer_norm %x, %w, %b {epsilon = 1.0e-5 : f64} : "
             T("3x8") ", " T("8") ", " T("8"),
             T("3x8")},
        Case{"layer_norm_no_bias", "%x: " T("2x3x6") ", %w: " T("6"), "",
             "  %y = veomni.layer_norm %x, %w {epsilon = 1.0e-3 : f64} : "
             T("2x3x6") ", " T("6"),
             T("2x3x6")},
        Case{"slice_steps", "%a: " T("5x9"), "",
             "  %s = veomni.slice %a start = [1, 0] limit = [5, 9] step = "
             "[2, 3] : " T("5x9")
             "\n  %t = veomni.slice %a start = [0, 2] limit = [2, 5] step = "
             "[1, 1] : " T("5x9")
             "\n  %y = veomni.mul %s, %t : " T("2x3"),
             T("2x3")},
        Case{"slice_rank3", "%a: " T("3x4x5"), "",
             "  %y = veomni.slice %a start = [1, 0, 1] limit = [3, 4, 5] step "
             "= [1, 3, 2] : " T("3x4x5"),
             T("2x2x2")},
        Case{"conv1d_stride_padding_bias",
             "%x: " T("2x3x9") ", %w: " T("4x3x3") ", %b: " T("4"), "",
             "  %y = veomni.conv1d %x, %w, %b {stride = 2, padding = 1} : "
             T("2x3x9") ", " T("4x3x3") ", " T("4"),
             T("2x4x5")},
        Case{"conv1d_pointwise", "%x: " T("2x3x4") ", %w: " T("5x3x1"), "",
             "  %y = veomni.conv1d %x, %w : " T("2x3x4") ", " T("5x3x1"),
             T("2x5x4")},
        Case{"grouped_matmul", "%x: " T("5x4") ", %w: " T("3x4x6"), "",
             "  %g = veomni.constant dense<[2, 0, 3]> : tensor<3xi32>"
             "\n  %y = veomni.grouped_matmul %x, %w, %g : " T("5x4") ", " T(
                 "3x4x6") ", tensor<3xi32>",
             T("5x6")},
        Case{"grouped_matmul_transposed", "%x: " T("5x4") ", %w: " T("3x6x4"),
             "",
             "  %g = veomni.constant dense<[1, 3, 1]> : tensor<3xi32>"
             "\n  %y = veomni.grouped_matmul %x, %w, %g {transpose_weight} : "
             T("5x4") ", " T("3x6x4") ", tensor<3xi32>",
             T("5x6")},
        Case{"moe_dispatch_combine", "%x: " T("4x3") ", %r: " T("4x2"), "",
             "  %i = veomni.constant dense<[[0, 2], [1, 0], [2, 1], [0, 1]]> "
             ": tensor<4x2xi32>"
             "\n  %d, %gs = veomni.moe_dispatch %x, %i {num_experts = 3} : "
             T("4x3") ", tensor<4x2xi32>"
             "\n  %h = veomni.mul %d, %d : " T("8x3")
             "\n  %y = veomni.moe_combine %h, %r, %i : " T("8x3") ", " T(
                 "4x2") ", tensor<4x2xi32>",
             T("4x3")},
        // Router logits: the parameter (halved) plus per-token offsets 1.5
        // apart, so that no perturbation changes the top k.
        Case{"moe_topk_normalize", "%l: " T("4x4"), "",
             "  %h = veomni.constant dense<0.5> : " T("4x4")
             "\n  %o = veomni.constant dense<[[0.0, 1.5, 3.0, 4.5], [4.5, "
             "0.0, 3.0, 1.5], [1.5, 4.5, 0.0, 3.0], [3.0, 1.5, 4.5, 0.0]]> : "
             T("4x4")
             "\n  %s = veomni.mul %l, %h : " T("4x4")
             "\n  %z = veomni.add %s, %o : " T("4x4")
             "\n  %y, %i = veomni.moe_topk %z {k = 2, normalize} : " T("4x4"),
             T("4x2")},
        // DeepSeek-V3's router: sigmoid scores of logits 1.5 apart, 2 groups
        // of 2, the best group kept, its 2 experts weighted and scaled.
        Case{"moe_group_topk", "%l: " T("4x4"), "",
             "  %h = veomni.constant dense<0.5> : " T("4x4")
             "\n  %o = veomni.constant dense<[[0.0, 1.5, 3.0, 4.5], [4.5, "
             "0.0, 3.0, 1.5], [1.5, 4.5, 0.0, 3.0], [3.0, 1.5, 4.5, 0.0]]> : "
             T("4x4")
             "\n  %b = veomni.constant dense<[0.0, 0.1, 0.0, -0.1]> : " T("4")
             "\n  %s = veomni.mul %l, %h : " T("4x4")
             "\n  %z = veomni.add %s, %o : " T("4x4")
             "\n  %p = veomni.sigmoid %z : " T("4x4")
             "\n  %y, %i = veomni.moe_group_topk %p, %b {k = 2, groups = 2, "
             "topk_groups = 1, normalize, scale = 2.5 : f64} : " T("4x4") ", " T("4"),
             T("4x2")},
        Case{"moe_topk", "%l: " T("4x4"), "",
             "  %h = veomni.constant dense<0.5> : " T("4x4")
             "\n  %o = veomni.constant dense<[[0.0, 1.5, 3.0, 4.5], [4.5, "
             "0.0, 3.0, 1.5], [1.5, 4.5, 0.0, 3.0], [3.0, 1.5, 4.5, 0.0]]> : "
             T("4x4")
             "\n  %s = veomni.mul %l, %h : " T("4x4")
             "\n  %z = veomni.add %s, %o : " T("4x4")
             "\n  %y, %i = veomni.moe_topk %z {k = 3} : " T("4x4"),
             T("4x3")},
        // A whole MoE block: router, top-k, dispatch, gate and down
        // projections per expert, combine. Logits = 0.1 x W_r^T (|.| <= 0.4)
        // plus offsets 1.5 apart: the routing never flips.
        Case{"moe_block_normalize_transposed",
             "%x: " T("4x4") ", %wr: " T("4x4") ", %wg: " T(
                 "4x3x4") ", %wd: " T("4x4x3"),
             "",
             "  %lg = veomni.matmul %x, %wr {transpose_rhs} : " T(
                 "4x4") ", " T("4x4")
             "\n  %tenth = veomni.constant dense<0.1> : " T("4x4")
             "\n  %o = veomni.constant dense<[[0.0, 1.5, 3.0, 4.5], [4.5, "
             "0.0, 3.0, 1.5], [1.5, 4.5, 0.0, 3.0], [4.5, 3.0, 1.5, 0.0]]> : "
             T("4x4")
             "\n  %ls = veomni.mul %lg, %tenth : " T("4x4")
             "\n  %z = veomni.add %ls, %o : " T("4x4")
             "\n  %w, %i = veomni.moe_topk %z {k = 2, normalize} : " T("4x4")
             "\n  %d, %gs = veomni.moe_dispatch %x, %i {num_experts = 4} : "
             T("4x4") ", tensor<4x2xi32>"
             "\n  %g = veomni.grouped_matmul %d, %wg, %gs {transpose_weight} "
             ": " T("8x4") ", " T("4x3x4") ", tensor<4xi32>"
             "\n  %a = veomni.silu %g : " T("8x3")
             "\n  %e = veomni.grouped_matmul %a, %wd, %gs {transpose_weight} "
             ": " T("8x3") ", " T("4x4x3") ", tensor<4xi32>"
             "\n  %y = veomni.moe_combine %e, %w, %i : " T("8x4") ", " T(
                 "4x2") ", tensor<4x2xi32>",
             T("4x4")},
        Case{"moe_block",
             "%x: " T("4x4") ", %wr: " T("4x4") ", %wg: " T(
                 "4x4x3") ", %wd: " T("4x3x4"),
             "",
             "  %lg = veomni.matmul %x, %wr {transpose_rhs} : " T(
                 "4x4") ", " T("4x4")
             "\n  %tenth = veomni.constant dense<0.1> : " T("4x4")
             "\n  %o = veomni.constant dense<[[0.0, 1.5, 3.0, 4.5], [4.5, "
             "0.0, 3.0, 1.5], [1.5, 4.5, 0.0, 3.0], [4.5, 3.0, 1.5, 0.0]]> : "
             T("4x4")
             "\n  %ls = veomni.mul %lg, %tenth : " T("4x4")
             "\n  %z = veomni.add %ls, %o : " T("4x4")
             "\n  %w, %i = veomni.moe_topk %z {k = 2} : " T("4x4")
             "\n  %d, %gs = veomni.moe_dispatch %x, %i {num_experts = 4} : "
             T("4x4") ", tensor<4x2xi32>"
             "\n  %g = veomni.grouped_matmul %d, %wg, %gs : " T(
                 "8x4") ", " T("4x4x3") ", tensor<4xi32>"
             "\n  %a = veomni.silu %g : " T("8x3")
             "\n  %e = veomni.grouped_matmul %a, %wd, %gs : " T(
                 "8x3") ", " T("4x3x4") ", tensor<4xi32>"
             "\n  %y = veomni.moe_combine %e, %w, %i : " T("8x4") ", " T(
                 "4x2") ", tensor<4x2xi32>",
             T("4x4")},
        // Halved parameters plus distinct offsets 2 apart: every group has
        // one clear maximum.
        Case{"reduce_max", "%a: " T("3x5"), "",
             "  %h = veomni.constant dense<0.5> : " T("3x5")
             "\n  %o = veomni.constant dense<[[0.0, 4.0, 8.0, 2.0, 6.0], "
             "[8.0, 0.0, 4.0, 6.0, 2.0], [2.0, 6.0, 0.0, 8.0, 4.0]]> : " T(
                 "3x5")
             "\n  %s = veomni.mul %a, %h : " T("3x5")
             "\n  %z = veomni.add %s, %o : " T("3x5")
             "\n  %y = veomni.reduce max %z dims = [1] : " T("3x5"),
             T("3")},
        Case{"reduce_max_keep_dims", "%a: " T("2x3x2"), "",
             "  %h = veomni.constant dense<0.5> : " T("2x3x2")
             "\n  %o = veomni.constant dense<[[[0.0, 14.0], [8.0, 2.0], "
             "[20.0, 6.0]], [[10.0, 4.0], [16.0, 22.0], [12.0, 18.0]]]> : "
             T("2x3x2")
             "\n  %s = veomni.mul %a, %h : " T("2x3x2")
             "\n  %z = veomni.add %s, %o : " T("2x3x2")
             "\n  %y = veomni.reduce max %z dims = [0, 2] keep_dims : " T(
                 "2x3x2"),
             T("1x3x1")}),
    [](const ::testing::TestParamInfo<Case> &info) {
      return std::string(info.param.name);
    });

#undef T
// clang-format on

} // namespace
