//===- Loop.cpp - the training loop ---------------------------------------===//

#include "runtime/train/Loop.h"

#include "runtime/data/Multimodal.h"
#include "runtime/data/Prefetch.h"
#include "runtime/data/Stream.h"
#include "runtime/data/Tokenizer.h"
#include "runtime/io/Init.h"
#include "runtime/io/Safetensors.h"
#include "runtime/io/TokenDataset.h"
#include "runtime/io/Weights.h"
#include "runtime/support/Status.h"
#include "runtime/train/Profile.h"
#include "runtime/train/Trainer.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unistd.h>

namespace veomni::rt {
namespace {

namespace fs = std::filesystem;

std::string CheckpointPath(const std::string &dir, int64_t step) {
  return absl::StrCat(dir, "/checkpoint-", step);
}

/// The newest complete checkpoint-N/ in `dir`, or "".
std::string LatestCheckpoint(const std::string &dir) {
  std::error_code ec;
  int64_t best = -1;
  for (fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    absl::string_view rest = name;
    int64_t step;
    if (absl::ConsumePrefix(&rest, "checkpoint-") &&
        absl::SimpleAtoi(rest, &step) &&
        fs::exists(it->path() / "optimizer.safetensors", ec))
      best = std::max(best, step);
  }
  return best < 0 ? "" : CheckpointPath(dir, best);
}

/// loss_curve.svg: the training loss against the step (blue) and the
/// held-out loss where it was taken (orange, with dots), the range
/// labelled.
void WriteLossCurve(const std::string &path,
                    const std::vector<std::pair<int64_t, double>> &points,
                    const std::vector<std::pair<int64_t, double>> &held) {
  if (points.size() < 2)
    return;
  double lo = points[0].second, hi = lo;
  for (const auto *series : {&points, &held})
    for (auto &p : *series) {
      lo = std::min(lo, p.second);
      hi = std::max(hi, p.second);
    }
  if (hi - lo < 1e-9)
    hi = lo + 1;
  const double w = 640, h = 360, m = 48;
  int64_t first = points.front().first, last = points.back().first;
  auto x = [&](int64_t step) {
    return m + (w - 2 * m) * double(step - first) /
                   double(std::max<int64_t>(last - first, 1));
  };
  auto y = [&](double loss) {
    return h - m - (h - 2 * m) * (loss - lo) / (hi - lo);
  };
  std::ofstream f(path);
  f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='"
    << h << "'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << m
    << "' y='24' font-family='sans-serif' font-size='14'>training loss"
    << (held.empty() ? "" : " (blue), held-out loss (orange)")
    << "</text>\n<polyline fill='none' stroke='#1f77b4' stroke-width='2' "
       "points='";
  for (auto &[step, loss] : points)
    f << x(step) << "," << y(loss) << " ";
  f << "'/>\n";
  if (!held.empty()) {
    f << "<polyline fill='none' stroke='#ff7f0e' stroke-width='2' points='";
    for (auto &[step, loss] : held)
      f << x(step) << "," << y(loss) << " ";
    f << "'/>\n";
    for (auto &[step, loss] : held)
      f << "<circle cx='" << x(step) << "' cy='" << y(loss)
        << "' r='3' fill='#ff7f0e'/>\n";
  }
  f << "<line x1='" << m << "' y1='" << h - m << "' x2='" << w - m << "' y2='"
    << h - m << "' stroke='black'/>\n<line x1='" << m << "' y1='" << m
    << "' x2='" << m << "' y2='" << h - m << "' stroke='black'/>\n";
  auto label = [&](double x, double y, const std::string &s) {
    f << "<text x='" << x << "' y='" << y
      << "' font-family='sans-serif' font-size='12'>" << s << "</text>\n";
  };
  label(4, m + 4, absl::StrFormat("%.3f", hi));
  label(4, h - m, absl::StrFormat("%.3f", lo));
  label(m, h - m + 20, absl::StrCat("step ", first));
  label(w - m - 60, h - m + 20, absl::StrCat("step ", last));
  f << "</svg>\n";
}

/// Rank 0 writes the profile where it was asked for; rank r > 0 writes
/// FILE.rank<r>.json beside it.
std::string ProfilePath(const std::string &path, int rank) {
  if (rank == 0)
    return path;
  std::string stem =
      absl::EndsWith(path, ".json") ? path.substr(0, path.size() - 5) : path;
  return absl::StrCat(stem, ".rank", rank, ".json");
}

/// One training-step program.
/// Copies `from`'s parameters into `to`'s of the same names; both hold
/// this rank's slices, which must have the same shape and type.
absl::Status CopyParameters(const Executor &from, Executor &to) {
  std::vector<uint8_t> host;
  for (const ArgumentDesc &a : to.program().arguments) {
    if (a.role != ArgumentRole::Parameter)
      continue;
    const ArgumentDesc *src = from.program().FindArgument(a.name);
    if (!src || src->role != ArgumentRole::Parameter)
      return absl::InvalidArgumentError(
          absl::StrCat("the evaluation program's parameter '", a.name,
                       "' is not the training step's"));
    TensorView s = from.View(src->buffer), d = to.View(a.buffer);
    if (s.shape != d.shape || s.dtype != d.dtype)
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", a.name, "' is ", s.ToString(),
                       " in the training step and ", d.ToString(),
                       " in the evaluation program"));
    host.resize(s.bytes());
    VEOMNI_RETURN_IF_ERROR(from.Read(src->buffer, host.data()));
    VEOMNI_RETURN_IF_ERROR(to.Write(a.buffer, host.data()));
  }
  return absl::OkStatus();
}

class ProgramRunner final : public StepRunner {
public:
  ProgramRunner(Executor &ex, Trainer trainer)
      : ex_(&ex), trainer_(std::move(trainer)) {}
  int Rank() const override { return ex_->Rank(); }
  int WorldSize() const override { return ex_->WorldSize(); }
  double CommSeconds() const override { return ex_->CommSeconds(); }
  double CommWaitSeconds() const override { return ex_->CommWaitSeconds(); }
  Executor &Inputs() override { return *ex_; }
  absl::Status InitParameters(uint64_t seed) override {
    return rt::InitParameters(*ex_, seed);
  }
  absl::Status LoadWeights(const std::string &path, uint64_t seed) override {
    VEOMNI_RETURN_IF_ERROR(
        rt::InitParameters(*ex_, seed, 0.02, /*adaptersOnly=*/true));
    return rt::LoadWeights(*ex_, path);
  }
  absl::Status LoadAdapters(const std::string &path) override {
    return rt::LoadAdapters(*ex_, path);
  }
  absl::Status InitState() override { return trainer_.InitState(); }
  absl::StatusOr<StepMetrics>
  Step(int64_t step, int64_t micro,
       const std::function<absl::Status(int64_t)> &fill) override {
    StepMetrics m;
    double lossSum = 0;
    for (int64_t i = 0; i < micro; ++i) {
      VEOMNI_RETURN_IF_ERROR(fill(i));
      VEOMNI_ASSIGN_OR_RETURN(m, trainer_.Step(step, i == micro - 1));
      lossSum += m.loss;
    }
    m.loss = lossSum / micro;
    return m;
  }
  absl::Status Save(const std::string &dir, int64_t step,
                    const std::map<std::string, std::string> &metadata,
                    const Trainer::CheckpointOptions &options) override {
    return trainer_.Save(dir, step, metadata, options);
  }
  absl::StatusOr<int64_t>
  Load(const std::string &dir,
       std::map<std::string, std::string> &metadata) override {
    return trainer_.Load(dir, metadata);
  }
  absl::Status CopyParametersTo(Executor &to) const override {
    return CopyParameters(*ex_, to);
  }
  absl::StatusOr<std::string> Probe() override { return trainer_.Probe(); }
  void SetTrace(KernelTrace *trace) override { ex_->SetTrace(trace); }
  std::vector<std::pair<const Program *, std::string>>
  ProgramNames() const override {
    return {{&ex_->program(), "step"}};
  }

private:
  Executor *ex_;
  Trainer trainer_;
};

/// A pipeline's stage.
class StageRunner final : public StepRunner {
public:
  StageRunner(PipelineTrainer &t, Communicator &world)
      : t_(&t), world_(&world) {}
  int Rank() const override { return world_->Rank(); }
  int WorldSize() const override { return world_->WorldSize(); }
  double CommSeconds() const override { return world_->SecondsInCollectives(); }
  double CommWaitSeconds() const override {
    return world_->SecondsInCollectives();
  }
  Executor &Inputs() override { return t_->Inputs(); }
  absl::Status InitParameters(uint64_t seed) override {
    return t_->InitParameters(seed);
  }
  absl::Status LoadWeights(const std::string &path, uint64_t seed) override {
    return t_->LoadWeights(path, seed);
  }
  absl::Status LoadAdapters(const std::string &path) override {
    return t_->LoadAdapters(path);
  }
  absl::Status InitState() override { return t_->InitState(); }
  absl::StatusOr<StepMetrics>
  Step(int64_t step, int64_t micro,
       const std::function<absl::Status(int64_t)> &fill) override {
    for (int64_t i = 0; i < micro; ++i) {
      VEOMNI_RETURN_IF_ERROR(fill(i));
      VEOMNI_RETURN_IF_ERROR(t_->AddMicroBatch());
    }
    return t_->Step(step);
  }
  absl::Status Save(const std::string &dir, int64_t step,
                    const std::map<std::string, std::string> &metadata,
                    const Trainer::CheckpointOptions &options) override {
    return t_->Save(dir, step, metadata, options);
  }
  absl::StatusOr<int64_t>
  Load(const std::string &dir,
       std::map<std::string, std::string> &metadata) override {
    return t_->Load(dir, metadata);
  }
  absl::Status CopyParametersTo(Executor &) const override {
    return absl::UnimplementedError(
        "held-out losses with pipeline stages are not supported yet");
  }
  absl::StatusOr<std::string> Probe() override { return t_->Probe(); }
  void SetTrace(KernelTrace *trace) override { t_->SetTrace(trace); }
  std::vector<std::pair<const Program *, std::string>>
  ProgramNames() const override {
    return t_->ProgramNames();
  }

private:
  PipelineTrainer *t_;
  Communicator *world_;
};

/// One global batch the loader made: token rows for a text model, or
/// every input of a model with vision or audio inputs.
struct LoadedBatch {
  PackedRows text;
  MediaBatch media;
};

/// A run's data: data.path's sources read through data.tokenizer, mixed,
/// and packed into rows (text) or whole samples with their media (a
/// program with pixel_values or input_features).
struct TextData {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<MediaModel> media;
  std::unique_ptr<DataStream> stream;
  std::unique_ptr<Packer> packer;
  std::unique_ptr<MediaPacker> mediaPacker;
  int64_t rows = 0; ///< text: the global batch's rows
  /// Makes the global batches ahead of the step (after a resume's Restore).
  std::unique_ptr<Prefetcher<LoadedBatch>> prefetch;
  int64_t reportedSkips = 0;

  absl::StatusOr<LoadedBatch> Make() {
    LoadedBatch b;
    if (mediaPacker) {
      VEOMNI_ASSIGN_OR_RETURN(b.media, mediaPacker->Next());
    } else {
      VEOMNI_ASSIGN_OR_RETURN(b.text, packer->Next(rows));
    }
    return b;
  }
  std::string Position() const {
    return mediaPacker ? mediaPacker->Position() : packer->Position();
  }
  absl::Status Restore(const std::string &position) {
    return mediaPacker ? mediaPacker->Restore(position)
                       : packer->Restore(position);
  }
  absl::Status Fill(Executor &ex, const LoadedBatch &b) const {
    return mediaPacker ? FillMediaBatch(ex, b.media)
                       : FillTextBatch(ex, b.text);
  }
  void StartLoader() {
    prefetch = std::make_unique<Prefetcher<LoadedBatch>>(
        [this] { return Make(); }, [this] { return Position(); }, Position());
  }
};

absl::StatusOr<std::unique_ptr<TextData>>
OpenTextData(const JobSettings &job, const std::string &paths,
             const std::string &weightList, const Executor &program) {
  auto data = std::make_unique<TextData>();
  DataOptions options;
  const ArgumentDesc *ids = program.program().FindArgument("input_ids");
  options.vocab = ids ? ids->bound : 0;
  // A program with vision or audio inputs reads conversations with media.
  const bool media = program.program().FindArgument("pixel_values") ||
                     program.program().FindArgument("input_features");
  if (media) {
    if (job.config.empty())
      return absl::InvalidArgumentError(
          "the model takes images or audio, and the job names no config.json "
          "to read its placeholder ids from");
    VEOMNI_ASSIGN_OR_RETURN(MediaModel model, ReadMediaModel(job.config));
    model.image.minPixels = job.minPixels;
    model.image.maxPixels = job.maxPixels;
    model.video.minPixels = job.videoMinPixels;
    model.video.maxPixels = job.videoMaxPixels;
    model.videoTotalPixels = job.videoTotalPixels;
    model.sampling.maxFrames = job.videoMaxFrames;
    for (const auto &[name, value] :
         {std::pair<const char *, const std::string *>{"data.audio_in_video",
                                                       &job.audioInVideo},
          {"data.pan_and_scan", &job.panAndScan}})
      if (*value != "true" && *value != "false")
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": expected true or false, got '", *value, "'"));
    model.audioInVideo = job.audioInVideo == "true";
    model.panAndScan = job.panAndScan == "true";
    if (model.panAndScan && !model.wholeImages)
      return absl::InvalidArgumentError(
          absl::StrCat("data.pan_and_scan: true, but ", model.modelType,
                       " has no pan and scan (Gemma 3's, gemma3)"));
    if (model.audioInVideo && !(model.audio && model.vision))
      return absl::InvalidArgumentError(
          absl::StrCat("data.audio_in_video: true, but ", model.modelType,
                       " has no vision and audio towers to take a video's "
                       "sound track (qwen2_5_omni and qwen3_omni_moe do)"));
    if (!absl::SimpleAtod(job.videoFps, &model.sampling.fps) ||
        !(model.sampling.fps > 0))
      return absl::InvalidArgumentError(absl::StrCat(
          "data.video_fps: '", job.videoFps, "' is not a positive number"));
    if (model.qwen3Audio && model.vision) {
      // Qwen3-Omni keeps a video's temporal positions fractional (f32);
      // the program's positions are integers.
      const double step = double(model.image.temporalPatch) /
                          model.sampling.fps * model.videoPositionsPerSecond;
      if (std::fabs(step - std::round(step)) > 1e-9)
        return absl::InvalidArgumentError(absl::StrCat(
            "data.video_fps: ", job.videoFps, " gives ", model.modelType,
            " a fractional temporal position step (", model.image.temporalPatch,
            " / fps x position_id_per_seconds ", model.videoPositionsPerSecond,
            " = ", step,
            "), which transformers keeps fractional and veomni's integer "
            "positions cannot; choose a rate that makes it whole"));
    }
    data->media = std::make_unique<MediaModel>(model);
    options.media = data->media.get();
  }
  if (job.onBadSample != "stop" && job.onBadSample != "skip")
    return absl::InvalidArgumentError(
        absl::StrCat("data.on_bad_sample: expected stop or skip, got '",
                     job.onBadSample, "'"));
  options.skipBad = job.onBadSample == "skip";
  options.threads = static_cast<int>(std::min<int64_t>(job.dataWorkers, 64));
  if (!job.tokenizer.empty()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
        Tokenizer::Load(job.tokenizer);
    if (!tok.ok())
      return absl::Status(
          tok.status().code(),
          absl::StrCat("data.tokenizer: ", tok.status().message()));
    data->tokenizer = *std::move(tok);
    options.tokenizer = data->tokenizer.get();
  }
  // The chat format: the recipe's, or the model family's.
  if (!job.chatDate.empty())
    if (absl::Status s = SetChatDate(job.chatDate); !s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("data.chat_date: ", s.message()));
  if (job.chat == "auto") {
    if (std::optional<ChatFormat> f = ChatFormatOf(job.modelType))
      options.chat = *f;
  } else {
    absl::StatusOr<ChatFormat> f = ParseChatFormat(job.chat);
    if (!f.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("data.chat: ", f.status().message()));
    options.chat = *f;
  }
  // The end-of-text token after text samples.
  if (job.eos != "none" && job.eos != "auto" && !options.tokenizer)
    return absl::InvalidArgumentError(
        absl::StrCat("data.eos: '", job.eos, "' needs data.tokenizer"));
  if (options.tokenizer && job.eos == "auto") {
    for (const char *name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
      if (options.eos < 0)
        options.eos = options.tokenizer->TokenId(name);
  } else if (options.tokenizer && job.eos != "none") {
    options.eos = options.tokenizer->TokenId(job.eos);
    if (options.eos < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "data.eos: ", job.tokenizer, " has no token '", job.eos, "'"));
  }
  std::vector<double> weights;
  for (const std::string &w : SplitList(weightList)) {
    double v;
    if (!absl::SimpleAtod(w, &v))
      return absl::InvalidArgumentError(
          absl::StrCat("data.weights: '", w, "' is not a number"));
    weights.push_back(v);
  }
  VEOMNI_ASSIGN_OR_RETURN(data->stream,
                          DataStream::Open(SplitList(paths), weights, options,
                                           static_cast<uint64_t>(job.seed)));
  if (media) {
    VEOMNI_ASSIGN_OR_RETURN(MediaBudget budget,
                            MediaBudgetOf(program, *data->media));
    data->mediaPacker = std::make_unique<MediaPacker>(
        *data->stream, *data->media, budget, job.onLongSample == "truncate");
  } else {
    VEOMNI_ASSIGN_OR_RETURN(data->rows, TextBatchRows(program));
    data->packer = std::make_unique<Packer>(*data->stream, job.seqLen);
  }
  return data;
}

} // namespace

absl::StatusOr<std::unique_ptr<StepRunner>> StepRunnerFor(Executor &executor) {
  VEOMNI_ASSIGN_OR_RETURN(Trainer trainer, Trainer::Create(executor));
  return std::unique_ptr<StepRunner>(
      new ProgramRunner(executor, std::move(trainer)));
}

std::unique_ptr<StepRunner> StepRunnerFor(PipelineTrainer &trainer,
                                          Communicator &world) {
  return std::make_unique<StageRunner>(trainer, world);
}

absl::Status RunTraining(Executor &executor, const JobSettings &job,
                         std::FILE *out, Executor *eval) {
  VEOMNI_ASSIGN_OR_RETURN(std::unique_ptr<StepRunner> runner,
                          StepRunnerFor(executor));
  return RunTraining(*runner, job, out, eval);
}

absl::Status RunTraining(StepRunner &ex, const JobSettings &job, std::FILE *out,
                         Executor *eval) {
  const bool reporter = ex.Rank() == 0;
  auto print = [&](const std::string &line) {
    if (reporter) {
      std::fputs(line.c_str(), out);
      std::fflush(out);
    }
  };
  // Parameters and optimizer state: weights or a seeded init (a checkpoint
  // replaces both below).
  if (job.weights.empty())
    VEOMNI_RETURN_IF_ERROR(ex.InitParameters(job.seed));
  else
    VEOMNI_RETURN_IF_ERROR(ex.LoadWeights(job.weights, job.seed));
  if (!job.loraAdapter.empty())
    VEOMNI_RETURN_IF_ERROR(ex.LoadAdapters(job.loraAdapter));
  VEOMNI_RETURN_IF_ERROR(ex.InitState());

  // Data: every rank reads the same global batches.
  std::unique_ptr<TextData> text;
  std::unique_ptr<SafetensorsFile> batches;
  if (absl::EndsWith(job.dataPath, ".safetensors")) {
    VEOMNI_ASSIGN_OR_RETURN(batches, SafetensorsFile::Open(job.dataPath));
    VEOMNI_RETURN_IF_ERROR(CountBatches(ex.Inputs(), *batches).status());
  } else if (!job.dataPath.empty()) {
    VEOMNI_ASSIGN_OR_RETURN(
        text, OpenTextData(job, job.dataPath, job.dataWeights, ex.Inputs()));
  }
  // Held-out data: read from its start at every evaluation.
  std::unique_ptr<TextData> held;
  std::string heldStart;
  if (!job.evalPath.empty()) {
    if (!eval)
      return absl::InvalidArgumentError(
          "data.eval_path: the job has no evaluation program (compile the "
          "recipe with data.eval_path set)");
    absl::StatusOr<std::unique_ptr<TextData>> opened =
        OpenTextData(job, job.evalPath, "", *eval);
    if (!opened.ok())
      return absl::Status(
          opened.status().code(),
          absl::StrCat("data.eval_path: ", opened.status().message()));
    held = *std::move(opened);
    heldStart = held->Position();
  }

  std::error_code ec;
  fs::create_directories(job.outputDir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", job.outputDir, ": ", ec.message()));
  if (job.onNonfinite != "stop" && job.onNonfinite != "skip")
    return absl::InvalidArgumentError(
        absl::StrCat("train.on_nonfinite: expected stop or skip, got '",
                     job.onNonfinite, "'"));
  // Steps skipped for values that were not finite: the optimizer's step
  // (the schedule's and Adam's bias correction's t) is step - skipped.
  int64_t skipped = 0;
  int64_t start = 0;
  std::string resumeFrom =
      job.resume == "auto" ? LatestCheckpoint(job.outputDir) : job.resume;
  if (!resumeFrom.empty()) {
    std::map<std::string, std::string> meta;
    VEOMNI_ASSIGN_OR_RETURN(start, ex.Load(resumeFrom, meta));
    if (auto it = meta.find("veomni.skipped_steps"); it != meta.end())
      if (!absl::SimpleAtoi(it->second, &skipped) || skipped < 0 ||
          skipped > start)
        return absl::InvalidArgumentError(
            absl::StrCat(resumeFrom, ": veomni.skipped_steps is '", it->second,
                         "', not a count of steps up to ", start));
    if (text) {
      std::string position = meta["veomni.data_position"];
      // Checkpoints before the data streams kept a .vtd's document and token.
      if (position.empty() && meta.count("veomni.data_document"))
        position = absl::StrCat(meta["veomni.data_document"], " ",
                                meta["veomni.data_document"], ":1:0|",
                                meta["veomni.data_token"]);
      absl::Status s = absl::OkStatus();
      if (!position.empty())
        s = text->Restore(position);
      if (!s.ok())
        return absl::InvalidArgumentError(absl::StrCat(
            resumeFrom, ": ", s.message(), " (data.path ", job.dataPath, ")"));
    }
    print(absl::StrCat("resumed from ", resumeFrom, " at step ", start, "\n"));
  }
  if (text) {
    text->StartLoader();
  }

  // metrics.jsonl: rank 0's, for the whole job.
  std::string metricsPath = absl::StrCat(job.outputDir, "/metrics.jsonl");
  std::ofstream metrics;
  if (reporter) {
    metrics.open(metricsPath, start > 0 ? std::ios::app : std::ios::trunc);
    if (!metrics)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", metricsPath));
  }
  // The profile is written after step 2: a path that cannot be written is
  // an error now, not after the steps before it.
  if (!job.profile.empty()) {
    std::string path = ProfilePath(job.profile, ex.Rank());
    const bool existed = std::ifstream(path).good();
    if (!std::ofstream(path, std::ios::app))
      return absl::PermissionDeniedError(
          absl::StrCat("train.profile: cannot write ", path));
    if (!existed)
      std::remove(path.c_str());
  }
  if (ex.WorldSize() > 1)
    print(absl::StrCat("job of ", ex.WorldSize(), " ranks: ", job.mesh,
                       " (per-rank figures below)\n"));
  print(job.summary + "\n");

  auto save = [&](int64_t step) -> absl::Status {
    std::map<std::string, std::string> meta;
    if (text)
      meta["veomni.data_position"] = text->prefetch->Position();
    if (skipped > 0)
      meta["veomni.skipped_steps"] = std::to_string(skipped);
    return ex.Save(
        CheckpointPath(job.outputDir, step), step, meta,
        {job.config, uint64_t(job.maxShardBytes), job.adapterConfig});
  };

  const int64_t tokensPerStep = job.TokensPerStep();
  // A job's ranks print through mpirun, which gives them a terminal: only a
  // single process redraws its progress line.
  const bool tty = ex.WorldSize() == 1 && isatty(fileno(out));
  std::vector<std::pair<int64_t, double>> curve, heldCurve;
  // The held-out loss of the parameters as they are: the first
  // eval_batches global batches of data.eval_path through the forward
  // program, their losses averaged.
  auto evaluate = [&]() -> absl::StatusOr<double> {
    VEOMNI_RETURN_IF_ERROR(ex.CopyParametersTo(*eval));
    VEOMNI_RETURN_IF_ERROR(held->Restore(heldStart));
    double sum = 0;
    for (int64_t b = 0; b < job.evalBatches; ++b) {
      VEOMNI_ASSIGN_OR_RETURN(LoadedBatch batch, held->Make());
      VEOMNI_RETURN_IF_ERROR(held->Fill(*eval, batch));
      VEOMNI_RETURN_IF_ERROR(eval->Run());
      VEOMNI_ASSIGN_OR_RETURN(HostTensor loss,
                              eval->ReadHost(eval->program().outputs[0]));
      sum += LoadF(loss.view, 0);
    }
    return sum / double(job.evalBatches);
  };
  // The profiled step: the second of the run, past the first's warm-up.
  const int64_t profileStep =
      job.profile.empty() ? -1 : std::min(start + 2, job.steps);
  KernelTrace trace;
  auto t0 = std::chrono::steady_clock::now(), lastStep = t0;
  double lastComm = ex.CommSeconds(), lastWait = ex.CommWaitSeconds();
  for (int64_t step = start + 1; step <= job.steps; ++step) {
    // One optimizer step: the micro-batches, the loss their mean.
    // The time the step spent on its data: waiting for the loader and
    // copying the batches in.
    double dataSeconds = 0;
    auto fill = [&](int64_t micro) -> absl::Status {
      auto t0 = std::chrono::steady_clock::now();
      int64_t index = (step - 1) * job.accumulationSteps + micro;
      Executor &in = ex.Inputs();
      absl::Status status;
      if (batches) {
        status = FillInputs(in, *batches, index);
      } else if (text) {
        absl::StatusOr<LoadedBatch> batch = text->prefetch->Next();
        status = batch.ok() ? text->Fill(in, *batch) : batch.status();
      } else {
        status = SyntheticBatch(in, job.seed * 1000003 + index);
      }
      dataSeconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
      return status;
    };
    if (step == profileStep)
      ex.SetTrace(&trace);
    absl::StatusOr<StepMetrics> r =
        ex.Step(step - skipped, job.accumulationSteps, fill);
    if (!r.ok())
      return absl::Status(
          r.status().code(),
          absl::StrCat("step ", step, ": ", r.status().message()));
    if (step == profileStep) {
      ex.SetTrace(nullptr);
      std::string path = ProfilePath(job.profile, ex.Rank());
      VEOMNI_RETURN_IF_ERROR(
          WriteChromeTrace(trace, ex.ProgramNames(), ex.Rank(), path));
      print(absl::StrCat(
          tty ? "\n" : "", "profile of step ", step, " in ", path,
          " (open it in ui.perfetto.dev): ", ProfileSummary(trace, 12)));
    }
    StepMetrics m = *r;
    // Not finite: the step changed no weight and no optimizer state (the
    // program blends every update with the old value). Where the first
    // value that was not finite came from is found by running the last
    // micro-batch again; then the job stops, or goes on
    // (train.on_nonfinite: skip).
    if (!std::isfinite(m.loss) || !std::isfinite(m.gradNorm)) {
      std::string what =
          std::isfinite(m.loss)
              ? absl::StrCat("the gradient norm is ", m.gradNorm, " (loss ",
                             m.loss, "): a gradient overflowed or is NaN")
              : absl::StrCat("the loss is ", m.loss);
      absl::StatusOr<std::string> origin = ex.Probe();
      if (!origin.ok())
        return absl::Status(origin.status().code(),
                            absl::StrCat("step ", step, ": ", what,
                                         "; looking for its origin: ",
                                         origin.status().message()));
      absl::StrAppend(
          &what, origin->empty()
                     ? " (the last micro-batch, run again, stays finite: an "
                       "earlier one's values were not)"
                     : absl::StrCat("; the first value that was not finite "
                                    "came from ",
                                    *origin));
      if (job.onNonfinite == "stop")
        return absl::DataLossError(absl::StrCat(
            "step ", step, ": ", what,
            ". No weight changed; the job stops (train.on_nonfinite: stop), "
            "and its last checkpoint holds the last good state (a lower "
            "train.lr may help)"));
      ++skipped;
      print(absl::StrCat(tty ? "\n" : "", "step ", step, " skipped: ", what,
                         " (train.on_nonfinite: skip)\n"));
      if (reporter)
        metrics << absl::StrFormat("{\"step\": %d, \"skipped\": true}", step)
                << "\n"
                << std::flush;
      if (job.checkpointInterval > 0 && step % job.checkpointInterval == 0 &&
          step != job.steps)
        VEOMNI_RETURN_IF_ERROR(save(step));
      continue;
    }
    curve.push_back({step, m.loss});
    // This step's own time for the metrics; the running mean for the ETA.
    auto now = std::chrono::steady_clock::now();
    double stepSeconds = std::chrono::duration<double>(now - lastStep).count();
    lastStep = now;
    // On several ranks, the part of the step spent in collectives.
    // On several ranks, the time spent in collectives, and how much of it
    // the kernels waited for (collectives on their own thread hide the
    // rest behind compute).
    double comm = ex.CommSeconds(), waited = ex.CommWaitSeconds();
    std::string commField =
        ex.WorldSize() > 1
            ? absl::StrFormat(", \"comm_s\": %.6f, \"comm_wait_s\": %.6f",
                              comm - lastComm, waited - lastWait)
            : "";
    lastComm = comm;
    lastWait = waited;
    // The held-out loss: every eval_interval steps and at the end.
    std::string evalField;
    std::optional<double> heldLoss;
    if (held && ((job.evalInterval > 0 && step % job.evalInterval == 0) ||
                 step == job.steps)) {
      absl::StatusOr<double> e = evaluate();
      if (!e.ok())
        return absl::Status(e.status().code(),
                            absl::StrCat("step ", step, ": held-out loss: ",
                                         e.status().message()));
      heldLoss = *e;
      heldCurve.push_back({step, *e});
      auto done = std::chrono::steady_clock::now();
      evalField =
          absl::StrFormat(", \"eval_loss\": %#.9g, \"eval_s\": %.6f", *e,
                          std::chrono::duration<double>(done - now).count());
      lastStep = done; // the next step's time leaves the evaluation out
    }
    double perStep =
        std::chrono::duration<double>(now - t0).count() / double(step - start);
    if (reporter)
      metrics << absl::StrFormat(
                     "{\"step\": %d, \"loss\": %#.9g, \"grad_norm\": %#.9g, "
                     "\"lr\": %.9g, \"tokens_per_s\": %.1f, \"step_s\": %.6f, "
                     "\"data_s\": %.6f%s%s}",
                     step, m.loss, m.gradNorm, m.lr,
                     tokensPerStep / stepSeconds, stepSeconds, dataSeconds,
                     commField, evalField)
              << "\n"
              << std::flush;
    if (step % job.logInterval == 0 || step == job.steps) {
      int64_t eta = static_cast<int64_t>(perStep * (job.steps - step));
      int width = 24, done = int(width * step / job.steps);
      print(absl::StrCat(
          tty ? "\r" : "", "[", std::string(done, '#'),
          std::string(width - done, '.'), "] ",
          absl::StrFormat("step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e  "
                          "%.0f tok/s  eta %d:%02d",
                          step, job.steps, m.loss, m.gradNorm, m.lr,
                          tokensPerStep / perStep, eta / 60, eta % 60),
          tty ? "" : "\n"));
    }
    if (heldLoss)
      print(absl::StrFormat("%sheld-out loss %.4f at step %d (%d batch%s of "
                            "data.eval_path)\n",
                            tty ? "\n" : "", *heldLoss, step, job.evalBatches,
                            job.evalBatches == 1 ? "" : "es"));
    // Bad samples skipped (data.on_bad_sample: skip): said once, then
    // counted at the end.
    if (text && text->reportedSkips == 0 && text->stream->SkippedCount() > 0) {
      text->reportedSkips = text->stream->SkippedCount();
      for (size_t i = 0; i < text->stream->sources(); ++i)
        if (SkippedSamples s = text->stream->source(i).skipped(); s.count) {
          print(absl::StrCat(tty ? "\n" : "", "warning: skipping bad samples (",
                             s.first, ")\n"));
          break;
        }
    }
    if (job.checkpointInterval > 0 && step % job.checkpointInterval == 0 &&
        step != job.steps)
      VEOMNI_RETURN_IF_ERROR(save(step));
  }
  if (tty)
    print("\n");
  VEOMNI_RETURN_IF_ERROR(save(job.steps));
  // The loader stops before its counts are read: it may be packing ahead.
  if (text)
    text->prefetch.reset();
  if (reporter)
    WriteLossCurve(absl::StrCat(job.outputDir, "/loss_curve.svg"), curve,
                   heldCurve);
  if (skipped > 0)
    print(absl::StrCat("skipped ", skipped, " step", skipped == 1 ? "" : "s",
                       " whose values were not finite (train.on_nonfinite: "
                       "skip)\n"));
  if (text && text->stream->SkippedCount() > 0)
    print(absl::StrCat("skipped ", text->stream->SkippedCount(),
                       " bad samples (data.on_bad_sample: skip)\n"));
  if (text && text->mediaPacker) {
    const MediaPacker &mp = *text->mediaPacker;
    if (mp.oversized().count > 0)
      print(absl::StrCat("skipped ", mp.oversized().count,
                         " samples over the batch's budgets (the first: ",
                         mp.oversized().first, ")\n"));
    if (mp.truncated() > 0)
      print(absl::StrCat("truncated ", mp.truncated(),
                         " samples to a row (data.on_long_sample)\n"));
  }
  if (!curve.empty())
    print(absl::StrFormat("loss %.4f -> %.4f over steps %d..%d",
                          curve.front().second, curve.back().second,
                          curve.front().first, curve.back().first) +
          absl::StrCat("; checkpoint, metrics.jsonl and loss_curve.svg in ",
                       job.outputDir, "\n"));
  return absl::OkStatus();
}

} // namespace veomni::rt
