//===- Encoders.cpp - vision tower and audio encoder ----------------------===//
//
// The Qwen2-VL / Qwen2.5-VL vision tower and the Whisper-style audio encoder
// of Qwen2.5-Omni, following transformers' modules. Work that depends only on
// the data (Qwen2.5-VL's window permutation of patches, the per-chunk
// positions of audio frames, image and audio placement in the token stream)
// is done by the data pipeline and arrives as batch inputs, so the model
// itself has static shapes and no data-dependent control flow.
//
//===----------------------------------------------------------------------===//

#include "frontends/Families.h"

#include <cmath>

using namespace mlir;
using namespace mlir::veomni;

/// Locates the following ops in HF module `name`, of kind `kind` (in
/// block `layer` of the tower, -1 outside the blocks).
static void locate(ModelBuilder &b, const std::string &name, ModuleKind kind,
                   int64_t layer = -1) {
  b.setModule(name, kind, layer);
}

static void requirePositive(ConfigReader &r, StringRef key, int64_t value) {
  requireSize(r, key, value);
}

static void requireDivides(ConfigReader &r, StringRef key, int64_t value,
                           StringRef byKey, int64_t by) {
  if (!r.failed() && by > 0 && value % by != 0)
    r.fail(key, std::to_string(value) + " is not divisible by " + byKey.str() +
                    " " + std::to_string(by));
}

/// HF Linear with bias: weight [out, in], bias [out].
/// Parameters are declared weight first (arguments' evaluation order is
/// unspecified in C++, so never declare two in one call).
static Value linearWithBias(ModelBuilder &b, Value x, const std::string &name,
                            int64_t out, int64_t in, bool bias = true) {
  Value weight = b.param(name + ".weight", {out, in});
  return b.linear(x, weight, bias ? b.param(name + ".bias", {out}) : Value());
}

/// Refuses a non-zero dropout probability `key`: training would need it.
static void refuseDropout(ConfigReader &r, StringRef key) {
  if (!r.failed() && r.getFloat(key, 0.0) != 0.0)
    r.fail(key, std::to_string(r.getFloat(key, 0.0)) +
                    ": dropout in training is not supported; set it to 0.0");
}

static Value layerNorm(ModelBuilder &b, Value x, const std::string &name,
                       int64_t width, double epsilon) {
  Value weight = b.param(name + ".weight", {width});
  return b.layerNorm(x, weight, b.param(name + ".bias", {width}), epsilon);
}

//===----------------------------------------------------------------------===//
// Vision tower
//===----------------------------------------------------------------------===//

VisionConfig mlir::veomni::parseVisionConfig(ConfigReader &r, VisionKind kind,
                                             int64_t textHidden) {
  VisionConfig c;
  bool qwen25 = kind == VisionKind::Qwen25;
  c.qwen25 = qwen25;
  c.qwen3 = kind == VisionKind::Qwen3;
  r.ignoreGenericKeys();
  // Video timing (tokens_per_second) and the window size shape the data
  // pipeline's positions and segments, which arrive as batch inputs;
  // spatial_patch_size is an unused extra of older configs.
  r.ignore({"tokens_per_second", "window_size", "spatial_patch_size",
            "tie_word_embeddings"});
  if (std::optional<ConfigReader> rope = r.getObject("rope_parameters")) {
    std::string type = rope->getString("rope_type", "axial");
    if (!rope->failed() && type != "axial" && type != "default")
      rope->fail("rope_type",
                 "the vision tower's rope must be axial, got \"" + type + "\"");
    c.ropeTheta = rope->getFloat("rope_theta", 10000.0);
    if (!rope->failed() && !(c.ropeTheta > 0))
      rope->fail("rope_theta", "must be positive");
  }
  c.depth = r.getInt("depth");
  c.heads = r.getInt("num_heads");
  if (qwen25 || c.qwen3) {
    // Qwen2_5_VLVisionConfig, Qwen3VLVisionConfig: hidden_size is the
    // tower's width, out_hidden_size the LLM's.
    c.dim = r.getInt("hidden_size");
    c.mlpHidden = r.getInt("intermediate_size");
    c.outHidden = r.getInt("out_hidden_size", textHidden);
    if (qwen25)
      c.fullAttentionBlocks = r.getIntList("fullatt_block_indexes");
    c.act = r.getString("hidden_act", qwen25 ? "silu" : "gelu_pytorch_tanh");
    if (c.qwen3) {
      c.positionEmbeddings = r.getInt("num_position_embeddings", 2304);
      c.deepstackIndexes = r.has("deepstack_visual_indexes")
                               ? r.getIntList("deepstack_visual_indexes")
                               : std::vector<int64_t>{8, 16, 24};
    }
  } else {
    // Qwen2VLVisionConfig: embed_dim is the width, hidden_size the LLM's.
    c.dim = r.getInt("embed_dim");
    c.mlpHidden = c.dim * r.getInt("mlp_ratio", 4);
    c.outHidden = r.getInt("hidden_size", textHidden);
    c.act = r.getString("hidden_act", "quick_gelu");
  }
  c.patch = r.getInt("patch_size", c.qwen3 ? 16 : 14);
  c.merge = r.getInt("spatial_merge_size", 2);
  c.temporal = r.getInt("temporal_patch_size", 2);
  c.channels = r.getInt(r.has("in_channels") ? "in_channels" : "in_chans", 3);
  if (r.has("in_channels") && r.has("in_chans") &&
      r.getInt("in_chans", c.channels) != c.channels && !r.failed())
    r.fail("in_chans", "differs from in_channels");
  for (auto [key, v] :
       {std::pair<StringRef, int64_t>{"depth", c.depth},
        {"num_heads", c.heads},
        {qwen25 || c.qwen3 ? "hidden_size" : "embed_dim", c.dim},
        {"patch_size", c.patch},
        {"spatial_merge_size", c.merge},
        {"temporal_patch_size", c.temporal},
        {qwen25 || c.qwen3 ? "intermediate_size" : "mlp_ratio",
         qwen25 || c.qwen3 ? c.mlpHidden : r.getInt("mlp_ratio", 4)},
        {qwen25 || c.qwen3 ? "out_hidden_size" : "hidden_size", c.outHidden},
        {r.has("in_channels") ? "in_channels" : "in_chans", c.channels}})
    requirePositive(r, key, v);
  requireDivides(r, qwen25 || c.qwen3 ? "hidden_size" : "embed_dim", c.dim,
                 "num_heads", c.heads);
  // The 2-D rope splits each head's frequencies between height and width.
  if (!r.failed() && (c.dim / c.heads) % 4 != 0)
    r.fail("num_heads", "head size " + std::to_string(c.dim / c.heads) +
                            " must be a multiple of 4 for the 2-D rope");
  static const char *known[] = {"silu", "gelu", "gelu_pytorch_tanh",
                                "quick_gelu"};
  if (!r.failed() && !llvm::is_contained(known, StringRef(c.act)))
    r.fail("hidden_act", "unsupported activation \"" + c.act + "\"");
  for (int64_t i : c.fullAttentionBlocks)
    if (!r.failed() && (i < 0 || i >= c.depth))
      r.fail("fullatt_block_indexes", "block " + std::to_string(i) +
                                          " is outside depth " +
                                          std::to_string(c.depth));
  if (c.qwen3) {
    // The learned positions are a square grid (transformers takes the
    // integer square root and would index past a non-square table).
    int64_t side = static_cast<int64_t>(
        std::llround(std::sqrt(static_cast<double>(c.positionEmbeddings))));
    requirePositive(r, "num_position_embeddings", c.positionEmbeddings);
    if (!r.failed() &&
        (c.positionEmbeddings < 1 || side * side != c.positionEmbeddings))
      r.fail("num_position_embeddings",
             std::to_string(c.positionEmbeddings) +
                 " must be a positive square (a grid of positions)");
    for (size_t j = 0; j < c.deepstackIndexes.size() && !r.failed(); ++j) {
      int64_t i = c.deepstackIndexes[j];
      if (i < 0 || i >= c.depth)
        r.fail("deepstack_visual_indexes", "block " + std::to_string(i) +
                                               " is outside depth " +
                                               std::to_string(c.depth));
      else if (j > 0 && i <= c.deepstackIndexes[j - 1])
        r.fail("deepstack_visual_indexes", "must increase");
    }
  }
  return c;
}

namespace {
/// A Qwen3-VL merger's modules: Qwen3-VL's names, or Qwen3-Omni's.
struct MergerNames {
  const char *norm, *fc1, *fc2;
};
MergerNames mergerNames(const VisionConfig &c) {
  if (c.omniMergerNames)
    return {"ln_q", "mlp.0", "mlp.2"};
  return {"norm", "linear_fc1", "linear_fc2"};
}
} // namespace

Value mlir::veomni::buildVisionTower(ModelBuilder &b, const VisionConfig &c,
                                     StringRef prefixRef, int64_t patches,
                                     std::vector<Value> *deepstack) {
  std::string prefix = prefixRef.str();
  MLIRContext *ctx = b.getContext();
  Type i32 = IntegerType::get(ctx, 32);
  int64_t d = c.dim, hd = c.dim / c.heads;

  // Batch inputs: patches flattened as the HF processor emits them, 2-D
  // (row, column) rope positions, and segments (one per image; per window
  // for Qwen2.5-VL's windowed blocks).
  Value pixels =
      b.packedInput("pixel_values", {patches, c.patchInputs()}, b.dtype(), 0);
  Value positions =
      b.packedInput("vision_position_ids", {2, 1, patches}, i32, 2);
  Value segments = b.packedInput("vision_segment_ids", {1, patches}, i32, 1);
  Value windows = c.qwen25 ? b.packedInput("vision_window_segment_ids",
                                           {1, patches}, i32, 1)
                           : Value();

  // Conv3d with stride == kernel over flattened patches is a matmul.
  locate(b, prefix + "patch_embed", ModuleKind::VisionPatchEmbed);
  Value conv = b.param(prefix + "patch_embed.proj.weight",
                       {d, c.channels, c.temporal, c.patch, c.patch});
  Value x = b.matmul(pixels, b.reshape(conv, {d, c.patchInputs()}), false,
                     /*transposeRhs=*/true);
  if (c.qwen3) {
    Value bias = b.param(prefix + "patch_embed.proj.bias", {d});
    x = b.add(x, b.broadcast(bias, {patches, d}, {1}));
    // Learned positions resampled to the image's grid: each patch mixes
    // four rows of pos_embed (bilinear taps, align_corners) with weights
    // the data pipeline computes from the grid, in f32 like transformers.
    locate(b, prefix + "pos_embed", ModuleKind::VisionPatchEmbed);
    Type f32 = Float32Type::get(ctx);
    Value ids = b.packedInput("vision_pos_embed_ids", {patches, 4}, i32, 0);
    Value weights =
        b.packedInput("vision_pos_embed_weights", {patches, 4}, f32, 0);
    Value table =
        b.param(prefix + "pos_embed.weight", {c.positionEmbeddings, d});
    Value taps = b.cast(b.gather(table, ids), f32); // [patches, 4, d]
    Value mixed = b.reduce(
        ReduceKind::Sum,
        b.mul(taps, b.broadcast(weights, {patches, 4, d}, {0, 1})), {1});
    x = b.add(x, b.cast(mixed, b.dtype()));
  }
  x = b.reshape(x, {1, patches, d});

  // VisionRotaryEmbedding(head_dim / 2): frequencies theta^(-2j/(hd/2)) for
  // the row, then the same for the column.
  std::vector<float> invFreq;
  for (int half = 0; half < 2; ++half)
    for (int64_t j = 0; j < hd / 2; j += 2)
      invFreq.push_back(static_cast<float>(
          1.0 / std::pow(c.ropeTheta, static_cast<double>(j) / (hd / 2))));
  SmallVector<int64_t, 2> sections = {hd / 4, hd / 4};

  auto norm = [&](Value v, const std::string &name, int64_t width) {
    if (c.qwen25)
      return b.rmsNorm(v, b.param(name + ".weight", {width}), 1e-6);
    return layerNorm(b, v, name, width, 1e-6);
  };

  for (int64_t i = 0; i < c.depth; ++i) {
    std::string p = prefix + "blocks." + std::to_string(i) + ".";
    locate(b, p + "attn", ModuleKind::VisionBlock, i);
    Value h = norm(x, p + "norm1", d);
    // Qwen2-VL and Qwen2.5-VL fuse q, k and v ([3, heads, hd] per patch);
    // Qwen2.5-Omni's checkpoint keeps them apart.
    Value qkv;
    if (!c.separateQKV)
      qkv = b.reshape(linearWithBias(b, h, p + "attn.qkv", 3 * d, d),
                      {1, patches, 3, c.heads, hd});
    auto part = [&](int64_t j) {
      if (c.separateQKV) {
        static const char *names[] = {"attn.q", "attn.k", "attn.v"};
        return b.reshape(linearWithBias(b, h, p + names[j], d, d),
                         {1, patches, c.heads, hd});
      }
      Value s = b.slice(qkv, {0, 0, j, 0, 0}, {1, patches, j + 1, c.heads, hd});
      return b.reshape(s, {1, patches, c.heads, hd});
    };
    Value q = b.rope(part(0), positions, c.ropeTheta, sections, invFreq);
    Value k = b.rope(part(1), positions, c.ropeTheta, sections, invFreq);
    bool windowed = c.qwen25 && !llvm::is_contained(c.fullAttentionBlocks, i);
    Value a =
        b.attention(q, k, part(2), windowed ? windows : segments,
                    /*causal=*/false, 1.0 / std::sqrt(static_cast<double>(hd)));
    a = b.reshape(a, {1, patches, d});
    x = b.add(x, linearWithBias(b, a, p + "attn.proj", d, d));

    locate(b, p + "mlp", ModuleKind::VisionBlock, i);
    h = norm(x, p + "norm2", d);
    Value m;
    if (c.qwen3) {
      Value up = linearWithBias(b, h, p + "mlp.linear_fc1", c.mlpHidden, d);
      m = linearWithBias(b, activation(b, c.act, up), p + "mlp.linear_fc2", d,
                         c.mlpHidden);
    } else if (c.qwen25) {
      Value gate = linearWithBias(b, h, p + "mlp.gate_proj", c.mlpHidden, d);
      Value up = linearWithBias(b, h, p + "mlp.up_proj", c.mlpHidden, d);
      m = linearWithBias(b, b.mul(activation(b, c.act, gate), up),
                         p + "mlp.down_proj", d, c.mlpHidden);
    } else {
      Value up = linearWithBias(b, h, p + "mlp.fc1", c.mlpHidden, d);
      m = linearWithBias(b, activation(b, c.act, up), p + "mlp.fc2", d,
                         c.mlpHidden);
    }
    x = b.add(x, m);

    // DeepStack: a merger with its norm after the merge (over group * d)
    // turns this block's output into features for decoder layer j.
    auto at = llvm::find(c.deepstackIndexes, i);
    if (c.qwen3 && deepstack && at != c.deepstackIndexes.end()) {
      std::string j = std::to_string(at - c.deepstackIndexes.begin());
      std::string mp =
          prefix + (c.omniMergerNames ? "merger_list." + j + "."
                                      : "deepstack_merger_list." + j + ".");
      const MergerNames n = mergerNames(c);
      locate(b, mp + n.norm, ModuleKind::VisionMerger);
      int64_t group = c.merge * c.merge;
      Value y = layerNorm(b, b.reshape(x, {patches / group, group * d}),
                          mp + n.norm, group * d, 1e-6);
      y = linearWithBias(b, y, mp + n.fc1, group * d, group * d);
      deepstack->push_back(
          linearWithBias(b, b.gelu(y), mp + n.fc2, c.outHidden, group * d));
    }
  }

  // PatchMerger: norm, group merge^2 neighbouring patches, 2-layer MLP.
  locate(b, prefix + "merger", ModuleKind::VisionMerger);
  int64_t group = c.merge * c.merge, merged = patches / group;
  if (c.qwen3) {
    const MergerNames n = mergerNames(c);
    x = layerNorm(b, x, prefix + "merger." + n.norm, d, 1e-6);
    x = b.reshape(x, {merged, group * d});
    x = linearWithBias(b, x, prefix + "merger." + n.fc1, group * d, group * d);
    return linearWithBias(b, b.gelu(x), prefix + "merger." + n.fc2, c.outHidden,
                          group * d);
  }
  x = norm(x, prefix + "merger.ln_q", d);
  x = b.reshape(x, {merged, group * d});
  x = linearWithBias(b, x, prefix + "merger.mlp.0", group * d, group * d);
  return linearWithBias(b, b.gelu(x), prefix + "merger.mlp.2", c.outHidden,
                        group * d);
}

//===----------------------------------------------------------------------===//
// SigLIP vision tower and Gemma 3's projector
//===----------------------------------------------------------------------===//

SiglipConfig mlir::veomni::parseSiglipConfig(ConfigReader &r,
                                             int64_t tokensPerImage,
                                             int64_t textHidden) {
  SiglipConfig c;
  r.ignoreGenericKeys();
  r.ignore({"tie_word_embeddings"});
  c.dim = r.getInt("hidden_size", 768);
  c.mlpHidden = r.getInt("intermediate_size", 3072);
  c.layers = r.getInt("num_hidden_layers", 12);
  c.heads = r.getInt("num_attention_heads", 12);
  c.channels = r.getInt("num_channels", 3);
  c.imageSize = r.getInt("image_size", 224);
  c.patch = r.getInt("patch_size", 16);
  c.eps = r.getFloat("layer_norm_eps", 1e-6);
  c.act = r.getString("hidden_act", "gelu_pytorch_tanh");
  c.tokensPerImage = tokensPerImage;
  c.textHidden = textHidden;
  refuseDropout(r, "attention_dropout");
  // Gemma 3 reads the last hidden state: an attention-pooling head would
  // be parameters nothing trains.
  if (r.getBool("vision_use_head", false) && !r.failed())
    r.fail("vision_use_head",
           "SigLIP's pooling head is not supported (Gemma 3 has none)");
  for (auto [key, v] : {std::pair<StringRef, int64_t>{"hidden_size", c.dim},
                        {"intermediate_size", c.mlpHidden},
                        {"num_hidden_layers", c.layers},
                        {"num_attention_heads", c.heads},
                        {"num_channels", c.channels},
                        {"image_size", c.imageSize},
                        {"patch_size", c.patch}})
    requirePositive(r, key, v);
  requireDivides(r, "hidden_size", c.dim, "num_attention_heads", c.heads);
  requireDivides(r, "image_size", c.imageSize, "patch_size", c.patch);
  if (!r.failed() && !(c.eps > 0))
    r.fail("layer_norm_eps", "must be positive");
  static const char *known[] = {"gelu", "gelu_pytorch_tanh", "quick_gelu",
                                "silu"};
  if (!r.failed() && !llvm::is_contained(known, StringRef(c.act)))
    r.fail("hidden_act", "unsupported activation \"" + c.act + "\"");
  // The projector pools the side x side patch grid to a square of tokens.
  int64_t perSide = static_cast<int64_t>(
      std::llround(std::sqrt(static_cast<double>(tokensPerImage))));
  if (!r.failed() &&
      (tokensPerImage < 1 || perSide * perSide != tokensPerImage ||
       c.side() % perSide != 0))
    r.fail("image_size",
           "a grid of " + std::to_string(c.side()) + " x " +
               std::to_string(c.side()) +
               " patches cannot be pooled to mm_tokens_per_image " +
               std::to_string(tokensPerImage) +
               " (a square whose side divides the grid's)");
  return c;
}

Value mlir::veomni::buildSiglipImages(ModelBuilder &b, const SiglipConfig &c,
                                      StringRef towerRef,
                                      StringRef projectorRef, int64_t images) {
  const std::string tower = towerRef.str(), projector = projectorRef.str();
  const int64_t d = c.dim, hd = c.dim / c.heads, g = c.side(),
                p = c.patchesPerImage(),
                patchIn = c.channels * c.patch * c.patch;

  // pixel_values as the processor gives them; the Conv2d with stride ==
  // kernel is a matmul over each patch's (channel, row, column) values.
  Value pixels = b.packedInput("pixel_values",
                               {images, c.channels, c.imageSize, c.imageSize},
                               b.dtype(), 0);
  locate(b, tower + "embeddings", ModuleKind::VisionPatchEmbed);
  Value grid = b.reshape(pixels, {images, c.channels, g, c.patch, g, c.patch});
  Value patches =
      b.reshape(b.transpose(grid, {0, 2, 4, 1, 3, 5}), {images * p, patchIn});
  Value conv = b.param(tower + "embeddings.patch_embedding.weight",
                       {d, c.channels, c.patch, c.patch});
  Value x = b.matmul(patches, b.reshape(conv, {d, patchIn}), false,
                     /*transposeRhs=*/true);
  Value bias = b.param(tower + "embeddings.patch_embedding.bias", {d});
  x = b.add(x, b.broadcast(bias, {images * p, d}, {1}));
  Value table = b.param(tower + "embeddings.position_embedding.weight", {p, d});
  // Each image is a batch row: attention stays within it without segments.
  x = b.add(b.reshape(x, {images, p, d}),
            b.broadcast(table, {images, p, d}, {1, 2}));

  for (int64_t i = 0; i < c.layers; ++i) {
    std::string l = tower + "encoder.layers." + std::to_string(i) + ".";
    locate(b, l + "self_attn", ModuleKind::VisionBlock, i);
    Value h = layerNorm(b, x, l + "layer_norm1", d, c.eps);
    auto project = [&](const char *name) {
      return b.reshape(linearWithBias(b, h, l + "self_attn." + name, d, d),
                       {images, p, c.heads, hd});
    };
    Value q = project("q_proj");
    Value k = project("k_proj");
    Value v = project("v_proj");
    Value a = b.attention(q, k, v, Value(), /*causal=*/false,
                          1.0 / std::sqrt(static_cast<double>(hd)));
    a = b.reshape(a, {images, p, d});
    x = b.add(x, linearWithBias(b, a, l + "self_attn.out_proj", d, d));

    locate(b, l + "mlp", ModuleKind::VisionBlock, i);
    h = layerNorm(b, x, l + "layer_norm2", d, c.eps);
    Value up = linearWithBias(b, h, l + "mlp.fc1", c.mlpHidden, d);
    x = b.add(x, linearWithBias(b, activation(b, c.act, up), l + "mlp.fc2", d,
                                c.mlpHidden));
  }
  locate(b, tower + "post_layernorm", ModuleKind::VisionMerger);
  x = layerNorm(b, x, tower + "post_layernorm", d, c.eps);

  // Gemma3MultiModalProjector: k x k average pooling of the patch grid
  // (row-major patches), a (1 + w) RMSNorm, then x @ W [d, textHidden].
  locate(b, projector, ModuleKind::VisionMerger);
  const int64_t t = static_cast<int64_t>(std::llround(
                    std::sqrt(static_cast<double>(c.tokensPerImage)))),
                kernel = g / t;
  Value pooled =
      b.reduce(ReduceKind::Sum,
               b.reduce(ReduceKind::Sum,
                        b.reshape(x, {images, t, kernel, t, kernel, d}), {4}),
               {2});
  pooled =
      b.reshape(b.scale(pooled, 1.0 / static_cast<double>(kernel * kernel)),
                {images * c.tokensPerImage, d});
  Value w = b.param(projector + "mm_soft_emb_norm.weight", {d});
  b.initAs(w, "zeros");
  Value normed = b.rmsNorm(pooled, b.add(w, b.splat(1.0, {d})), c.eps);
  Value proj =
      b.param(projector + "mm_input_projection_weight", {d, c.textHidden});
  return b.matmul(normed, proj);
}

//===----------------------------------------------------------------------===//
// Audio encoder
//===----------------------------------------------------------------------===//

AudioConfig mlir::veomni::parseAudioConfig(ConfigReader &r, bool qwen3) {
  AudioConfig c;
  c.qwen3 = qwen3;
  r.ignoreGenericKeys();
  // scale_embedding sets a factor transformers never applies;
  // num_hidden_layers is 4.x's copy of encoder_layers; conv_chunksize
  // only bounds how many chunks transformers convolves at once.
  r.ignore({"scale_embedding", "num_hidden_layers", "tie_word_embeddings",
            "conv_chunksize"});
  if (qwen3) {
    c.downsample = r.getInt("downsample_hidden_size", 480);
    c.nWindowInfer = r.getInt("n_window_infer", 800);
    requirePositive(r, "downsample_hidden_size", c.downsample);
  }
  for (StringRef key : {"dropout", "attention_dropout", "activation_dropout"})
    refuseDropout(r, key);
  c.melBins = r.getInt("num_mel_bins");
  c.dim = r.getInt("d_model");
  c.layers = r.getInt("encoder_layers");
  c.heads = r.getInt("encoder_attention_heads");
  c.ffn = r.getInt("encoder_ffn_dim");
  c.outDim = r.getInt("output_dim");
  c.maxSourcePositions = r.getInt("max_source_positions", 1500);
  c.nWindow = r.getInt("n_window", qwen3 ? 50 : 100);
  requirePositive(r, "n_window", c.nWindow);
  // transformers counts 13 features a whole chunk (its 100 frames' after
  // the convolutions): other chunk sizes would not match its tokens.
  if (qwen3 && !r.failed() && c.nWindow != 50)
    r.fail("n_window", std::to_string(c.nWindow) +
                           ": must be 50 (transformers counts 13 audio "
                           "tokens a 100-frame chunk)");
  // Attention windows hold whole chunks (transformers' n_window_infer //
  // (2 n_window) of them).
  if (qwen3 && !r.failed() &&
      (c.nWindowInfer < 2 * c.nWindow || c.nWindowInfer % (2 * c.nWindow)))
    r.fail("n_window_infer", std::to_string(c.nWindowInfer) +
                                 " must be a positive multiple of 2 * "
                                 "n_window = " +
                                 std::to_string(2 * c.nWindow));
  c.act = r.getString("activation_function", "gelu");
  for (auto [key, v] :
       {std::pair<StringRef, int64_t>{"num_mel_bins", c.melBins},
        {"d_model", c.dim},
        {"encoder_layers", c.layers},
        {"encoder_attention_heads", c.heads},
        {"encoder_ffn_dim", c.ffn},
        {"output_dim", c.outDim}})
    requirePositive(r, key, v);
  requireDivides(r, "d_model", c.dim, "encoder_attention_heads", c.heads);
  if (!r.failed() && c.dim % 2 != 0)
    r.fail("d_model", "must be even for sinusoidal positions");
  static const char *known[] = {"gelu", "gelu_new", "gelu_pytorch_tanh",
                                "quick_gelu", "silu"};
  if (!r.failed() && !llvm::is_contained(known, StringRef(c.act)))
    r.fail("activation_function", "unsupported activation \"" + c.act + "\"");
  return c;
}

/// A 3x3 Conv2d with stride 2 and padding 1 (weight [out, in, 3, 3], a
/// bias), then GELU, of `x` [N, in, H, W]: the nine strided taps of the
/// zero-padded input side by side, one matmul.
static Value conv2dGelu(ModelBuilder &b, Value x, const std::string &name,
                        int64_t out) {
  auto type = cast<RankedTensorType>(x.getType());
  const int64_t n = type.getDimSize(0), in = type.getDimSize(1),
                h = type.getDimSize(2), w = type.getDimSize(3);
  const int64_t ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
  // Zero rows and columns around: one before, enough after for the last
  // tap (2 ho + 1 rows in all).
  auto pad = [&](Value v, int64_t dim, int64_t before, int64_t after) {
    auto t = cast<RankedTensorType>(v.getType());
    SmallVector<Value, 3> parts;
    auto zeros = [&](int64_t size) {
      SmallVector<int64_t, 4> shape(t.getShape());
      shape[dim] = size;
      return b.splat(0, shape);
    };
    if (before)
      parts.push_back(zeros(before));
    parts.push_back(v);
    if (after)
      parts.push_back(zeros(after));
    return parts.size() == 1 ? v : b.concat(parts, dim);
  };
  Value padded = pad(pad(x, 2, 1, 2 * ho - h), 3, 1, 2 * wo - w);
  SmallVector<Value, 9> taps;
  for (int64_t kh = 0; kh < 3; ++kh)
    for (int64_t kw = 0; kw < 3; ++kw)
      taps.push_back(b.reshape(
          b.slice(padded, {0, 0, kh, kw},
                  {n, in, kh + 2 * ho - 1, kw + 2 * wo - 1}, {1, 1, 2, 2}),
          {n, in, 1, ho, wo}));
  // [n, in, 9, ho, wo] -> [n * ho * wo, in * 9], the weight's order.
  Value cols = b.reshape(b.transpose(b.concat(taps, 2), {0, 3, 4, 1, 2}),
                         {n * ho * wo, in * 9});
  Value weight = b.param(name + ".weight", {out, in, 3, 3});
  Value bias = b.param(name + ".bias", {out});
  Value y = b.linear(cols, b.reshape(weight, {out, in * 9}), bias);
  return b.transpose(b.reshape(b.gelu(y), {n, ho, wo, out}), {0, 3, 1, 2});
}

/// Qwen3-Omni's audio encoder (Qwen3OmniMoeAudioEncoder).
static Value buildQwen3AudioEncoder(ModelBuilder &b, const AudioConfig &c,
                                    const std::string &prefix, int64_t frames) {
  Type i32 = IntegerType::get(b.getContext(), 32);
  const int64_t d = c.dim, hd = c.dim / c.heads;
  const int64_t chunk = std::min(frames, 2 * c.nWindow),
                chunks = frames / chunk;
  const int64_t steps = AudioConfig::convSteps(chunk), total = chunks * steps;
  Value features =
      b.packedInput("input_features", {1, c.melBins, frames}, b.dtype(), 2);
  // 1 for a clip's frames, 0 for the padding of its last chunk (and the
  // batch's rest): each convolution's output is cut there, as
  // transformers convolves a clip's last chunk at its own length.
  Value frameMask =
      b.packedInput("audio_frame_mask", {1, frames}, b.dtype(), 1);
  Value segments = b.packedInput("audio_segment_ids", {1, total}, i32, 1);

  locate(b, prefix + "conv", ModuleKind::AudioConv);
  Value x = b.reshape(
      b.transpose(b.reshape(features, {c.melBins, chunks, chunk}), {1, 0, 2}),
      {chunks, 1, c.melBins, chunk});
  // A stride-2 output j is real when input 2j is: the masks of the three
  // outputs are every other column of the one before.
  Value mask = b.reshape(frameMask, {chunks, chunk});
  for (int k = 1; k <= 3; ++k) {
    x = conv2dGelu(b, x, prefix + "conv2d" + std::to_string(k), c.downsample);
    auto t = cast<RankedTensorType>(x.getType());
    int64_t cols = cast<RankedTensorType>(mask.getType()).getDimSize(1);
    mask = b.slice(mask, {0, 0}, {chunks, cols}, {1, 2});
    x = b.mul(x, b.broadcast(mask, t.getShape(), {0, 3}));
  }
  // [chunks, C, f, t] -> [chunks, t, C * f] -> conv_out.
  auto type = cast<RankedTensorType>(x.getType());
  const int64_t f = type.getDimSize(2);
  x = b.reshape(b.transpose(x, {0, 3, 1, 2}), {total, c.downsample * f});
  x = b.linear(x, b.param(prefix + "conv_out.weight", {d, c.downsample * f}));

  // Sinusoids of each step's place in its chunk (transformers' table,
  // sin then cos, timescales exp(-i ln(10000) / (d/2 - 1))).
  locate(b, prefix + "positional_embedding", ModuleKind::AudioPosition);
  const int64_t half = d / 2;
  const double inc = std::log(10000.0) / std::max<int64_t>(half - 1, 1);
  std::vector<float> table(steps * d);
  for (int64_t t = 0; t < steps; ++t)
    for (int64_t i = 0; i < half; ++i) {
      float scale = static_cast<float>(std::exp(-inc * static_cast<double>(i)));
      float angle = static_cast<float>(t) * scale;
      table[t * d + i] = std::sin(angle);
      table[t * d + half + i] = std::cos(angle);
    }
  Value pos = b.cast(b.constant(table, {1, steps, d}), b.dtype());
  x = b.reshape(b.add(b.reshape(x, {chunks, steps, d}),
                      b.broadcast(b.reshape(pos, {steps, d}),
                                  {chunks, steps, d}, {1, 2})),
                {1, total, d});

  auto norm = [&](Value v, const std::string &name) {
    return layerNorm(b, v, name, d, 1e-5);
  };
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string p = prefix + "layers." + std::to_string(i) + ".";
    locate(b, p + "self_attn", ModuleKind::AudioBlock, i);
    Value h = norm(x, p + "self_attn_layer_norm");
    auto project = [&](const char *name) {
      return b.reshape(linearWithBias(b, h, p + "self_attn." + name, d, d),
                       {1, total, c.heads, hd});
    };
    Value a = b.attention(project("q_proj"), project("k_proj"),
                          project("v_proj"), segments, /*causal=*/false,
                          1.0 / std::sqrt(static_cast<double>(hd)));
    a = b.reshape(a, {1, total, d});
    x = b.add(x, linearWithBias(b, a, p + "self_attn.out_proj", d, d));
    locate(b, p + "mlp", ModuleKind::AudioBlock, i);
    h = norm(x, p + "final_layer_norm");
    h = activation(b, c.act, linearWithBias(b, h, p + "fc1", c.ffn, d));
    x = b.add(x, linearWithBias(b, h, p + "fc2", d, c.ffn));
  }
  locate(b, prefix + "proj", ModuleKind::AudioProj);
  x = norm(b.reshape(x, {total, d}), prefix + "ln_post");
  x = activation(b, c.act, linearWithBias(b, x, prefix + "proj1", d, d));
  return linearWithBias(b, x, prefix + "proj2", c.outDim, d);
}

Value mlir::veomni::buildAudioEncoder(ModelBuilder &b, const AudioConfig &c,
                                      StringRef prefixRef, int64_t frames) {
  std::string prefix = prefixRef.str();
  if (c.qwen3)
    return buildQwen3AudioEncoder(b, c, prefix, frames);
  MLIRContext *ctx = b.getContext();
  Type i32 = IntegerType::get(ctx, 32), f32 = Float32Type::get(ctx);
  int64_t d = c.dim, hd = c.dim / c.heads, steps = frames / 2;

  // Batch inputs: log-mel features of every audio clip laid end to end,
  // each frame's position inside its attention chunk, and the chunks.
  Value features =
      b.packedInput("input_features", {1, c.melBins, frames}, b.dtype(), 2);
  Value positions = b.packedInput("audio_position_ids", {steps}, i32, 0);
  Value segments = b.packedInput("audio_segment_ids", {1, steps}, i32, 1);

  // The frontend convolves chunks of 2 * n_window frames independently
  // (zero padding at every chunk edge), with GELU whatever the config's
  // activation_function says (transformers hard-codes it there).
  locate(b, prefix + "conv", ModuleKind::AudioConv);
  int64_t chunk = std::min(frames, 2 * c.nWindow), chunks = frames / chunk;
  Value x = features;
  if (chunks > 1)
    x = b.reshape(
        b.transpose(b.reshape(x, {c.melBins, chunks, chunk}), {1, 0, 2}),
        {chunks, c.melBins, chunk});
  auto conv = [&](Value v, const std::string &name, int64_t in,
                  int64_t stride) {
    Value w = b.param(name + ".weight", {d, in, 3});
    Value bias = b.param(name + ".bias", {d});
    return b.gelu(b.conv1d(v, w, bias, stride, /*padding=*/1));
  };
  x = conv(x, prefix + "conv1", c.melBins, 1);
  x = conv(x, prefix + "conv2", d, 2); // [chunks, d, chunk / 2]
  x = b.reshape(b.transpose(x, {0, 2, 1}), {steps, d});

  // Whisper's sinusoids: [sin(p * w_i), cos(p * w_i)], w_i =
  // exp(-i * ln(10000) / (d/2 - 1)); computed in f32 like transformers.
  locate(b, prefix + "positional_embedding", ModuleKind::AudioPosition);
  int64_t half = d / 2;
  std::vector<float> timescales;
  double inc = std::log(10000.0) / std::max<int64_t>(half - 1, 1);
  for (int64_t i = 0; i < half; ++i)
    timescales.push_back(static_cast<float>(std::exp(-inc * i)));
  Value inv = b.constant(timescales, {half});
  Value time = b.broadcast(b.cast(positions, f32), {steps, half}, {0});
  Value angle = b.mul(time, b.broadcast(inv, {steps, half}, {1}));
  Value table = b.concat({b.sin(angle), b.cos(angle)}, 1);
  x = b.add(x, b.cast(table, b.dtype()));
  x = b.reshape(x, {1, steps, d});

  auto norm = [&](Value v, const std::string &name, int64_t width) {
    return layerNorm(b, v, name, width, 1e-5);
  };
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string p = prefix + "layers." + std::to_string(i) + ".";
    locate(b, p + "self_attn", ModuleKind::AudioBlock, i);
    Value h = norm(x, p + "self_attn_layer_norm", d);
    auto project = [&](const char *name, bool bias) {
      return b.reshape(
          linearWithBias(b, h, p + "self_attn." + name, d, d, bias),
          {1, steps, c.heads, hd});
    };
    Value a = b.attention(project("q_proj", true), project("k_proj", false),
                          project("v_proj", true), segments, /*causal=*/false,
                          1.0 / std::sqrt(static_cast<double>(hd)));
    a = b.reshape(a, {1, steps, d});
    x = b.add(x, linearWithBias(b, a, p + "self_attn.out_proj", d, d));
    locate(b, p + "mlp", ModuleKind::AudioBlock, i);
    h = norm(x, p + "final_layer_norm", d);
    h = activation(b, c.act, linearWithBias(b, h, p + "fc1", c.ffn, d));
    x = b.add(x, linearWithBias(b, h, p + "fc2", d, c.ffn));
  }

  // AvgPool1d(2, 2) over time, then ln_post and the projection to the LLM.
  locate(b, prefix + "proj", ModuleKind::AudioProj);
  x = b.reduce(ReduceKind::Mean, b.reshape(x, {1, steps / 2, 2, d}), {2});
  x = norm(x, prefix + "ln_post", d);
  x = linearWithBias(b, b.reshape(x, {steps / 2, d}), prefix + "proj", c.outDim,
                     d);
  // In the checkpoint, unused by the thinker's forward pass.
  b.param(prefix + "audio_bos_eos_token.weight", {2, c.outDim});
  return x;
}

void mlir::veomni::appendVisionPlan(std::vector<PlanRule> &plan,
                                    StringRef prefix) {
  // The tower is small next to the LLM and its qkv projection is fused:
  // it stays whole under tp/ep (FSDP still shards it over dp).
  plan.push_back({prefix.str() + "*", Placement::Replicated});
}

void mlir::veomni::appendAudioPlan(std::vector<PlanRule> &plan,
                                   StringRef prefix) {
  plan.push_back({prefix.str() + "*", Placement::Replicated});
}
