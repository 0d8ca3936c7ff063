//===- RecipeSections.h - the sections of a training recipe -----*- C++ -*-===//
//
// A recipe is its sections: model, data, train, parallel and cluster. Each
// is a plain struct generated from RecipeSettings.def, and each is what the
// code that needs it takes (the importer the model and data sections, the
// training step the train section, veomni-apply-recipe the parallel
// section, the plan report the cluster section), so a setting is declared
// once: its YAML key, its default, its check and its help text.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_FRONTENDS_RECIPESECTIONS_H
#define VEOMNI_FRONTENDS_RECIPESECTIONS_H

#include <array>
#include <cstdint>
#include <string>

namespace mlir::veomni::recipe {
using Int = int64_t;
using Number = double;
using Text = std::string;
using Pair = std::array<double, 2>;
} // namespace mlir::veomni::recipe

namespace mlir::veomni {

#define VEOMNI_FIELD(Type, member, key, def, ...) recipe::Type member = def;

/// model: what to train.
struct ModelSection {
#define VEOMNI_MODEL_SETTING VEOMNI_FIELD
#include "frontends/RecipeSettings.def"
};

/// data: what a step reads.
struct DataSection {
#define VEOMNI_DATA_SETTING VEOMNI_FIELD
#include "frontends/RecipeSettings.def"
  /// Micro-batches per optimizer step (global_batch_size / batch_size;
  /// after Recipe::load, global_batch_size is a multiple of batch_size).
  int64_t accumulationSteps() const {
    return globalBatchSize > 0 ? globalBatchSize / batchSize : 1;
  }
};

/// train: the optimizer, its schedule, checkpoints, remat.
struct TrainSection {
#define VEOMNI_TRAIN_SETTING VEOMNI_FIELD
#include "frontends/RecipeSettings.def"
  /// max_shard_size in bytes (set by Recipe::load).
  uint64_t maxShardBytes = 5000000000ull;
};

/// parallel: the device mesh and the pipeline schedule.
struct ParallelSection {
#define VEOMNI_PARALLEL_SETTING VEOMNI_FIELD
#include "frontends/RecipeSettings.def"
  int64_t meshSize() const { return dpReplicate * dpShard * tp * sp * ep * pp; }
};

/// cluster: what `veomni plan --report` predicts step times with.
struct ClusterSection {
#define VEOMNI_CLUSTER_SETTING VEOMNI_FIELD
#include "frontends/RecipeSettings.def"
};

#undef VEOMNI_FIELD

} // namespace mlir::veomni

#endif // VEOMNI_FRONTENDS_RECIPESECTIONS_H
