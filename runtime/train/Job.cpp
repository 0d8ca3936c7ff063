//===- Job.cpp - an ahead-of-time training job ----------------------------===//

#include "runtime/train/Job.h"

#include "runtime/io/Json.h"
#include "runtime/io/Safetensors.h"
#include "runtime/support/Status.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace veomni::rt {
namespace {

namespace fs = std::filesystem;

constexpr const char *kFormat = "veomni-job";
constexpr int64_t kVersion = 1;

/// One manifest field: text or a number at least `min`; `fixed` when the
/// program was compiled for it; `optional` when a manifest may leave it
/// out (fields added after version 1 began), keeping its default.
struct Field {
  const char *key;
  bool fixed;
  std::string JobSettings::*text;
  int64_t JobSettings::*number;
  int64_t min;
  bool optional = false;
};

constexpr Field kFields[] = {
    {"model_type", true, &JobSettings::modelType, nullptr, 0},
    {"world_size", true, nullptr, &JobSettings::worldSize, 1},
    {"mesh", true, &JobSettings::mesh, nullptr, 0},
    {"summary", true, &JobSettings::summary, nullptr, 0},
    {"data.seq_len", true, nullptr, &JobSettings::seqLen, 1},
    {"data.batch_size", true, nullptr, &JobSettings::batchSize, 1},
    {"data.accumulation_steps", true, nullptr, &JobSettings::accumulationSteps,
     1},
    {"train.steps", true, nullptr, &JobSettings::steps, 1},
    {"model.seed", true, nullptr, &JobSettings::seed, INT64_MIN},
    {"model.weights", false, &JobSettings::weights, nullptr, 0},
    {"data.path", false, &JobSettings::dataPath, nullptr, 0},
    {"data.weights", false, &JobSettings::dataWeights, nullptr, 0, true},
    {"data.tokenizer", false, &JobSettings::tokenizer, nullptr, 0, true},
    {"data.chat", false, &JobSettings::chat, nullptr, 0, true},
    {"data.chat_date", false, &JobSettings::chatDate, nullptr, 0, true},
    {"data.eos", false, &JobSettings::eos, nullptr, 0, true},
    {"data.on_bad_sample", false, &JobSettings::onBadSample, nullptr, 0, true},
    {"data.eval_path", false, &JobSettings::evalPath, nullptr, 0, true},
    {"eval_program", true, &JobSettings::evalProgram, nullptr, 0, true},
    {"train.eval_interval", false, nullptr, &JobSettings::evalInterval, 0,
     true},
    {"train.eval_batches", false, nullptr, &JobSettings::evalBatches, 1, true},
    {"data.min_pixels", false, nullptr, &JobSettings::minPixels, 1, true},
    {"data.max_pixels", false, nullptr, &JobSettings::maxPixels, 1, true},
    {"data.on_long_sample", false, &JobSettings::onLongSample, nullptr, 0,
     true},
    {"data.video_fps", false, &JobSettings::videoFps, nullptr, 0, true},
    {"data.video_max_frames", false, nullptr, &JobSettings::videoMaxFrames, 2,
     true},
    {"data.video_min_pixels", false, nullptr, &JobSettings::videoMinPixels, 1,
     true},
    {"data.video_max_pixels", false, nullptr, &JobSettings::videoMaxPixels, 1,
     true},
    {"data.video_total_pixels", false, nullptr, &JobSettings::videoTotalPixels,
     1, true},
    {"data.audio_in_video", false, &JobSettings::audioInVideo, nullptr, 0,
     true},
    {"data.pan_and_scan", false, &JobSettings::panAndScan, nullptr, 0, true},
    {"train.lora.adapter", false, &JobSettings::loraAdapter, nullptr, 0, true},
    {"adapter_config", true, &JobSettings::adapterConfig, nullptr, 0, true},
    {"data.workers", false, nullptr, &JobSettings::dataWorkers, 0, true},
    {"train.output_dir", false, &JobSettings::outputDir, nullptr, 0},
    {"train.resume", false, &JobSettings::resume, nullptr, 0},
    {"train.on_nonfinite", false, &JobSettings::onNonfinite, nullptr, 0, true},
    {"train.log_interval", false, nullptr, &JobSettings::logInterval, 1},
    {"train.checkpoint_interval", false, nullptr,
     &JobSettings::checkpointInterval, 0},
    {"train.max_shard_bytes", false, nullptr, &JobSettings::maxShardBytes, 1},
    {"train.profile", false, &JobSettings::profile, nullptr, 0, true},
    {"train.device", false, &JobSettings::device, nullptr, 0, true},
};

std::string Quote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

} // namespace

absl::Status WriteJob(const std::string &dir, const JobSettings &job,
                      absl::string_view program) {
  if (job.pipeline.stages > 1 || !job.evalProgram.empty())
    return absl::InvalidArgumentError(
        "a pipeline job or one with an evaluation program is written with "
        "all its programs");
  return WriteJob(dir, job, std::vector<std::string>{std::string(program)});
}

absl::Status WriteJob(const std::string &dir, const JobSettings &job,
                      const std::vector<std::string> &programs) {
  const JobSettings::Pipeline &pipe = job.pipeline;
  const size_t evals = job.evalProgram.empty() ? 0 : 1;
  if (evals && pipe.stages > 1)
    return absl::InvalidArgumentError(
        "a pipeline job has no evaluation program yet");
  if (pipe.stages > 1 ? programs.size() != pipe.programs.size()
                      : programs.size() != 1 + evals)
    return absl::InvalidArgumentError(
        absl::StrCat("a job of ", pipe.stages, " stages with ", programs.size(),
                     " programs"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", ec.message()));
  std::string manifest = absl::StrCat("{\n  \"format\": \"", kFormat,
                                      "\",\n  \"version\": ", kVersion);
  for (const Field &f : kFields)
    absl::StrAppend(
        &manifest, ",\n  \"", f.key,
        "\": ", f.text ? Quote(job.*f.text) : std::to_string(job.*f.number));
  if (pipe.stages > 1) {
    absl::StrAppend(&manifest, ",\n  \"pipeline\": {\n    \"schedule\": ",
                    Quote(pipe.schedule), ",\n    \"stages\": ", pipe.stages,
                    ",\n    \"micro_batches\": ", pipe.microBatches,
                    ",\n    \"programs\": [");
    for (size_t i = 0; i < pipe.programs.size(); ++i) {
      const JobSettings::StageFile &f = pipe.programs[i];
      absl::StrAppend(&manifest, i ? "," : "",
                      "\n      {\"name\": ", Quote(f.name),
                      ", \"file\": ", Quote(f.file), ", \"stage\": ", f.stage,
                      ", \"chunk\": ", f.chunk, "}");
      VEOMNI_RETURN_IF_ERROR(
          WriteTextFile(absl::StrCat(dir, "/", f.file), programs[i]));
    }
    manifest += "\n    ],\n    \"actions\": [";
    for (size_t s = 0; s < pipe.actions.size(); ++s) {
      absl::StrAppend(&manifest, s ? "," : "", "\n      [");
      for (size_t a = 0; a < pipe.actions[s].size(); ++a)
        absl::StrAppend(&manifest, a ? ", " : "", Quote(pipe.actions[s][a]));
      manifest += "]";
    }
    manifest += "\n    ],\n    \"tied_params\": [";
    for (size_t i = 0; i < pipe.tiedParams.size(); ++i)
      absl::StrAppend(&manifest, i ? ", " : "", Quote(pipe.tiedParams[i]));
    manifest += "]\n  }";
  } else {
    VEOMNI_RETURN_IF_ERROR(
        WriteTextFile(absl::StrCat(dir, "/", kJobProgram), programs[0]));
    if (evals)
      VEOMNI_RETURN_IF_ERROR(WriteTextFile(
          absl::StrCat(dir, "/", job.evalProgram), programs.back()));
  }
  manifest += "\n}\n";
  if (!job.config.empty()) {
    std::ifstream in(job.config, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
      return absl::NotFoundError(
          absl::StrCat(job.config, ": cannot read the model's config"));
    VEOMNI_RETURN_IF_ERROR(
        WriteTextFile(absl::StrCat(dir, "/", kJobConfig), text.str()));
  }
  // The manifest last: a folder with one is complete.
  return WriteTextFile(absl::StrCat(dir, "/", kJobManifest), manifest);
}

absl::StatusOr<JobSettings> ReadJob(const std::string &dir) {
  std::string path = absl::StrCat(dir, "/", kJobManifest);
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    return absl::NotFoundError(absl::StrCat(
        path, ": cannot read (a job folder is written by veomni compile "
              "RECIPE.yaml -o DIR)"));
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  absl::StatusOr<Json> json = ParseJson(text.str());
  if (!json.ok())
    return bad(json.status().message());
  if (json->kind != Json::Object)
    return bad("not a JSON object");
  const Json *format = FindField(*json, "format");
  const Json *version = FindField(*json, "version");
  if (!format || format->kind != Json::String || format->text != kFormat)
    return bad(absl::StrCat("\"format\" is not \"", kFormat, "\""));
  if (!version || version->kind != Json::Number || version->number != kVersion)
    return bad(absl::StrCat("\"version\" is not ", kVersion));
  JobSettings job;
  for (const Field &f : kFields) {
    const Json *v = FindField(*json, f.key);
    if (!v && f.optional)
      continue;
    if (!v)
      return bad(absl::StrCat("\"", f.key, "\" is missing"));
    if (f.text) {
      if (v->kind != Json::String)
        return bad(absl::StrCat("\"", f.key, "\" is not a string"));
      job.*f.text = v->text;
    } else {
      if (v->kind != Json::Number || !v->integral || v->number < f.min)
        return bad(
            absl::StrCat("\"", f.key, "\" is not an integer >= ", f.min));
      job.*f.number = v->number;
    }
  }
  if (const Json *pipe = FindField(*json, "pipeline")) {
    JobSettings::Pipeline &p = job.pipeline;
    auto text = [&](const Json &v, const std::string &where,
                    std::string &to) -> absl::Status {
      if (v.kind != Json::String)
        return bad(absl::StrCat("\"", where, "\" is not a string"));
      to = v.text;
      return absl::OkStatus();
    };
    auto number = [&](const Json *v, const std::string &where, int64_t min,
                      int64_t &to) -> absl::Status {
      if (!v || v->kind != Json::Number || !v->integral || v->number < min)
        return bad(absl::StrCat("\"", where, "\" is not an integer >= ", min));
      to = v->number;
      return absl::OkStatus();
    };
    auto array = [&](const Json *v,
                     const std::string &where) -> absl::StatusOr<const Json *> {
      if (!v || v->kind != Json::Array)
        return bad(absl::StrCat("\"", where, "\" is not an array"));
      return v;
    };
    if (pipe->kind != Json::Object)
      return bad("\"pipeline\" is not an object");
    const Json *schedule = FindField(*pipe, "schedule");
    if (!schedule)
      return bad("\"pipeline.schedule\" is missing");
    VEOMNI_RETURN_IF_ERROR(text(*schedule, "pipeline.schedule", p.schedule));
    VEOMNI_RETURN_IF_ERROR(
        number(FindField(*pipe, "stages"), "pipeline.stages", 2, p.stages));
    VEOMNI_RETURN_IF_ERROR(number(FindField(*pipe, "micro_batches"),
                                  "pipeline.micro_batches", 1, p.microBatches));
    VEOMNI_ASSIGN_OR_RETURN(
        const Json *programs,
        array(FindField(*pipe, "programs"), "pipeline.programs"));
    for (const Json &item : programs->items) {
      JobSettings::StageFile f;
      const Json *name = FindField(item, "name"),
                 *file = FindField(item, "file");
      if (item.kind != Json::Object || !name || !file)
        return bad("\"pipeline.programs\" holds an entry without a name "
                   "and a file");
      VEOMNI_RETURN_IF_ERROR(text(*name, "pipeline.programs.name", f.name));
      VEOMNI_RETURN_IF_ERROR(text(*file, "pipeline.programs.file", f.file));
      if (f.file.empty() || f.file.find('/') != std::string::npos ||
          f.file[0] == '.')
        return bad(absl::StrCat("pipeline program file '", f.file,
                                "' is not a file name in the job folder"));
      VEOMNI_RETURN_IF_ERROR(number(FindField(item, "stage"),
                                    "pipeline.programs.stage", 0, f.stage));
      VEOMNI_RETURN_IF_ERROR(number(FindField(item, "chunk"),
                                    "pipeline.programs.chunk", -1, f.chunk));
      if (f.stage >= p.stages)
        return bad(absl::StrCat("pipeline program '", f.name, "' is on stage ",
                                f.stage, " of ", p.stages));
      if (f.chunk > (int64_t(1) << 20) ||
          (f.chunk >= 0 && f.chunk % p.stages != f.stage))
        return bad(absl::StrCat("pipeline program '", f.name, "': chunk ",
                                f.chunk, " is not one of stage ", f.stage));
      p.programs.push_back(std::move(f));
    }
    VEOMNI_ASSIGN_OR_RETURN(
        const Json *actions,
        array(FindField(*pipe, "actions"), "pipeline.actions"));
    if (static_cast<int64_t>(actions->items.size()) != p.stages)
      return bad(absl::StrCat("\"pipeline.actions\" lists ",
                              actions->items.size(), " stages, not ",
                              p.stages));
    for (const Json &stage : actions->items) {
      VEOMNI_ASSIGN_OR_RETURN(const Json *list,
                              array(&stage, "pipeline.actions"));
      std::vector<std::string> &to = p.actions.emplace_back();
      for (const Json &a : list->items)
        VEOMNI_RETURN_IF_ERROR(text(a, "pipeline.actions", to.emplace_back()));
    }
    VEOMNI_ASSIGN_OR_RETURN(
        const Json *tied,
        array(FindField(*pipe, "tied_params"), "pipeline.tied_params"));
    for (const Json &t : tied->items)
      VEOMNI_RETURN_IF_ERROR(
          text(t, "pipeline.tied_params", p.tiedParams.emplace_back()));
  }
  std::error_code ec;
  std::string config = absl::StrCat(dir, "/", kJobConfig);
  if (fs::exists(config, ec))
    job.config = config;
  return job;
}

absl::Status
OverrideJob(JobSettings &job,
            const std::vector<std::pair<std::string, std::string>> &overrides) {
  for (const auto &[key, value] : overrides) {
    const Field *field = nullptr;
    for (const Field &f : kFields)
      if (key == f.key)
        field = &f;
    if (!field)
      return absl::InvalidArgumentError(
          absl::StrCat("--", key, ": not a setting of a job"));
    if (field->fixed)
      return absl::InvalidArgumentError(absl::StrCat(
          "--", key,
          ": the job's program was compiled for it; compile the recipe "
          "again to change it"));
    if (field->text) {
      job.*field->text = value;
      continue;
    }
    int64_t n;
    if (!absl::SimpleAtoi(value, &n) || n < field->min)
      return absl::InvalidArgumentError(absl::StrCat(
          "--", key, " ", value, ": expected an integer >= ", field->min));
    job.*field->number = n;
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
