//===- Trainer.cpp - run training steps and checkpoints -------------------===//

#include "runtime/train/Trainer.h"

#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"
#include "runtime/schema/ProgramFile.h"
#include "runtime/support/Status.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <unistd.h>
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

absl::Status Trainer::InitState() {
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (a.kind != ArgumentKind::State)
      continue;
    std::optional<HostTensor> source;
    if (!a.initFrom.empty()) {
      const ArgumentDesc *from = executor_->program().FindArgument(a.initFrom);
      VEOMNI_ASSIGN_OR_RETURN(source, executor_->ReadHost(from->buffer));
    }
    VEOMNI_RETURN_IF_ERROR(
        executor_->Edit(a.buffer, [&](const TensorView &v) -> absl::Status {
          if (source)
            return CopyConvert(source->view, v);
          std::memset(v.data, 0, v.bytes());
          return absl::OkStatus();
        }));
  }
  return absl::OkStatus();
}

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

namespace {
namespace fs = std::filesystem;

constexpr const char *kOptimizerFile = "optimizer.safetensors";

/// FNV-1a over `view`'s bytes, continuing from `h`.
uint64_t Hash(uint64_t h, const TensorView &view) {
  auto *bytes = static_cast<const uint8_t *>(view.data);
  for (size_t i = 0, n = view.bytes(); i < n; ++i) {
    h ^= bytes[i];
    h *= 1099511628211ull;
  }
  return h;
}
constexpr uint64_t kHashSeed = 1469598103934665603ull;

bool Checkpointed(const ArgumentDesc &a) {
  return a.kind == ArgumentKind::Param || a.kind == ArgumentKind::State;
}
} // namespace

absl::Status Trainer::Save(const std::string &dir, int64_t step,
                           const std::map<std::string, std::string> &metadata,
                           const CheckpointOptions &options) const {
  // On every rank it returns once the folder is in place (or not).
  return executor_->SyncStatus(Write(dir, step, metadata, options));
}

absl::Status Trainer::Write(const std::string &dir, int64_t step,
                            const std::map<std::string, std::string> &metadata,
                            const CheckpointOptions &options) const {
  // Everything goes into a fresh folder beside `dir`, which is renamed into
  // place only once complete: a crash leaves no half-written checkpoint.
  std::string tmp = absl::StrCat(dir, ".tmp.", getpid());
  std::error_code ec;
  auto failed = [&](absl::Status s) {
    fs::remove_all(tmp, ec);
    return s;
  };

  // Whole tensors, whatever the plan: each rank's slices are gathered (every
  // rank takes part) and rank 0 writes them, so a checkpoint resumes under
  // any other plan.
  const bool writer = executor_->Rank() == 0;
  std::vector<NamedTensor> weights, states;
  std::vector<HostTensor> host; // what the views below point into
  uint64_t checksum = kHashSeed;
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (!Checkpointed(a))
      continue;
    absl::StatusOr<HostTensor> h = executor_->ReadGlobal(a.buffer);
    if (!h.ok())
      return failed(h.status());
    host.push_back(*std::move(h));
    TensorView v = host.back().view;
    checksum = Hash(checksum, v);
    if (a.kind == ArgumentKind::State) {
      states.push_back({a.name, v});
      continue;
    }
    for (NamedTensor &t : SplitStacked(a.name, v))
      weights.push_back(std::move(t));
  }
  if (!writer)
    return absl::OkStatus();
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    return absl::PermissionDeniedError(
        absl::StrCat(tmp, ": cannot create: ", ec.message()));
  if (!options.config.empty()) {
    std::ifstream in(options.config, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
      return failed(absl::NotFoundError(
          absl::StrCat(options.config, ": cannot read the model's config")));
    if (absl::Status s =
            WriteTextFile(absl::StrCat(tmp, "/config.json"), text.str());
        !s.ok())
      return failed(s);
  }
  if (absl::Status s = WriteWeights(tmp, weights, options.maxShardBytes, {});
      !s.ok())
    return failed(s);
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  meta["veomni.step"] = std::to_string(step);
  meta["veomni.checksum"] = std::to_string(checksum);
  if (absl::Status s = WriteSafetensors(absl::StrCat(tmp, "/", kOptimizerFile),
                                        states, meta);
      !s.ok())
    return failed(s);

  std::string old = absl::StrCat(dir, ".old.", getpid());
  bool replace = fs::exists(dir, ec);
  if (replace)
    fs::rename(dir, old, ec);
  if (!ec)
    fs::rename(tmp, dir, ec);
  if (ec)
    return failed(absl::DataLossError(absl::StrCat(
        dir, ": cannot move the checkpoint into place: ", ec.message())));
  if (replace)
    fs::remove_all(old, ec);
  return absl::OkStatus();
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
  std::error_code ec;
  std::string optimizerPath = absl::StrCat(dir, "/", kOptimizerFile);
  if (!fs::is_directory(dir, ec) || !fs::exists(optimizerPath, ec))
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": not a checkpoint (a checkpoint-N/ folder with ",
                     kOptimizerFile, ")"));
  auto optimizer = SafetensorsFile::Open(optimizerPath);
  if (!optimizer.ok())
    return optimizer.status();
  absl::StatusOr<WeightSet> weights = WeightSet::Open(dir);
  if (!weights.ok())
    return weights.status();
  metadata = (*optimizer)->metadata();
  auto bad = [&](const std::string &file, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": not a checkpoint of this program: ", what));
  };
  int64_t step = 0;
  uint64_t checksum = 0;
  if (!absl::SimpleAtoi(metadata["veomni.step"], &step) ||
      !absl::SimpleAtoi(metadata["veomni.checksum"], &checksum))
    return bad(optimizerPath, "no veomni.step / veomni.checksum metadata");

  // Every tensor is found and checked before anything is copied, so a
  // mismatch leaves the program's state as it was.
  struct Copy {
    TensorView from;
    uint32_t buffer;
    uint64_t offset; ///< into the buffer
  };
  std::vector<Copy> copies;
  // Sliced buffers are assembled whole on the host, then each rank keeps
  // its slice.
  std::map<uint32_t, std::vector<uint8_t>> staging;
  uint64_t hash = kHashSeed;
  for (const ArgumentDesc &a : executor_->program().arguments) {
    if (!Checkpointed(a))
      continue;
    // Only shapes and offsets are read here; the bytes go in below.
    TensorView to = executor_->View(a.buffer);
    if (executor_->program().IsSliced(a.buffer)) {
      to.shape = executor_->GlobalShape(a.buffer);
      std::vector<uint8_t> &whole = staging[a.buffer];
      whole.resize(to.bytes());
      to.data = whole.data();
    }
    bool param = a.kind == ArgumentKind::Param;
    std::vector<NamedTensor> parts =
        param ? SplitStacked(a.name, to)
              : std::vector<NamedTensor>{{a.name, to}};
    for (const NamedTensor &t : parts) {
      std::optional<WeightSet::Found> from;
      if (param) {
        from = weights->Find(t.name);
      } else if (const SafetensorsFile::Entry *e = (*optimizer)->Find(t.name)) {
        from = WeightSet::Found{(*optimizer)->View(*e), &optimizerPath};
      }
      if (!from)
        return bad(param ? weights->path() : optimizerPath,
                   absl::StrCat("tensor '", t.name, "' is missing"));
      if (from->view.dtype != t.view.dtype || from->view.shape != t.view.shape)
        return bad(*from->file,
                   absl::StrCat("tensor '", t.name, "' is ",
                                from->view.ToString(), ", the program has ",
                                t.view.ToString()));
      hash = Hash(hash, from->view);
      copies.push_back(
          {from->view, a.buffer,
           static_cast<uint64_t>(static_cast<uint8_t *>(t.view.data) -
                                 static_cast<uint8_t *>(to.data))});
    }
  }
  if (hash != checksum)
    return absl::DataLossError(
        absl::StrCat(dir, ": checksum mismatch (the checkpoint is corrupt)"));
  for (const Copy &c : copies) {
    auto whole = staging.find(c.buffer);
    if (whole != staging.end())
      std::memcpy(whole->second.data() + c.offset, c.from.data, c.from.bytes());
    else
      VEOMNI_RETURN_IF_ERROR(
          executor_->WriteAt(c.buffer, c.offset, c.from.data, c.from.bytes()));
  }
  for (auto &[buffer, whole] : staging)
    VEOMNI_RETURN_IF_ERROR(executor_->WriteGlobal(buffer, whole.data()));
  return step;
}

} // namespace veomni::rt
