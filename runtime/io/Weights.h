//===- Weights.h - model weights as Hugging Face stores them ----*- C++ -*-===//
//
// A model's tensors live where transformers' save_pretrained puts them: one
// model.safetensors, or shards model-0000k-of-0000n.safetensors listed by
// model.safetensors.index.json, in a folder with the config. A WeightSet
// opens any of these (a file, an index, or the folder) and finds tensors by
// name; writing produces the same layout, with every stacked parameter (MoE
// experts, `*` in the program's name) split into its per-index HF tensors.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_IO_WEIGHTS_H
#define VEOMNI_RUNTIME_IO_WEIGHTS_H

#include "runtime/io/Safetensors.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace veomni::rt {

class WeightSet {
public:
  /// Opens `path`: a .safetensors file, a model.safetensors.index.json, or a
  /// folder holding either. Every shard the index names is opened and every
  /// tensor it lists must be in its shard; errors name the file and field.
  static absl::StatusOr<WeightSet> Open(const std::string &path);
  /// A set of one file already open.
  static WeightSet Of(std::unique_ptr<SafetensorsFile> file);

  /// What was opened, for messages.
  const std::string &path() const { return path_; }
  struct Found {
    TensorView view;
    const std::string *file; ///< the file that holds it
  };
  std::optional<Found> Find(const std::string &name) const;
  /// A one-byte quantized tensor (SafetensorsFile::RawEntry), or nullopt.
  struct RawFound {
    const SafetensorsFile::RawEntry *entry;
    const uint8_t *data;
    const std::string *file;
  };
  std::optional<RawFound> FindRaw(const std::string &name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> Names() const;
  /// Every one-byte quantized tensor's name (FindRaw's), sorted.
  std::vector<std::string> RawNames() const;

private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string,
           std::pair<const SafetensorsFile *, const SafetensorsFile::Entry *>>
      tensors_;
  std::map<std::string, const SafetensorsFile *> raw_;
};

/// Loads every parameter of the program by its HF name, converting float
/// types. A stacked parameter (`*` in its name) gathers one tensor per index
/// of its first dimension. gpt-oss's MXFP4 experts (`<name>_blocks` and
/// `<name>_scales`, as OpenAI publishes them) are dequantized into the
/// parameter. A missing tensor or a shape mismatch is an error naming the
/// file, the tensor and the parameter.
absl::Status LoadParameters(Executor &executor, const WeightSet &weights);
absl::Status LoadParameters(Executor &executor, const SafetensorsFile &file);
/// WeightSet::Open(path), then LoadParameters.
absl::Status LoadWeights(Executor &executor, const std::string &path);

/// Loads every LoRA adapter of the program from PEFT's layout: `path` is
/// adapter_model.safetensors or a folder holding it, the tensors named
/// "base_model.model.<module>.lora_A.weight" (or without the prefix). An
/// adapter the file lacks, or of another shape, is an error naming it.
absl::Status LoadAdapters(Executor &executor, const std::string &path);

/// An error naming `file` and `tensor` where `view` (a float tensor) holds a
/// NaN or an infinity, with the first such element: weights and states that
/// are not finite would train to NaN, so loading refuses them.
absl::Status CheckFinite(const std::string &file, const std::string &tensor,
                         const TensorView &view);

/// PEFT's file shape of the LoRA adapter `name` held as `held`: a MoE
/// experts' adapter, held [E, r, in] (lora_A) or [E, out, r] (lora_B), is
/// stored as peft's ParamWrapper keeps it, [E r, in] and [out, r E] (B's
/// expert index minor); a Linear's is stored as held.
Shape PeftAdapterShape(const std::string &name, const Shape &held);
/// Copies adapter `name` between its held layout and peft's (converting
/// the dtype); shapes are checked, errors say what differs.
absl::Status AdapterToPeft(const std::string &name, const TensorView &held,
                           const TensorView &file);
absl::Status AdapterFromPeft(const std::string &name, const TensorView &file,
                             const TensorView &held);

/// The HF tensors of `name` (a parameter, or a gradient named after one):
/// itself, or for a stacked name one view per index of dim 0 with `*`
/// replaced by the index. The views alias `view`.
/// Dequantizes MXFP4 `blocks` (U8 [E, R, G, 16], two FP4 e2m1 values a
/// byte, low nibble first) with `scales` (U8 [E, R, G], exponents biased by
/// 127) into `out` [E, G * 32, R], transposed as transformers' gpt-oss
/// loader does. Shapes are checked; errors say what differs.
absl::Status DequantizeMxfp4(const uint8_t *blocks, const Shape &blockShape,
                             const uint8_t *scales, const Shape &scaleShape,
                             const TensorView &out);

std::vector<NamedTensor> SplitStacked(const std::string &name,
                                      const TensorView &view);

/// Writes `tensors` into the folder `dir` as save_pretrained does:
/// model.safetensors, or when they exceed `maxShardBytes`, shards
/// model-0000k-of-0000n.safetensors and model.safetensors.index.json.
/// Each file is written atomically; `metadata` goes into every shard.
absl::Status WriteWeights(const std::string &dir,
                          const std::vector<NamedTensor> &tensors,
                          uint64_t maxShardBytes,
                          const std::map<std::string, std::string> &metadata);

/// Writes the program's named outputs to `path`: loss, logits, grad_norm,
/// and every gradient as grad.<HF name> (stacked ones split per index).
absl::Status SaveOutputs(const Executor &executor, const std::string &path);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_IO_WEIGHTS_H
