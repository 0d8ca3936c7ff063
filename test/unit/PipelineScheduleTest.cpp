//===- PipelineScheduleTest.cpp - pipeline schedules ----------------------===//
//
// Every schedule is run by simulate(), which checks each dependency and
// each send/receive pairing; the bubbles it measures are the textbook ones.
//
//===----------------------------------------------------------------------===//

#include "passes/PipelineSchedule.h"

#include <gtest/gtest.h>

#include <algorithm>

using namespace mlir::veomni::pipeline;

namespace {

Simulation run(Kind kind, int p, int m, int v = 1, Costs costs = {}) {
  absl::StatusOr<Schedule> s = makeSchedule(kind, p, m, v, costs);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok())
    return {};
  absl::StatusOr<Simulation> sim = simulate(*s, costs);
  EXPECT_TRUE(sim.ok()) << sim.status();
  return sim.value_or(Simulation{});
}

// 1F1B with a backward twice the forward: idle (p - 1) (F + B) per stage,
// so the bubble is (p - 1) / (m + p - 1); stage s holds p - s micro-batches.
TEST(PipelineSchedule, OneFOneBBubbleAndMemory) {
  for (int p : {2, 4, 8})
    for (int m : {p, 2 * p, 4 * p}) {
      Simulation sim = run(Kind::OneFOneB, p, m);
      EXPECT_NEAR(sim.bubble, double(p - 1) / (m + p - 1), 1e-12)
          << p << " stages, " << m << " micro-batches";
      for (int s = 0; s < p; ++s)
        EXPECT_EQ(sim.peakActivations[s], std::min(p - s, m));
    }
}

// Interleaved 1F1B with v chunks a stage: the bubble shrinks v-fold,
// (p - 1) / (v m + p - 1) with per-chunk costs.
TEST(PipelineSchedule, InterleavedShrinksTheBubble) {
  for (auto [p, m, v] : {std::tuple{2, 4, 2}, {4, 8, 2}, {4, 16, 4}}) {
    Simulation sim = run(Kind::Interleaved, p, m, v);
    EXPECT_NEAR(sim.bubble, double(p - 1) / (v * m + p - 1), 1e-12)
        << p << " stages, " << m << " micro-batches, " << v << " chunks";
    EXPECT_LT(sim.bubble, run(Kind::OneFOneB, p, m).bubble);
  }
}

// Splitting the backward: the weight cotangents fill the waits, the bubble
// falls below 1F1B's, and no stage holds more activations than in 1F1B.
TEST(PipelineSchedule, ZeroBubbleH1FillsWaitsWithWeightBackwards) {
  for (auto [p, m] : {std::pair{4, 8}, {8, 16}}) {
    Simulation zb = run(Kind::ZeroBubbleH1, p, m);
    Simulation base = run(Kind::OneFOneB, p, m);
    EXPECT_LT(zb.bubble, base.bubble - 0.05) << p << " stages";
    EXPECT_LT(zb.makespan, base.makespan);
    for (int s = 0; s < p; ++s)
      EXPECT_LE(zb.peakActivations[s], base.peakActivations[s]);
  }
  absl::StatusOr<Schedule> s = makeSchedule(Kind::ZeroBubbleH1, 4, 8, 1);
  ASSERT_TRUE(s.ok());
  for (const auto &stage : s->perStage)
    EXPECT_EQ(std::count_if(
                  stage.begin(), stage.end(),
                  [](const Action &a) { return a.op == Op::BackwardWeight; }),
              8);
}

TEST(PipelineSchedule, BadSchedulesAreRejected) {
  EXPECT_EQ(makeSchedule(Kind::Interleaved, 4, 6, 2).status().message(),
            "the interleaved schedule needs micro-batches (6) to be a "
            "multiple of stages (4)");

  absl::StatusOr<Schedule> good = makeSchedule(Kind::OneFOneB, 2, 2, 1);
  ASSERT_TRUE(good.ok());
  // A send that never happens: the receiver waits forever, and so does
  // the first stage, for the cotangent that never comes back.
  Schedule lost = *good;
  auto &first = lost.perStage[0];
  first.erase(std::find_if(first.begin(), first.end(), [](const Action &a) {
    return a.op == Op::SendActivation && a.microBatch == 1;
  }));
  EXPECT_EQ(simulate(lost, {}).status().message(),
            "stage 0, recv_grad(mb1, chunk 0, stage 1): never runs: "
            "the schedule deadlocks");
  // A backward before its forward.
  Schedule early = *good;
  auto &last = early.perStage[1];
  std::iter_swap(
      std::find_if(last.begin(), last.end(),
                   [](const Action &a) { return a.op == Op::Forward; }),
      std::find_if(last.begin(), last.end(),
                   [](const Action &a) { return a.op == Op::Backward; }));
  absl::Status error = simulate(early, {}).status();
  EXPECT_NE(error.message().find("comes before what it depends on"),
            std::string::npos)
      << error;
  // An action twice.
  Schedule twice = *good;
  twice.perStage[0].push_back(twice.perStage[0].front());
  error = simulate(twice, {}).status();
  EXPECT_NE(error.message().find("done twice"), std::string::npos) << error;
}

} // namespace
