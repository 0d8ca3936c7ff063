//===- Families.h - model families and their building blocks ----*- C++ -*-===//
//
// Internal to frontends/: the configs of the decoder, vision and audio
// building blocks (parsed with Hugging Face field semantics), the functions
// that build them with a ModelBuilder, and their parallel plans.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_FRONTENDS_FAMILIES_H
#define VEOMNI_FRONTENDS_FAMILIES_H

#include "frontends/ConfigReader.h"
#include "frontends/Importer.h"
#include "frontends/ModelBuilder.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::veomni {

/// The largest size a config or an import option may give (a width, a
/// count of heads or experts, tokens a step): products of a few of them
/// stay far from 64-bit overflow, and the errors come before anything is
/// built.
inline constexpr int64_t kMaxImportSize = int64_t(1) << 24;
/// The most repeated blocks (decoder layers, encoder blocks) a config may
/// give; published models have a few hundred at most, and each is built.
inline constexpr int64_t kMaxImportLayers = 4096;

/// `value` of field `key` is a size: positive, and at most kMaxImportSize
/// (kMaxImportLayers for a count of layers); otherwise `r` fails naming it.
inline void requireSize(ConfigReader &r, llvm::StringRef key, int64_t value) {
  const int64_t max = key.ends_with("layers") || key == "depth"
                          ? kMaxImportLayers
                          : kMaxImportSize;
  if (r.failed())
    return;
  if (value <= 0)
    r.fail(key, "must be positive, got " + std::to_string(value));
  else if (value > max)
    r.fail(key, "must be at most " + std::to_string(max) + ", got " +
                    std::to_string(value));
}

//===----------------------------------------------------------------------===//
// Decoder LLMs: llama, qwen2, qwen3, qwen3_moe (and the LLM of VL/omni)
//===----------------------------------------------------------------------===//

struct RopeConfig {
  double theta = 10000.0;
  /// Frequencies with rope scaling baked in; empty means theta^(-2j/D).
  std::vector<float> invFreq;
  double attentionScaling = 1.0;
  /// Qwen2-VL multimodal rope: sizes of the temporal/height/width sections.
  std::vector<int64_t> mropeSection;
  /// Qwen3-VL: the sections take frequencies round-robin (RopeOp).
  bool mropeInterleaved = false;
};

struct DecoderConfig {
  std::string modelType;
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0,
          kvHeads = 0, headDim = 0;
  double rmsEps = 1e-6;
  RopeConfig rope;
  bool tieEmbeddings = false;
  bool qkvBias = false, oBias = false, mlpBias = false, qkNorm = false;
  // Mixture of experts (qwen3_moe); experts == 0 for dense models.
  int64_t experts = 0, topK = 0, moeIntermediate = 0, sparseStep = 1;
  std::vector<int64_t> mlpOnlyLayers;
  bool normTopK = false;
  /// With output_router_logits: router_aux_loss_coef times the router's
  /// load-balancing loss joins the training loss, as transformers adds it
  /// (0: none).
  double routerAuxCoef = 0;

  // gpt-oss: attention sinks, per-layer sliding windows, a router with a
  // bias, experts stacked as gate_up_proj [E, H, 2I] (gate and up
  // interleaved) and down_proj [E, I, H] with biases, and the clamped
  // SwiGLU (up + 1) * g * sigmoid(alpha g), g = min(gate, limit), up
  // clamped to [-limit, limit].
  bool sinks = false;
  /// Per layer: the sliding window (0: full attention). Empty: all full.
  std::vector<int64_t> layerWindows;
  bool gptOssExperts = false;
  double swigluAlpha = 1.702, swigluLimit = 7.0;
  /// Qwen3-VL-MoE: experts fused as gate_up_proj [E, 2I, H] (gate rows
  /// first) and down_proj [E, H, I], without biases.
  bool stackedExperts = false;

  // Gemma 3: RMSNorms scale by (1 + w); the attention and the MLP outputs
  // are normed again before their residual adds (post_attention_layernorm,
  // post_feedforward_layernorm) and the MLP input by
  // pre_feedforward_layernorm; embeddings times sqrt(hidden); scores scaled
  // by query_pre_attn_scalar^-1/2; sliding layers rotate with their own
  // rope; the logits may be soft-capped.
  bool gemma = false;
  double embedScale = 0;     ///< 0: none
  double attentionScale = 0; ///< 0: 1 / sqrt(head_dim)
  std::string mlpAct = "silu";
  /// Per layer: whether it is a sliding layer (its rope is localRope).
  std::vector<uint8_t> layerSliding;
  std::optional<RopeConfig> localRope;
  double finalLogitSoftcap = 0; ///< 0: none
  const RopeConfig &ropeOf(int64_t layer) const {
    return localRope && layer < static_cast<int64_t>(layerSliding.size()) &&
                   layerSliding[layer]
               ? *localRope
               : rope;
  }

  // DeepSeek-V3: multi-head latent attention (q through a q_lora_rank
  // bottleneck with its norm, or q_proj; k and v from a kv_lora_rank latent
  // with its norm; qk_nope + qk_rope dims per head, the rope part of k shared
  // by every head; v_head_dim), sigmoid routing with
  // e_score_correction_bias over n_group groups, shared experts beside the
  // routed ones, the first first_k_dense_replace layers dense.
  bool mla = false;
  int64_t qLoraRank = 0, kvLoraRank = 0, qkNope = 0, qkRope = 0, vHeadDim = 0;
  bool ropeInterleave = false;
  bool groupRouter = false;
  int64_t routerGroups = 1, routerTopkGroups = 1, sharedExperts = 0;
  double routedScale = 1.0;
  int64_t firstDense = 0;
  int64_t windowOf(int64_t layer) const {
    return layer < static_cast<int64_t>(layerWindows.size())
               ? layerWindows[layer]
               : 0;
  }

  /// Whether layer `i` has an MoE block (HF's decoder_sparse_step rule).
  bool isSparse(int64_t i) const;
};

/// Reads a decoder config; `modelType` picks the HF defaults and biases.
/// Reports errors through `r`.
DecoderConfig parseDecoderConfig(ConfigReader &r, llvm::StringRef modelType,
                                 const ImportOptions &options);

/// HF names of the decoder's parameters: "<prefix>layers.0...." and the
/// head "<lmHead>".
struct DecoderNames {
  std::string prefix = "model.";
  std::string lmHead = "lm_head.weight";
};

/// Token embeddings [B, S, H] of `ids` (scaled as the family scales them);
/// also returns the table for tying.
std::pair<Value, Value> buildTokenEmbedding(ModelBuilder &b,
                                            const DecoderConfig &c,
                                            const DecoderNames &names,
                                            Value ids);
/// The decoder layers, final norm, LM head, and the loss over `labels`.
struct DecoderOutputs {
  Value loss, logits;
};
/// Qwen3-VL's DeepStack: after decoder layer i, features[i] [N, H] are
/// added to the hidden states of the tokens `positions` [N] (flat B*S).
struct Deepstack {
  Value positions;
  std::vector<Value> features;
};
DecoderOutputs buildDecoderLoss(ModelBuilder &b, const DecoderConfig &c,
                                const DecoderNames &names, Value embeds,
                                Value table, Value positions, Value segments,
                                Value labels, const Deepstack &deepstack = {});
/// Replaces rows `positions` of `embeds` [B, S, H] (flattened B*S) with
/// `rows` [N, H]: how image and audio features enter the token stream.
Value mergeRows(ModelBuilder &b, Value embeds, Value positions, Value rows);

//===----------------------------------------------------------------------===//
// Vision tower (Qwen2-VL, Qwen2.5-VL, Qwen3-VL)
//===----------------------------------------------------------------------===//

enum class VisionKind { Qwen2, Qwen25, Qwen3 };

struct VisionConfig {
  bool qwen25 = false;      // RMSNorm, gated MLP, windowed attention
  bool separateQKV = false; // Qwen2.5-Omni: attn.q / attn.k / attn.v
  /// Qwen3-VL: a patch embedding with bias, learned position embeddings
  /// (num_position_embeddings, a square grid bilinearly resampled to each
  /// image: the data pipeline's taps and weights), LayerNorms, an fc1/fc2
  /// MLP, and DeepStack mergers after the blocks deepstackIndexes.
  bool qwen3 = false;
  int64_t positionEmbeddings = 0;
  std::vector<int64_t> deepstackIndexes;
  /// Qwen3-Omni names the same tower's mergers as Qwen2-VL did:
  /// merger(_list.j).ln_q, .mlp.0, .mlp.2.
  bool omniMergerNames = false;
  int64_t depth = 0, dim = 0, heads = 0, mlpHidden = 0, outHidden = 0;
  int64_t patch = 14, merge = 2, temporal = 2, channels = 3;
  std::vector<int64_t> fullAttentionBlocks; // qwen25 only
  std::string act;
  double ropeTheta = 10000.0; // the 2-D (axial) rope of the patches
  int64_t patchInputs() const { return channels * temporal * patch * patch; }
};

VisionConfig parseVisionConfig(ConfigReader &r, VisionKind kind,
                               int64_t textHidden);
/// Image features [patches / merge^2, outHidden] from the batch inputs
/// pixel_values, vision_position_ids, vision_segment_ids (and, for qwen25,
/// vision_window_segment_ids; for qwen3, vision_pos_embed_ids and
/// vision_pos_embed_weights), declared here. Qwen3-VL's DeepStack features
/// (each [patches / merge^2, outHidden]) go to `deepstack`.
Value buildVisionTower(ModelBuilder &b, const VisionConfig &c,
                       llvm::StringRef prefix, int64_t patches,
                       std::vector<Value> *deepstack = nullptr);

//===----------------------------------------------------------------------===//
// Gemma 3's SigLIP vision tower and its multimodal projector
//===----------------------------------------------------------------------===//

struct SiglipConfig {
  int64_t dim = 0, mlpHidden = 0, layers = 0, heads = 0, channels = 3;
  int64_t imageSize = 0, patch = 0;
  double eps = 1e-6;
  std::string act;
  /// The projector: average pooling to tokensPerImage tokens an image, a
  /// (1 + w) RMSNorm, and mm_input_projection_weight [dim, textHidden].
  int64_t tokensPerImage = 0, textHidden = 0;
  int64_t side() const { return imageSize / patch; }
  int64_t patchesPerImage() const { return side() * side(); }
};

/// Reads a siglip_vision_model config; `tokensPerImage` is Gemma 3's
/// mm_tokens_per_image (a square dividing the patch grid).
SiglipConfig parseSiglipConfig(ConfigReader &r, int64_t tokensPerImage,
                               int64_t textHidden);
/// Image features [images * tokensPerImage, textHidden] from the batch
/// input pixel_values [images, channels, imageSize, imageSize], declared
/// here: the tower under `tower` and the projector under `projector`.
Value buildSiglipImages(ModelBuilder &b, const SiglipConfig &c,
                        llvm::StringRef tower, llvm::StringRef projector,
                        int64_t images);

//===----------------------------------------------------------------------===//
// Audio encoder (Whisper-style, as in Qwen2.5-Omni)
//===----------------------------------------------------------------------===//

struct AudioConfig {
  int64_t melBins = 0, dim = 0, layers = 0, heads = 0, ffn = 0, outDim = 0;
  int64_t maxSourcePositions = 1500;
  /// Frames are convolved in independent chunks of 2 * nWindow.
  int64_t nWindow = 100;
  std::string act;
  /// Qwen3-Omni's encoder: three 3x3 stride-2 Conv2d (downsample channels)
  /// over (mel, time) of each chunk, conv_out, sinusoids restarting every
  /// chunk, attention windows of nWindowInfer frames' steps, k_proj with a
  /// bias, then ln_post, proj1, the activation and proj2.
  bool qwen3 = false;
  int64_t downsample = 480, nWindowInfer = 800;
  /// Steps a chunk of `frames` frames leaves after the three convolutions.
  static int64_t convSteps(int64_t frames) {
    for (int i = 0; i < 3; ++i)
      frames = (frames - 1) / 2 + 1;
    return frames;
  }
};

AudioConfig parseAudioConfig(ConfigReader &r, bool qwen3 = false);
/// Audio features [frames / 4, outDim] from input_features [1, mel, frames],
/// audio_position_ids and audio_segment_ids, declared here. Frames must be
/// at most one chunk (2 * n_window) or a whole number of chunks.
/// Qwen3-Omni (qwen3): features [chunks * steps, outDim], steps =
/// convSteps(chunk) a chunk, from input_features [1, mel, frames] and
/// audio_segment_ids [1, chunks * steps] (its attention windows); frames at
/// most one chunk (2 * n_window) or a whole number of chunks.
Value buildAudioEncoder(ModelBuilder &b, const AudioConfig &c,
                        llvm::StringRef prefix, int64_t frames);

//===----------------------------------------------------------------------===//
// Parallel plans
//===----------------------------------------------------------------------===//

/// Appends the plan of a decoder whose names start with `prefix`.
void appendDecoderPlan(std::vector<PlanRule> &plan, const DecoderNames &n);
void appendVisionPlan(std::vector<PlanRule> &plan, llvm::StringRef prefix);
void appendAudioPlan(std::vector<PlanRule> &plan, llvm::StringRef prefix);

/// The activation functions configs name (silu, gelu, quick_gelu, ...).
Value activation(ModelBuilder &b, llvm::StringRef name, Value x);

} // namespace mlir::veomni

#endif // VEOMNI_FRONTENDS_FAMILIES_H
