//===- Recipe.cpp - training recipes (YAML) -------------------------------===//

#include "compiler/Recipe.h"
#include "runtime/support/Status.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/YAMLParser.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <functional>

using namespace mlir::veomni;

namespace {

/// Flattens nested mappings into "section.key" -> scalar text.
absl::Status flatten(llvm::yaml::Node *node, const std::string &prefix,
                     std::map<std::string, std::string> &out) {
  if (auto *map = llvm::dyn_cast_or_null<llvm::yaml::MappingNode>(node)) {
    for (auto &kv : *map) {
      auto *key = llvm::dyn_cast_or_null<llvm::yaml::ScalarNode>(kv.getKey());
      if (!key) {
        return absl::InvalidArgumentError("keys must be plain names");
      }
      llvm::SmallString<32> storage;
      std::string name =
          (prefix.empty() ? "" : prefix + ".") + key->getValue(storage).str();
      VEOMNI_RETURN_IF_ERROR(flatten(kv.getValue(), name, out));
    }
    return absl::OkStatus();
  }
  if (auto *scalar = llvm::dyn_cast_or_null<llvm::yaml::ScalarNode>(node)) {
    llvm::SmallString<32> storage;
    out[prefix] = scalar->getValue(storage).str();
    return absl::OkStatus();
  }
  if (auto *seq = llvm::dyn_cast_or_null<llvm::yaml::SequenceNode>(node)) {
    // Lists (train.betas: [0.9, 0.95]) become "a,b".
    std::string joined;
    for (auto &item : *seq) {
      auto *scalar = llvm::dyn_cast<llvm::yaml::ScalarNode>(&item);
      if (!scalar) {
        return absl::InvalidArgumentError("field '" + prefix +
                                          "': lists hold plain values only");
      }
      llvm::SmallString<32> storage;
      joined += (joined.empty() ? "" : ",") + scalar->getValue(storage).str();
    }
    out[prefix] = joined;
    return absl::OkStatus();
  }
  if (llvm::isa_and_nonnull<llvm::yaml::NullNode>(node)) {
    out[prefix] = "";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("field '" + prefix +
                                    "': unsupported YAML value");
}

/// Every recipe setting: how it is parsed into `r`, what it expects, and
/// what it means (veomni train --help prints the table).
struct Setting {
  std::function<bool(const std::string &)> set;
  const char *expected;
  const char *help;
};

std::map<std::string, Setting> settingsOf(Recipe &r) {
  using Setter = std::function<bool(const std::string &)>;
  auto integer = [](int64_t &out) -> Setter {
    return [&out](const std::string &v) {
      return !llvm::StringRef(v).getAsInteger(10, out);
    };
  };
  auto number = [](double &out) -> Setter {
    return [&out](const std::string &v) {
      return !llvm::StringRef(v).getAsDouble(out) && std::isfinite(out);
    };
  };
  auto text = [](std::string &out) -> Setter {
    return [&out](const std::string &v) {
      out = v;
      return true;
    };
  };
  auto betas = [&r](const std::string &v) {
    llvm::StringRef first, second;
    std::tie(first, second) = llvm::StringRef(v).split(',');
    return !first.trim().getAsDouble(r.beta1) &&
           !second.trim().getAsDouble(r.beta2);
  };
  const char *anInteger = "an integer", *aNumber = "a number",
             *aPath = "a path";
  return {
      {"model.config",
       {text(r.config), aPath, "the model's config.json (required)"}},
      {"model.weights",
       {text(r.weights), aPath,
        "initial weights: a .safetensors file, a sharded "
        "model.safetensors.index.json, or a folder holding either (a "
        "Hugging Face model or a veomni checkpoint-N/); default: seeded "
        "random init"}},
      {"model.dtype", {text(r.dtype), "f32, bf16 or f16", "parameter type"}},
      {"model.seed", {integer(r.seed), anInteger, "init and synthetic data"}},
      {"model.num_layers",
       {integer(r.numLayers), anInteger, "keep the first N decoder layers"}},
      {"data.path",
       {text(r.data), aPath,
        ".vtd token dataset or batch .safetensors; default: synthetic"}},
      {"data.seq_len", {integer(r.seqLen), anInteger, "tokens per sequence"}},
      {"data.batch_size",
       {integer(r.batchSize), anInteger, "sequences per micro-batch"}},
      {"data.global_batch_size",
       {integer(r.globalBatchSize), anInteger,
        "sequences per optimizer step (gradient accumulation)"}},
      {"data.image_patches",
       {integer(r.imagePatches), anInteger, "vision patches per batch"}},
      {"data.audio_frames",
       {integer(r.audioFrames), anInteger, "mel frames per batch"}},
      {"train.steps", {integer(r.steps), anInteger, "optimizer steps"}},
      {"train.warmup_steps",
       {integer(r.warmupSteps), anInteger, "linear warm-up, then cosine"}},
      {"train.log_interval",
       {integer(r.logInterval), anInteger, "steps between progress lines"}},
      {"train.checkpoint_interval",
       {integer(r.checkpointInterval), anInteger,
        "steps between checkpoints (0: only at the end)"}},
      {"train.max_shard_size",
       {text(r.maxShardSize), "a size such as 5GB, 500MB or 2GiB",
        "checkpoint weights above it are sharded as Hugging Face does"}},
      {"train.lr", {number(r.lr), aNumber, "peak learning rate"}},
      {"train.min_lr_ratio",
       {number(r.minLrRatio), aNumber, "final lr as a fraction of the peak"}},
      {"train.betas", {betas, "two numbers", "AdamW betas, e.g. [0.9, 0.95]"}},
      {"train.weight_decay",
       {number(r.weightDecay), aNumber, "AdamW, on matrices only"}},
      {"train.eps", {number(r.eps), aNumber, "AdamW epsilon"}},
      {"train.max_grad_norm",
       {number(r.maxGradNorm), aNumber, "gradient clipping"}},
      {"train.output_dir",
       {text(r.outputDir), aPath,
        "checkpoints, metrics.jsonl and loss_curve.svg"}},
      {"train.resume",
       {text(r.resume), "a path or auto",
        "a checkpoint-N/ folder, or auto: the newest in output_dir"}},
      {"train.remat",
       {text(r.remat), "none, selective or full", "activation recomputation"}},
      {"parallel.dp_replicate", {integer(r.dpReplicate), anInteger, "HSDP"}},
      {"parallel.dp_shard", {integer(r.dpShard), anInteger, "FSDP"}},
      {"parallel.tp", {integer(r.tp), anInteger, "tensor parallel"}},
      {"parallel.sp", {integer(r.sp), anInteger, "Ulysses sequence parallel"}},
      {"parallel.ulysses", {integer(r.sp), anInteger, "the same as sp"}},
      {"parallel.ep", {integer(r.ep), anInteger, "expert parallel"}},
      {"parallel.pp", {integer(r.pp), anInteger, "pipeline stages"}},
      {"parallel.world_size",
       {integer(r.worldSize), anInteger, "checked against the mesh"}},
      {"parallel.pp_schedule",
       {text(r.ppSchedule), "1f1b, interleaved or zb-h1", "pipeline schedule"}},
      {"parallel.pp_chunks",
       {integer(r.ppChunks), anInteger, "model chunks per stage"}},
      {"cluster.peak_tflops",
       {number(r.peakTflops), aNumber, "plan --report: dense peak"}},
      {"cluster.mfu", {number(r.mfu), aNumber, "plan --report: MFU reached"}},
      {"cluster.intra_node_gbps",
       {number(r.intraNodeGBps), aNumber, "plan --report: link GB/s"}},
      {"cluster.inter_node_gbps",
       {number(r.interNodeGBps), aNumber, "plan --report: link GB/s"}},
      {"cluster.intra_node_latency_us",
       {number(r.intraNodeLatencyUs), aNumber, "plan --report: hop latency"}},
      {"cluster.inter_node_latency_us",
       {number(r.interNodeLatencyUs), aNumber, "plan --report: hop latency"}},
  };
}

} // namespace

absl::StatusOr<Recipe> Recipe::load(
    const std::string &path,
    const std::vector<std::pair<std::string, std::string>> &overrides) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return absl::NotFoundError(path +
                               ": cannot read: " + buffer.getError().message());
  llvm::SourceMgr sm;
  std::string yamlError;
  llvm::raw_string_ostream errs(yamlError);
  llvm::yaml::Stream stream((*buffer)->getBuffer(), sm, /*ShowColors=*/false);
  sm.setDiagHandler(
      [](const llvm::SMDiagnostic &d, void *context) {
        auto *out = static_cast<std::string *>(context);
        if (out->empty())
          *out = (llvm::Twine(d.getLineNo()) + ":" +
                  llvm::Twine(d.getColumnNo() + 1) + ": " + d.getMessage())
                     .str();
      },
      &yamlError);
  std::map<std::string, std::string> fields;
  auto doc = stream.begin();
  if (doc == stream.end() || !doc->getRoot()) {
    return absl::InvalidArgumentError(path + ": empty recipe");
  }
  absl::Status flat = flatten(doc->getRoot(), "", fields);
  if (!yamlError.empty() || stream.failed()) {
    return absl::InvalidArgumentError(
        path + ":" + (yamlError.empty() ? " invalid YAML" : yamlError));
  }
  if (!flat.ok() || !llvm::isa<llvm::yaml::MappingNode>(doc->getRoot()))
    return absl::InvalidArgumentError(path + ": " +
                                      (flat.ok()
                                           ? "the recipe must be a mapping"
                                           : std::string(flat.message())));
  for (auto &[key, value] : overrides) {
    if (!fields.count(key) && key.find('.') == std::string::npos) {
      return absl::InvalidArgumentError(
          "--" + key + ": settings are dotted (--train.lr 3e-4)");
    }
    fields[key] = value;
  }

  Recipe r;
  r.path = path;
  const std::map<std::string, Setting> known = settingsOf(r);
  for (auto &[key, value] : fields) {
    std::string where = path + ": field '" + key + "': ";
    auto it = known.find(key);
    if (it == known.end()) {
      return absl::InvalidArgumentError(where + "unknown setting");
    }
    if (!it->second.set(value)) {
      return absl::InvalidArgumentError(
          where + "expected " + it->second.expected + ", got '" + value + "'");
    }
  }
  auto fail = [&](const std::string &key, const std::string &what) {
    return absl::InvalidArgumentError(path + ": field '" + key + "': " + what);
  };
  if (r.config.empty())
    return fail("model.config", "missing (required)");
  if (r.steps < 1)
    return fail("train.steps", "must be >= 1");
  if (r.warmupSteps < 0 || r.warmupSteps >= r.steps)
    return fail("train.warmup_steps", "must be in [0, train.steps)");
  for (auto [key, value] :
       {std::pair<const char *, double>{"cluster.peak_tflops", r.peakTflops},
        {"cluster.intra_node_gbps", r.intraNodeGBps},
        {"cluster.inter_node_gbps", r.interNodeGBps}})
    if (!(value > 0))
      return fail(key, "must be > 0");
  if (r.ppSchedule != "1f1b" && r.ppSchedule != "interleaved" &&
      r.ppSchedule != "zb-h1")
    return fail("parallel.pp_schedule",
                "expected 1f1b, interleaved or zb-h1, got '" + r.ppSchedule +
                    "'");
  if (r.ppChunks < 1 || (r.ppChunks > 1 && r.ppSchedule != "interleaved"))
    return fail("parallel.pp_chunks",
                "must be 1, or >= 1 with pp_schedule interleaved");
  if (!(r.mfu > 0 && r.mfu <= 1))
    return fail("cluster.mfu", "must be in (0, 1]");
  if (!(r.intraNodeLatencyUs >= 0) || !(r.interNodeLatencyUs >= 0))
    return fail(r.intraNodeLatencyUs >= 0 ? "cluster.inter_node_latency_us"
                                          : "cluster.intra_node_latency_us",
                "must be >= 0");
  if (!(r.lr > 0))
    return fail("train.lr", "must be positive");
  if (!(r.beta1 >= 0 && r.beta1 < 1 && r.beta2 >= 0 && r.beta2 < 1))
    return fail("train.betas", "must lie in [0, 1)");
  if (r.logInterval < 1)
    return fail("train.log_interval", "must be >= 1");
  if (r.checkpointInterval < 0)
    return fail("train.checkpoint_interval", "must be >= 0");
  if (r.batchSize < 1)
    return fail("data.batch_size", "must be >= 1");
  if (r.globalBatchSize == 0)
    r.globalBatchSize = r.batchSize;
  if (r.globalBatchSize < r.batchSize || r.globalBatchSize % r.batchSize)
    return fail("data.global_batch_size",
                std::to_string(r.globalBatchSize) +
                    " is not a multiple of data.batch_size " +
                    std::to_string(r.batchSize));
  for (auto [key, v] : {std::pair<const char *, int64_t>{
                            "parallel.dp_replicate", r.dpReplicate},
                        {"parallel.dp_shard", r.dpShard},
                        {"parallel.tp", r.tp},
                        {"parallel.sp", r.sp},
                        {"parallel.ep", r.ep},
                        {"parallel.pp", r.pp}})
    if (v < 1)
      return fail(key, "must be >= 1, got " + std::to_string(v));
  if (r.worldSize == 0)
    r.worldSize = r.meshSize();
  if (r.worldSize != r.meshSize())
    return fail("parallel.world_size",
                std::to_string(r.worldSize) +
                    " differs from the product of the mesh sizes, " +
                    std::to_string(r.meshSize()) +
                    " (dp_replicate x dp_shard x tp x sp x ep x pp)");
  std::optional<uint64_t> shard = parseByteSize(r.maxShardSize);
  if (!shard)
    return fail("train.max_shard_size",
                "expected a size such as 5GB, 500MB or 2GiB, got '" +
                    r.maxShardSize + "'");
  r.maxShardBytes = *shard;
  if (r.remat != "none" && r.remat != "selective" && r.remat != "full")
    return fail("train.remat",
                "must be none, selective or full, got '" + r.remat + "'");
  return r;
}

absl::StatusOr<Recipe>
Recipe::fromCommandLine(const std::vector<std::string> &args,
                        const std::vector<std::string> &ignored) {
  std::string path;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    if (llvm::is_contained(ignored, args[i]))
      continue;
    if (arg.consume_front("--")) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError("--" + arg.str() + " needs a value");
      }
      overrides.push_back({arg.str(), args[++i]});
    } else if (path.empty()) {
      path = arg.str();
    } else {
      return absl::InvalidArgumentError("more than one recipe given");
    }
  }
  if (path.empty()) {
    return absl::InvalidArgumentError("no recipe given (see veomni --help)");
  }
  return load(path, overrides);
}

std::string Recipe::settingsHelp() {
  Recipe r;
  std::string out;
  for (auto &[name, setting] : settingsOf(r)) {
    std::string line = "  " + name;
    line.resize(std::max<size_t>(line.size() + 1, 32), ' ');
    out += line + setting.help + " (" + setting.expected + ")\n";
  }
  return out;
}

std::optional<uint64_t> mlir::veomni::parseByteSize(llvm::StringRef text) {
  llvm::StringRef t = text.trim();
  size_t digits = 0;
  while (digits < t.size() && (llvm::isDigit(t[digits]) || t[digits] == '.'))
    ++digits;
  double value;
  if (digits == 0 || t.take_front(digits).getAsDouble(value))
    return std::nullopt;
  // As Hugging Face: KB, MB and GB are powers of 1000, KiB, MiB and GiB of
  // 1024; a bare number is bytes.
  static const std::pair<const char *, double> units[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1e3},
      {"MB", 1e6},
      {"GB", 1e9},
      {"TB", 1e12},
      {"KIB", 1024.0},
      {"MIB", 1048576.0},
      {"GIB", 1073741824.0},
      {"TIB", 1099511627776.0}};
  std::string unit = t.drop_front(digits).trim().upper();
  for (auto [name, scale] : units)
    if (unit == name) {
      double bytes = value * scale;
      if (!(bytes >= 1) || bytes > 1e18)
        return std::nullopt;
      return static_cast<uint64_t>(bytes);
    }
  return std::nullopt;
}
