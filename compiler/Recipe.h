//===- Recipe.h - training recipes (YAML) -----------------------*- C++ -*-===//
//
// A recipe is a YAML mapping of sections (model, data, train) to settings,
// as in VeOmni; any setting can be overridden on the command line with its
// dotted name (--train.lr 3e-4). Unknown settings are errors, so a typo
// never silently falls back to a default.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_COMPILER_RECIPE_H
#define VEOMNI_COMPILER_RECIPE_H

#include "llvm/ADT/StringRef.h"

#include "absl/status/statusor.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::veomni {

struct Recipe {
  std::string path; ///< the file it was read from, for messages
  // model
  std::string config;
  std::string weights; ///< empty: seeded init
  std::string dtype = "f32";
  int64_t seed = 0;
  int64_t numLayers = -1;
  // data
  std::string data; ///< .vtd, batch .safetensors, or empty: synthetic
  int64_t seqLen = 128, batchSize = 1, imagePatches = 16, audioFrames = 32;
  /// Sequences per optimizer step; a multiple of batchSize (the micro
  /// batch). 0: equal to batchSize.
  int64_t globalBatchSize = 0;
  // train
  int64_t steps = 100, warmupSteps = 0, logInterval = 1, checkpointInterval = 0;
  double lr = 1e-3, minLrRatio = 0.0, weightDecay = 0.1, beta1 = 0.9,
         beta2 = 0.95, eps = 1e-8, maxGradNorm = 1.0;
  std::string outputDir = "runs/veomni";
  std::string resume; ///< a checkpoint, "auto" (latest in outputDir), or ""
  std::string remat = "none"; ///< none, selective or full
  /// Checkpoint weights above this are sharded (Hugging Face's layout).
  std::string maxShardSize = "5GB";
  uint64_t maxShardBytes = 5000000000ull;
  // parallel: mesh sizes, VeOmni's names (ulysses is an alias of sp)
  int64_t dpReplicate = 1, dpShard = 1, tp = 1, sp = 1, ep = 1, pp = 1;
  int64_t worldSize = 0; ///< 0: the product of the mesh sizes
  /// Pipeline schedule (1f1b, interleaved, zb-h1) and model chunks per
  /// stage (interleaved); micro-batches are data.global_batch_size /
  /// data.batch_size.
  std::string ppSchedule = "1f1b";
  int64_t ppChunks = 1;
  // cluster: what `veomni plan --report` predicts step times with: the
  // accelerator's dense peak and the fraction a step reaches, and per
  // link the bandwidth one rank sends at and the latency of a hop (tp, sp
  // and ep inside a node; data-parallel and pipeline axes across nodes).
  double peakTflops = 989, mfu = 0.4;
  double intraNodeGBps = 150, interNodeGBps = 25;
  double intraNodeLatencyUs = 5, interNodeLatencyUs = 20;
  int64_t meshSize() const { return dpReplicate * dpShard * tp * sp * ep * pp; }

  /// Reads `path`, then applies `overrides` ("train.lr" -> "3e-4"). An
  /// error is one line naming the file and the field.
  static absl::StatusOr<Recipe>
  load(const std::string &path,
       const std::vector<std::pair<std::string, std::string>> &overrides);

  /// The recipe named on a command line (`recipe.yaml --a.b value ...`),
  /// loaded with its overrides; `ignored` flags are skipped (e.g. plan's
  /// --report).
  static absl::StatusOr<Recipe>
  fromCommandLine(const std::vector<std::string> &args,
                  const std::vector<std::string> &ignored);

  /// One line per setting: its dotted name, meaning and expected value.
  static std::string settingsHelp();
};

/// "5GB" (10^9, as Hugging Face), "2GiB" (2^30), "500MB", "123" (bytes);
/// nullopt when `text` is not a size of at least one byte.
std::optional<uint64_t> parseByteSize(llvm::StringRef text);

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_RECIPE_H
