//===- Trainer.cpp - run training steps and checkpoints -------------------===//

#include "runtime/train/Trainer.h"

#include "runtime/io/Safetensors.h"
#include "runtime/schema/ProgramFile.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <cstring>
#include <vector>

namespace veomni::rt {

absl::StatusOr<Trainer> Trainer::Create(Executor &executor) {
  const Program &p = executor.program();
  Trainer t(executor);
  const ArgumentDesc *step = p.FindArgument("step");
  t.lossOut_ = p.FindOutput("loss");
  t.normOut_ = p.FindOutput("grad_norm");
  t.lrOut_ = p.FindOutput("lr");
  if (!step || t.lossOut_ < 0 || t.normOut_ < 0 || t.lrOut_ < 0 ||
      p.updates.empty())
    return absl::InvalidArgumentError(
        "not a training program: compile it with the optimizer (veomni train "
        "does)");
  t.stepBuffer_ = step->buffer;
  if (const ArgumentDesc *apply = p.FindArgument("apply")) {
    t.hasApply_ = true;
    t.applyBuffer_ = apply->buffer;
  }
  return t;
}

absl::Status Trainer::InitState() {
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (a.kind != ArgumentKind::State)
      continue;
    TensorView v = executor_->View(a.buffer);
    if (!a.initFrom.empty()) {
      const ArgumentDesc *from = executor_->program().FindArgument(a.initFrom);
      if (absl::Status s = CopyConvert(executor_->View(from->buffer), v);
          !s.ok())
        return s;
    } else {
      std::memset(v.data, 0, v.bytes());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<StepMetrics> Trainer::Step(int64_t step, bool last) {
  StoreF(executor_->View(stepBuffer_), 0, static_cast<float>(step));
  if (hasApply_)
    StoreF(executor_->View(applyBuffer_), 0, last ? 1.0f : 0.0f);
  else if (!last)
    return absl::FailedPreconditionError(
        "this program does not accumulate gradients");
  if (absl::Status s = executor_->Run(); !s.ok())
    return s;
  StepMetrics m;
  m.loss = LoadF(executor_->Output(lossOut_), 0);
  m.gradNorm = LoadF(executor_->Output(normOut_), 0);
  m.lr = LoadF(executor_->Output(lrOut_), 0);
  const Program &p = executor_->program();
  for (auto [out, arg] : p.updates) {
    TensorView from = executor_->Output(out);
    TensorView to = executor_->View(p.arguments[arg].buffer);
    std::memmove(to.data, from.data, to.bytes());
  }
  return m;
}

namespace {
/// FNV-1a over every saved tensor's bytes, in name order.
uint64_t HashTensors(const std::vector<NamedTensor> &tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const NamedTensor &t : tensors) {
    auto *bytes = static_cast<const uint8_t *>(t.view.data);
    for (size_t i = 0, n = t.view.bytes(); i < n; ++i) {
      h ^= bytes[i];
      h *= 1099511628211ull;
    }
  }
  return h;
}
} // namespace

absl::Status
Trainer::Save(const std::string &path, int64_t step,
              const std::map<std::string, std::string> &metadata) const {
  std::vector<NamedTensor> tensors;
  for (const ArgumentDesc &a : executor_->program().arguments)
    if (a.kind == ArgumentKind::Param || a.kind == ArgumentKind::State)
      tensors.push_back({a.name, executor_->View(a.buffer)});
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  meta["veomni.step"] = std::to_string(step);
  meta["veomni.checksum"] = std::to_string(HashTensors(tensors));
  return WriteSafetensors(path, tensors, meta);
}

absl::StatusOr<int64_t>
Trainer::Load(const std::string &path,
              std::map<std::string, std::string> &metadata) {
  auto file = SafetensorsFile::Open(path);
  if (!file.ok())
    return file.status();
  metadata = (*file)->metadata();
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a checkpoint of this program: ", what));
  };
  int64_t step = 0;
  uint64_t checksum = 0;
  if (!absl::SimpleAtoi(metadata["veomni.step"], &step) ||
      !absl::SimpleAtoi(metadata["veomni.checksum"], &checksum))
    return bad("no veomni.step / veomni.checksum metadata");
  std::vector<NamedTensor> loaded;
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (a.kind != ArgumentKind::Param && a.kind != ArgumentKind::State)
      continue;
    const SafetensorsFile::Entry *e = (*file)->Find(a.name);
    if (!e)
      return bad(absl::StrCat("tensor '", a.name, "' is missing"));
    TensorView from = (*file)->View(*e), to = executor_->View(a.buffer);
    if (from.dtype != to.dtype || from.shape != to.shape)
      return bad(absl::StrCat("tensor '", a.name, "' is ", from.ToString(),
                              ", the program has ", to.ToString()));
    loaded.push_back({a.name, from});
  }
  if (HashTensors(loaded) != checksum)
    return absl::DataLossError(
        absl::StrCat(path, ": checksum mismatch (the checkpoint is corrupt)"));
  for (size_t i = 0; i < loaded.size(); ++i) {
    TensorView to = executor_->View(
        executor_->program().FindArgument(loaded[i].name)->buffer);
    std::memcpy(to.data, loaded[i].view.data, to.bytes());
  }
  return step;
}

} // namespace veomni::rt
