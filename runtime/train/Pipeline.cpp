//===- Pipeline.cpp - run a pipeline's schedule ---------------------------===//

#include "runtime/train/Pipeline.h"

#include "runtime/comm/SubCommunicator.h"
#include "runtime/io/Init.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"
#include "runtime/support/Status.h"
#include "runtime/train/Checkpoint.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <set>
#include <tuple>

namespace veomni::rt {
namespace {

using Bytes = std::vector<uint8_t>;

struct Action {
  enum Kind { F, B, BI, BW, SA, RA, SG, RG } kind;
  int64_t micro, chunk, peer;
};

absl::StatusOr<Action> ParseAction(const std::string &text) {
  static const std::pair<const char *, Action::Kind> kinds[] = {
      {"F", Action::F},   {"B", Action::B},   {"BI", Action::BI},
      {"BW", Action::BW}, {"SA", Action::SA}, {"RA", Action::RA},
      {"SG", Action::SG}, {"RG", Action::RG}};
  std::vector<std::string> f = absl::StrSplit(text, ' ', absl::SkipEmpty());
  Action a{Action::F, -1, -1, -1};
  bool known = false;
  for (auto [name, kind] : kinds)
    if (!f.empty() && f[0] == name) {
      a.kind = kind;
      known = true;
    }
  bool p2p = a.kind >= Action::SA;
  if (!known || f.size() != (p2p ? 4u : 3u) ||
      !absl::SimpleAtoi(f[1], &a.micro) || !absl::SimpleAtoi(f[2], &a.chunk) ||
      (p2p && !absl::SimpleAtoi(f[3], &a.peer)))
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline action '", text,
                     "' is not one of F/B/BI/BW m c "
                     "or SA/RA/SG/RG m c stage"));
  return a;
}

/// Checks every stage's action list before anything runs: each forward
/// and backward of its chunks once per micro-batch, each receive matched
/// by the peer's send, and, running them with sends that never wait and
/// receives that wait for their send, no stage left waiting forever. A
/// damaged manifest is an error naming the action, never a hang.
absl::Status ValidateSchedule(const std::vector<std::vector<Action>> &lists,
                              const std::vector<std::vector<std::string>> &text,
                              int64_t stages, int64_t chunks, int64_t micro) {
  auto bad = [&](size_t s, size_t i, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pipeline action '", text[s][i], "' of stage ", s, ": ", why));
  };
  // (kind, micro-batch, chunk) -> done
  std::set<std::tuple<int, int64_t, int64_t>> done;
  for (size_t s = 0; s < lists.size(); ++s)
    for (size_t i = 0; i < lists[s].size(); ++i) {
      const Action &a = lists[s][i];
      if (a.micro < 0 || a.micro >= micro || a.chunk < 0 || a.chunk >= chunks ||
          a.chunk % stages != static_cast<int64_t>(s))
        return bad(s, i, "not a micro-batch and chunk of this stage");
      // Activations go to the next chunk's stage and come from the
      // previous one's; cotangents the other way.
      if (a.kind >= Action::SA) {
        int64_t other = a.kind == Action::SA || a.kind == Action::RG
                            ? a.chunk + 1
                            : a.chunk - 1;
        if (other < 0 || other >= chunks || a.peer != other % stages)
          return bad(s, i, "names the wrong stage");
      }
      if (!done.insert({a.kind, a.micro, a.chunk}).second)
        return bad(s, i, "appears twice");
    }
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t m = 0; m < micro; ++m)
      if (done.count({Action::B, m, c}) &&
          (done.count({Action::BI, m, c}) || done.count({Action::BW, m, c})))
        return absl::InvalidArgumentError(absl::StrCat(
            "the pipeline's actions run micro-batch ", m, " through chunk ", c,
            " backward twice (whole and split)"));
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t m = 0; m < micro; ++m)
      if (!done.count({Action::F, m, c}) ||
          !(done.count({Action::B, m, c}) ||
            (done.count({Action::BI, m, c}) && done.count({Action::BW, m, c}))))
        return absl::InvalidArgumentError(
            absl::StrCat("the pipeline's actions miss the forward or "
                         "backward of micro-batch ",
                         m, " through chunk ", c));
  // Within a stage: what each action needs comes first.
  for (size_t s = 0; s < lists.size(); ++s) {
    std::set<std::tuple<int, int64_t, int64_t>> before;
    for (size_t i = 0; i < lists[s].size(); ++i) {
      const Action &a = lists[s][i];
      auto need = [&](Action::Kind k, const char *name) -> absl::Status {
        if (before.count({k, a.micro, a.chunk}))
          return absl::OkStatus();
        return bad(s, i,
                   absl::StrCat("comes before what it needs (", name, " ",
                                a.micro, " ", a.chunk, ")"));
      };
      absl::Status ok = absl::OkStatus();
      switch (a.kind) {
      case Action::F:
        if (a.chunk > 0)
          ok = need(Action::RA, "RA");
        break;
      case Action::B:
      case Action::BI:
        ok = need(Action::F, "F");
        if (ok.ok() && a.chunk < chunks - 1)
          ok = need(Action::RG, "RG");
        break;
      case Action::BW:
        ok = need(Action::BI, "BI");
        break;
      case Action::SA:
        ok = need(Action::F, "F");
        break;
      case Action::SG:
        ok = before.count({Action::B, a.micro, a.chunk})
                 ? absl::OkStatus()
                 : need(Action::BI, "BI");
        break;
      default:
        break;
      }
      VEOMNI_RETURN_IF_ERROR(ok);
      before.insert({a.kind, a.micro, a.chunk});
    }
  }
  // Run it: sends never wait; a receive waits for the next message from
  // its peer, which must be the one it expects (messages between two
  // stages arrive in the order they were sent, whatever they carry).
  std::map<std::pair<int64_t, int64_t>, std::deque<std::pair<int64_t, int64_t>>>
      channels; // (from, to) -> (micro-batch, chunk the receiver runs)
  std::vector<size_t> next(lists.size(), 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t s = 0; s < lists.size(); ++s)
      while (next[s] < lists[s].size()) {
        const Action &a = lists[s][next[s]];
        if (a.kind == Action::SA || a.kind == Action::SG) {
          int64_t to = a.kind == Action::SA ? a.chunk + 1 : a.chunk - 1;
          channels[{int64_t(s), a.peer}].push_back({a.micro, to});
        } else if (a.kind == Action::RA || a.kind == Action::RG) {
          auto &queue = channels[{a.peer, int64_t(s)}];
          if (queue.empty())
            break;
          if (queue.front() != std::make_pair(a.micro, a.chunk))
            return bad(s, next[s],
                       absl::StrCat("the next message from stage ", a.peer,
                                    " is for micro-batch ", queue.front().first,
                                    " chunk ", queue.front().second));
          queue.pop_front();
        }
        ++next[s];
        progress = true;
      }
  }
  for (size_t s = 0; s < lists.size(); ++s)
    if (next[s] < lists[s].size())
      return bad(s, next[s], "waits for a send no stage makes");
  return absl::OkStatus();
}

/// What moves between a pipeline's programs (veomni-pipeline-boundaries'
/// roles): a chunk's activations, the cotangents sent back, and what a
/// split backward's input half hands its weight half. Both sides list them
/// in the same order.
enum class Moved { Activation, Cotangent, Stash };

/// `p`'s arguments of that role, in order.
std::vector<const ArgumentDesc *> ArgsOf(const Program &p, Moved what) {
  const ArgumentRole role = what == Moved::Activation ? ArgumentRole::Activation
                            : what == Moved::Cotangent ? ArgumentRole::Cotangent
                                                       : ArgumentRole::Stash;
  std::vector<const ArgumentDesc *> out;
  for (const ArgumentDesc &a : p.arguments)
    if (a.role == role)
      out.push_back(&a);
  return out;
}
/// `p`'s outputs of that role, in order.
std::vector<int> OutputsOf(const Program &p, Moved what) {
  const OutputRole role = what == Moved::Activation  ? OutputRole::Activation
                          : what == Moved::Cotangent ? OutputRole::Cotangent
                                                     : OutputRole::Stash;
  std::vector<int> out;
  for (size_t i = 0; i < p.outputRoles.size(); ++i)
    if (p.outputRoles[i] == role)
      out.push_back(static_cast<int>(i));
  return out;
}

/// `b`'s bytes as a tensor the communicator moves whole (buffers hold
/// 2-, 4- or 8-byte elements).
TensorView ByteView(Bytes &b) {
  if (b.size() % 4 == 0)
    return TensorView{b.data(), DType::F32, {int64_t(b.size() / 4)}};
  return TensorView{b.data(), DType::BF16, {int64_t(b.size() / 2)}};
}

absl::Status ScalarTo(Executor &ex, ArgumentRole role, float value) {
  const ArgumentDesc *a = ex.program().FindArgument(role);
  if (!a)
    return absl::OkStatus();
  return ex.Edit(a->buffer, [&](const TensorView &v) {
    StoreF(v, 0, value);
    return absl::OkStatus();
  });
}

absl::StatusOr<double> ScalarOf(const Executor &ex, OutputRole role) {
  int i = ex.program().FindOutput(role);
  if (i < 0)
    return absl::InternalError("a pipeline program lacks a scalar output");
  VEOMNI_ASSIGN_OR_RETURN(HostTensor h, ex.ReadHost(ex.program().outputs[i]));
  return LoadF(h.view, 0);
}

} // namespace

struct PipelineTrainer::Impl {
  PipelineSpec spec;
  Communicator *world = nullptr;
  std::unique_ptr<SubCommunicator> stageComm;
  int stage = 0, pp = 1;
  int64_t chunks = 1;
  uint32_t ppGroup = 0, worldGroup = 0;
  std::vector<Action> actions;

  struct Part {
    std::string name;
    int64_t chunk = -1;
    ProgramRole role;
    std::unique_ptr<Executor> ex;
  };
  std::vector<Part> parts;
  Executor *update = nullptr, *norm = nullptr;
  std::map<int64_t, Executor *> forward, backward, backwardInput,
      backwardWeight;
  /// Tied parameters this stage holds, and the world group of their stages.
  std::vector<std::pair<std::string, uint32_t>> tied;
  /// Tied parameters an earlier stage also holds (and saves).
  std::set<std::string> savedElsewhere;

  // One step's data.
  std::vector<std::vector<Bytes>> micro;   ///< per micro-batch, per input
  using Key = std::pair<int64_t, int64_t>; ///< micro-batch, chunk
  std::map<Key, std::vector<Bytes>> kept, cotangents, stash, outActivations,
      outCotangents;
  std::deque<Bytes> sending; ///< alive until the sends complete
  double lossSum = 0;
  int64_t losses = 0;

  Executor *Inputs = nullptr;

  absl::Status Run(Executor &ex, const Action &a);
  absl::Status Do(const Action &a);
  absl::Status ShareParameters();
};

PipelineTrainer::~PipelineTrainer() = default;

void PipelineTrainer::SetTrace(KernelTrace *trace) {
  for (Impl::Part &p : impl_->parts)
    p.ex->SetTrace(trace);
}

std::vector<std::pair<const Program *, std::string>>
PipelineTrainer::ProgramNames() const {
  std::vector<std::pair<const Program *, std::string>> names;
  for (const Impl::Part &p : impl_->parts)
    names.push_back({&p.ex->program(), p.name});
  return names;
}

absl::StatusOr<std::unique_ptr<PipelineTrainer>>
PipelineTrainer::Create(PipelineSpec spec, Communicator &world) {
  std::unique_ptr<PipelineTrainer> t(new PipelineTrainer());
  t->impl_ = std::make_unique<Impl>();
  Impl &m = *t->impl_;
  m.world = &world;
  m.pp = static_cast<int>(spec.stages);
  if (m.pp < 2 || world.WorldSize() % m.pp != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("a pipeline of ", spec.stages, " stages on ",
                     world.WorldSize(), " ranks"));
  if (static_cast<int64_t>(spec.actions.size()) != spec.stages)
    return absl::InvalidArgumentError(
        absl::StrCat("the pipeline lists actions for ", spec.actions.size(),
                     " stages, not ", spec.stages));
  const int rank = world.Rank();
  m.stage = rank % m.pp;
  t->stage_ = m.stage;
  const int base = rank - m.stage;
  std::vector<uint32_t> stageRanks, ppRanks, all;
  for (int r = m.stage; r < world.WorldSize(); r += m.pp)
    stageRanks.push_back(r);
  for (int s = 0; s < m.pp; ++s)
    ppRanks.push_back(base + s);
  for (int r = 0; r < world.WorldSize(); ++r)
    all.push_back(r);
  VEOMNI_ASSIGN_OR_RETURN(m.stageComm,
                          SubCommunicator::Create(world, stageRanks));
  VEOMNI_ASSIGN_OR_RETURN(m.ppGroup, world.AddGroup("pp", ppRanks));
  VEOMNI_ASSIGN_OR_RETURN(m.worldGroup, world.AddGroup("world", all));
  std::vector<std::vector<Action>> lists(spec.actions.size());
  for (size_t s = 0; s < spec.actions.size(); ++s)
    for (const std::string &text : spec.actions[s]) {
      VEOMNI_ASSIGN_OR_RETURN(Action a, ParseAction(text));
      lists[s].push_back(a);
    }
  m.actions = lists[m.stage];

  // The batch's inputs: every stage program's, whole, with the largest
  // index bound any of them declares.
  Program inputs;
  inputs.modelType = "pipeline inputs";
  for (const PipelineSpec::Part &part : spec.parts) {
    m.chunks = std::max(m.chunks, part.chunk + 1);
    for (const ArgumentDesc &a : part.program.arguments) {
      if (!IsBatchInput(a))
        continue;
      const BufferDesc &b = part.program.buffers[a.buffer];
      if (const ArgumentDesc *have = inputs.FindArgument(a.name)) {
        const BufferDesc &h = inputs.buffers[have->buffer];
        if (h.dtype != b.dtype || h.global != b.global)
          return absl::InvalidArgumentError(absl::StrCat(
              part.name, ": input '", a.name, "' differs between programs"));
        const_cast<ArgumentDesc *>(have)->bound =
            std::max(have->bound, a.bound);
        continue;
      }
      BufferDesc whole;
      whole.dtype = b.dtype;
      whole.shape = whole.global = b.global;
      whole.offset = inputs.arenaBytes;
      whole.bytes = TensorView{nullptr, b.dtype, b.global}.bytes();
      inputs.arenaBytes += (whole.bytes + 63) / 64 * 64;
      ArgumentDesc d = a;
      d.buffer = static_cast<uint32_t>(inputs.buffers.size());
      inputs.buffers.push_back(whole);
      inputs.arguments.push_back(d);
    }
  }
  VEOMNI_RETURN_IF_ERROR(ValidateSchedule(lists, spec.actions, spec.stages,
                                          m.chunks, spec.microBatches));
  VEOMNI_ASSIGN_OR_RETURN(t->inputs_, Executor::Create(std::move(inputs)));
  m.Inputs = t->inputs_.get();

  // What one chunk sends, the next receives: as many buffers, as large.
  {
    std::map<int64_t, const Program *> forwards, backwards;
    for (const PipelineSpec::Part &part : spec.parts) {
      ProgramRole r = part.program.role;
      if (r == ProgramRole::ForwardChunk)
        forwards[part.chunk] = &part.program;
      else if (r == ProgramRole::BackwardChunk ||
               r == ProgramRole::BackwardInput)
        backwards[part.chunk] = &part.program;
    }
    auto sizes = [](const Program *p, Moved what, bool out) {
      std::vector<uint64_t> bytes;
      if (!p)
        return bytes;
      if (out)
        for (int i : OutputsOf(*p, what))
          bytes.push_back(p->buffers[p->outputs[i]].bytes);
      else
        for (const ArgumentDesc *a : ArgsOf(*p, what))
          bytes.push_back(p->buffers[a->buffer].bytes);
      return bytes;
    };
    for (int64_t c = 0; c + 1 < m.chunks; ++c) {
      const Program *f0 = forwards[c], *f1 = forwards[c + 1];
      const Program *b0 = backwards[c], *b1 = backwards[c + 1];
      if (!f0 || !f1 || !b0 || !b1)
        return absl::InvalidArgumentError(absl::StrCat(
            "the pipeline lacks the forward or backward program of chunk ",
            f0 && b0 ? c + 1 : c));
      if (sizes(f0, Moved::Activation, true) !=
              sizes(f1, Moved::Activation, false) ||
          sizes(f1, Moved::Activation, false) !=
              sizes(b1, Moved::Activation, false))
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk ", c, " sends activations chunk ", c + 1, " does not take"));
      if (sizes(b1, Moved::Cotangent, true) !=
          sizes(b0, Moved::Cotangent, false))
        return absl::InvalidArgumentError(absl::StrCat(
            "chunk ", c + 1, " sends cotangents chunk ", c, " does not take"));
    }
  }

  // Tied parameters: the stages whose update takes them sum their
  // gradients (a world group of those stages' ranks at this data-parallel
  // position).
  for (const std::string &name : spec.tiedParams) {
    std::vector<uint32_t> holders;
    std::set<uint64_t> accumulatorBytes;
    for (const PipelineSpec::Part &part : spec.parts)
      if (part.program.role == ProgramRole::StageUpdate)
        if (const ArgumentDesc *arg = part.program.FindArgument(name);
            arg && arg->isParam) {
          holders.push_back(base + static_cast<uint32_t>(part.stage));
          const ArgumentDesc *acc = part.program.FindArgument("grad." + name);
          if (!acc)
            return absl::InvalidArgumentError(
                absl::StrCat(part.name, ": no gradient for tied '", name, "'"));
          accumulatorBytes.insert(part.program.buffers[acc->buffer].bytes);
        }
    if (accumulatorBytes.size() > 1)
      return absl::InvalidArgumentError(absl::StrCat(
          "tied '", name, "' has gradients of different sizes on its stages"));
    std::sort(holders.begin(), holders.end());
    if (holders.size() < 2 ||
        !std::count(holders.begin(), holders.end(), uint32_t(rank)))
      continue;
    VEOMNI_ASSIGN_OR_RETURN(uint32_t g,
                            world.AddGroup("pp (tied " + name + ")", holders));
    m.tied.push_back({name, g});
    if (holders.front() != uint32_t(rank))
      m.savedElsewhere.insert(name);
  }

  // This stage's programs.
  for (PipelineSpec::Part &part : spec.parts) {
    if (part.stage != m.stage)
      continue;
    if (part.program.worldSize != stageRanks.size())
      return absl::InvalidArgumentError(
          absl::StrCat(part.name, ": partitioned for ", part.program.worldSize,
                       " ranks, a stage has ", stageRanks.size()));
    ProgramRole role = part.program.role;
    VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<Device> device,
                            CreateDevice("cpu"));
    VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<Executor> ex,
                            Executor::Create(std::move(part.program),
                                             std::move(device),
                                             m.stageComm.get()));
    Executor *e = ex.get();
    switch (role) {
    case ProgramRole::ForwardChunk:
      m.forward[part.chunk] = e;
      break;
    case ProgramRole::BackwardChunk:
      m.backward[part.chunk] = e;
      break;
    case ProgramRole::BackwardInput:
      m.backwardInput[part.chunk] = e;
      break;
    case ProgramRole::BackwardWeight:
      m.backwardWeight[part.chunk] = e;
      break;
    case ProgramRole::StageUpdate:
      m.update = e;
      break;
    case ProgramRole::StageGradNorm:
      m.norm = e;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(part.name, ": not a pipeline stage's program"));
    }
    m.parts.push_back({part.name, part.chunk, role, std::move(ex)});
  }
  if (!m.update || !m.norm || m.forward.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "stage ", m.stage,
        " lacks its forward chunks, update or gradient-norm program"));
  t->update_ = m.update;
  // Every program's parameters are the update's, sliced alike.
  for (Impl::Part &part : m.parts)
    for (const ArgumentDesc &a : part.ex->program().arguments) {
      if (!a.isParam && a.role != ArgumentRole::Gradient)
        continue;
      const ArgumentDesc *u = m.update->program().FindArgument(a.name);
      const BufferDesc &b = part.ex->program().buffers[a.buffer];
      const BufferDesc *ub =
          u ? &m.update->program().buffers[u->buffer] : nullptr;
      if (!ub || ub->shape != b.shape || ub->dtype != b.dtype ||
          ub->bytes != b.bytes)
        return absl::InvalidArgumentError(
            absl::StrCat(part.name, ": '", a.name,
                         "' is not laid out as in the stage's update program"));
    }

  m.spec = std::move(spec);
  return t;
}

absl::Status PipelineTrainer::Impl::ShareParameters() {
  for (Part &part : parts) {
    if (part.ex.get() == update)
      continue;
    for (const ArgumentDesc &a : part.ex->program().arguments) {
      if (!a.isParam)
        continue;
      const ArgumentDesc *u = update->program().FindArgument(a.name);
      VEOMNI_ASSIGN_OR_RETURN(HostTensor h, update->ReadHost(u->buffer));
      VEOMNI_RETURN_IF_ERROR(part.ex->Write(a.buffer, h.view.data));
    }
  }
  return absl::OkStatus();
}

absl::Status PipelineTrainer::InitParameters(uint64_t seed) {
  VEOMNI_RETURN_IF_ERROR(rt::InitParameters(*update_, seed));
  return impl_->ShareParameters();
}

absl::Status PipelineTrainer::LoadWeights(const std::string &path,
                                          uint64_t seed) {
  VEOMNI_RETURN_IF_ERROR(
      rt::InitParameters(*update_, seed, 0.02, /*adaptersOnly=*/true));
  VEOMNI_RETURN_IF_ERROR(rt::LoadWeights(*update_, path));
  return impl_->ShareParameters();
}

absl::Status PipelineTrainer::LoadAdapters(const std::string &path) {
  VEOMNI_RETURN_IF_ERROR(rt::LoadAdapters(*update_, path));
  return impl_->ShareParameters();
}

absl::Status PipelineTrainer::InitState() {
  return InitOptimizerState(*update_);
}

absl::Status PipelineTrainer::AddMicroBatch() {
  Impl &m = *impl_;
  if (static_cast<int64_t>(m.micro.size()) >= m.spec.microBatches)
    return absl::FailedPreconditionError(absl::StrCat(
        "a pipeline step takes ", m.spec.microBatches, " micro-batches"));
  std::vector<Bytes> &batch = m.micro.emplace_back();
  for (const ArgumentDesc &a : inputs_->program().arguments) {
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, inputs_->ReadHost(a.buffer));
    auto *p = static_cast<const uint8_t *>(h.view.data);
    batch.emplace_back(p, p + h.view.bytes());
  }
  return absl::OkStatus();
}

/// Runs `ex` for the micro-batch and chunk of `a`: its batch inputs, the
/// kept activations, the cotangents and the stash it takes.
absl::Status PipelineTrainer::Impl::Run(Executor &ex, const Action &a) {
  const Program &p = ex.program();
  const Key key{a.micro, a.chunk};
  for (const ArgumentDesc &arg : p.arguments) {
    if (!IsBatchInput(arg))
      continue;
    const Program &in = Inputs->program();
    const ArgumentDesc *whole = in.FindArgument(arg.name);
    size_t index = whole - in.arguments.data();
    VEOMNI_RETURN_IF_ERROR(
        ex.WriteGlobal(arg.buffer, micro[a.micro][index].data()));
  }
  static const char *names[] = {"activations", "cotangents", "stash"};
  auto give = [&](Moved what,
                  std::map<Key, std::vector<Bytes>> &from) -> absl::Status {
    std::vector<const ArgumentDesc *> args = ArgsOf(p, what);
    if (args.empty())
      return absl::OkStatus();
    auto it = from.find(key);
    if (it == from.end() || it->second.size() != args.size())
      return absl::InternalError(
          absl::StrCat("micro-batch ", a.micro, " chunk ", a.chunk, ": no ",
                       names[static_cast<int>(what)], " for the program"));
    for (size_t k = 0; k < args.size(); ++k) {
      if (it->second[k].size() != p.buffers[args[k]->buffer].bytes)
        return absl::InternalError(absl::StrCat(
            args[k]->name, ": ", it->second[k].size(), " bytes arrived for ",
            p.buffers[args[k]->buffer].bytes));
      VEOMNI_RETURN_IF_ERROR(ex.Write(args[k]->buffer, it->second[k].data()));
    }
    return absl::OkStatus();
  };
  VEOMNI_RETURN_IF_ERROR(give(Moved::Activation, kept));
  VEOMNI_RETURN_IF_ERROR(give(Moved::Cotangent, cotangents));
  VEOMNI_RETURN_IF_ERROR(give(Moved::Stash, stash));
  return ex.Run();
}

absl::Status PipelineTrainer::Impl::Do(const Action &a) {
  const Key key{a.micro, a.chunk};
  auto outputs = [&](Executor &ex, Moved what,
                     std::vector<Bytes> &to) -> absl::Status {
    to.clear();
    for (int i : OutputsOf(ex.program(), what)) {
      VEOMNI_ASSIGN_OR_RETURN(HostTensor h,
                              ex.ReadHost(ex.program().outputs[i]));
      auto *p = static_cast<const uint8_t *>(h.view.data);
      to.emplace_back(p, p + h.view.bytes());
    }
    return absl::OkStatus();
  };
  // The gradients a backward gave, added into the update's accumulators.
  auto accumulate = [&](Executor &ex) -> absl::Status {
    const Program &p = ex.program();
    for (size_t i = 0; i < p.outputs.size(); ++i) {
      if (p.outputRoles[i] != OutputRole::Gradient)
        continue;
      const ArgumentDesc *acc =
          update->program().FindArgument(p.outputNames[i]);
      if (!acc)
        return absl::InternalError(absl::StrCat(
            p.outputNames[i], " has no accumulator in the stage's update"));
      VEOMNI_ASSIGN_OR_RETURN(HostTensor g, ex.ReadHost(p.outputs[i]));
      VEOMNI_RETURN_IF_ERROR(
          update->Edit(acc->buffer, [&](const TensorView &v) -> absl::Status {
            if (v.numel() != g.view.numel())
              return absl::InternalError(absl::StrCat(
                  acc->name, ": ", g.view.ToString(), " into ", v.ToString()));
            for (int64_t j = 0, n = v.numel(); j < n; ++j)
              StoreF(v, j, LoadF(v, j) + LoadF(g.view, j));
            return absl::OkStatus();
          }));
    }
    return absl::OkStatus();
  };
  auto program = [&](std::map<int64_t, Executor *> &of,
                     const char *what) -> absl::StatusOr<Executor *> {
    auto it = of.find(a.chunk);
    if (it == of.end())
      return absl::InvalidArgumentError(absl::StrCat(
          "stage ", stage, " has no ", what, " program for chunk ", a.chunk));
    return it->second;
  };
  auto sizes = [&](Executor &ex, Moved what) {
    std::vector<Bytes> out;
    for (const ArgumentDesc *arg : ArgsOf(ex.program(), what))
      out.emplace_back(ex.program().buffers[arg->buffer].bytes);
    return out;
  };

  switch (a.kind) {
  case Action::F: {
    VEOMNI_ASSIGN_OR_RETURN(Executor * ex, program(forward, "forward"));
    VEOMNI_RETURN_IF_ERROR(Run(*ex, a));
    if (a.chunk == chunks - 1) {
      VEOMNI_ASSIGN_OR_RETURN(double loss, ScalarOf(*ex, OutputRole::Loss));
      lossSum += loss;
      ++losses;
    } else {
      VEOMNI_RETURN_IF_ERROR(
          outputs(*ex, Moved::Activation, outActivations[key]));
    }
    return absl::OkStatus();
  }
  case Action::B:
  case Action::BI: {
    VEOMNI_ASSIGN_OR_RETURN(Executor * ex,
                            a.kind == Action::B
                                ? program(backward, "backward")
                                : program(backwardInput, "backward-input"));
    VEOMNI_RETURN_IF_ERROR(Run(*ex, a));
    VEOMNI_RETURN_IF_ERROR(outputs(*ex, Moved::Cotangent, outCotangents[key]));
    cotangents.erase(key);
    if (a.kind == Action::B) {
      kept.erase(key);
      return accumulate(*ex);
    }
    return outputs(*ex, Moved::Stash, stash[key]);
  }
  case Action::BW: {
    VEOMNI_ASSIGN_OR_RETURN(Executor * ex,
                            program(backwardWeight, "backward-weight"));
    VEOMNI_RETURN_IF_ERROR(Run(*ex, a));
    kept.erase(key);
    stash.erase(key);
    return accumulate(*ex);
  }
  case Action::SA:
  case Action::SG: {
    auto &from = a.kind == Action::SA ? outActivations : outCotangents;
    auto it = from.find(key);
    if (it == from.end())
      return absl::InternalError(absl::StrCat(
          "micro-batch ", a.micro, " chunk ", a.chunk, ": nothing to send"));
    for (Bytes &b : it->second) {
      sending.push_back(std::move(b));
      VEOMNI_RETURN_IF_ERROR(world->StartSend(ppGroup, ByteView(sending.back()),
                                              static_cast<int>(a.peer)));
    }
    from.erase(it);
    return absl::OkStatus();
  }
  case Action::RA:
  case Action::RG: {
    Executor *ex = nullptr;
    if (a.kind == Action::RA) {
      VEOMNI_ASSIGN_OR_RETURN(ex, program(forward, "forward"));
    } else {
      auto b = program(backward, "backward");
      if (!b.ok())
        b = program(backwardInput, "backward-input");
      VEOMNI_ASSIGN_OR_RETURN(ex, b);
    }
    std::vector<Bytes> buffers =
        sizes(*ex, a.kind == Action::RA ? Moved::Activation : Moved::Cotangent);
    for (Bytes &b : buffers)
      VEOMNI_RETURN_IF_ERROR(
          world->Recv(ppGroup, ByteView(b), static_cast<int>(a.peer)));
    (a.kind == Action::RA ? kept : cotangents)[key] = std::move(buffers);
    return absl::OkStatus();
  }
  }
  return absl::OkStatus();
}

absl::StatusOr<StepMetrics> PipelineTrainer::Step(int64_t step) {
  Impl &m = *impl_;
  if (static_cast<int64_t>(m.micro.size()) != m.spec.microBatches)
    return absl::FailedPreconditionError(
        absl::StrCat("a pipeline step takes ", m.spec.microBatches,
                     " micro-batches, ", m.micro.size(), " were added"));
  for (const ArgumentDesc &a : update_->program().arguments)
    if (a.role == ArgumentRole::Gradient)
      VEOMNI_RETURN_IF_ERROR(update_->Edit(a.buffer, [](const TensorView &v) {
        std::memset(v.data, 0, v.bytes());
        return absl::OkStatus();
      }));
  m.lossSum = 0;
  m.losses = 0;
  for (size_t i = 0; i < m.actions.size(); ++i)
    if (absl::Status s = m.Do(m.actions[i]); !s.ok())
      return absl::Status(s.code(),
                          absl::StrCat("stage ", m.stage, ", action '",
                                       m.spec.actions[m.stage][i],
                                       "': ", s.message()));
  VEOMNI_RETURN_IF_ERROR(m.world->WaitSends());
  m.sending.clear();
  m.micro.clear();
  m.kept.clear();
  m.cotangents.clear();
  m.stash.clear();

  // Tied parameters: every holder's gradient becomes the sum.
  for (auto &[name, group] : m.tied) {
    const ArgumentDesc *acc = update_->program().FindArgument("grad." + name);
    VEOMNI_RETURN_IF_ERROR(
        update_->Edit(acc->buffer, [&, g = group](const TensorView &v) {
          return m.world->AllReduce(g, v, v, ReduceOp::Sum);
        }));
  }
  // The squared norm: each stage's share, summed over the stages.
  for (const ArgumentDesc &a : m.norm->program().arguments) {
    if (a.role != ArgumentRole::Gradient)
      continue;
    const ArgumentDesc *acc = update_->program().FindArgument(a.name);
    if (!acc)
      return absl::InternalError(a.name + " is not in the stage's update");
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, update_->ReadHost(acc->buffer));
    VEOMNI_RETURN_IF_ERROR(m.norm->Write(a.buffer, h.view.data));
  }
  VEOMNI_RETURN_IF_ERROR(m.norm->Run());
  VEOMNI_ASSIGN_OR_RETURN(double share,
                          ScalarOf(*m.norm, OutputRole::GradNormSquared));
  float total[2] = {static_cast<float>(share),
                    m.stage == (m.chunks - 1) % m.pp && m.losses > 0
                        ? static_cast<float>(m.lossSum / m.losses)
                        : 0.0f};
  TensorView both{total, DType::F32, {2}};
  VEOMNI_RETURN_IF_ERROR(
      m.world->AllReduce(m.ppGroup, both, both, ReduceOp::Sum));

  VEOMNI_RETURN_IF_ERROR(
      ScalarTo(*update_, ArgumentRole::Step, static_cast<float>(step)));
  VEOMNI_RETURN_IF_ERROR(
      ScalarTo(*update_, ArgumentRole::GradNormSquared, total[0]));
  VEOMNI_RETURN_IF_ERROR(update_->Run());
  StepMetrics metrics;
  metrics.loss = total[1];
  VEOMNI_ASSIGN_OR_RETURN(metrics.gradNorm,
                          ScalarOf(*update_, OutputRole::GradNorm));
  VEOMNI_ASSIGN_OR_RETURN(metrics.lr,
                          ScalarOf(*update_, OutputRole::LearningRate));
  const Program &p = update_->program();
  for (auto [out, arg] : p.updates)
    VEOMNI_RETURN_IF_ERROR(
        update_->CopyBuffer(p.outputs[out], p.arguments[arg].buffer));
  VEOMNI_RETURN_IF_ERROR(m.ShareParameters());
  return metrics;
}

absl::StatusOr<std::string> PipelineTrainer::Probe() {
  Impl &m = *impl_;
  for (const ArgumentDesc &a : update_->program().arguments) {
    if (a.role != ArgumentRole::Gradient)
      continue;
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, update_->ReadHost(a.buffer));
    for (int64_t i = 0, n = h.view.numel(); i < n; ++i)
      if (!std::isfinite(LoadF(h.view, i)))
        return absl::StrCat("the gradient of ",
                            absl::StripPrefix(a.name, "grad."), " (stage ",
                            m.stage, ", rank ", m.world->Rank(), ")");
  }
  // The norm is every stage's: another stage's gradients were not finite.
  return absl::StrCat("another pipeline stage (stage ", m.stage,
                      "'s gradients are finite)");
}

absl::Status PipelineTrainer::SyncStatus(absl::Status mine) {
  Impl &m = *impl_;
  const int world = m.world->WorldSize();
  int32_t flag = mine.ok() ? 0 : world - m.world->Rank();
  TensorView v{&flag, DType::I32, {1}};
  VEOMNI_RETURN_IF_ERROR(m.world->AllReduce(m.worldGroup, v, v, ReduceOp::Max));
  if (!mine.ok() || flag == 0)
    return mine;
  return absl::AbortedError(
      absl::StrCat("rank ", world - flag, " failed (its message says why)"));
}

namespace {

/// The parameter a checkpointed argument is or belongs to.
const std::string &OwnerOf(const ArgumentDesc &a) {
  return a.isParam ? a.name : a.stateOf;
}

/// Moves `n` bytes in pieces of at most 1 GiB (MPI counts are ints).
constexpr uint64_t kPiece = uint64_t(1) << 30;
TensorView Piece(const void *p, uint64_t n) {
  void *data = const_cast<void *>(p);
  if (n % 4 == 0)
    return TensorView{data, DType::F32, {int64_t(n / 4)}};
  return TensorView{data, DType::BF16, {int64_t(n / 2)}}; // n is even
}
absl::Status SendAll(Communicator &c, uint32_t group, const void *p, uint64_t n,
                     int peer) {
  for (uint64_t at = 0; at < n; at += kPiece)
    VEOMNI_RETURN_IF_ERROR(c.Send(
        group,
        Piece(static_cast<const uint8_t *>(p) + at, std::min(kPiece, n - at)),
        peer));
  return absl::OkStatus();
}
absl::Status RecvAll(Communicator &c, uint32_t group, void *p, uint64_t n,
                     int peer) {
  for (uint64_t at = 0; at < n; at += kPiece)
    VEOMNI_RETURN_IF_ERROR(c.Recv(
        group, Piece(static_cast<uint8_t *>(p) + at, std::min(kPiece, n - at)),
        peer));
  return absl::OkStatus();
}

void Put(Bytes &out, const void *p, size_t n) {
  auto *b = static_cast<const uint8_t *>(p);
  out.insert(out.end(), b, b + n);
}

} // namespace

absl::Status
PipelineTrainer::Save(const std::string &dir, int64_t step,
                      const std::map<std::string, std::string> &metadata,
                      const Trainer::CheckpointOptions &options) {
  Impl &m = *impl_;
  // This stage's whole tensors (gathered over the stage's ranks), less the
  // tied ones an earlier stage saves.
  std::deque<HostTensor> host;
  std::vector<CheckpointTensor> tensors;
  for (const ArgumentDesc &a : update_->program().arguments) {
    if (!InCheckpoint(a, !options.adapterConfig.empty()) ||
        m.savedElsewhere.count(OwnerOf(a)))
      continue;
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, update_->ReadGlobal(a.buffer));
    host.push_back(std::move(h));
    tensors.push_back({a.name, a.isParam, host.back().view, a.adapter});
  }
  const bool root = m.stageComm->Rank() == 0; // world rank == stage
  auto exchange = [&]() -> absl::Status {
    if (root && m.stage > 0) {
      // To rank 0: a header (the count, then each tensor's name, kind,
      // dtype and shape), then each tensor's bytes in pieces MPI can count.
      Bytes header;
      uint64_t count = tensors.size();
      Put(header, &count, 8);
      for (const CheckpointTensor &t : tensors) {
        uint32_t n = t.name.size(), rank = t.view.shape.size();
        uint8_t kind[2] = {uint8_t(uint8_t(t.param) | uint8_t(t.adapter) << 1),
                           uint8_t(t.view.dtype)};
        Put(header, &n, 4);
        Put(header, t.name.data(), n);
        Put(header, kind, 2);
        Put(header, &rank, 4);
        Put(header, t.view.shape.data(), 8 * rank);
      }
      header.resize((header.size() + 3) / 4 * 4);
      uint64_t size = header.size();
      VEOMNI_RETURN_IF_ERROR(SendAll(*m.world, m.worldGroup, &size, 8, 0));
      VEOMNI_RETURN_IF_ERROR(
          SendAll(*m.world, m.worldGroup, header.data(), size, 0));
      for (const CheckpointTensor &t : tensors)
        VEOMNI_RETURN_IF_ERROR(
            SendAll(*m.world, m.worldGroup, t.view.data, t.view.bytes(), 0));
      return absl::OkStatus();
    }
    if (m.world->Rank() != 0)
      return absl::OkStatus();
    std::deque<Bytes> received;
    for (int s = 1; s < m.pp; ++s) {
      auto cut = [&] {
        return absl::DataLossError(
            absl::StrCat("stage ", s, "'s checkpoint tensors arrived damaged"));
      };
      uint64_t size = 0;
      VEOMNI_RETURN_IF_ERROR(RecvAll(*m.world, m.worldGroup, &size, 8, s));
      if (size % 4 != 0 || size > (uint64_t(1) << 32))
        return cut();
      Bytes header(size);
      VEOMNI_RETURN_IF_ERROR(
          RecvAll(*m.world, m.worldGroup, header.data(), size, s));
      size_t at = 0;
      auto take = [&](void *to, size_t n) {
        if (n > header.size() - at)
          return false;
        std::memcpy(to, header.data() + at, n);
        at += n;
        return true;
      };
      uint64_t count = 0;
      if (!take(&count, 8) || count > header.size())
        return cut();
      size_t first = tensors.size();
      for (uint64_t i = 0; i < count; ++i) {
        uint32_t n = 0, rank = 0;
        uint8_t kind[2];
        CheckpointTensor t;
        if (!take(&n, 4) || n == 0 || n > header.size())
          return cut();
        t.name.resize(n);
        if (!take(t.name.data(), n) || !take(kind, 2) || !take(&rank, 4) ||
            kind[1] > uint8_t(DType::I64) || rank > 8)
          return cut();
        t.param = kind[0] & 1;
        t.adapter = kind[0] & 2;
        t.view.dtype = static_cast<DType>(kind[1]);
        t.view.shape.resize(rank);
        if (!take(t.view.shape.data(), 8 * rank))
          return cut();
        for (int64_t d : t.view.shape)
          if (d < 0 || d > (int64_t(1) << 40))
            return cut();
        tensors.push_back(std::move(t));
      }
      if (header.size() - at >= 4)
        return cut();
      for (size_t i = first; i < tensors.size(); ++i) {
        Bytes &data = received.emplace_back(tensors[i].view.bytes());
        tensors[i].view.data = data.data();
        VEOMNI_RETURN_IF_ERROR(
            RecvAll(*m.world, m.worldGroup, data.data(), data.size(), s));
      }
    }
    return WriteCheckpoint(
        dir, step, tensors, metadata,
        {options.config, options.maxShardBytes, options.adapterConfig});
  };
  return SyncStatus(exchange());
}

absl::StatusOr<int64_t>
PipelineTrainer::Load(const std::string &dir,
                      std::map<std::string, std::string> &metadata) {
  std::vector<CheckpointTensor> wanted;
  std::deque<std::pair<uint32_t, Bytes>> staging;
  const bool lora = IsLoraCheckpoint(dir);
  for (const ArgumentDesc &a : update_->program().arguments) {
    if (!InCheckpoint(a, lora))
      continue;
    TensorView v{nullptr, update_->program().buffers[a.buffer].dtype,
                 update_->GlobalShape(a.buffer)};
    staging.emplace_back(a.buffer, Bytes(v.bytes()));
    v.data = staging.back().second.data();
    wanted.push_back({a.name, a.isParam, v, a.adapter});
  }
  absl::StatusOr<int64_t> step = ReadCheckpoint(dir, wanted, metadata);
  VEOMNI_RETURN_IF_ERROR(SyncStatus(step.status()));
  for (auto &[buffer, whole] : staging)
    VEOMNI_RETURN_IF_ERROR(update_->WriteGlobal(buffer, whole.data()));
  VEOMNI_RETURN_IF_ERROR(impl_->ShareParameters());
  return step;
}

} // namespace veomni::rt
