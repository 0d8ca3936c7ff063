//===- EquivalenceTest.cpp - every plan computes what one rank computes ---===//
//
// Run by ctest through mpirun with 4 ranks, one thread each. For a sample
// of models x plans, the recipe's step is compiled twice: for one rank and
// partitioned for the plan's mesh. Each rank trains both from the same
// seeded parameters on the same global batches (the one-rank program on
// its own, the partitioned one with the others) and checks:
//  - the loss and gradient norm of every step agree (1e-5 relative, f32);
//  - the final parameters and optimizer state agree (relative L2 1e-5);
//  - the bytes this rank sends per step, counted by the communicator, are
//    exactly the plan report's figure for the mesh (veomni plan --report);
//  - a checkpoint written under one plan resumes under another and
//    continues the one-rank run.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "dialects/Dist/DistOps.h"
#include "dialects/VeOmni/VeOmniOps.h"
#include "frontends/Importer.h"
#include "passes/Communication.h"
#include "passes/Passes.h"
#include "runtime/comm/mpi/MpiCommunicator.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Init.h"
#include "runtime/train/Pipeline.h"
#include "runtime/train/Trainer.h"
#include "test/unit/MpiTestMain.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace mlir;
using namespace mlir::veomni;
namespace rt = ::veomni::rt;

namespace {

rt::mpi::MpiCommunicator *comm = nullptr;

constexpr int64_t kSteps = 5;
constexpr uint64_t kSeed = 7;

struct Plan {
  std::string family;
  int64_t dpReplicate = 1, dpShard = 1, tp = 1, sp = 1, ep = 1;
  int64_t accumulation = 1; ///< micro-batches per optimizer step
  int64_t pp = 1;           ///< pipeline stages
  std::string schedule = "1f1b";
  /// Optimizer steps compared, and the peak learning rate. A model whose
  /// training amplifies f32 round-off over steps past the 1e-5 the
  /// comparison allows is compared at a smaller rate (or for one step:
  /// the gradients, in the moments, and the update itself).
  int64_t steps = kSteps;
  double lr = 3e-3;
  /// train.freeze's globs ("" for none).
  std::string freeze;
  /// train.lora.targets ("" for none), at rank 4 and alpha 8.
  std::string lora;
  /// train.lora.target_parameters ("" for none).
  std::string loraParameters;
};

/// 3e-4 as "3em04": a test name's characters.
std::string LrName(double lr) {
  char text[16];
  std::snprintf(text, sizeof(text), "%.0e", lr);
  std::string out;
  for (const char *c = text; *c; ++c)
    if (std::isalnum(static_cast<unsigned char>(*c)))
      out += *c;
    else if (*c == '-')
      out += 'm';
  return out;
}

std::ostream &operator<<(std::ostream &os, const Plan &p) {
  return os << p.family << "_dpr" << p.dpReplicate << "_dp" << p.dpShard
            << "_tp" << p.tp << "_sp" << p.sp << "_ep" << p.ep << "_acc"
            << p.accumulation
            << (p.pp > 1 ? "_pp" + std::to_string(p.pp) + "_" +
                               (p.schedule == "zb-h1" ? std::string("zbh1")
                                                      : p.schedule)
                         : "")
            << (p.steps != kSteps ? "_steps" + std::to_string(p.steps) : "")
            << (p.lr != 3e-3 ? "_lr" + LrName(p.lr) : "")
            << (p.freeze.empty() ? "" : "_frozen")
            << (p.lora.empty() ? "" : "_lora")
            << (p.loraParameters.empty() ? "" : "_experts");
}

/// A test's name: its plan.
std::string PlanName(const ::testing::TestParamInfo<Plan> &info) {
  std::ostringstream os;
  os << info.param;
  return os.str();
}

ParallelSection meshOf(const Plan &p) {
  ParallelSection m;
  m.dpReplicate = p.dpReplicate;
  m.dpShard = p.dpShard;
  m.tp = p.tp;
  m.sp = p.sp;
  m.ep = p.ep;
  m.pp = p.pp;
  m.ppSchedule = p.schedule;
  m.ppChunks = p.schedule == "interleaved" ? 2 : 1;
  return m;
}

/// Makes the imported forward also return every MoE router's logits
/// (veomni.output "router.N"), for the margin check; false when the model
/// has no router.
bool ReturnRouterLogits(ImportedModel &model) {
  func::FuncOp func = *model.module->getOps<func::FuncOp>().begin();
  SmallVector<Value> routers;
  func.walk([&](MoETopKOp t) { routers.push_back(t.getLogits()); });
  if (routers.empty())
    return false;
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  unsigned first = ret.getNumOperands();
  SmallVector<Value> results(ret.getOperands());
  results.append(routers);
  ret->setOperands(results);
  SmallVector<Type> types(func.getResultTypes());
  for (Value v : routers)
    types.push_back(v.getType());
  func.setType(
      FunctionType::get(func.getContext(), func.getArgumentTypes(), types));
  OpBuilder b(func.getContext());
  for (unsigned i = first; i < results.size(); ++i)
    func.setResultAttr(i, "veomni.output",
                       b.getStringAttr("router." + std::to_string(i - first)));
  return true;
}

/// The smallest gap, over every router and token, between the k-th and
/// (k+1)-th largest router logit (the distance from another routing),
/// relative to the largest logit's magnitude.
double RouterMargin(rt::Executor &forward, int64_t k) {
  const rt::Program &p = forward.program();
  double margin = INFINITY, scale = 0;
  for (size_t i = 0; i < p.outputs.size(); ++i) {
    if (p.outputNames[i].rfind("router.", 0) != 0)
      continue;
    auto h = forward.ReadHost(p.outputs[i]);
    EXPECT_TRUE(h.ok());
    const int64_t experts = h->view.shape.back();
    for (int64_t t = 0, rows = h->view.numel() / experts; t < rows; ++t) {
      std::vector<double> row(experts);
      for (int64_t e = 0; e < experts; ++e) {
        row[e] = rt::LoadF(h->view, t * experts + e);
        scale = std::max(scale, std::abs(row[e]));
      }
      std::sort(row.rbegin(), row.rend());
      margin = std::min(margin, row[k - 1] - row[k]);
    }
  }
  return margin / std::max(scale, 1e-30);
}

class Equivalence : public ::testing::TestWithParam<Plan> {
protected:
  Equivalence() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }

  ImportOptions importOptions() const {
    ImportOptions io;
    io.model.dtype = "f32";
    io.data.batchSize = 4; // the global micro-batch
    io.data.seqLen = 32;
    // Gemma 3: an image per data-parallel rank, 16 image tokens in one
    // bidirectional block (SyntheticBatch's token_type_ids).
    if (GetParam().family == "gemma3")
      io.data.images = 4;
    return io;
  }

  CompileOptions compileOptions(const ParallelSection &mesh) const {
    CompileOptions co;
    TrainSection t;
    t.steps = GetParam().steps;
    t.lr = GetParam().lr;
    t.warmupSteps = GetParam().steps > 1 ? 1 : 0;
    t.maxGradNorm = 1.0;
    t.weightDecay = 0.01;
    t.freeze = GetParam().freeze;
    t.loraTargets = GetParam().lora;
    t.loraTargetParameters = GetParam().loraParameters;
    t.loraRank = 4;
    t.loraAlpha = 8;
    // DeepSeek-V3's choice biases follow the auxiliary-loss-free rule: the
    // loads are summed over every rank's tokens.
    if (GetParam().family == "deepseek_v3")
      t.routerBiasUpdateRate = 1e-3;
    co.train = t;
    co.accumulationSteps = GetParam().accumulation;
    co.parallel = mesh;
    return co;
  }

  std::string config() const {
    const std::string &family = GetParam().family;
    std::string shipped =
        std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + family + ".json";
    if (family != "llama4")
      return shipped;
    // Four layers of the tiny llama: an interleaved pipeline of 2 stages x 2
    // chunks needs a layer per chunk.
    std::ifstream in(std::string(VEOMNI_SOURCE_DIR) +
                     "/examples/tiny/llama.json");
    std::stringstream text;
    text << in.rdbuf();
    std::string json = text.str();
    const std::string key = "\"num_hidden_layers\": 2";
    size_t at = json.find(key);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos)
      json.replace(at, key.size(), "\"num_hidden_layers\": 4");
    std::string path = (std::filesystem::temp_directory_path() /
                        ("veomni-llama4-" + std::to_string(getpid()) + ".json"))
                           .string();
    std::ofstream(path) << json;
    return path;
  }

  /// The training program for `mesh`, running on this rank (with the
  /// communicator when partitioned).
  std::unique_ptr<rt::Executor> build(const ParallelSection &mesh) {
    std::string diagnostic;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &d) {
      diagnostic = d.str();
      return success();
    });
    auto model = importHFConfig(context, config(), importOptions());
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok())
      return nullptr;
    CompileReport report;
    FailureOr<std::string> bytes =
        compileToProgram(*model, report, compileOptions(mesh));
    EXPECT_TRUE(succeeded(bytes)) << diagnostic;
    if (failed(bytes))
      return nullptr;
    auto program = rt::ParseProgram(*bytes, GetParam().family);
    EXPECT_TRUE(program.ok()) << program.status();
    if (!program.ok())
      return nullptr;
    auto ex =
        rt::Executor::Create(*std::move(program), *rt::CreateDevice("cpu"),
                             mesh.meshSize() > 1 ? comm : nullptr);
    EXPECT_TRUE(ex.ok()) << ex.status();
    return ex.ok() ? *std::move(ex) : nullptr;
  }

  /// For an MoE model, the one-rank forward with its routers' logits as
  /// outputs (topK set to the routers' k); null for a dense model.
  std::unique_ptr<rt::Executor> buildRouters() {
    auto model = importHFConfig(context, config(), importOptions());
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok() || !ReturnRouterLogits(*model))
      return nullptr;
    model->module->walk([&](MoETopKOp t) { topK = t.getK(); });
    CompileReport report;
    FailureOr<std::string> bytes = compileToProgram(*model, report, {});
    EXPECT_TRUE(succeeded(bytes));
    if (failed(bytes))
      return nullptr;
    auto program = rt::ParseProgram(*bytes, "routers");
    EXPECT_TRUE(program.ok()) << program.status();
    auto ex = rt::Executor::Create(*std::move(program));
    return ex.ok() ? *std::move(ex) : nullptr;
  }
  int64_t topK = 1;

  /// What `veomni plan --report` says this rank sends per step: the
  /// collectives of the partitioned, fused step; and, before partitioning,
  /// what the plan's shardings predict of the unfused step (the two differ
  /// by the LM head's backward gather where veomni-fuse-loss takes it).
  double plannedBytes(const ParallelSection &mesh, double *unfused) {
    auto model = importHFConfig(context, config(), importOptions());
    EXPECT_TRUE(model.ok());
    ModuleOp module = *model->module;
    PassManager pm(&context);
    CompileOptions co = compileOptions(mesh);
    addTrainingStepPasses(pm, co);
    addShardingPasses(pm, mesh);
    EXPECT_TRUE(succeeded(pm.run(module)));
    sharding::Mesh m((*module.getOps<dist::MeshOp>().begin()).getMesh());
    FailureOr<sharding::StepTraffic> traffic = sharding::analyzeStep(
        *module.getOps<func::FuncOp>().begin(), m, sharding::LinkModel{});
    EXPECT_TRUE(succeeded(traffic));
    *unfused = succeeded(traffic) ? traffic->totalBytes() : -1;
    PassManager partition(&context);
    partition.addPass(createPartition());
    PrefetchOptions prefetch;
    prefetch.distance = mesh.prefetch;
    partition.addPass(createPrefetch(prefetch));
    addFusionPasses(partition, co);
    EXPECT_TRUE(succeeded(partition.run(module)));
    return sharding::countCollectives(*module.getOps<func::FuncOp>().begin(), m,
                                      sharding::LinkModel{})
        .totalBytes();
  }

  MLIRContext context;
};

/// One optimizer step: the plan's micro-batches, the loss their mean.
rt::StepMetrics Step(rt::Executor &ex, rt::Trainer &trainer, int64_t step,
                     int64_t accumulation) {
  rt::StepMetrics m;
  double loss = 0;
  for (int64_t micro = 0; micro < accumulation; ++micro) {
    int64_t index = (step - 1) * accumulation + micro;
    EXPECT_TRUE(rt::SyntheticBatch(ex, kSeed * 1000003 + index).ok());
    auto r = trainer.Step(step, micro == accumulation - 1);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok())
      return m;
    m = *r;
    loss += r->loss;
  }
  m.loss = loss / accumulation;
  return m;
}

/// sqrt(sum |a - b|^2 / sum |b|^2) over every parameter and optimizer
/// state, `a` gathered from the partitioned program.
double RelativeL2(rt::Executor &partitioned, rt::Executor &serial) {
  double diff = 0, norm = 0;
  for (const rt::ArgumentDesc &a : serial.program().arguments) {
    if (a.kind == rt::ArgumentKind::Input)
      continue;
    const rt::ArgumentDesc *p = partitioned.program().FindArgument(a.name);
    EXPECT_NE(p, nullptr) << a.name;
    if (!p)
      return INFINITY;
    auto x = partitioned.ReadGlobal(p->buffer);
    auto y = serial.ReadHost(a.buffer);
    EXPECT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->view.shape, y->view.shape) << a.name;
    if (x->view.shape != y->view.shape)
      return INFINITY;
    for (int64_t i = 0, n = y->view.numel(); i < n; ++i) {
      double d = rt::LoadF(x->view, i) - rt::LoadF(y->view, i);
      diff += d * d;
      norm += rt::LoadF(y->view, i) * rt::LoadF(y->view, i);
    }
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

void ExpectClose(double got, double want, const char *what, int64_t step) {
  EXPECT_LE(std::abs(got - want), 1e-5 * std::max(std::abs(want), 1e-3))
      << what << " at step " << step << ": " << got << " vs " << want;
}

TEST_P(Equivalence, TrainsAsOneRank) {
  const Plan &plan = GetParam();
  ParallelSection mesh = meshOf(plan);
  ASSERT_EQ(mesh.meshSize(), comm->WorldSize());
  std::unique_ptr<rt::Executor> one = build(ParallelSection{});
  std::unique_ptr<rt::Executor> many = build(mesh);
  ASSERT_TRUE(one && many);
  EXPECT_EQ(many->program().worldSize, uint32_t(comm->WorldSize()));
  auto t1 = rt::Trainer::Create(*one);
  auto tn = rt::Trainer::Create(*many);
  ASSERT_TRUE(t1.ok() && tn.ok());
  for (rt::Executor *ex : {one.get(), many.get()})
    ASSERT_TRUE(rt::InitParameters(*ex, kSeed).ok());
  ASSERT_TRUE(t1->InitState().ok() && tn->InitState().ok());
  // The parameters start equal: each rank holds its slice of the same
  // global tensors.
  EXPECT_EQ(RelativeL2(*many, *one), 0.0);

  double unfused = 0;
  const double planned = plannedBytes(mesh, &unfused);
  EXPECT_LE(planned, unfused) << "fusion sends more than the plan predicts";
  // MoE: a forward that returns the routers' logits, run on the one-rank
  // parameters before each step, so that no routing decision is a near-tie
  // that round-off could flip between plans.
  std::unique_ptr<rt::Executor> routers = buildRouters();
  for (int64_t step = 1; step <= plan.steps; ++step) {
    if (routers) {
      for (const rt::ArgumentDesc &a : routers->program().arguments) {
        if (!a.isParam)
          continue;
        auto from = one->ReadHost(one->program().FindArgument(a.name)->buffer);
        ASSERT_TRUE(from.ok());
        ASSERT_TRUE(routers->Write(a.buffer, from->view.data).ok());
      }
      for (int64_t micro = 0; micro < plan.accumulation; ++micro) {
        ASSERT_TRUE(rt::SyntheticBatch(
                        *routers, kSeed * 1000003 +
                                      (step - 1) * plan.accumulation + micro)
                        .ok());
        ASSERT_TRUE(routers->Run().ok());
        // Plans differ in the logits by f32 round-off (~1e-7 relative):
        // a gap of 1e-5 of the logits' scale cannot flip.
        EXPECT_GT(RouterMargin(*routers, topK), 1e-5)
            << "a near-tie in routing at step " << step
            << ": choose another seed";
      }
    }
    rt::StepMetrics want = Step(*one, *t1, step, plan.accumulation);
    double before = comm->BytesSent();
    rt::StepMetrics got = Step(*many, *tn, step, plan.accumulation);
    double sent = (comm->BytesSent() - before) / plan.accumulation;
    ExpectClose(got.loss, want.loss, "loss", step);
    ExpectClose(got.gradNorm, want.gradNorm, "grad_norm", step);
    EXPECT_EQ(got.lr, want.lr);
    if (plan.accumulation == 1) {
      EXPECT_EQ(sent, planned)
          << "bytes sent by rank " << comm->Rank() << " in step " << step;
    }
  }
  EXPECT_LE(RelativeL2(*many, *one), 1e-5);
}

// Pipelines: each stage's programs run the schedule's action list on its
// ranks; the micro-batches are the one-rank run's accumulation steps.
class Pipelines : public Equivalence {
protected:
  std::unique_ptr<rt::PipelineTrainer>
  buildPipeline(const ParallelSection &mesh) {
    std::string diagnostic;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &d) {
      diagnostic = d.str();
      return success();
    });
    auto model = importHFConfig(context, config(), importOptions());
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok())
      return nullptr;
    FailureOr<PipelinePrograms> compiled =
        compilePipeline(*model->module, {}, compileOptions(mesh));
    EXPECT_TRUE(succeeded(compiled)) << diagnostic;
    if (failed(compiled))
      return nullptr;
    rt::PipelineSpec spec;
    spec.schedule = compiled->schedule;
    spec.stages = compiled->stages;
    spec.microBatches = compiled->microBatches;
    spec.actions = compiled->actions;
    spec.tiedParams = compiled->tiedParams;
    for (StageProgram &p : compiled->programs) {
      auto program = rt::ParseProgram(p.bytes, p.name);
      EXPECT_TRUE(program.ok()) << program.status();
      if (!program.ok())
        return nullptr;
      spec.parts.push_back({p.name, p.stage, p.chunk, *std::move(program)});
    }
    auto t = rt::PipelineTrainer::Create(std::move(spec), *comm);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  /// What `veomni plan --report` says a rank of `stage` sends per step.
  double plannedStageBytes(const ParallelSection &mesh, int stage) {
    auto model = importHFConfig(context, config(), importOptions());
    EXPECT_TRUE(model.ok());
    ModuleOp module = *model->module;
    PassManager pm(&context);
    CompileOptions co = compileOptions(mesh);
    addPipelinePasses(pm, co);
    EXPECT_TRUE(succeeded(pm.run(module)));
    auto traffic = sharding::analyzePipeline(module, co.accumulationSteps,
                                             sharding::LinkModel{});
    EXPECT_TRUE(succeeded(traffic));
    return succeeded(traffic) ? (*traffic)[stage].bytes : -1;
  }
};

/// sqrt(sum |a - b|^2 / sum |b|^2) over this stage's parameters and
/// optimizer state.
double StageRelativeL2(rt::Executor &update, rt::Executor &serial) {
  double diff = 0, norm = 0;
  for (const rt::ArgumentDesc &a : update.program().arguments) {
    if (a.kind == rt::ArgumentKind::Input)
      continue;
    const rt::ArgumentDesc *s = serial.program().FindArgument(a.name);
    EXPECT_NE(s, nullptr) << a.name;
    if (!s)
      return INFINITY;
    auto x = update.ReadGlobal(a.buffer);
    auto y = serial.ReadHost(s->buffer);
    EXPECT_TRUE(x.ok() && y.ok());
    if (!x.ok() || !y.ok() || x->view.shape != y->view.shape)
      return INFINITY;
    for (int64_t i = 0, n = y->view.numel(); i < n; ++i) {
      double d = rt::LoadF(x->view, i) - rt::LoadF(y->view, i);
      diff += d * d;
      norm += rt::LoadF(y->view, i) * rt::LoadF(y->view, i);
    }
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

/// One optimizer step of a pipeline: the same micro-batches as Step's.
absl::StatusOr<rt::StepMetrics>
PipelineStep(rt::PipelineTrainer &t, int64_t step, int64_t accumulation) {
  for (int64_t micro = 0; micro < accumulation; ++micro) {
    int64_t index = (step - 1) * accumulation + micro;
    if (absl::Status s =
            rt::SyntheticBatch(t.Inputs(), kSeed * 1000003 + index);
        !s.ok())
      return s;
    if (absl::Status s = t.AddMicroBatch(); !s.ok())
      return s;
  }
  return t.Step(step);
}

TEST_P(Pipelines, TrainAsOneRank) {
  const Plan &plan = GetParam();
  ParallelSection mesh = meshOf(plan);
  ASSERT_EQ(mesh.meshSize(), comm->WorldSize());
  std::unique_ptr<rt::Executor> one = build(ParallelSection{});
  std::unique_ptr<rt::PipelineTrainer> many = buildPipeline(mesh);
  ASSERT_TRUE(one && many);
  auto t1 = rt::Trainer::Create(*one);
  ASSERT_TRUE(t1.ok());
  ASSERT_TRUE(rt::InitParameters(*one, kSeed).ok());
  ASSERT_TRUE(many->InitParameters(kSeed).ok());
  ASSERT_TRUE(t1->InitState().ok() && many->InitState().ok());
  EXPECT_EQ(StageRelativeL2(many->Update(), *one), 0.0);
  const double planned = plannedStageBytes(mesh, many->Stage());
  for (int64_t step = 1; step <= kSteps; ++step) {
    rt::StepMetrics want = Step(*one, *t1, step, plan.accumulation);
    double before = comm->BytesSent();
    auto got = PipelineStep(*many, step, plan.accumulation);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(comm->BytesSent() - before, planned)
        << "bytes sent by rank " << comm->Rank() << " (stage " << many->Stage()
        << ") in step " << step;
    ExpectClose(got->loss, want.loss, "loss", step);
    ExpectClose(got->gradNorm, want.gradNorm, "grad_norm", step);
    EXPECT_EQ(got->lr, want.lr);
  }
  EXPECT_LE(StageRelativeL2(many->Update(), *one), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Schedules, Pipelines,
    ::testing::Values(Plan{"llama", 1, 2, 1, 1, 1, 4, 2, "1f1b"},
                      Plan{"llama", 1, 2, 1, 1, 1, 4, 2, "zb-h1"},
                      Plan{"qwen3_moe", 1, 2, 1, 1, 1, 2, 2, "1f1b"},
                      Plan{"omni_moe", 1, 2, 1, 1, 1, 2, 2, "zb-h1"},
                      Plan{"llama4", 1, 2, 1, 1, 1, 4, 2, "interleaved"},
                      // Stages with the other axes.
                      Plan{"llama", 1, 1, 2, 1, 1, 4, 2, "1f1b"},
                      Plan{"qwen2_vl", 1, 1, 1, 2, 1, 2, 2, "1f1b"},
                      Plan{"qwen3_moe", 1, 1, 1, 1, 2, 2, 2, "zb-h1"},
                      // DeepSeek-V3's choice biases by the auxiliary-loss-
                      // free rule: each stage's routers' counts, summed over
                      // micro-batches and data-parallel ranks.
                      Plan{"deepseek_v3", 1, 2, 1, 1, 1, 2, 2, "1f1b"},
                      Plan{"deepseek_v3", 1, 2, 1, 1, 1, 2, 2, "zb-h1"},
                      // LoRA on every Linear (stage 0's embedding and stage
                      // 1's head frozen whole), and a frozen vision tower
                      // on the first stage.
                      Plan{"llama", 1, 2, 1, 1, 1, 4, 2, "1f1b", kSteps, 3e-3,
                           "", "all-linear"},
                      Plan{"qwen3_moe", 1, 2, 1, 1, 1, 2, 2, "1f1b", kSteps,
                           3e-3, "", "all-linear"},
                      Plan{"qwen2_vl", 1, 2, 1, 1, 1, 2, 2, "zb-h1", kSteps,
                           3e-3, "visual.*"}),
    PlanName);

// Three axes on 8 ranks (ctest Equivalence.EightRanks).
INSTANTIATE_TEST_SUITE_P(EightRanks, Pipelines,
                         ::testing::Values(Plan{"llama", 1, 2, 2, 1, 1, 4, 2,
                                                "zb-h1"}),
                         PlanName);

// A pipeline's checkpoint is the same as any plan's: 2 steps under pp 2 x
// dp_shard 2, saved, 2 steps under dp_shard 4 from it, saved, and a last
// step under the pipeline again, give the one-rank run's losses.
class PipelineCheckpoints : public Pipelines {};

TEST_P(PipelineCheckpoints, ResumeAcrossPlans) {
  const Plan &plan = GetParam();
  ParallelSection pipelined = meshOf(plan), fsdp = meshOf({"", 1, 4});
  std::unique_ptr<rt::Executor> one = build(ParallelSection{});
  std::unique_ptr<rt::PipelineTrainer> a = buildPipeline(pipelined);
  std::unique_ptr<rt::Executor> b = build(fsdp);
  std::unique_ptr<rt::PipelineTrainer> c = buildPipeline(pipelined);
  ASSERT_TRUE(one && a && b && c);
  auto t1 = rt::Trainer::Create(*one);
  auto tb = rt::Trainer::Create(*b);
  ASSERT_TRUE(t1.ok() && tb.ok());
  ASSERT_TRUE(rt::InitParameters(*one, kSeed).ok());
  ASSERT_TRUE(a->InitParameters(kSeed).ok());
  ASSERT_TRUE(t1->InitState().ok() && a->InitState().ok());
  // The runs a checkpoint resumes start as a run does (a LoRA checkpoint
  // holds the adapters, the base weights come from the run's start).
  ASSERT_TRUE(rt::InitParameters(*b, kSeed).ok());
  ASSERT_TRUE(c->InitParameters(kSeed).ok());
  auto pipelineStep = [&](rt::PipelineTrainer &t, int64_t step) {
    auto r = PipelineStep(t, step, plan.accumulation);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : rt::StepMetrics{};
  };
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("veomni-pp-resume-" + std::to_string(getppid())))
                        .string();
  std::map<std::string, std::string> meta;
  for (int64_t step = 1; step <= kSteps; ++step) {
    rt::StepMetrics want = Step(*one, *t1, step, plan.accumulation);
    rt::StepMetrics got;
    if (step <= 2) {
      got = pipelineStep(*a, step);
      if (step == 2) {
        // (A LoRA run's checkpoint: the adapters in PEFT's layout.)
        rt::Trainer::CheckpointOptions options;
        if (!plan.lora.empty() || !plan.loraParameters.empty())
          options.adapterConfig = "{}";
        ASSERT_TRUE(a->Save(dir + "/a", step, {}, options).ok());
        auto resumed = tb->Load(dir + "/a", meta);
        ASSERT_TRUE(resumed.ok()) << resumed.status();
        EXPECT_EQ(*resumed, 2);
      }
    } else if (step <= 4) {
      got = Step(*b, *tb, step, plan.accumulation);
      if (step == 4) {
        rt::Trainer::CheckpointOptions options;
        if (!plan.lora.empty() || !plan.loraParameters.empty())
          options.adapterConfig = "{}";
        ASSERT_TRUE(tb->Save(dir + "/b", step, {}, options).ok());
        auto resumed = c->Load(dir + "/b", meta);
        ASSERT_TRUE(resumed.ok()) << resumed.status();
        EXPECT_EQ(*resumed, 4);
      }
    } else {
      got = pipelineStep(*c, step);
    }
    ExpectClose(got.loss, want.loss, "loss", step);
    ExpectClose(got.gradNorm, want.gradNorm, "grad_norm", step);
  }
  EXPECT_LE(StageRelativeL2(c->Update(), *one), 1e-5);
  std::vector<uint32_t> all(comm->WorldSize());
  for (uint32_t i = 0; i < all.size(); ++i)
    all[i] = i;
  EXPECT_TRUE(comm->Barrier(*comm->AddGroup("world", all)).ok());
  if (comm->Rank() == 0)
    std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Schedules, PipelineCheckpoints,
    ::testing::Values(Plan{"llama", 1, 2, 1, 1, 1, 4, 2, "1f1b"},
                      Plan{"omni_moe", 1, 2, 1, 1, 1, 2, 2, "zb-h1"},
                      Plan{"llama", 1, 2, 1, 1, 1, 4, 2, "1f1b", kSteps, 3e-3,
                           "", "q_proj,v_proj"}),
    PlanName);

INSTANTIATE_TEST_SUITE_P(
    Plans, Equivalence,
    ::testing::Values(
        Plan{"llama", 1, 4}, Plan{"llama", 2, 2}, Plan{"llama", 1, 2, 1, 2},
        Plan{"qwen3", 2, 2}, Plan{"qwen3_moe", 1, 4, 1, 1, 1, 2},
        Plan{"qwen3_moe", 1, 2, 1, 2}, Plan{"omni_moe", 1, 4},
        Plan{"qwen2_5_omni", 1, 2, 1, 2}, Plan{"llama", 1, 2, 2},
        Plan{"llama", 2, 1, 2}, Plan{"qwen3_moe", 1, 2, 1, 1, 2},
        Plan{"omni_moe", 1, 2, 1, 1, 2}, Plan{"qwen2_vl", 1, 2, 1, 2},
        Plan{"qwen2_5_vl", 1, 2, 2}, Plan{"qwen2", 2, 2},
        // sp 4 over 2 kv heads: repeated up to 4.
        Plan{"llama", 1, 1, 1, 4},
        // DeepStack's adds under data parallelism; fused
        // experts under ep.
        Plan{"qwen3_vl", 1, 4}, Plan{"qwen3_vl_moe", 1, 2, 1, 1, 2},
        // Gemma 3's SigLIP images and bidirectional image blocks, under FSDP
        // and under tp x Ulysses (the blocks gathered with the sequence).
        Plan{"gemma3", 1, 4}, Plan{"gemma3", 1, 1, 2, 2},
        Plan{"qwen3_omni_moe", 1, 2, 1, 1, 2},
        Plan{"deepseek_v3", 1, 2, 1, 1, 2, 2},
        // DeepStack under tp x sp: at lr 3e-3 five steps grow the f32
        // round-off of the tp/sp partial sums (1e-7 of the gradients after
        // one step) to 2e-4 of the parameters; at 3e-4 they stay within
        // 1e-5, as does one step at 3e-3.
        Plan{"qwen3_vl", 1, 1, 2, 2, 1, 1, 1, "1f1b", kSteps, 3e-4},
        Plan{"qwen3_vl", 1, 1, 2, 2, 1, 1, 1, "1f1b", 1},
        // A frozen vision tower (train.freeze) under FSDP and under tp:
        // its FSDP shards are gathered for the forward, nothing is
        // reduced for it.
        Plan{"qwen2_5_vl", 1, 4, 1, 1, 1, 1, 1, "1f1b", kSteps, 3e-3,
             "visual.*"},
        Plan{"qwen2_5_vl", 1, 2, 2, 1, 1, 1, 1, "1f1b", kSteps, 3e-3,
             "visual.*"},
        // LoRA adapters on every Linear under FSDP, and under tp x sp (A
        // split with a row-parallel base, B with a column-parallel one).
        Plan{"llama", 1, 4, 1, 1, 1, 1, 1, "1f1b", kSteps, 3e-3, "",
             "all-linear"},
        Plan{"qwen3", 1, 1, 2, 2, 1, 1, 1, "1f1b", kSteps, 3e-3, "",
             "all-linear"},
        // On MoE models under ep: all-linear on Qwen3-MoE adapts the
        // routers and the experts (gate_up_proj at rank 2r, as peft), each
        // expert's pair on the rank that holds the expert; Qwen3-VL-MoE's
        // fused and gpt-oss's [E, in, out] experts through
        // target_parameters.
        Plan{"qwen3_moe", 1, 2, 1, 1, 2, 1, 1, "1f1b", kSteps, 3e-3, "",
             "all-linear"},
        Plan{"qwen3_vl_moe", 1, 2, 1, 1, 2, 1, 1, "1f1b", kSteps, 3e-3, "", "",
             "mlp.experts.gate_up_proj,mlp.experts.down_proj"},
        Plan{"gpt_oss", 1, 1, 1, 1, 4, 1, 1, "1f1b", kSteps, 3e-3, "", "q_proj",
             "mlp.experts.gate_up_proj,mlp.experts.down_proj"}),
    PlanName);

// Three axes on 8 ranks (ctest Equivalence.EightRanks).
INSTANTIATE_TEST_SUITE_P(EightRanks, Equivalence,
                         ::testing::Values(Plan{"llama", 1, 2, 2, 2},
                                           Plan{"qwen3_moe", 1, 2, 1, 2, 2}),
                         PlanName);

// A checkpoint is the same whatever the plan: 3 steps under dp_shard 4,
// saved, resumed under the test's plan (tp 2 x dp_shard 2, sp 2 x
// dp_shard 2) for 2 more steps, gives the losses and parameters of 5 steps
// on one rank.
class Resume : public Equivalence {};

TEST_P(Resume, UnderAnotherPlanContinuesTheRun) {
  ParallelSection first = meshOf({"", 1, 4}), second = meshOf(GetParam());
  std::unique_ptr<rt::Executor> one = build(ParallelSection{});
  std::unique_ptr<rt::Executor> a = build(first);
  std::unique_ptr<rt::Executor> b = build(second);
  ASSERT_TRUE(one && a && b);
  auto t1 = rt::Trainer::Create(*one);
  auto ta = rt::Trainer::Create(*a);
  auto tb = rt::Trainer::Create(*b);
  ASSERT_TRUE(t1.ok() && ta.ok() && tb.ok());
  for (rt::Executor *ex : {one.get(), a.get()})
    ASSERT_TRUE(rt::InitParameters(*ex, kSeed).ok());
  ASSERT_TRUE(t1->InitState().ok() && ta->InitState().ok());

  std::string dir = (std::filesystem::temp_directory_path() /
                     ("veomni-resume-" + std::to_string(getppid())))
                        .string();
  for (int64_t step = 1; step <= 3; ++step) {
    rt::StepMetrics want = Step(*one, *t1, step, 1);
    rt::StepMetrics got = Step(*a, *ta, step, 1);
    ExpectClose(got.loss, want.loss, "loss", step);
  }
  ASSERT_TRUE(ta->Save(dir, 3, {}, {}).ok());
  std::map<std::string, std::string> meta;
  auto resumed = tb->Load(dir, meta);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(*resumed, 3);
  for (int64_t step = 4; step <= kSteps; ++step) {
    rt::StepMetrics want = Step(*one, *t1, step, 1);
    rt::StepMetrics got = Step(*b, *tb, step, 1);
    ExpectClose(got.loss, want.loss, "loss", step);
    ExpectClose(got.gradNorm, want.gradNorm, "grad_norm", step);
  }
  EXPECT_LE(RelativeL2(*b, *one), 1e-5);
  // The same checkpoint loads on one rank too.
  auto t1b = rt::Trainer::Create(*one);
  ASSERT_TRUE(t1b.ok());
  EXPECT_TRUE(t1b->Load(dir, meta).ok());
  std::vector<uint32_t> all(comm->WorldSize());
  for (uint32_t i = 0; i < all.size(); ++i)
    all[i] = i;
  EXPECT_TRUE(comm->Barrier(*comm->AddGroup("world", all)).ok());
  if (comm->Rank() == 0)
    std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Resume,
                         ::testing::Values(Plan{"llama", 1, 2, 2},
                                           Plan{"llama", 1, 2, 1, 2}),
                         PlanName);

} // namespace

int main(int argc, char **argv) {
  return MpiTestMain(argc, argv, {4, 8}, comm);
}
