//===- Trainer.cpp - run training steps and checkpoints -------------------===//

#include "runtime/train/Trainer.h"

#include "runtime/io/Safetensors.h"
#include "runtime/support/Status.h"
#include "runtime/train/Checkpoint.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

namespace veomni::rt {

absl::StatusOr<Trainer> Trainer::Create(Executor &executor) {
  const Program &p = executor.program();
  Trainer t(executor);
  const ArgumentDesc *step = p.FindArgument(ArgumentRole::Step);
  t.lossOut_ = p.FindOutput(OutputRole::Loss);
  t.normOut_ = p.FindOutput(OutputRole::GradNorm);
  t.lrOut_ = p.FindOutput(OutputRole::LearningRate);
  if (p.role != ProgramRole::TrainStep || !step || t.lossOut_ < 0 ||
      t.normOut_ < 0 || t.lrOut_ < 0 || p.updates.empty())
    return absl::InvalidArgumentError(
        "not a training program: compile it with the optimizer (veomni train "
        "does)");
  t.stepBuffer_ = step->buffer;
  if (const ArgumentDesc *apply = p.FindArgument(ArgumentRole::Apply)) {
    t.hasApply_ = true;
    t.applyBuffer_ = apply->buffer;
  }
  return t;
}

absl::Status InitOptimizerState(Executor &executor) {
  for (const ArgumentDesc &a : executor.program().arguments) {
    if (a.kind != ArgumentKind::State)
      continue;
    std::optional<HostTensor> source;
    if (!a.initFrom.empty()) {
      const ArgumentDesc *from = executor.program().FindArgument(a.initFrom);
      if (!from)
        return absl::InvalidArgumentError(
            absl::StrCat("state '", a.name, "' starts from '", a.initFrom,
                         "', which the program does not have"));
      VEOMNI_ASSIGN_OR_RETURN(source, executor.ReadHost(from->buffer));
    }
    VEOMNI_RETURN_IF_ERROR(
        executor.Edit(a.buffer, [&](const TensorView &v) -> absl::Status {
          if (source)
            return CopyConvert(source->view, v);
          std::memset(v.data, 0, v.bytes());
          return absl::OkStatus();
        }));
  }
  return absl::OkStatus();
}

absl::Status Trainer::InitState() { return InitOptimizerState(*executor_); }

namespace {
/// Stores `value` as element 0 of `buffer`.
absl::Status SetScalar(Executor &executor, uint32_t buffer, float value) {
  return executor.Edit(buffer, [&](const TensorView &v) {
    StoreF(v, 0, value);
    return absl::OkStatus();
  });
}

absl::StatusOr<double> ScalarOutput(const Executor &executor, int output) {
  VEOMNI_ASSIGN_OR_RETURN(
      HostTensor h, executor.ReadHost(executor.program().outputs[output]));
  return LoadF(h.view, 0);
}
} // namespace

absl::StatusOr<StepMetrics> Trainer::Step(int64_t step, bool last) {
  if (!hasApply_ && !last)
    return absl::FailedPreconditionError(
        "this program does not accumulate gradients");
  VEOMNI_RETURN_IF_ERROR(
      SetScalar(*executor_, stepBuffer_, static_cast<float>(step)));
  if (hasApply_)
    VEOMNI_RETURN_IF_ERROR(
        SetScalar(*executor_, applyBuffer_, last ? 1.0f : 0.0f));
  VEOMNI_RETURN_IF_ERROR(executor_->Run());
  StepMetrics m;
  for (auto [to, out] :
       {std::pair{&m.loss, lossOut_}, std::pair{&m.gradNorm, normOut_},
        std::pair{&m.lr, lrOut_}}) {
    VEOMNI_ASSIGN_OR_RETURN(*to, ScalarOutput(*executor_, out));
  }
  const Program &p = executor_->program();
  for (auto [out, arg] : p.updates)
    VEOMNI_RETURN_IF_ERROR(
        executor_->CopyBuffer(p.outputs[out], p.arguments[arg].buffer));
  return m;
}

absl::StatusOr<std::string> Trainer::Probe() {
  // Not the last micro-step: nothing is applied, whatever the values.
  if (hasApply_)
    VEOMNI_RETURN_IF_ERROR(SetScalar(*executor_, applyBuffer_, 0.0f));
  absl::StatusOr<std::string> where = executor_->RunProbe();
  for (const ArgumentDesc &a : executor_->program().arguments)
    if (a.role == ArgumentRole::GradAccumulator)
      VEOMNI_RETURN_IF_ERROR(executor_->Edit(a.buffer, [](const TensorView &v) {
        std::memset(v.data, 0, v.bytes());
        return absl::OkStatus();
      }));
  return where;
}

bool InCheckpoint(const ArgumentDesc &a, bool lora) {
  // Gradient accumulators are zero between steps, and a plan without them
  // (a pipeline's) resumes the same run.
  const bool kept = a.isParam || a.role == ArgumentRole::OptimizerState ||
                    a.role == ArgumentRole::MasterWeight;
  return kept && !(lora && a.isParam && a.frozen && !a.adapter);
}

bool IsLoraCheckpoint(const std::string &dir) {
  std::error_code ec;
  return std::filesystem::exists(dir + "/" + kAdapterFile, ec);
}

absl::Status Trainer::Save(const std::string &dir, int64_t step,
                           const std::map<std::string, std::string> &metadata,
                           const CheckpointOptions &options) const {
  // On every rank it returns once the folder is in place (or not).
  return executor_->SyncStatus(Write(dir, step, metadata, options));
}

absl::Status Trainer::Write(const std::string &dir, int64_t step,
                            const std::map<std::string, std::string> &metadata,
                            const CheckpointOptions &options) const {
  // Whole tensors, whatever the plan: each rank's slices are gathered (every
  // rank takes part) and rank 0 writes them, so a checkpoint resumes under
  // any other plan.
  std::vector<CheckpointTensor> tensors;
  std::vector<HostTensor> host; // what the views point into
  host.reserve(executor_->program().arguments.size());
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (!InCheckpoint(a, !options.adapterConfig.empty()))
      continue;
    VEOMNI_ASSIGN_OR_RETURN(HostTensor h, executor_->ReadGlobal(a.buffer));
    host.push_back(std::move(h));
    tensors.push_back(
        {a.name, a.kind == ArgumentKind::Param, host.back().view, a.adapter});
  }
  if (executor_->Rank() != 0)
    return absl::OkStatus();
  return WriteCheckpoint(
      dir, step, tensors, metadata,
      {options.config, options.maxShardBytes, options.adapterConfig});
}

absl::StatusOr<int64_t>
Trainer::Load(const std::string &dir,
              std::map<std::string, std::string> &metadata) {
  // Every rank reads; none goes on when one could not.
  absl::StatusOr<int64_t> step = Read(dir, metadata);
  VEOMNI_RETURN_IF_ERROR(executor_->SyncStatus(step.status()));
  return step;
}

absl::StatusOr<int64_t>
Trainer::Read(const std::string &dir,
              std::map<std::string, std::string> &metadata) {
  // Whole tensors on the host; then each rank keeps its slices.
  std::vector<CheckpointTensor> wanted;
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> staging;
  const bool lora = IsLoraCheckpoint(dir);
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (!InCheckpoint(a, lora))
      continue;
    TensorView v{nullptr, executor_->program().buffers[a.buffer].dtype,
                 executor_->GlobalShape(a.buffer)};
    staging.emplace_back(a.buffer, std::vector<uint8_t>(v.bytes()));
    v.data = staging.back().second.data();
    wanted.push_back({a.name, a.kind == ArgumentKind::Param, v, a.adapter});
  }
  VEOMNI_ASSIGN_OR_RETURN(int64_t step, ReadCheckpoint(dir, wanted, metadata));
  for (auto &[buffer, whole] : staging)
    VEOMNI_RETURN_IF_ERROR(executor_->WriteGlobal(buffer, whole.data()));
  return step;
}

} // namespace veomni::rt
