//===- DistExecutionTest.cpp - collectives compiled and run on 2 ranks ----===//
//
// Run by ctest through mpirun with 2 ranks: a module with the dist
// collectives of a partitioned step (all_gather, all_reduce,
// reduce_scatter, local_split) is lowered, planned and translated as
// `veomni compile` does, and each rank runs the .vmb with an MPI
// communicator: its mesh and comm groups travel in the program, and every
// result matches what the rank computes by itself.
//
//===----------------------------------------------------------------------===//

#include "compiler/Registration.h"
#include "compiler/Translate.h"
#include "passes/Passes.h"
#include "runtime/comm/mpi/MpiCommunicator.h"
#include "runtime/executor/Executor.h"
#include "test/unit/MpiTestMain.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

rt::mpi::MpiCommunicator *comm = nullptr;

constexpr const char *kModule = R"mlir(
dist.mesh @mesh = <["tp" = 2]>
func.func @step(%x: tensor<2x3xf32> {veomni.input = "x"})
    -> (tensor<2x6xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<1x3xf32>) {
  %g = dist.all_gather %x mesh = @mesh axes = ["tp"] dim = 1 : tensor<2x3xf32> -> tensor<2x6xf32>
  %e = veomni.exp %x : tensor<2x3xf32>
  %l = veomni.log %e : tensor<2x3xf32>
  %r = dist.all_reduce %l mesh = @mesh axes = ["tp"] : tensor<2x3xf32>
  %s = dist.reduce_scatter %x mesh = @mesh axes = ["tp"] dim = 0 : tensor<2x3xf32> -> tensor<1x3xf32>
  %p = dist.local_split %x mesh = @mesh axes = ["tp"] dim = 0 : tensor<2x3xf32> -> tensor<1x3xf32>
  return %g, %r, %s, %p : tensor<2x6xf32>, tensor<2x3xf32>, tensor<1x3xf32>, tensor<1x3xf32>
}
)mlir";

TEST(DistExecution, CollectivesRunFromTheProgram) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(kModule, &context);
  ASSERT_TRUE(module);
  PassManager pm(&context);
  pm.addPass(createLowerToVrt());
  pm.addPass(createPlanMemory());
  ASSERT_TRUE(succeeded(pm.run(*module)));
  std::string bytes;
  ASSERT_TRUE(succeeded(translateToProgram(*module, {}, bytes)));
  auto program = rt::ParseProgram(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t *>(bytes.data()),
                                bytes.size()),
      "step.vmb");
  ASSERT_TRUE(program.ok()) << program.status();
  EXPECT_EQ(program->worldSize, 2u);
  ASSERT_EQ(program->commGroups.size(), 1u);

  // Without a communicator, or on the wrong number of ranks: refused.
  auto alone = rt::Executor::Create(*program, *rt::CreateDevice("cpu"));
  EXPECT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("partitioned for 2 ranks"),
            std::string::npos)
      << alone.status();

  auto ex =
      rt::Executor::Create(*std::move(program), *rt::CreateDevice("cpu"), comm);
  ASSERT_TRUE(ex.ok()) << ex.status();
  const int r = comm->Rank();
  std::vector<float> x(6);
  for (int i = 0; i < 6; ++i)
    x[i] = r * 10 + i;
  ASSERT_TRUE(
      (*ex)->Write((*ex)->program().FindArgument("x")->buffer, x.data()).ok());
  ASSERT_TRUE((*ex)->Run().ok());
  auto out = [&](int i) {
    std::vector<float> v(
        (*ex)->program().buffers[(*ex)->program().outputs[i]].bytes / 4);
    EXPECT_TRUE((*ex)->Read((*ex)->program().outputs[i], v.data()).ok());
    return v;
  };
  std::vector<float> g = out(0), sum = out(1), s = out(2), p = out(3);
  for (int i = 0; i < 2; ++i)
    for (int t = 0; t < 2; ++t)
      for (int j = 0; j < 3; ++j)
        EXPECT_EQ(g[i * 6 + t * 3 + j], t * 10 + i * 3 + j);
  for (int i = 0; i < 6; ++i)
    EXPECT_NEAR(sum[i], 10 + 2 * i, 1e-4); // log(exp(x)) summed over ranks
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(s[j], 10 + 2 * (r * 3 + j)); // this rank's row of the sum
    EXPECT_EQ(p[j], r * 10 + r * 3 + j);   // this rank's row of x
  }
}

/// Compiles `text` as `veomni compile` does and loads it.
rt::Program Compile(MLIRContext &context, const char *text) {
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(text, &context);
  EXPECT_TRUE(module);
  PassManager pm(&context);
  pm.addPass(createLowerToVrt());
  pm.addPass(createPlanMemory());
  EXPECT_TRUE(succeeded(pm.run(*module)));
  std::string bytes;
  EXPECT_TRUE(succeeded(translateToProgram(*module, {}, bytes)));
  auto program = rt::ParseProgram(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t *>(bytes.data()),
                                bytes.size()),
      "test.vmb");
  EXPECT_TRUE(program.ok()) << program.status();
  return *std::move(program);
}

std::vector<float> Output(rt::Executor &ex, int i) {
  const rt::Program &p = ex.program();
  std::vector<float> v(p.buffers[p.outputs[i]].bytes / 4);
  EXPECT_TRUE(ex.Read(p.outputs[i], v.data()).ok());
  return v;
}

// A mean over a token-split batch divides by the tokens of every rank: the
// partitioned loss (partial sums, all-reduced) and its gradient equal the
// one-rank ones, with ignored labels spread unevenly over the ranks.
TEST(DistExecution, TokenSplitLossEqualsTheOneRankLoss) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  rt::Program serial = Compile(context, R"mlir(
func.func @loss(%l: tensor<2x4x8xf32> {veomni.input = "logits"},
                %y: tensor<2x4xi32> {veomni.input = "labels"},
                %d: tensor<f32> {veomni.input = "dloss"})
    -> (tensor<f32>, tensor<2x4x8xf32>) {
  %c = veomni.cross_entropy %l, %y : tensor<2x4x8xf32>, tensor<2x4xi32>
  %g = veomni.cross_entropy_grad %l, %y, %d : tensor<2x4x8xf32>, tensor<2x4xi32>, tensor<f32>
  return %c, %g : tensor<f32>, tensor<2x4x8xf32>
}
)mlir");
  rt::Program split = Compile(context, R"mlir(
dist.mesh @mesh = <["dp" = 2]>
func.func @loss(%l: tensor<1x4x8xf32> {veomni.input = "logits"},
                %y: tensor<1x4xi32> {veomni.input = "labels"},
                %d: tensor<f32> {veomni.input = "dloss"})
    -> (tensor<f32>, tensor<1x4x8xf32>) {
  %c = veomni.cross_entropy %l, %y {dist.token_axes = ["dp"]} : tensor<1x4x8xf32>, tensor<1x4xi32>
  %s = dist.all_reduce %c mesh = @mesh axes = ["dp"] : tensor<f32>
  %g = veomni.cross_entropy_grad %l, %y, %d {dist.token_axes = ["dp"]} : tensor<1x4x8xf32>, tensor<1x4xi32>, tensor<f32>
  return %s, %g : tensor<f32>, tensor<1x4x8xf32>
}
)mlir");
  // The global batch, which every rank can make: rank 0 has one ignored
  // label, rank 1 three.
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i)
    logits[i] = 0.1f * ((i * 37) % 19) - 0.8f;
  std::vector<int32_t> labels = {3, -100, 5, 1, -100, 7, -100, -100};
  float dloss = 1.0f;

  auto one = rt::Executor::Create(std::move(serial));
  ASSERT_TRUE(one.ok()) << one.status();
  const rt::Program &sp = (*one)->program();
  ASSERT_TRUE(
      (*one)->Write(sp.FindArgument("logits")->buffer, logits.data()).ok());
  ASSERT_TRUE(
      (*one)->Write(sp.FindArgument("labels")->buffer, labels.data()).ok());
  ASSERT_TRUE((*one)->Write(sp.FindArgument("dloss")->buffer, &dloss).ok());
  ASSERT_TRUE((*one)->Run().ok());
  std::vector<float> wantLoss = Output(**one, 0), wantGrad = Output(**one, 1);

  auto ex =
      rt::Executor::Create(std::move(split), *rt::CreateDevice("cpu"), comm);
  ASSERT_TRUE(ex.ok()) << ex.status();
  const rt::Program &pp = (*ex)->program();
  const int r = comm->Rank();
  ASSERT_TRUE(
      (*ex)
          ->Write(pp.FindArgument("logits")->buffer, logits.data() + r * 32)
          .ok());
  ASSERT_TRUE(
      (*ex)
          ->Write(pp.FindArgument("labels")->buffer, labels.data() + r * 4)
          .ok());
  ASSERT_TRUE((*ex)->Write(pp.FindArgument("dloss")->buffer, &dloss).ok());
  ASSERT_TRUE((*ex)->Run().ok());
  std::vector<float> loss = Output(**ex, 0), grad = Output(**ex, 1);
  EXPECT_NEAR(loss[0], wantLoss[0], 1e-5 * std::abs(wantLoss[0]));
  for (int i = 0; i < 32; ++i)
    EXPECT_NEAR(grad[i], wantGrad[r * 32 + i], 1e-6) << i;
}

// A cross entropy over a vocabulary split in two (tensor parallelism's
// lm_head) gives every rank the one-rank loss, and each rank its classes'
// part of the gradient, for each reduction.
TEST(DistExecution, VocabSplitLossEqualsTheOneRankLoss) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  for (const char *reduction : {"mean", "sum", "none"}) {
    const bool none = std::string(reduction) == "none";
    const std::string result = none ? "tensor<2x4xf32>" : "tensor<f32>";
    // The step's loss and its gradient, over `classes` of the vocabulary.
    auto text = [&](const std::string &classes, const std::string &split) {
      std::string attrs = "{reduction = #veomni<loss_reduction " +
                          std::string(reduction) + ">" + split + "}";
      std::string l = "tensor<2x4x" + classes + "xf32>";
      return "dist.mesh @mesh = <[\"tp\" = 2]>\n"
             "func.func @loss(%l: " +
             l +
             " {veomni.input = \"logits\"},\n"
             "  %y: tensor<2x4xi32> {veomni.input = \"labels\"},\n"
             "  %d: " +
             result + " {veomni.input = \"dloss\"}) -> (" + result + ", " + l +
             ") {\n"
             "  %c = veomni.cross_entropy %l, %y " +
             attrs + " : " + l +
             ", tensor<2x4xi32>\n"
             "  %g = veomni.cross_entropy_grad %l, %y, %d " +
             attrs + " : " + l + ", tensor<2x4xi32>, " + result +
             "\n"
             "  return %c, %g : " +
             result + ", " + l + "\n}\n";
    };
    SCOPED_TRACE(reduction);
    rt::Program serial = Compile(context, text("8", "").c_str());
    rt::Program split =
        Compile(context, text("4", ", dist.vocab_axes = [\"tp\"]").c_str());
    std::vector<float> logits(64);
    for (int i = 0; i < 64; ++i)
      logits[i] = 0.1f * ((i * 37) % 19) - 0.8f;
    // Labels on both halves of the vocabulary, and ignored ones.
    std::vector<int32_t> labels = {3, -100, 5, 1, -100, 7, 0, 6};
    std::vector<float> dloss(none ? 8 : 1);
    for (size_t i = 0; i < dloss.size(); ++i)
      dloss[i] = 0.5f + 0.25f * i;
    auto one = rt::Executor::Create(std::move(serial));
    ASSERT_TRUE(one.ok()) << one.status();
    const rt::Program &sp = (*one)->program();
    ASSERT_TRUE(
        (*one)->Write(sp.FindArgument("logits")->buffer, logits.data()).ok());
    ASSERT_TRUE(
        (*one)->Write(sp.FindArgument("labels")->buffer, labels.data()).ok());
    ASSERT_TRUE(
        (*one)->Write(sp.FindArgument("dloss")->buffer, dloss.data()).ok());
    ASSERT_TRUE((*one)->Run().ok());
    std::vector<float> wantLoss = Output(**one, 0), wantGrad = Output(**one, 1);

    auto ex =
        rt::Executor::Create(std::move(split), *rt::CreateDevice("cpu"), comm);
    ASSERT_TRUE(ex.ok()) << ex.status();
    const rt::Program &pp = (*ex)->program();
    const int r = comm->Rank();
    std::vector<float> mine(32);
    for (int row = 0; row < 8; ++row)
      for (int c = 0; c < 4; ++c)
        mine[row * 4 + c] = logits[row * 8 + r * 4 + c];
    ASSERT_TRUE(
        (*ex)->Write(pp.FindArgument("logits")->buffer, mine.data()).ok());
    ASSERT_TRUE(
        (*ex)->Write(pp.FindArgument("labels")->buffer, labels.data()).ok());
    ASSERT_TRUE(
        (*ex)->Write(pp.FindArgument("dloss")->buffer, dloss.data()).ok());
    ASSERT_TRUE((*ex)->Run().ok());
    std::vector<float> loss = Output(**ex, 0), grad = Output(**ex, 1);
    ASSERT_EQ(loss.size(), wantLoss.size());
    for (size_t i = 0; i < loss.size(); ++i)
      EXPECT_NEAR(loss[i], wantLoss[i], 1e-5 * std::abs(wantLoss[i]) + 1e-7)
          << i;
    for (int row = 0; row < 8; ++row)
      for (int c = 0; c < 4; ++c)
        EXPECT_NEAR(grad[row * 4 + c], wantGrad[row * 8 + r * 4 + c], 1e-6)
            << row << " " << c;
  }
}

// A lookup in a table split over ranks (a vocab-parallel embedding, whose
// partial rows are summed) and a product with the same slice (its tied
// lm_head, column-parallel) equal the one-rank results; the sliced output
// gathers whole.
TEST(DistExecution, SplitTableLookupAndSlicedOutput) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  rt::Program serial = Compile(context, R"mlir(
func.func @f(%t: tensor<8x4xf32> {veomni.input = "t"}, %i: tensor<2x3xi32> {veomni.input = "i"}, %x: tensor<2x3x4xf32> {veomni.input = "x"}) -> (tensor<2x3x4xf32>, tensor<2x3x8xf32>) {
  %g = veomni.gather %t[%i] axis = 0 : tensor<8x4xf32>, tensor<2x3xi32>
  %m = veomni.matmul %x, %t {transpose_rhs} : tensor<2x3x4xf32>, tensor<8x4xf32>
  return %g, %m : tensor<2x3x4xf32>, tensor<2x3x8xf32>
}
)mlir");
  rt::Program split = Compile(context, R"mlir(
dist.mesh @mesh = <["tp" = 2]>
func.func @f(%t: tensor<4x4xf32> {veomni.input = "t", dist.slice = #dist.sharding<@mesh, [{"tp"}, {}]>}, %i: tensor<2x3xi32> {veomni.input = "i"}, %x: tensor<2x3x4xf32> {veomni.input = "x"}) -> (tensor<2x3x4xf32>, tensor<2x3x4xf32> {dist.slice = #dist.sharding<@mesh, [{}, {}, {"tp"}]>}) {
  %g = veomni.gather %t[%i] axis = 0 {dist.index_axes = ["tp"]} : tensor<4x4xf32>, tensor<2x3xi32>
  %r = dist.all_reduce %g mesh = @mesh axes = ["tp"] : tensor<2x3x4xf32>
  %m = veomni.matmul %x, %t {transpose_rhs} : tensor<2x3x4xf32>, tensor<4x4xf32>
  return %r, %m : tensor<2x3x4xf32>, tensor<2x3x4xf32>
}
)mlir");
  std::vector<float> t(32), x(24);
  for (int i = 0; i < 32; ++i)
    t[i] = i;
  for (int i = 0; i < 24; ++i)
    x[i] = 0.5f * i;
  std::vector<int32_t> ids = {7, 0, 3, 4, 5, 1};
  auto one = rt::Executor::Create(std::move(serial));
  ASSERT_TRUE(one.ok());
  auto &o = **one;
  ASSERT_TRUE(o.Write(o.program().FindArgument("t")->buffer, t.data()).ok());
  ASSERT_TRUE(o.Write(o.program().FindArgument("i")->buffer, ids.data()).ok());
  ASSERT_TRUE(o.Write(o.program().FindArgument("x")->buffer, x.data()).ok());
  ASSERT_TRUE(o.Run().ok());
  auto ex =
      rt::Executor::Create(std::move(split), *rt::CreateDevice("cpu"), comm);
  ASSERT_TRUE(ex.ok()) << ex.status();
  auto &e = **ex;
  ASSERT_TRUE(
      e.WriteGlobal(e.program().FindArgument("t")->buffer, t.data()).ok());
  ASSERT_TRUE(e.Write(e.program().FindArgument("i")->buffer, ids.data()).ok());
  ASSERT_TRUE(e.Write(e.program().FindArgument("x")->buffer, x.data()).ok());
  ASSERT_TRUE(e.Run().ok());
  EXPECT_EQ(Output(o, 0), Output(e, 0));
  absl::StatusOr<rt::HostTensor> whole = e.ReadGlobal(e.program().outputs[1]);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->view.shape, (rt::Shape{2, 3, 8}));
  std::vector<float> got(48);
  for (int i = 0; i < 48; ++i)
    got[i] = rt::LoadF(whole->view, i);
  EXPECT_EQ(Output(o, 1), got);
}

// Experts split over 2 ranks: each rank's rows reach their expert's rank
// and their products come back in order, as if every rank held all the
// experts; the weight gradient of an expert sums every rank's rows. The
// routing is uneven (rank 1 sends expert 0 nothing).
TEST(DistExecution, ExpertSplitGroupedMatmulsEqualAllExperts) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  auto text = [](const char *experts, const char *split) {
    std::string w = std::string("tensor<") + experts + "x3x4xf32>";
    std::string a = split[0]
                        ? " {dist.expert_axes = [\"ep\"], transpose_weight}"
                        : " {transpose_weight}";
    return std::string("dist.mesh @mesh = <[\"ep\" = 2]>\n") +
           "func.func @f(%x: tensor<5x4xf32> {veomni.input = \"x\"},\n"
           "  %w: " +
           w + " {veomni.input = \"w\"" + split +
           "},\n"
           "  %n: tensor<2xi32> {veomni.input = \"n\"},\n"
           "  %d: tensor<5x3xf32> {veomni.input = \"d\"}) -> "
           "(tensor<5x3xf32>, " +
           w +
           ") {\n"
           "  %y = veomni.grouped_matmul %x, %w, %n" +
           a + " : tensor<5x4xf32>, " + w +
           ", tensor<2xi32>\n"
           "  %g = veomni.grouped_matmul_weight_grad %x, %w, %n grad %d" +
           a + " : tensor<5x4xf32>, " + w +
           ", tensor<2xi32>, tensor<5x3xf32>\n"
           "  return %y, %g : tensor<5x3xf32>, " +
           w + "\n}\n";
  };
  rt::Program serial = Compile(context, text("2", "").c_str());
  rt::Program split = Compile(
      context,
      text("1", ", dist.slice = #dist.sharding<@mesh, [{\"ep\"}, {}, {}]>")
          .c_str());
  const int r = comm->Rank();
  std::vector<float> x(20), w(24), d(15);
  for (int i = 0; i < 20; ++i)
    x[i] = 0.1f * (i + 7 * r) - 1.0f;
  for (int i = 0; i < 24; ++i)
    w[i] = 0.05f * ((i * 5) % 11) - 0.2f;
  for (int i = 0; i < 15; ++i)
    d[i] = 0.3f - 0.02f * (i + 3 * r);
  std::vector<int32_t> n =
      r == 0 ? std::vector<int32_t>{2, 3} : std::vector<int32_t>{0, 5};
  auto fill = [&](rt::Executor &e, bool whole) {
    const rt::Program &p = e.program();
    ASSERT_TRUE(e.Write(p.FindArgument("x")->buffer, x.data()).ok());
    ASSERT_TRUE(e.WriteGlobal(p.FindArgument("w")->buffer, w.data()).ok());
    ASSERT_TRUE(e.Write(p.FindArgument("n")->buffer, n.data()).ok());
    ASSERT_TRUE(e.Write(p.FindArgument("d")->buffer, d.data()).ok());
    (void)whole;
  };
  auto one = rt::Executor::Create(std::move(serial));
  ASSERT_TRUE(one.ok()) << one.status();
  fill(**one, true);
  ASSERT_TRUE((*one)->Run().ok());
  auto ex =
      rt::Executor::Create(std::move(split), *rt::CreateDevice("cpu"), comm);
  ASSERT_TRUE(ex.ok()) << ex.status();
  fill(**ex, false);
  absl::Status ran = (*ex)->Run();
  ASSERT_TRUE(ran.ok()) << ran;
  std::vector<float> want = Output(**one, 0), got = Output(**ex, 0);
  for (int i = 0; i < 15; ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  // The one-rank gradient of this rank's rows, summed over the ranks; this
  // rank holds its expert's part.
  std::vector<float> dw = Output(**one, 1);
  rt::TensorView v{dw.data(), rt::DType::F32, {24}};
  std::vector<uint32_t> both = {0, 1};
  ASSERT_TRUE(
      comm->AllReduce(*comm->AddGroup("world", both), v, v, rt::ReduceOp::Sum)
          .ok());
  std::vector<float> mine = Output(**ex, 1);
  ASSERT_EQ(mine.size(), 12u);
  for (int i = 0; i < 12; ++i)
    EXPECT_NEAR(mine[i], dw[r * 12 + i], 1e-5) << i;
}

// Pipeline stages are programs of their own: stage 0 sends a value along
// "pp" and stage 1 receives it, each from the program of its stage.
TEST(DistExecution, StagesSendAndReceive) {
  DialectRegistry registry;
  registerAllVeOmni(registry);
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  const int r = comm->Rank();
  rt::Program stage = Compile(context, r == 0 ? R"mlir(
dist.mesh @mesh = <["pp" = 2]>
func.func @stage0(%x: tensor<2x3xf32> {veomni.input = "x"}) -> tensor<2x3xf32> {
  %e = veomni.exp %x : tensor<2x3xf32>
  dist.send %e mesh = @mesh axis = "pp" peer = 1 : tensor<2x3xf32>
  return %x : tensor<2x3xf32>
}
)mlir"
                                              : R"mlir(
dist.mesh @mesh = <["pp" = 2]>
func.func @stage1(%x: tensor<2x3xf32> {veomni.input = "x"}) -> tensor<2x3xf32> {
  %r = dist.recv mesh = @mesh axis = "pp" peer = 0 : tensor<2x3xf32>
  %s = veomni.add %r, %x : tensor<2x3xf32>
  return %s : tensor<2x3xf32>
}
)mlir");
  auto ex =
      rt::Executor::Create(std::move(stage), *rt::CreateDevice("cpu"), comm);
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<float> x(6);
  for (int i = 0; i < 6; ++i)
    x[i] = 0.25f * i + r;
  ASSERT_TRUE(
      (*ex)->Write((*ex)->program().FindArgument("x")->buffer, x.data()).ok());
  double before = comm->BytesSent();
  ASSERT_TRUE((*ex)->Run().ok());
  std::vector<float> y = Output(**ex, 0);
  for (int i = 0; i < 6; ++i)
    EXPECT_NEAR(y[i], r == 0 ? x[i] : std::exp(0.25f * i) + x[i], 1e-5) << i;
  // A send counts its own bytes; a receive none.
  EXPECT_EQ(comm->BytesSent() - before, r == 0 ? 24.0 : 0.0);
}

} // namespace

int main(int argc, char **argv) { return MpiTestMain(argc, argv, {2}, comm); }
