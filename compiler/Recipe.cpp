//===- Recipe.cpp - training recipes (YAML) -------------------------------===//

#include "compiler/Recipe.h"
#include "frontends/Importer.h"
#include "runtime/support/Status.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/YAMLParser.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <cmath>
#include <functional>
#include <sstream>

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

/// Every recipe setting: how it is parsed into `r`, how its value is
/// checked, what it expects, and what it means (veomni train --help prints
/// the table). Generated from RecipeSettings.def.
struct Setting {
  std::function<bool(const std::string &)> set;
  /// "" when the value is acceptable, else what is wrong with it.
  std::function<std::string()> check;
  const char *expected;
  const char *help;
  /// The value as YAML writes it.
  std::function<std::string()> text;
};

bool parseValue(const std::string &text, int64_t &out) {
  return !llvm::StringRef(text).trim().getAsInteger(10, out);
}
bool parseValue(const std::string &text, double &out) {
  return !llvm::StringRef(text).trim().getAsDouble(out) && std::isfinite(out);
}
bool parseValue(const std::string &text, std::string &out) {
  out = text;
  return true;
}
bool parseValue(const std::string &text, std::array<double, 2> &out) {
  auto [first, second] = llvm::StringRef(text).split(',');
  return !second.contains(',') && parseValue(first.str(), out[0]) &&
         parseValue(second.str(), out[1]);
}

std::string show(int64_t v) { return std::to_string(v); }
std::string show(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
std::string show(const std::string &v) { return "'" + v + "'"; }
std::string show(const std::array<double, 2> &v) {
  return "[" + show(v[0]) + ", " + show(v[1]) + "]";
}

/// The shortest text that reads back as `v`.
std::string yamlText(double v) {
  for (int digits = 6; digits < 17; ++digits) {
    std::ostringstream os;
    os.precision(digits);
    os << v;
    double back;
    if (parseValue(os.str(), back) && back == v)
      return os.str();
  }
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}
std::string yamlText(int64_t v) { return std::to_string(v); }
std::string yamlText(const std::string &v) {
  // Plain when YAML reads it back as this string, else single-quoted.
  llvm::StringRef t(v);
  bool plain = !t.empty() && t.trim() == t && llvm::isAlnum(t.front()) &&
               llvm::all_of(t, [](char c) {
                 return llvm::isAlnum(c) || llvm::is_contained("_-./+ ", c);
               });
  if (plain)
    return v;
  std::string quoted = "'";
  for (char c : v)
    quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}
std::string yamlText(const std::array<double, 2> &v) {
  return "[" + yamlText(v[0]) + ", " + yamlText(v[1]) + "]";
}

std::map<std::string, Setting> settingsOf(Recipe &r) {
  std::map<std::string, Setting> out;
#define VEOMNI_SETTING_ROW(section, Type, member, key, def, cond, message,     \
                           expected, help)                                     \
  out[std::string(#section) + "." + key] = Setting{                            \
      [&r](const std::string &text) {                                          \
        return parseValue(text, r.section.member);                             \
      },                                                                       \
      [&r]() -> std::string {                                                  \
        const auto &v = r.section.member;                                      \
        if (cond)                                                              \
          return std::string();                                                \
        std::string got = show(v);                                             \
        return std::string(message) + (got == "''" ? "" : ", got " + got);     \
      },                                                                       \
      expected, help, [&r]() { return yamlText(r.section.member); }};
#define VEOMNI_MODEL_SETTING(...) VEOMNI_SETTING_ROW(model, __VA_ARGS__)
#define VEOMNI_DATA_SETTING(...) VEOMNI_SETTING_ROW(data, __VA_ARGS__)
#define VEOMNI_TRAIN_SETTING(...) VEOMNI_SETTING_ROW(train, __VA_ARGS__)
#define VEOMNI_PARALLEL_SETTING(...) VEOMNI_SETTING_ROW(parallel, __VA_ARGS__)
#define VEOMNI_CLUSTER_SETTING(...) VEOMNI_SETTING_ROW(cluster, __VA_ARGS__)
#include "frontends/RecipeSettings.def"
#undef VEOMNI_SETTING_ROW
  // VeOmni's name for sequence parallelism.
  out["parallel.ulysses"] = out["parallel.sp"];
  out["parallel.ulysses"].help = "the same as parallel.sp";
  return out;
}

/// The settings of the YAML file `path`, flattened ("train.lr" -> "3e-4").
absl::StatusOr<std::map<std::string, std::string>>
readSettings(const std::string &path) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return absl::NotFoundError(path +
                               ": cannot read: " + buffer.getError().message());
  llvm::SourceMgr sm;
  std::string yamlError;
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
  return fields;
}

} // namespace

absl::StatusOr<Recipe> Recipe::load(
    const std::string &path,
    const std::vector<std::pair<std::string, std::string>> &overrides) {
  absl::StatusOr<std::map<std::string, std::string>> read = readSettings(path);
  if (!read.ok())
    return read.status();
  std::map<std::string, std::string> fields = std::move(*read);
  for (auto &[key, value] : overrides) {
    if (key == "cluster") {
      // --cluster FILE: a cluster file's section (examples/clusters/)
      // over the recipe's.
      absl::StatusOr<std::map<std::string, std::string>> cluster =
          readSettings(value);
      if (!cluster.ok())
        return absl::InvalidArgumentError(
            "--cluster: " + std::string(cluster.status().message()));
      for (auto &[k, v] : *cluster) {
        if (!llvm::StringRef(k).starts_with("cluster."))
          return absl::InvalidArgumentError(
              value + ": field '" + k +
              "': a cluster file holds the cluster section only");
        fields[k] = v;
      }
      continue;
    }
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
  // Each value against its own check (RecipeSettings.def)...
  for (auto &[key, setting] : known)
    if (std::string wrong = setting.check(); !wrong.empty())
      return fail(key, wrong);
  // ...then what relates several.
  TrainSection &t = r.train;
  DataSection &d = r.data;
  ParallelSection &p = r.parallel;
  if (t.warmupSteps >= t.steps)
    return fail("train.warmup_steps", "must be in [0, train.steps)");
  if (p.ppChunks > 1 && p.ppSchedule != "interleaved")
    return fail("parallel.pp_chunks",
                "must be 1, or >= 1 with pp_schedule interleaved");
  if (d.globalBatchSize == 0)
    d.globalBatchSize = d.batchSize;
  if (d.globalBatchSize < d.batchSize || d.globalBatchSize % d.batchSize)
    return fail("data.global_batch_size",
                std::to_string(d.globalBatchSize) +
                    " is not a multiple of data.batch_size " +
                    std::to_string(d.batchSize));
  // (Each size is at most 65536; their product must stay a world a job
  // can have, checked without overflowing.)
  {
    int64_t world = 1;
    for (int64_t size : {p.dpReplicate, p.dpShard, p.tp, p.sp, p.ep, p.pp}) {
      world *= size;
      if (world > (int64_t(1) << 24))
        return fail("parallel", "the mesh (dp_replicate x dp_shard x tp x "
                                "sp x ep x pp) exceeds 16777216 ranks");
    }
  }
  // Micro-batches a step (accumulation): each pipeline schedule lists
  // them, so their count is bounded too.
  if (d.globalBatchSize / d.batchSize > 65536)
    return fail("data.global_batch_size",
                std::to_string(d.globalBatchSize) + " makes " +
                    std::to_string(d.globalBatchSize / d.batchSize) +
                    " micro-batches a step; at most 65536");
  if (p.worldSize == 0)
    p.worldSize = p.meshSize();
  if (p.worldSize != p.meshSize())
    return fail("parallel.world_size",
                std::to_string(p.worldSize) +
                    " differs from the product of the mesh sizes, " +
                    std::to_string(p.meshSize()) +
                    " (dp_replicate x dp_shard x tp x sp x ep x pp)");
  std::optional<uint64_t> shard = parseByteSize(t.maxShardSize);
  if (!shard)
    return fail("train.max_shard_size",
                "expected a size such as 5GB, 500MB or 2GiB, got '" +
                    t.maxShardSize + "'");
  t.maxShardBytes = *shard;
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

std::string Recipe::toYaml() const {
  Recipe copy = *this, defaults;
  std::map<std::string, Setting> mine = settingsOf(copy),
                                 plain = settingsOf(defaults);
  std::string out, section;
  for (const char *name : {"model", "data", "train", "parallel", "cluster"}) {
    std::string body;
    for (auto &[key, setting] : mine) {
      llvm::StringRef k(key);
      if (!k.consume_front(name) || !k.consume_front(".") ||
          key == "parallel.ulysses")
        continue;
      std::string value = setting.text();
      if (value != plain.at(key).text() || key == "model.config")
        body += "  " + k.str() + ": " + value + "\n";
    }
    if (!body.empty())
      out += std::string(name) + ":\n" + body;
  }
  return out;
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

absl::Status mlir::veomni::checkMeshFits(const Recipe &r,
                                         const ImportedModel &model) {
  const ParallelSection &p = r.parallel;
  // What the mesh must divide in the model, named by the recipe field.
  auto divides = [&](const char *field, int64_t axis, int64_t value,
                     const std::string &what) -> absl::Status {
    if (axis > 1 && (value <= 0 || value % axis != 0))
      return absl::InvalidArgumentError(
          r.path + ": field '" + field + "': " + std::to_string(axis) +
          " does not divide " + what + " " + std::to_string(value));
    return absl::OkStatus();
  };
  VEOMNI_RETURN_IF_ERROR(
      divides("parallel.tp", p.tp, model.numHeads, "num_attention_heads"));
  VEOMNI_RETURN_IF_ERROR(
      divides("parallel.tp", p.tp, model.numKVHeads, "num_key_value_heads"));
  VEOMNI_RETURN_IF_ERROR(
      divides("parallel.sp", p.sp, r.data.seqLen, "data.seq_len"));
  VEOMNI_RETURN_IF_ERROR(divides("parallel.sp", p.sp,
                                 model.numHeads / std::max<int64_t>(p.tp, 1),
                                 "the attention heads per tp rank"));
  // Stages are balanced by cost, so pp need not divide the layers; each
  // chunk needs one.
  if (p.pp * p.ppChunks > model.numLayers)
    return absl::InvalidArgumentError(
        r.path + ": field 'parallel.pp': " + std::to_string(p.pp) +
        " stages x " + std::to_string(p.ppChunks) +
        " chunks need at least as many decoder layers; the model has " +
        std::to_string(model.numLayers));
  if (p.ep > 1 && model.numExperts == 0)
    return absl::InvalidArgumentError(
        r.path + ": field 'parallel.ep': " + std::to_string(p.ep) +
        " needs a mixture-of-experts model; " + model.modelType +
        " has no experts");
  VEOMNI_RETURN_IF_ERROR(
      divides("parallel.ep", p.ep, model.numExperts, "num_experts"));
  // With experts split on ep, the ep ranks take their own batches too.
  bool expertParallel = p.ep > 1 && model.numExperts > 0;
  return divides(
      "parallel.dp_shard",
      p.dpReplicate * p.dpShard * (expertParallel ? p.ep : 1), r.data.batchSize,
      expertParallel ? "data.batch_size (dp_replicate x dp_shard x ep)"
                     : "data.batch_size (dp_replicate x dp_shard)");
}
