//===- Checkpoint.cpp - checkpoint folders, whole tensors -----------------===//

#include "runtime/train/Checkpoint.h"

#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"
#include "runtime/support/Status.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace veomni::rt {
namespace {

namespace fs = std::filesystem;

constexpr const char *kOptimizerFile = "optimizer.safetensors";
constexpr const char *kHashKey = "veomni.tensors_hash";

/// FNV-1a over `name`, a zero byte and `view`'s bytes: one tensor's part
/// of the folder's hash (the parts are summed).
uint64_t TensorHash(const std::string &name, const TensorView &view) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      h ^= bytes[i];
      h *= 1099511628211ull;
    }
  };
  mix(reinterpret_cast<const uint8_t *>(name.c_str()), name.size() + 1);
  mix(static_cast<const uint8_t *>(view.data), view.bytes());
  return h;
}

} // namespace

absl::Status WriteCheckpoint(const std::string &dir, int64_t step,
                             const std::vector<CheckpointTensor> &tensors,
                             const std::map<std::string, std::string> &metadata,
                             const CheckpointFiles &files) {
  // Everything goes into a fresh folder beside `dir`, which is renamed into
  // place only once complete: a crash leaves no half-written checkpoint.
  std::string tmp = absl::StrCat(dir, ".tmp.", getpid());
  std::error_code ec;
  auto failed = [&](absl::Status s) {
    fs::remove_all(tmp, ec);
    return s;
  };
  std::vector<NamedTensor> weights, states, adapters;
  std::vector<std::vector<uint8_t>> peftLayout; // experts' adapters, converted
  uint64_t hash = 0;
  for (const CheckpointTensor &t : tensors) {
    if (t.adapter) {
      TensorView view = t.view;
      if (Shape shape = PeftAdapterShape(t.name, view.shape);
          shape != view.shape) {
        peftLayout.emplace_back(view.bytes());
        view = TensorView{peftLayout.back().data(), view.dtype, shape};
        if (absl::Status s = AdapterToPeft(t.name, t.view, view); !s.ok())
          return s;
      }
      adapters.push_back({absl::StrCat(kPeftPrefix, t.name), view});
      hash += TensorHash(adapters.back().name, t.view);
      continue;
    }
    if (!t.param) {
      states.push_back({t.name, t.view});
      hash += TensorHash(t.name, t.view);
      continue;
    }
    for (NamedTensor &part : SplitStacked(t.name, t.view)) {
      hash += TensorHash(part.name, part.view);
      weights.push_back(std::move(part));
    }
  }
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    return absl::PermissionDeniedError(
        absl::StrCat(tmp, ": cannot create: ", ec.message()));
  if (!files.config.empty()) {
    std::ifstream in(files.config, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
      return failed(absl::NotFoundError(
          absl::StrCat(files.config, ": cannot read the model's config")));
    if (absl::Status s =
            WriteTextFile(absl::StrCat(tmp, "/config.json"), text.str());
        !s.ok())
      return failed(s);
  }
  if (!weights.empty() || adapters.empty())
    if (absl::Status s = WriteWeights(tmp, weights, files.maxShardBytes, {});
        !s.ok())
      return failed(s);
  if (!adapters.empty()) {
    if (absl::Status s = WriteSafetensors(absl::StrCat(tmp, "/", kAdapterFile),
                                          adapters, {{"format", "pt"}});
        !s.ok())
      return failed(s);
    if (absl::Status s = WriteTextFile(
            absl::StrCat(tmp, "/", kAdapterConfigFile), files.adapterConfig);
        !s.ok())
      return failed(s);
  }
  // Fault injection (docs/reliability.md): VEOMNI_FAILPOINT=checkpoint:N
  // kills the process here, halfway through step N's checkpoint, as a
  // crash or an OOM kill would.
  if (const char *f = std::getenv("VEOMNI_FAILPOINT");
      f && absl::StrCat("checkpoint:", step) == f)
    std::raise(SIGKILL);
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  meta["veomni.step"] = std::to_string(step);
  meta[kHashKey] = std::to_string(hash);
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
  if (ec) {
    // The previous checkpoint goes back where it was.
    std::error_code back;
    if (replace && !fs::exists(dir, back))
      fs::rename(old, dir, back);
    return failed(absl::DataLossError(absl::StrCat(
        dir, ": cannot move the checkpoint into place: ", ec.message())));
  }
  if (replace)
    fs::remove_all(old, ec);
  return absl::OkStatus();
}

absl::StatusOr<int64_t>
ReadCheckpoint(const std::string &dir,
               const std::vector<CheckpointTensor> &wanted,
               std::map<std::string, std::string> &metadata) {
  std::error_code ec;
  std::string optimizerPath = absl::StrCat(dir, "/", kOptimizerFile);
  if (!fs::is_directory(dir, ec) || !fs::exists(optimizerPath, ec))
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": not a checkpoint (a checkpoint-N/ folder with ",
                     kOptimizerFile, ")"));
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> optimizer,
                          SafetensorsFile::Open(optimizerPath));
  // A LoRA checkpoint: adapters, no model weights.
  const std::string adapterPath = absl::StrCat(dir, "/", kAdapterFile);
  std::unique_ptr<SafetensorsFile> adapters;
  if (fs::exists(adapterPath, ec)) {
    VEOMNI_ASSIGN_OR_RETURN(adapters, SafetensorsFile::Open(adapterPath));
  }
  std::optional<WeightSet> weights;
  const bool modelWeights =
      std::any_of(wanted.begin(), wanted.end(), [](const CheckpointTensor &w) {
        return w.param && !w.adapter;
      });
  // (Whatever of it is wanted, the hash covers every file.)
  if (!adapters || modelWeights ||
      fs::exists(absl::StrCat(dir, "/model.safetensors"), ec) ||
      fs::exists(absl::StrCat(dir, "/model.safetensors.index.json"), ec)) {
    VEOMNI_ASSIGN_OR_RETURN(weights, WeightSet::Open(dir));
  }
  metadata = optimizer->metadata();
  auto bad = [&](const std::string &file, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": not a checkpoint of this program: ", what));
  };
  int64_t step = 0;
  uint64_t recorded = 0;
  if (!metadata.count(kHashKey) && metadata.count("veomni.checksum"))
    return absl::InvalidArgumentError(absl::StrCat(
        dir,
        ": written by an earlier veomni (veomni.checksum), whose "
        "checksum depends on one program's order: its weights load "
        "(--model.weights ",
        dir, "), a resume needs a checkpoint written since"));
  if (!absl::SimpleAtoi(metadata["veomni.step"], &step) ||
      !absl::SimpleAtoi(metadata[kHashKey], &recorded))
    return bad(optimizerPath,
               absl::StrCat("no veomni.step / ", kHashKey, " metadata"));

  // Every tensor is found and checked before anything is copied.
  struct Copy {
    TensorView from;
    void *to;
    TensorView adapter; // an experts' adapter, converted from peft's layout
    std::string name;
  };
  std::vector<Copy> copies;
  for (const CheckpointTensor &w : wanted) {
    std::vector<NamedTensor> parts =
        w.param && !w.adapter ? SplitStacked(w.name, w.view)
                              : std::vector<NamedTensor>{{w.name, w.view}};
    for (const NamedTensor &t : parts) {
      std::optional<WeightSet::Found> from;
      std::string where = optimizerPath;
      if (w.adapter) {
        where = adapterPath;
        if (!adapters)
          return bad(
              dir, absl::StrCat("no ", kAdapterFile, " for the LoRA adapters"));
        if (const SafetensorsFile::Entry *e =
                adapters->Find(absl::StrCat(kPeftPrefix, t.name)))
          from = WeightSet::Found{adapters->View(*e), &adapterPath};
      } else if (w.param) {
        where = weights->path();
        from = weights->Find(t.name);
      } else if (const SafetensorsFile::Entry *e = optimizer->Find(t.name)) {
        from = WeightSet::Found{optimizer->View(*e), &optimizerPath};
      }
      if (!from)
        return bad(where, absl::StrCat("tensor '", t.name, "' is missing"));
      const Shape stored =
          w.adapter ? PeftAdapterShape(t.name, t.view.shape) : t.view.shape;
      if (from->view.dtype != t.view.dtype || from->view.shape != stored)
        return bad(
            *from->file,
            absl::StrCat("tensor '", t.name, "' is ", from->view.ToString(),
                         ", the program has ",
                         TensorView{nullptr, t.view.dtype, stored}.ToString()));
      if (absl::Status s = CheckFinite(*from->file, t.name, from->view);
          !s.ok())
        return s;
      copies.push_back({from->view, t.view.data,
                        stored != t.view.shape ? t.view : TensorView{},
                        t.name});
    }
  }
  uint64_t hash = 0;
  if (weights)
    for (const std::string &name : weights->Names())
      hash += TensorHash(name, weights->Find(name)->view);
  if (adapters)
    for (const auto &[name, entry] : adapters->entries())
      hash += TensorHash(name, adapters->View(entry));
  for (const auto &[name, entry] : optimizer->entries())
    hash += TensorHash(name, optimizer->View(entry));
  if (hash != recorded)
    return absl::DataLossError(
        absl::StrCat(dir, ": checksum mismatch (the checkpoint is corrupt)"));
  for (const Copy &c : copies) {
    if (c.adapter.data) {
      if (absl::Status s = AdapterFromPeft(c.name, c.from, c.adapter); !s.ok())
        return s;
      continue;
    }
    std::memcpy(c.to, c.from.data, c.from.bytes());
  }
  return step;
}

} // namespace veomni::rt
