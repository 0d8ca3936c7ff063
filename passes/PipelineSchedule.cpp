//===- PipelineSchedule.cpp - pipeline schedules as action lists ----------===//

#include "passes/PipelineSchedule.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

using namespace mlir::veomni::pipeline;

namespace {

struct Compute {
  Op op;
  int microBatch, chunk;
};

/// Adds the receives before and the sends after each compute action.
std::vector<Action> withCommunication(const std::vector<Compute> &order,
                                      int chunks, int stages) {
  auto stageOf = [&](int chunk) { return chunk % stages; };
  std::vector<Action> actions;
  for (const Compute &c : order) {
    bool backward = c.op != Op::Forward && c.op != Op::BackwardWeight;
    if (c.op == Op::Forward && c.chunk > 0)
      actions.push_back(
          {Op::RecvActivation, c.microBatch, c.chunk, stageOf(c.chunk - 1)});
    if (backward && c.chunk < chunks - 1)
      actions.push_back(
          {Op::RecvGrad, c.microBatch, c.chunk, stageOf(c.chunk + 1)});
    actions.push_back({c.op, c.microBatch, c.chunk, -1});
    if (c.op == Op::Forward && c.chunk < chunks - 1)
      actions.push_back(
          {Op::SendActivation, c.microBatch, c.chunk, stageOf(c.chunk + 1)});
    if (backward && c.chunk > 0)
      actions.push_back(
          {Op::SendGrad, c.microBatch, c.chunk, stageOf(c.chunk - 1)});
  }
  return actions;
}

/// ZB-H1's weight backwards: replays the forwards and input backwards of
/// each stage (one chunk per stage) in time, stage with the earliest clock
/// first, and runs a pending W whenever the stage's next action would wait,
/// or before a forward that would hold more activations than 1F1B
/// (stages - stage); the W's left run at the end. The order it ran in is
/// the schedule.
void placeWeightBackwards(std::vector<std::vector<Compute>> &orders, int p,
                          const Costs &costs) {
  std::vector<std::vector<Compute>> placed(p);
  std::vector<size_t> pos(p, 0);
  std::vector<double> clock(p, 0);
  std::vector<std::vector<int>> pending(p);
  std::vector<int> held(p, 0);
  std::map<std::pair<int, int>, double> forwardDone, inputDone; // (mb, stage)
  auto depTime = [&](int stage, const Compute &c) -> std::optional<double> {
    const auto &table = c.op == Op::Forward ? forwardDone : inputDone;
    int from = c.op == Op::Forward ? stage - 1 : stage + 1;
    double t = 0;
    if (c.op == Op::BackwardInput) {
      auto own = forwardDone.find({c.microBatch, stage});
      if (own == forwardDone.end())
        return std::nullopt;
      t = own->second;
    }
    if (from < 0 || from >= p)
      return t;
    auto it = table.find({c.microBatch, from});
    if (it == table.end())
      return std::nullopt;
    return std::max(t, it->second);
  };
  auto runW = [&](int stage) {
    int mb = pending[stage].front();
    pending[stage].erase(pending[stage].begin());
    placed[stage].push_back({Op::BackwardWeight, mb, stage});
    clock[stage] += costs.backwardWeight;
    --held[stage];
  };
  for (;;) {
    std::vector<int> byClock;
    for (int s = 0; s < p; ++s)
      if (pos[s] < orders[s].size() || !pending[s].empty())
        byClock.push_back(s);
    if (byClock.empty())
      break;
    std::stable_sort(byClock.begin(), byClock.end(),
                     [&](int a, int b) { return clock[a] < clock[b]; });
    bool acted = false;
    for (int s : byClock) {
      if (pos[s] >= orders[s].size()) { // only W's left
        runW(s);
        acted = true;
        break;
      }
      const Compute &c = orders[s][pos[s]];
      std::optional<double> dep = depTime(s, c);
      bool overHeld = c.op == Op::Forward && held[s] >= p - s;
      if (!pending[s].empty() && (overHeld || !dep || *dep > clock[s])) {
        runW(s); // fill the wait (or free activations first)
        acted = true;
        break;
      }
      if (!dep)
        continue; // waits on a stage that has not run it yet
      clock[s] = std::max(clock[s], *dep);
      if (c.op == Op::Forward) {
        clock[s] += costs.forward;
        forwardDone[{c.microBatch, s}] = clock[s];
        ++held[s];
      } else {
        clock[s] += costs.backwardInput;
        inputDone[{c.microBatch, s}] = clock[s];
        pending[s].push_back(c.microBatch);
      }
      placed[s].push_back(c);
      ++pos[s];
      acted = true;
      break;
    }
    if (!acted)
      break; // cannot happen for 1F1B orders; simulate() reports it
  }
  for (int s = 0; s < p; ++s) {
    for (int mb : pending[s])
      placed[s].push_back({Op::BackwardWeight, mb, s});
    orders[s] = std::move(placed[s]);
  }
}

} // namespace

absl::StatusOr<Schedule>
mlir::veomni::pipeline::makeSchedule(Kind kind, int stages, int microBatches,
                                     int chunksPerStage, const Costs &costs) {
  if (stages < 1 || microBatches < 1 || chunksPerStage < 1) {
    return absl::InvalidArgumentError(
        "stages, micro-batches and chunks per stage must be >= 1");
  }
  if (kind != Kind::Interleaved && chunksPerStage != 1) {
    return absl::InvalidArgumentError(
        "only the interleaved schedule has several chunks per stage");
  }
  if (kind == Kind::Interleaved && microBatches % stages != 0) {
    return absl::InvalidArgumentError(
        "the interleaved schedule needs micro-batches (" +
        std::to_string(microBatches) + ") to be a multiple of stages (" +
        std::to_string(stages) + ")");
  }
  Schedule s{kind, stages, microBatches, chunksPerStage, {}};
  const int p = stages, m = microBatches, v = chunksPerStage;
  std::vector<std::vector<Compute>> orders;
  for (int stage = 0; stage < p; ++stage) {
    std::vector<Compute> order;
    if (kind == Kind::Interleaved) {
      // Megatron: micro-batches go through the stage's chunks in groups of
      // p; warm up (p - stage - 1) * 2 + (v - 1) * p steps, then alternate.
      auto forward = [&](int k) {
        int local = (k / p) % v;
        return Compute{Op::Forward, (k / (p * v)) * p + k % p,
                       local * p + stage};
      };
      auto backward = [&](int k) {
        int local = v - 1 - (k / p) % v;
        return Compute{Op::Backward, (k / (p * v)) * p + k % p,
                       local * p + stage};
      };
      int total = m * v;
      int warmup = std::min((p - stage - 1) * 2 + (v - 1) * p, total);
      for (int k = 0; k < warmup; ++k)
        order.push_back(forward(k));
      for (int k = 0; k < total - warmup; ++k) {
        order.push_back(forward(warmup + k));
        order.push_back(backward(k));
      }
      for (int k = total - warmup; k < total; ++k)
        order.push_back(backward(k));
    } else {
      // 1F1B: p - stage - 1 forwards, then one forward and one backward in
      // turn, then the remaining backwards.
      int warmup = std::min(p - stage - 1, m);
      Op backward =
          kind == Kind::ZeroBubbleH1 ? Op::BackwardInput : Op::Backward;
      for (int i = 0; i < warmup; ++i)
        order.push_back({Op::Forward, i, stage});
      for (int i = 0; i < m - warmup; ++i) {
        order.push_back({Op::Forward, warmup + i, stage});
        order.push_back({backward, i, stage});
      }
      for (int i = m - warmup; i < m; ++i)
        order.push_back({backward, i, stage});
    }
    orders.push_back(std::move(order));
  }
  if (kind == Kind::ZeroBubbleH1)
    placeWeightBackwards(orders, p, costs);
  for (int stage = 0; stage < p; ++stage) {
    const std::vector<Compute> &order = orders[stage];
    s.perStage.push_back(withCommunication(order, p * v, p));
  }
  return s;
}

std::string mlir::veomni::pipeline::toString(const Action &a) {
  static const char *names[] = {
      "F", "B", "BI", "BW", "send_act", "recv_act", "send_grad", "recv_grad"};
  std::string text = names[static_cast<int>(a.op)];
  text += "(mb" + std::to_string(a.microBatch) + ", chunk " +
          std::to_string(a.chunk);
  if (a.peer >= 0)
    text += ", stage " + std::to_string(a.peer);
  return text + ")";
}

absl::StatusOr<Simulation>
mlir::veomni::pipeline::simulate(const Schedule &s, const Costs &costs) {
  const int p = s.stages, chunks = s.stages * s.chunksPerStage;
  using Key = std::tuple<int, int, int>; // op, micro-batch, chunk
  std::map<Key, double> done;            // completion times
  auto key = [](Op op, int mb, int chunk) {
    return Key{static_cast<int>(op), mb, chunk};
  };
  std::vector<size_t> next(p, 0);
  std::vector<double> clock(p, 0), busy(p, 0);
  std::vector<int> held(p, 0);
  Simulation sim;
  sim.peakActivations.assign(p, 0);

  auto fail = [&](int stage, const Action &a, const std::string &why) {
    return absl::InvalidArgumentError("stage " + std::to_string(stage) + ", " +
                                      toString(a) + ": " + why);
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int stage = 0; stage < p; ++stage) {
      while (next[stage] < s.perStage[stage].size()) {
        const Action &a = s.perStage[stage][next[stage]];
        if (a.chunk < 0 || a.chunk >= chunks || a.chunk % p != stage ||
            a.microBatch < 0 || a.microBatch >= s.microBatches)
          return fail(stage, a, "not a chunk and micro-batch of this stage");
        if (done.count(key(a.op, a.microBatch, a.chunk)))
          return fail(stage, a, "done twice");
        // What the action waits for (its time), and whether it is there.
        double ready = clock[stage];
        auto need = [&](Op op, int mb, int chunk) -> bool {
          auto it = done.find(key(op, mb, chunk));
          if (it == done.end())
            return false;
          ready = std::max(ready, it->second);
          return true;
        };
        bool ok = true, mustPrecede = false;
        double cost = 0;
        switch (a.op) {
        case Op::RecvActivation:
          if (a.peer != (a.chunk - 1 + chunks) % p)
            return fail(stage, a, "receives from the wrong stage");
          ok = need(Op::SendActivation, a.microBatch, a.chunk - 1);
          break;
        case Op::RecvGrad:
          if (a.peer != (a.chunk + 1) % p)
            return fail(stage, a, "receives from the wrong stage");
          ok = need(Op::SendGrad, a.microBatch, a.chunk + 1);
          break;
        case Op::SendActivation:
          mustPrecede = !need(Op::Forward, a.microBatch, a.chunk);
          break;
        case Op::SendGrad:
          mustPrecede = !need(Op::Backward, a.microBatch, a.chunk) &&
                        !need(Op::BackwardInput, a.microBatch, a.chunk);
          break;
        case Op::Forward:
          mustPrecede =
              a.chunk > 0 && !need(Op::RecvActivation, a.microBatch, a.chunk);
          cost = costs.forward;
          break;
        case Op::Backward:
        case Op::BackwardInput:
          mustPrecede = !need(Op::Forward, a.microBatch, a.chunk) ||
                        (a.chunk < chunks - 1 &&
                         !need(Op::RecvGrad, a.microBatch, a.chunk));
          cost = costs.backwardInput +
                 (a.op == Op::Backward ? costs.backwardWeight : 0);
          break;
        case Op::BackwardWeight:
          mustPrecede = !need(Op::BackwardInput, a.microBatch, a.chunk);
          cost = costs.backwardWeight;
          break;
        }
        if (mustPrecede)
          return fail(stage, a, "comes before what it depends on");
        if (!ok)
          break; // blocked on a receive: let the other stages run
        clock[stage] = ready + cost;
        busy[stage] += cost;
        if (cost > 0)
          sim.spans.push_back(
              {stage, a.op, a.microBatch, a.chunk, ready, clock[stage]});
        done[key(a.op, a.microBatch, a.chunk)] = clock[stage];
        if (a.op == Op::Forward)
          sim.peakActivations[stage] =
              std::max(sim.peakActivations[stage], ++held[stage]);
        if (a.op == Op::Backward || a.op == Op::BackwardWeight)
          --held[stage];
        ++next[stage];
        progress = true;
      }
    }
  }
  for (int stage = 0; stage < p; ++stage)
    if (next[stage] < s.perStage[stage].size())
      return fail(stage, s.perStage[stage][next[stage]],
                  "never runs: the schedule deadlocks");
  // Every chunk of every micro-batch went forward and backward once.
  for (int mb = 0; mb < s.microBatches; ++mb)
    for (int chunk = 0; chunk < chunks; ++chunk) {
      bool forward = done.count(key(Op::Forward, mb, chunk));
      bool whole = done.count(key(Op::Backward, mb, chunk));
      bool split = done.count(key(Op::BackwardInput, mb, chunk)) &&
                   done.count(key(Op::BackwardWeight, mb, chunk));
      if (!forward || whole == split) {
        return absl::InvalidArgumentError("micro-batch " + std::to_string(mb) +
                                          ", chunk " + std::to_string(chunk) +
                                          ": missing its forward or backward");
      }
    }
  sim.makespan = *std::max_element(clock.begin(), clock.end());
  double work = 0;
  for (double b : busy)
    work += b;
  sim.bubble = 1.0 - work / (p * sim.makespan);
  return sim;
}
