//===- Importer.h - import a Hugging Face config.json -----------*- C++ -*-===//
//
// config.json -> a module whose `func.func @forward(params..., inputs...)
// -> tensor<f32>` computes the training loss with global shapes and no
// parallelism. Each family also declares its model-centric parallel plan: a
// table of HF name patterns saying which parameters split on tp (column and
// row pairs), on ep (experts), or stay whole; later passes derive every
// other sharding from it.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_FRONTENDS_IMPORTER_H
#define VEOMNI_FRONTENDS_IMPORTER_H

#include "frontends/ModelBuilder.h"
#include "frontends/RecipeSections.h"

#include "absl/status/statusor.h"

#include <string>
#include <vector>

namespace mlir::veomni {

/// Where a parameter lives under tensor and expert parallelism.
enum class Placement {
  Replicated, ///< whole on every tp/ep rank (norms, routers, biases of rows)
  Column,     ///< dim 0 split on tp (q/k/v, gate/up, column biases)
  Row,        ///< dim 1 split on tp (o_proj, down_proj): pairs with Column
  Vocab,      ///< dim 0 (vocabulary) split on tp: embedding and LM head
  Expert,     ///< dim 0 (experts) split on ep
};
llvm::StringRef placementName(Placement p);

/// One line of a parallel plan: HF names matching the glob `pattern` (`*`
/// matches any run of characters) are placed so. The first match wins.
struct PlanRule {
  std::string pattern;
  Placement placement;
};

/// What to import: a recipe's model section (dtype, num_layers) and data
/// section (batch, sequence, image patches and audio frames), which the
/// command-line tools fill from their flags.
struct ImportOptions {
  ModelSection model;
  DataSection data;
  /// Also return the logits [B, S, V] after the loss (parity tests).
  bool returnLogits = false;
};

struct ImportedModel {
  OwningOpRef<ModuleOp> module;
  std::string modelType;
  /// Parameters, then batch inputs, in signature order.
  std::vector<ArgumentInfo> arguments;
  std::vector<PlanRule> plan;
  /// For active-parameter counts of MoE models (0 when dense).
  int64_t numExperts = 0, expertsPerToken = 0;
  /// The decoder's sizes that parallel plans must divide.
  int64_t numHeads = 0, numKVHeads = 0, numLayers = 0;
  /// Per decoder layer, what sets its cost apart ("moe/window 0"): the
  /// plan search extrapolates over layers that repeat.
  std::vector<std::string> layerKinds;
  /// The fewest decoder layers the model imports with (model.num_layers).
  int64_t fewestLayers = 1;
  /// One line per config key veomni has never heard of ("<file>: field
  /// 'a.b': ..."): ignored, but worth a look.
  std::vector<std::string> warnings;
};

/// Imports `path`. On failure the status holds one line naming the file and
/// the field (or option) at fault.
absl::StatusOr<ImportedModel> importHFConfig(MLIRContext &context,
                                             llvm::StringRef path,
                                             const ImportOptions &options);

/// The model types importHFConfig understands.
std::vector<std::string> supportedModelTypes();

/// The placement of `name` under `plan`; nullopt when no rule matches.
std::optional<Placement> placementOf(const std::vector<PlanRule> &plan,
                                     llvm::StringRef name);

/// Parameter counts per module (layer indices folded into `*`), with the
/// active count (a token uses k of E experts).
struct ParameterSummary {
  struct Row {
    std::string module;
    int64_t total = 0, active = 0;
  };
  std::vector<Row> rows;
  int64_t total = 0, active = 0;
};
ParameterSummary summarizeParameters(const ImportedModel &model);

} // namespace mlir::veomni

#endif // VEOMNI_FRONTENDS_IMPORTER_H
