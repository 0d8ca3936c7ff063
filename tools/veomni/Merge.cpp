//===- Merge.cpp - veomni merge: LoRA adapters into their base weights ----===//
//
//   veomni merge BASE ADAPTERS -o OUT
//
// BASE is a Hugging Face model (a folder, a .safetensors file or an index),
// ADAPTERS a PEFT adapter folder (adapter_config.json and
// adapter_model.safetensors: what peft's save_pretrained writes, and what a
// veomni LoRA run's checkpoint-N/ holds). OUT is BASE's folder with every
// adapted weight replaced by W + scale * B A (scale = lora_alpha / r, or
// / sqrt(r) with use_rslora), computed in f32 and stored in W's dtype, as
// peft's merge_and_unload does; the other tensors are copied as they are,
// and so are the folder's other files (config.json, the tokenizer's).
// An adapter whose base weight is missing, of another shape, or an adapter
// config veomni cannot apply is an error naming the file and tensor.
//
//===----------------------------------------------------------------------===//

#include "tools/veomni/Commands.h"

#include "runtime/io/Safetensors.h"
#include "runtime/io/Weights.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <filesystem>
#include <unistd.h>

using namespace veomni::rt;

namespace {

constexpr const char *kMergeHelp = R"(usage: veomni merge BASE ADAPTERS -o OUT

Writes BASE's weights with ADAPTERS' LoRA updates merged in (W + alpha / r *
B A, as peft's merge_and_unload), and BASE's other files, into the folder
OUT: a Hugging Face model with no adapters.
  BASE       a Hugging Face model folder (or its .safetensors / index)
  ADAPTERS   a PEFT adapter folder (adapter_config.json,
             adapter_model.safetensors), such as a LoRA run's checkpoint-N/
  -o OUT     the merged model's folder
  --max-shard-size BYTES   shard above this size (default 5000000000)
)";

int fail(const std::string &message) {
  llvm::errs() << "veomni merge: error: " << message << "\n";
  return 1;
}

} // namespace

int runMerge(llvm::ArrayRef<const char *> args) {
  if (wantsHelp(args)) {
    llvm::outs() << kMergeHelp;
    return 0;
  }
  std::vector<std::string> positional;
  std::string out;
  uint64_t maxShard = 5000000000ull;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef a = args[i];
    if ((a == "-o" || a == "--max-shard-size") && i + 1 < args.size()) {
      if (a == "-o")
        out = args[++i];
      else if (llvm::StringRef(args[++i]).getAsInteger(10, maxShard) ||
               maxShard == 0)
        return fail(std::string("--max-shard-size: '") + args[i] +
                    "' is not a positive number of bytes");
      continue;
    }
    if (a.starts_with("-"))
      return fail("unknown option '" + a.str() + "'\n" + kMergeHelp);
    positional.push_back(a.str());
  }
  if (positional.size() != 2 || out.empty())
    return fail(std::string("expected BASE ADAPTERS -o OUT\n") + kMergeHelp);
  const std::string &basePath = positional[0], &adapterDir = positional[1];

  // The adapters and their scale.
  const std::string configPath = adapterDir + "/adapter_config.json";
  auto configFile = llvm::MemoryBuffer::getFile(configPath);
  if (!configFile)
    return fail(configPath + ": cannot read (ADAPTERS must be a PEFT adapter "
                             "folder)");
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*configFile)->getBuffer());
  if (!json)
    return fail(configPath + ": " + llvm::toString(json.takeError()));
  const llvm::json::Object *config = json->getAsObject();
  auto field = [&](llvm::StringRef key) -> const llvm::json::Value * {
    return config ? config->get(key) : nullptr;
  };
  auto badField = [&](llvm::StringRef key, const std::string &why) {
    return fail(configPath + ": field '" + key.str() + "': " + why);
  };
  if (!field("peft_type") || field("peft_type")->getAsString() !=
                                 std::optional<llvm::StringRef>("LORA"))
    return badField("peft_type", "expected \"LORA\"");
  std::optional<int64_t> rank =
      field("r") ? field("r")->getAsInteger() : std::nullopt;
  if (!rank || *rank < 1)
    return badField("r", "expected a positive integer");
  std::optional<double> alpha =
      field("lora_alpha") ? field("lora_alpha")->getAsNumber() : std::nullopt;
  if (!alpha)
    return badField("lora_alpha", "expected a number");
  for (const char *flag : {"fan_in_fan_out", "use_dora"})
    if (auto *v = field(flag); v && v->getAsBoolean().value_or(false))
      return badField(flag, "true is not supported");
  for (const char *pattern : {"rank_pattern", "alpha_pattern"})
    if (auto *v = field(pattern);
        v && v->getAsObject() && !v->getAsObject()->empty())
      return badField(pattern, "per-module ranks or alphas are not supported");
  const bool rslora = field("use_rslora") &&
                      field("use_rslora")->getAsBoolean().value_or(false);
  const double scale =
      *alpha / (rslora ? std::sqrt(double(*rank)) : double(*rank));

  const std::string adapterPath = adapterDir + "/adapter_model.safetensors";
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> adapters =
      SafetensorsFile::Open(adapterPath);
  if (!adapters.ok())
    return fail(std::string(adapters.status().message()));
  absl::StatusOr<WeightSet> base = WeightSet::Open(basePath);
  if (!base.ok())
    return fail(std::string(base.status().message()));

  // Each adapted weight: its A and B.
  struct Pair {
    TensorView a, b;
    bool hasA = false, hasB = false;
  };
  llvm::StringMap<Pair> pairs;
  for (const auto &[name, entry] : (*adapters)->entries()) {
    llvm::StringRef n = name;
    if (!n.consume_front("base_model.model."))
      return fail(adapterPath + ": tensor '" + name +
                  "' is not a PEFT adapter (base_model.model.<module>."
                  "lora_A/lora_B.weight)");
    bool isA = n.consume_back(".lora_A.weight");
    bool isB = !isA && n.consume_back(".lora_B.weight");
    if (!isA && !isB)
      return fail(adapterPath + ": tensor '" + name +
                  "' is not a LoRA matrix (modules_to_save, biases and "
                  "embedding adapters are not supported)");
    Pair &p = pairs[(n + ".weight").str()];
    (isA ? p.a : p.b) = (*adapters)->View(entry);
    (isA ? p.hasA : p.hasB) = true;
  }
  if (pairs.empty())
    return fail(adapterPath + ": no adapters");

  std::vector<NamedTensor> tensors;
  std::vector<std::vector<uint8_t>> merged;
  merged.reserve(pairs.size());
  size_t applied = 0;
  for (const std::string &name : base->Names()) {
    std::optional<WeightSet::Found> w = base->Find(name);
    auto it = pairs.find(name);
    if (it == pairs.end()) {
      tensors.push_back({name, w->view});
      continue;
    }
    const Pair &p = it->second;
    const std::string module = name.substr(0, name.size() - 7);
    if (!p.hasA || !p.hasB)
      return fail(adapterPath + ": '" + module + "' has lora_" +
                  (p.hasA ? "A" : "B") + " but no lora_" +
                  (p.hasA ? "B" : "A"));
    const Shape &ws = w->view.shape;
    if (ws.size() != 2 || p.a.shape.size() != 2 || p.b.shape.size() != 2 ||
        p.a.shape[0] != *rank || p.b.shape[1] != *rank ||
        p.a.shape[1] != ws[1] || p.b.shape[0] != ws[0])
      return fail(adapterPath + ": '" + module + "': lora_A " + p.a.ToString() +
                  " and lora_B " + p.b.ToString() +
                  " do not fit the base weight " + w->view.ToString() +
                  " at r = " + std::to_string(*rank));
    merged.emplace_back(w->view.bytes());
    TensorView into{merged.back().data(), w->view.dtype, ws};
    const int64_t rows = ws[0], cols = ws[1], r = *rank;
    std::vector<float> a(r * cols), b(rows * r);
    for (int64_t i = 0; i < r * cols; ++i)
      a[i] = LoadF(p.a, i);
    for (int64_t i = 0; i < rows * r; ++i)
      b[i] = LoadF(p.b, i);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        float delta = 0;
        for (int64_t k = 0; k < r; ++k)
          delta += b[i * r + k] * a[k * cols + j];
        StoreF(into, i * cols + j,
               LoadF(w->view, i * cols + j) + float(scale) * delta);
      }
    tensors.push_back({name, into});
    ++applied;
  }
  if (applied != pairs.size())
    for (const auto &entry : pairs)
      if (!base->Find(entry.getKey().str()))
        return fail(adapterPath + ": the base model " + base->path() +
                    " has no '" + entry.getKey().str() + "' for its adapter");

  // OUT: the weights, then BASE's other files; a temporary folder renamed
  // into place, so that a failure leaves no half-written model.
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string tmp = out + ".tmp." + std::to_string(getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec)
    return fail(tmp + ": cannot create: " + ec.message());
  if (absl::Status s = WriteWeights(tmp, tensors, maxShard, {}); !s.ok()) {
    fs::remove_all(tmp, ec);
    return fail(std::string(s.message()));
  }
  if (fs::is_directory(basePath, ec))
    for (const fs::directory_entry &e : fs::directory_iterator(basePath, ec)) {
      const std::string file = e.path().filename().string();
      if (!e.is_regular_file() || e.path().extension() == ".safetensors" ||
          file == "model.safetensors.index.json")
        continue;
      fs::copy_file(e.path(), fs::path(tmp) / file, ec);
      if (ec) {
        fs::remove_all(tmp, ec);
        return fail(e.path().string() + ": cannot copy: " + ec.message());
      }
    }
  if (fs::exists(out, ec))
    fs::remove_all(out, ec);
  fs::rename(tmp, out, ec);
  if (ec)
    return fail(out +
                ": cannot move the merged model into place: " + ec.message());
  llvm::outs() << out << ": " << applied << " weights merged (scale "
               << llvm::format("%g", scale) << "), " << tensors.size() - applied
               << " copied as they are\n";
  return 0;
}
