//===- Recipe.cpp - training recipes (YAML) -------------------------------===//

#include "compiler/Recipe.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
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
bool flatten(llvm::yaml::Node *node, const std::string &prefix,
             std::map<std::string, std::string> &out, std::string &error) {
  if (auto *map = llvm::dyn_cast_or_null<llvm::yaml::MappingNode>(node)) {
    for (auto &kv : *map) {
      auto *key = llvm::dyn_cast_or_null<llvm::yaml::ScalarNode>(kv.getKey());
      if (!key) {
        error = "keys must be plain names";
        return false;
      }
      llvm::SmallString<32> storage;
      std::string name =
          (prefix.empty() ? "" : prefix + ".") + key->getValue(storage).str();
      if (!flatten(kv.getValue(), name, out, error))
        return false;
    }
    return true;
  }
  if (auto *scalar = llvm::dyn_cast_or_null<llvm::yaml::ScalarNode>(node)) {
    llvm::SmallString<32> storage;
    out[prefix] = scalar->getValue(storage).str();
    return true;
  }
  if (auto *seq = llvm::dyn_cast_or_null<llvm::yaml::SequenceNode>(node)) {
    // Lists (train.betas: [0.9, 0.95]) become "a,b".
    std::string joined;
    for (auto &item : *seq) {
      auto *scalar = llvm::dyn_cast<llvm::yaml::ScalarNode>(&item);
      if (!scalar) {
        error = "field '" + prefix + "': lists hold plain values only";
        return false;
      }
      llvm::SmallString<32> storage;
      joined += (joined.empty() ? "" : ",") + scalar->getValue(storage).str();
    }
    out[prefix] = joined;
    return true;
  }
  if (llvm::isa_and_nonnull<llvm::yaml::NullNode>(node)) {
    out[prefix] = "";
    return true;
  }
  error = "field '" + prefix + "': unsupported YAML value";
  return false;
}

} // namespace

std::optional<Recipe>
Recipe::load(const std::string &path,
             const std::vector<std::pair<std::string, std::string>> &overrides,
             std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer) {
    error = path + ": cannot read: " + buffer.getError().message();
    return std::nullopt;
  }
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
    error = path + ": empty recipe";
    return std::nullopt;
  }
  std::string flatError;
  bool ok = flatten(doc->getRoot(), "", fields, flatError);
  if (!yamlError.empty() || stream.failed()) {
    error = path + ":" + (yamlError.empty() ? " invalid YAML" : yamlError);
    return std::nullopt;
  }
  if (!ok || !llvm::isa<llvm::yaml::MappingNode>(doc->getRoot())) {
    error = path + ": " +
            (flatError.empty() ? "the recipe must be a mapping" : flatError);
    return std::nullopt;
  }
  for (auto &[key, value] : overrides) {
    if (!fields.count(key) && key.find('.') == std::string::npos) {
      error = "--" + key + ": settings are dotted (--train.lr 3e-4)";
      return std::nullopt;
    }
    fields[key] = value;
  }

  Recipe r;
  r.path = path;
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
  const std::map<std::string, std::pair<Setter, const char *>> known = {
      {"model.config", {text(r.config), "a path"}},
      {"model.weights", {text(r.weights), "a path"}},
      {"model.dtype", {text(r.dtype), "f32, bf16 or f16"}},
      {"model.seed", {integer(r.seed), "an integer"}},
      {"model.num_layers", {integer(r.numLayers), "an integer"}},
      {"data.path", {text(r.data), "a path"}},
      {"data.seq_len", {integer(r.seqLen), "an integer"}},
      {"data.batch_size", {integer(r.batchSize), "an integer"}},
      {"data.global_batch_size", {integer(r.globalBatchSize), "an integer"}},
      {"data.image_patches", {integer(r.imagePatches), "an integer"}},
      {"data.audio_frames", {integer(r.audioFrames), "an integer"}},
      {"train.steps", {integer(r.steps), "an integer"}},
      {"train.warmup_steps", {integer(r.warmupSteps), "an integer"}},
      {"train.log_interval", {integer(r.logInterval), "an integer"}},
      {"train.checkpoint_interval",
       {integer(r.checkpointInterval), "an integer"}},
      {"train.lr", {number(r.lr), "a number"}},
      {"train.min_lr_ratio", {number(r.minLrRatio), "a number"}},
      {"train.weight_decay", {number(r.weightDecay), "a number"}},
      {"train.eps", {number(r.eps), "a number"}},
      {"train.max_grad_norm", {number(r.maxGradNorm), "a number"}},
      {"train.output_dir", {text(r.outputDir), "a path"}},
      {"train.resume", {text(r.resume), "a path or auto"}},
      {"train.remat", {text(r.remat), "none, selective or full"}},
      {"parallel.dp_replicate", {integer(r.dpReplicate), "an integer"}},
      {"parallel.dp_shard", {integer(r.dpShard), "an integer"}},
      {"parallel.tp", {integer(r.tp), "an integer"}},
      {"parallel.sp", {integer(r.sp), "an integer"}},
      {"parallel.ulysses", {integer(r.sp), "an integer"}},
      {"parallel.ep", {integer(r.ep), "an integer"}},
      {"parallel.pp", {integer(r.pp), "an integer"}},
      {"parallel.world_size", {integer(r.worldSize), "an integer"}},
      {"parallel.pp_schedule",
       {text(r.ppSchedule), "1f1b, interleaved or zb-h1"}},
      {"parallel.pp_chunks", {integer(r.ppChunks), "an integer"}},
      {"cluster.peak_tflops", {number(r.peakTflops), "a number"}},
      {"cluster.mfu", {number(r.mfu), "a number"}},
      {"cluster.intra_node_gbps", {number(r.intraNodeGBps), "a number"}},
      {"cluster.inter_node_gbps", {number(r.interNodeGBps), "a number"}},
      {"cluster.intra_node_latency_us",
       {number(r.intraNodeLatencyUs), "a number"}},
      {"cluster.inter_node_latency_us",
       {number(r.interNodeLatencyUs), "a number"}},
  };
  for (auto &[key, value] : fields) {
    std::string where = path + ": field '" + key + "': ";
    if (key == "train.betas") {
      llvm::StringRef first, second;
      std::tie(first, second) = llvm::StringRef(value).split(',');
      if (first.trim().getAsDouble(r.beta1) ||
          second.trim().getAsDouble(r.beta2)) {
        error = where + "expected two numbers, got '" + value + "'";
        return std::nullopt;
      }
      continue;
    }
    auto it = known.find(key);
    if (it == known.end()) {
      error = where + "unknown setting";
      return std::nullopt;
    }
    if (!it->second.first(value)) {
      error = where + "expected " + it->second.second + ", got '" + value + "'";
      return std::nullopt;
    }
  }
  auto fail = [&](const std::string &key, const std::string &what) {
    error = path + ": field '" + key + "': " + what;
    return std::nullopt;
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
  if (r.remat != "none" && r.remat != "selective" && r.remat != "full")
    return fail("train.remat",
                "must be none, selective or full, got '" + r.remat + "'");
  return r;
}

std::optional<Recipe>
Recipe::fromCommandLine(const std::vector<std::string> &args,
                        const std::vector<std::string> &ignored,
                        std::string &error) {
  std::string path;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    llvm::StringRef arg = args[i];
    if (llvm::is_contained(ignored, args[i]))
      continue;
    if (arg.consume_front("--")) {
      if (i + 1 >= args.size()) {
        error = "--" + arg.str() + " needs a value";
        return std::nullopt;
      }
      overrides.push_back({arg.str(), args[++i]});
    } else if (path.empty()) {
      path = arg.str();
    } else {
      error = "more than one recipe given";
      return std::nullopt;
    }
  }
  if (path.empty()) {
    error = "no recipe given (see veomni --help)";
    return std::nullopt;
  }
  return load(path, overrides, error);
}
