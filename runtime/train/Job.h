//===- Job.h - an ahead-of-time training job --------------------*- C++ -*-===//
//
// `veomni compile RECIPE.yaml -o job/` writes a job folder, and
// `veomni-run job/` (or `mpirun -np N veomni-run job/`) trains from it with
// the runtime alone, which links no LLVM or MLIR:
//
//   job/manifest.json   the run settings below (format "veomni-job")
//   job/step.vmb        the training step every rank runs (one program,
//                       partitioned for the recipe's mesh)
//   job/config.json     the model's config, copied into each checkpoint
//
// With pipeline stages, step.vmb is replaced by one program per chunk and
// part of the step (forward_chunk0.vmb, stage0_update.vmb, ...), which the
// manifest's "pipeline" object lists with the schedule's action lists.
//
// What the program was compiled for (mesh, batch, sequence length, steps
// of the learning-rate schedule, accumulation) is fixed; where the data,
// weights and outputs are, and how often to log and checkpoint, a run may
// change (`veomni-run job/ --data.path P`).
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_JOB_H
#define VEOMNI_RUNTIME_TRAIN_JOB_H

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace veomni::rt {

struct JobSettings {
  // Fixed by the program.
  std::string modelType;
  int64_t worldSize = 1;
  std::string mesh;    ///< "dp_replicate=1 dp_shard=2 tp=1 sp=1 ep=1"
  std::string summary; ///< the compiler's line about the program
  int64_t seqLen = 1, batchSize = 1, accumulationSteps = 1, steps = 1;
  int64_t seed = 0;
  // A run may change these.
  std::string config; ///< config.json copied into checkpoints; "" for none
  std::string weights, dataPath, outputDir, resume;
  /// How data.path's sources are read (runtime/data/Stream.h): a list of
  /// mixing weights ("" equal), the tokenizer, the chat format (auto,
  /// chatml, llama3, gemma, deepseek, harmony), the end-of-text token (auto,
  /// none, a token) and what a bad sample does (stop, skip).
  std::string dataWeights, tokenizer, chat = "auto", eos = "auto",
                                      onBadSample = "stop";
  /// Harmony's "Current date" (YYYY-MM-DD; "": the day the run starts).
  std::string chatDate;
  /// Held-out sources and how often and on how many global batches their
  /// loss is taken; evalProgram is the job folder's forward program for
  /// it ("" for none: compiled with the step when data.eval_path is set).
  std::string evalPath, evalProgram;
  int64_t evalInterval = 0, evalBatches = 4;
  /// Images: the pixel counts Qwen2-VL's smart resize keeps them within;
  /// a sample longer than a row: truncate (text) or skip.
  int64_t minPixels = 56 * 56, maxPixels = 28 * 28 * 1280;
  std::string onLongSample = "truncate";
  int64_t dataWorkers = 2; ///< threads encoding JSONL samples ahead
  /// Videos: frames a second ("2"), the most frames, a frame's pixel
  /// bounds and all frames' budget.
  std::string videoFps = "2";
  int64_t videoMaxFrames = 768, videoMinPixels = 128 * 28 * 28,
          videoMaxPixels = 28 * 28 * 768, videoTotalPixels = 90316800;
  /// "true": a video's sound track goes in with it (the omni models).
  std::string audioInVideo = "false";
  /// "true": Gemma 3's images are followed by their pan-and-scan crops.
  std::string panAndScan = "false";
  /// LoRA: PEFT adapters to start from (a folder with
  /// adapter_model.safetensors, or the file; "" for none), and the
  /// adapter_config.json checkpoints carry (written by the compiler).
  std::string loraAdapter, adapterConfig;
  /// A Chrome trace of one step's kernels goes here ("" for none;
  /// runtime/train/Profile.h).
  std::string profile;
  /// The backend: "cpu", "cuda" or "cuda:N" (CreateDevice).
  std::string device = "cpu";
  int64_t logInterval = 1, checkpointInterval = 0;
  std::string onNonfinite = "stop"; ///< or "skip" (train.on_nonfinite)
  int64_t maxShardBytes = 5000000000;

  /// With pipeline stages: the programs (files in the job folder) and the
  /// schedule that runs them (runtime/train/Pipeline.h); stages == 1 for
  /// one training-step program (step.vmb).
  struct StageFile {
    std::string name, file;
    int64_t stage = 0, chunk = -1;
  };
  struct Pipeline {
    std::string schedule;
    int64_t stages = 1, microBatches = 1;
    std::vector<StageFile> programs;
    std::vector<std::vector<std::string>> actions;
    std::vector<std::string> tiedParams;
  } pipeline;

  /// Tokens of one optimizer step, over all ranks.
  int64_t TokensPerStep() const {
    return batchSize * accumulationSteps * seqLen;
  }
};

constexpr const char *kJobManifest = "manifest.json";
constexpr const char *kJobProgram = "step.vmb";
constexpr const char *kJobConfig = "config.json";
constexpr const char *kJobEvalProgram = "eval.vmb";

/// Writes `dir` (created if needed): the manifest, `program` (step.vmb)
/// and a copy of `job.config` (the manifest then names the copy).
absl::Status WriteJob(const std::string &dir, const JobSettings &job,
                      absl::string_view program);
/// The same for a pipeline: `programs` holds the bytes of each of
/// job.pipeline.programs, in its order; or for a job with an evaluation
/// program: the step's, then job.evalProgram's.
absl::Status WriteJob(const std::string &dir, const JobSettings &job,
                      const std::vector<std::string> &programs);

/// Reads `dir`/manifest.json; paths in it are taken as written. Errors name
/// the file and the field.
absl::StatusOr<JobSettings> ReadJob(const std::string &dir);

/// Applies `--section.key value` overrides of the settings a run may
/// change; an unknown or fixed one is an error naming it.
absl::Status
OverrideJob(JobSettings &job,
            const std::vector<std::pair<std::string, std::string>> &overrides);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_JOB_H
