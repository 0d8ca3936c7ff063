//===- Checkpoint.h - checkpoint folders, whole tensors ---------*- C++ -*-===//
//
// A checkpoint-N/ folder is a Hugging Face model folder (config.json, the
// parameters under their HF names, experts one tensor per expert, sharded
// above a size) plus optimizer.safetensors, whose metadata holds the step,
// or, for a LoRA run, a PEFT adapter folder (adapter_model.safetensors and
// adapter_config.json: the base weights do not change and are not
// written) plus optimizer.safetensors; the metadata holds the step,
// the data position and `veomni.tensors_hash`: the sum over every tensor
// of the folder of FNV-1a(name, bytes). The hash does not depend on the
// order tensors are listed or written in, so a checkpoint written by one
// program (one rank, a partitioned step, a pipeline's stages) is verified
// by any other. These functions work on whole host tensors; Trainer and
// PipelineTrainer gather and slice.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_TRAIN_CHECKPOINT_H
#define VEOMNI_RUNTIME_TRAIN_CHECKPOINT_H

#include "runtime/core/Tensor.h"

#include "absl/status/statusor.h"

#include <map>
#include <string>
#include <vector>

namespace veomni::rt {

struct CheckpointTensor {
  std::string name; ///< a parameter's HF name (stacked: `*`) or a state's
  bool param = false;
  TensorView view; ///< whole, in host memory
  /// A LoRA adapter: in adapter_model.safetensors under PEFT's name
  /// (kPeftPrefix + name), not among the model's weights.
  bool adapter = false;
};

/// PEFT's prefix of an adapter tensor's name in adapter_model.safetensors.
inline constexpr const char *kPeftPrefix = "base_model.model.";
inline constexpr const char *kAdapterFile = "adapter_model.safetensors";
inline constexpr const char *kAdapterConfigFile = "adapter_config.json";

struct CheckpointFiles {
  std::string config; ///< the model's config.json, copied in; "" for none
  uint64_t maxShardBytes = 5000000000ull;
  /// A LoRA run's adapter_config.json (PEFT's), written beside the
  /// adapters; "" for none.
  std::string adapterConfig;
};

/// Writes the folder `dir` atomically (a temporary folder renamed into
/// place): config.json, `tensors`' parameters as HF weights and their
/// states in optimizer.safetensors, with `metadata`, the step and the hash.
absl::Status WriteCheckpoint(const std::string &dir, int64_t step,
                             const std::vector<CheckpointTensor> &tensors,
                             const std::map<std::string, std::string> &metadata,
                             const CheckpointFiles &files);

/// Reads `dir`: verifies the hash over every tensor in it, then copies each
/// of `wanted` (its view gives the name's expected dtype and shape, and the
/// host memory to fill). Returns the step; `metadata` gets the optimizer
/// file's metadata. Nothing is written into `wanted` unless every tensor
/// is found with its dtype and shape and the hash matches.
absl::StatusOr<int64_t>
ReadCheckpoint(const std::string &dir,
               const std::vector<CheckpointTensor> &wanted,
               std::map<std::string, std::string> &metadata);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_TRAIN_CHECKPOINT_H
