//===- Recipe.h - training recipes (YAML) -----------------------*- C++ -*-===//
//
// A recipe is a YAML mapping of sections (model, data, train, parallel,
// cluster) to settings, as in VeOmni; the settings are declared once, in
// frontends/RecipeSettings.def; any setting can be overridden on the command
// line with its dotted name (--train.lr 3e-4). Unknown settings are errors, so
// a typo never silently falls back to a default.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_COMPILER_RECIPE_H
#define VEOMNI_COMPILER_RECIPE_H

#include "frontends/RecipeSections.h"
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
  ModelSection model;
  DataSection data;
  TrainSection train;
  ParallelSection parallel;
  ClusterSection cluster;

  /// Reads `path`, then applies `overrides` ("train.lr" -> "3e-4"; the
  /// key "cluster" reads a cluster file's section, examples/clusters/). An
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

  /// The recipe as YAML that loads back to it: model.config and every
  /// setting whose value is not the default.
  std::string toYaml() const;

  /// One line per setting: its dotted name, meaning and expected value.
  static std::string settingsHelp();
};

/// "5GB" (10^9, as Hugging Face), "2GiB" (2^30), "500MB", "123" (bytes);
/// nullopt when `text` is not a size of at least one byte.
std::optional<uint64_t> parseByteSize(llvm::StringRef text);

struct ImportedModel;

/// Whether the recipe's mesh fits `model`: tp divides the attention and kv
/// heads, sp the sequence and the heads per tp rank, ep the experts (of a
/// mixture-of-experts model), the data-parallel ranks the batch, and pp
/// stages have layers. One error naming the recipe field, as veomni plan,
/// compile and train report it.
absl::Status checkMeshFits(const Recipe &r, const ImportedModel &model);

} // namespace mlir::veomni

#endif // VEOMNI_COMPILER_RECIPE_H
