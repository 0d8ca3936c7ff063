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
// MoE experts' adapters (peft's ParamWrapper on transformers 5's fused
// gate_up_proj / down_proj: lora_A [E r, in], lora_B [out, r E]) merge per
// expert into the layout BASE holds them in: the fused [E, out, in] (or
// [E, in, out]) tensor, or transformers 5's per-expert gate_proj / up_proj /
// down_proj tensors, gate_up_proj's rows split between gate and up.
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
#include <cstring>
#include <filesystem>
#include <map>
#include <unistd.h>

using namespace veomni::rt;

namespace {

constexpr const char *kMergeHelp = R"(usage: veomni merge BASE ADAPTERS -o OUT

Writes BASE's weights with ADAPTERS' LoRA updates merged in (W + alpha / r *
B A, as peft's merge_and_unload; MoE experts' adapters per expert), and
BASE's other files, into the folder OUT: a Hugging Face model with no
adapters.
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
  // Per-parameter ranks and alphas: only the `.*\.gate_up_proj` peft's
  // MoE conversion writes (gate_up_proj at 2r, 2 alpha).
  std::optional<int64_t> gateUpRank;
  std::optional<double> gateUpAlpha;
  for (const char *pattern : {"rank_pattern", "alpha_pattern"}) {
    const llvm::json::Object *v =
        field(pattern) ? field(pattern)->getAsObject() : nullptr;
    if (!v || v->empty())
      continue;
    const llvm::json::Value *g = v->get(".*\\.gate_up_proj");
    if (v->size() != 1 || !g || !g->getAsNumber() || *g->getAsNumber() <= 0)
      return badField(pattern, "per-module ranks or alphas are not supported "
                               "(but peft's {\".*\\\\.gate_up_proj\": ...})");
    if (pattern[0] == 'r') {
      if (!g->getAsInteger())
        return badField(pattern, "expected an integer rank");
      gateUpRank = *g->getAsInteger();
    } else {
      gateUpAlpha = *g->getAsNumber();
    }
  }
  const bool rslora = field("use_rslora") &&
                      field("use_rslora")->getAsBoolean().value_or(false);
  auto scaleOf = [&](int64_t r, double a) {
    return a / (rslora ? std::sqrt(double(r)) : double(r));
  };
  const double scale = scaleOf(*rank, *alpha);
  // target_parameters: which of an experts module's fused parameters its
  // (nested) adapters belong to.
  std::vector<std::string> targetParameters;
  if (const llvm::json::Array *list =
          field("target_parameters") ? field("target_parameters")->getAsArray()
                                     : nullptr)
    for (const llvm::json::Value &v : *list)
      if (std::optional<llvm::StringRef> t = v.getAsString())
        targetParameters.push_back(t->str());

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

  // (Quantized tensors would not be written back.)
  if (std::vector<std::string> raw = base->RawNames(); !raw.empty())
    return fail(base->path() + ": tensor '" + raw.front() +
                "' is quantized (MXFP4 or FP8): veomni merge writes float "
                "weights, so merge into a dequantized model");
  // The merged tensors, by base name.
  std::map<std::string, std::vector<uint8_t>> merged;
  auto mergedView = [&](const std::string &name,
                        const TensorView &w) -> TensorView {
    auto [it, fresh] = merged.try_emplace(name);
    if (fresh) {
      it->second.resize(w.bytes());
      std::memcpy(it->second.data(), w.data, w.bytes());
    }
    return TensorView{it->second.data(), w.dtype, w.shape};
  };
  // W[i, j] (at `offset` rows into W, or transposed) += s (B A)[i, j] for
  // B [rows, r] and A [r, cols] given as element getters.
  auto addProduct = [&](const TensorView &w, int64_t rows, int64_t cols,
                        int64_t r, double s, bool transposed, int64_t base,
                        int64_t rowOffset, auto bAt, auto aAt) {
    std::vector<float> av(r * cols);
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < cols; ++j)
        av[k * cols + j] = aAt(k, j);
    for (int64_t i = 0; i < rows; ++i) {
      std::vector<float> bi(r);
      for (int64_t k = 0; k < r; ++k)
        bi[k] = bAt(i + rowOffset, k);
      for (int64_t j = 0; j < cols; ++j) {
        float delta = 0;
        for (int64_t k = 0; k < r; ++k)
          delta += bi[k] * av[k * cols + j];
        const int64_t at = base + (transposed ? j * rows + i : i * cols + j);
        StoreF(w, at, LoadF(w, at) + float(s) * delta);
      }
    }
  };
  const std::string baseDir =
      llvm::sys::fs::is_directory(basePath)
          ? basePath
          : llvm::sys::path::parent_path(basePath).str();
  std::string modelType;
  if (auto cfg = llvm::MemoryBuffer::getFile(baseDir + "/config.json"))
    if (llvm::Expected<llvm::json::Value> j =
            llvm::json::parse((*cfg)->getBuffer()))
      if (const llvm::json::Object *o = j->getAsObject())
        if (std::optional<llvm::StringRef> t = o->getString("model_type"))
          modelType = t->str();
        else
          llvm::consumeError(j.takeError());

  size_t applied = 0;
  for (const auto &entry : pairs) {
    const std::string path = entry.getKey().str(); // "<module>.weight"
    const Pair &p = entry.getValue();
    const std::string module = path.substr(0, path.size() - 7);
    if (!p.hasA || !p.hasB)
      return fail(adapterPath + ": '" + module + "' has lora_" +
                  (p.hasA ? "A" : "B") + " but no lora_" +
                  (p.hasA ? "B" : "A"));
    if (p.a.shape.size() != 2 || p.b.shape.size() != 2)
      return fail(adapterPath + ": '" + module + "': lora_A " + p.a.ToString() +
                  " and lora_B " + p.b.ToString() + " are not matrices");
    // A Linear (or a 2-D parameter peft wraps, a router's weight).
    if (std::optional<WeightSet::Found> w = base->Find(path)) {
      const Shape &ws = w->view.shape;
      if (ws.size() != 2 || p.a.shape[0] != *rank || p.b.shape[1] != *rank ||
          p.a.shape[1] != ws[1] || p.b.shape[0] != ws[0])
        return fail(adapterPath + ": '" + module + "': lora_A " +
                    p.a.ToString() + " and lora_B " + p.b.ToString() +
                    " do not fit the base weight " + w->view.ToString() +
                    " at r = " + std::to_string(*rank));
      const int64_t cols = ws[1];
      addProduct(
          mergedView(path, w->view), ws[0], cols, *rank, scale, false, 0, 0,
          [&](int64_t i, int64_t k) { return LoadF(p.b, i * *rank + k); },
          [&](int64_t k, int64_t j) { return LoadF(p.a, k * cols + j); });
      ++applied;
      continue;
    }
    // A MoE experts module's fused parameter (peft's ParamWrapper): the
    // module's targeted parameters nest in the order torch registers them,
    // the first innermost, `experts[.base_layer]*`.
    llvm::StringRef stripped = module;
    int64_t depth = 0;
    while (stripped.consume_back(".base_layer"))
      ++depth;
    std::vector<std::string> wrapped;
    for (const char *param : {"gate_up_proj", "down_proj"}) {
      const std::string key = stripped.str() + "." + param;
      if (llvm::any_of(targetParameters, [&](const std::string &t) {
            return key == t || (llvm::StringRef(key).ends_with("." + t));
          }))
        wrapped.push_back(param);
    }
    if (depth >= int64_t(wrapped.size()))
      return fail(adapterPath + ": the base model " + base->path() +
                  " has no '" + path + "' for its adapter" +
                  (wrapped.empty() ? std::string()
                                   : " (nor do target_parameters name a "
                                     "parameter of '" +
                                         stripped.str() + "' for it)"));
    const std::string param = wrapped[wrapped.size() - 1 - depth];
    const bool gateUp = param == "gate_up_proj";
    const int64_t r = gateUp && gateUpRank ? *gateUpRank : *rank;
    const double s = scaleOf(r, gateUp && gateUpAlpha ? *gateUpAlpha : *alpha);
    const int64_t in = p.a.shape[1], out = p.b.shape[0];
    if (p.a.shape[0] % r != 0 || p.b.shape[1] != p.a.shape[0])
      return fail(adapterPath + ": '" + module + "' (" + stripped.str() + "." +
                  param + "): lora_A " + p.a.ToString() + " and lora_B " +
                  p.b.ToString() +
                  " are not r x experts = " + std::to_string(r) + " x E");
    const int64_t experts = p.a.shape[0] / r;
    // Expert e's A rows e r .. e r + r - 1; B's column k E + e.
    auto bOf = [&](int64_t e) {
      return [&, e](int64_t i, int64_t k) {
        return LoadF(p.b, i * (r * experts) + k * experts + e);
      };
    };
    auto aOf = [&](int64_t e) {
      return [&, e](int64_t k, int64_t j) {
        return LoadF(p.a, (e * r + k) * in + j);
      };
    };
    const std::string fused = stripped.str() + "." + param;
    if (std::optional<WeightSet::Found> w = base->Find(fused)) {
      // Stored [E, out, in], or [E, in, out] (gpt-oss's; Qwen3-VL-MoE's
      // published layout).
      const Shape &ws = w->view.shape;
      const bool held = ws == Shape{experts, out, in};
      const bool transposed = ws == Shape{experts, in, out};
      if (!held && !transposed)
        return fail(adapterPath + ": '" + module + "' (" + fused +
                    "): lora_A " + p.a.ToString() + " and lora_B " +
                    p.b.ToString() + " do not fit the base weight " +
                    w->view.ToString() + " at r = " + std::to_string(r));
      const bool swap = transposed && (!held || modelType == "gpt_oss");
      TensorView into = mergedView(fused, w->view);
      for (int64_t e = 0; e < experts; ++e)
        addProduct(into, out, in, r, s, swap, e * out * in, 0, bOf(e), aOf(e));
      ++applied;
      continue;
    }
    // Saved per expert, as transformers 5 writes Qwen3-MoE's and
    // DeepSeek-V3's: gate_up_proj's rows are gate_proj's, then up_proj's.
    std::vector<std::pair<std::string, int64_t>> parts; // name suffix, rows
    if (gateUp)
      parts = {{"gate_proj", out / 2}, {"up_proj", out / 2}};
    else
      parts = {{"down_proj", out}};
    for (int64_t e = 0; e < experts; ++e) {
      int64_t offset = 0;
      for (const auto &[leaf, rows] : parts) {
        const std::string name =
            stripped.str() + "." + std::to_string(e) + "." + leaf + ".weight";
        std::optional<WeightSet::Found> w = base->Find(name);
        if (!w)
          return fail(adapterPath + ": the base model " + base->path() +
                      " has neither '" + fused + "' nor '" + name +
                      "' for the adapter '" + module + "'" +
                      (base->FindRaw(fused + "_blocks")
                           ? " (its experts are MXFP4: merge into "
                             "dequantized weights)"
                           : ""));
        if (w->view.shape != Shape{rows, in})
          return fail(adapterPath + ": '" + module + "' (" + fused +
                      "): lora_A " + p.a.ToString() + " and lora_B " +
                      p.b.ToString() + " do not fit the base weight '" + name +
                      "' " + w->view.ToString());
        addProduct(mergedView(name, w->view), rows, in, r, s, false, 0, offset,
                   bOf(e), aOf(e));
        offset += rows;
      }
    }
    ++applied;
  }

  std::vector<NamedTensor> tensors;
  for (const std::string &name : base->Names()) {
    std::optional<WeightSet::Found> w = base->Find(name);
    auto it = merged.find(name);
    tensors.push_back({name, it == merged.end()
                                 ? w->view
                                 : TensorView{it->second.data(), w->view.dtype,
                                              w->view.shape}});
  }
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
               << llvm::format("%g", scale) << "), "
               << tensors.size() - merged.size() << " copied as they are\n";
  return 0;
}
