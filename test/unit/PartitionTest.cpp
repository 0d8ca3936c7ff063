//===- PartitionTest.cpp - partitioned training steps ---------------------===//
//
// Whole training steps of the tiny families (forward, backward, AdamW)
// under meshes that mix FSDP, tensor, sequence and expert parallelism:
// propagation reaches every value, partitioning yields a verified per-rank
// program, and the traffic the plan report reads off the propagated step
// is exactly that of the collectives the partitioned program holds.
//
//===----------------------------------------------------------------------===//

#include "compiler/Compile.h"
#include "compiler/Registration.h"
#include "frontends/Importer.h"
#include "passes/Communication.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace mlir::veomni;

namespace {

struct Case {
  std::string family;
  int64_t batch, dpShard, tp, sp, ep, dpReplicate = 1;
};

std::ostream &operator<<(std::ostream &os, const Case &c) {
  return os << c.family << "_dpr" << c.dpReplicate << "_dp" << c.dpShard
            << "_tp" << c.tp << "_sp" << c.sp << "_ep" << c.ep;
}

class PartitionTest : public ::testing::TestWithParam<Case> {
protected:
  PartitionTest() {
    DialectRegistry registry;
    registerAllVeOmni(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();
  }
  MLIRContext context;
};

TEST_P(PartitionTest, TrafficOfThePlanIsThatOfThePartitionedStep) {
  const Case &c = GetParam();
  ImportOptions io;
  io.model.dtype = "f32";
  io.data.batchSize = c.batch;
  io.data.seqLen = 32;
  io.data.imagePatches = 16;
  io.data.audioFrames = 32;
  absl::StatusOr<ImportedModel> model = importHFConfig(
      context,
      std::string(VEOMNI_SOURCE_DIR) + "/examples/tiny/" + c.family + ".json",
      io);
  ASSERT_TRUE(model.ok()) << model.status();
  ModuleOp module = *model->module;

  PassManager pm(&context);
  CompileOptions co;
  co.train = TrainOptions{};
  addTrainingStepPasses(pm, co);
  ParallelSection parallel;
  parallel.dpReplicate = c.dpReplicate;
  parallel.dpShard = c.dpShard;
  parallel.tp = c.tp;
  parallel.sp = c.sp;
  parallel.ep = c.ep;
  addShardingPasses(pm, parallel);
  ASSERT_TRUE(succeeded(pm.run(module)));

  sharding::Mesh mesh((*module.getOps<dist::MeshOp>().begin()).getMesh());
  func::FuncOp func = *module.getOps<func::FuncOp>().begin();
  // Every value has a layout.
  func.walk([&](Operation *op) {
    if (op->getNumResults() && !isa<dist::ShardingConstraintOp>(op))
      EXPECT_TRUE(op->hasAttr("dist.sharding"))
          << op->getName().getStringRef().str();
  });
  sharding::LinkModel link;
  FailureOr<sharding::StepTraffic> planned =
      sharding::analyzeStep(func, mesh, link);
  ASSERT_TRUE(succeeded(planned));

  PassManager partition(&context);
  partition.addPass(createPartition());
  ASSERT_TRUE(succeeded(partition.run(module)));
  ASSERT_TRUE(succeeded(verify(module)));
  func = *module.getOps<func::FuncOp>().begin();
  sharding::StepTraffic counted = sharding::countCollectives(func, mesh, link);

  EXPECT_GT(counted.totalBytes(), 0);
  ASSERT_EQ(planned->byGroup.size(), counted.byGroup.size());
  for (auto &[group, kinds] : planned->byGroup) {
    ASSERT_TRUE(counted.byGroup.count(group)) << group;
    for (auto &[kind, t] : kinds) {
      const sharding::Traffic &u = counted.byGroup[group][kind];
      EXPECT_EQ(t.count, u.count) << group << " " << kind;
      EXPECT_DOUBLE_EQ(t.bytes, u.bytes) << group << " " << kind;
    }
  }
  // Each parallel axis of the mesh does move data.
  for (auto [axis, size] :
       {std::pair<const char *, int64_t>{"dp_shard", c.dpShard},
        {"dp_replicate", c.dpReplicate},
        {"tp", c.tp},
        {"sp", c.sp},
        {"ep", c.ep}})
    if (size > 1)
      EXPECT_TRUE(planned->byGroup.count(axis)) << axis;
}

INSTANTIATE_TEST_SUITE_P(
    Meshes, PartitionTest,
    ::testing::Values(Case{"llama", 4, 2, 2, 1, 1},     // FSDP x TP
                      Case{"qwen3", 2, 2, 1, 2, 1},     // FSDP x Ulysses
                      Case{"qwen2", 2, 2, 2, 2, 1},     // FSDP x TP x SP
                      Case{"qwen3_moe", 4, 2, 1, 1, 2}, // FSDP x EP
                      Case{"omni_moe", 4, 2, 1, 1, 2},  // encoders + EP
                      Case{"qwen2", 4, 2, 2, 1, 1, 2}), // HSDP x TP
    [](const ::testing::TestParamInfo<Case> &info) {
      std::ostringstream os;
      os << info.param;
      return os.str();
    });

} // namespace

namespace {

// Reshards are chosen by the alpha-beta model: moving a split between
// dimensions is an all-to-all for a large tensor, but for a tiny one the
// all-to-all's n - 1 latency steps cost more than gathering (log2 n
// steps) and keeping a slice; partial sums go to a reduce-scatter.
TEST(Reshard, CheapestUnderTheAlphaBetaModel) {
  MLIRContext context;
  context.loadDialect<dist::DistDialect>();
  auto mesh = dist::MeshAttr::get(&context,
                                  {dist::MeshAxisAttr::get(&context, "sp", 8)});
  sharding::Mesh m(mesh);
  auto sp = StringAttr::get(&context, "sp");
  sharding::Layout seq = sharding::Layout::open(3), heads = seq;
  seq.dims[1] = {sp};
  heads.dims[2] = {sp};
  auto f32 = Float32Type::get(&context);
  sharding::LinkModel link;
  auto kinds = [&](ArrayRef<int64_t> local, const sharding::Layout &from,
                   const sharding::Layout &to) {
    std::vector<sharding::Collective::Kind> out;
    for (const sharding::Collective &c : sharding::cheapestReshard(
             RankedTensorType::get(local, f32), from, to, m, link))
      out.push_back(c.kind);
    return out;
  };
  using K = sharding::Collective::Kind;
  EXPECT_EQ(kinds({4, 512, 4096}, seq, heads), std::vector<K>{K::AllToAll});
  EXPECT_EQ(kinds({1, 1, 8}, seq, heads),
            (std::vector<K>{K::AllGather, K::LocalSplit}));

  sharding::Layout partial = sharding::Layout::open(3), split = partial;
  partial.partial = {sp};
  split.dims[0] = {sp};
  EXPECT_EQ(kinds({64, 512, 512}, partial, split),
            std::vector<K>{K::ReduceScatter});
}

} // namespace
