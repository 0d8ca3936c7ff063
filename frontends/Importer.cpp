//===- Importer.cpp - import a Hugging Face config.json -------------------===//

#include "frontends/Importer.h"
#include "frontends/Families.h"
#include "passes/NameMatch.h"
#include "runtime/support/Status.h"

#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/GlobPattern.h"

using namespace mlir;
using namespace mlir::veomni;

StringRef mlir::veomni::placementName(Placement p) {
  switch (p) {
  case Placement::Replicated:
    return "replicated";
  case Placement::Column:
    return "tp:column";
  case Placement::Row:
    return "tp:row";
  case Placement::Vocab:
    return "tp:vocab";
  case Placement::Expert:
    return "ep:experts";
  }
  llvm_unreachable("unknown placement");
}

std::vector<std::string> mlir::veomni::supportedModelTypes() {
  return {"llama",          "qwen2",
          "qwen3",          "qwen3_moe",
          "gpt_oss",        "gemma3_text",
          "gemma3",         "deepseek_v3",
          "qwen2_vl",       "qwen2_5_vl",
          "qwen3_vl",       "qwen3_vl_moe",
          "qwen2_5_omni",   "qwen2_5_omni_thinker",
          "qwen3_omni_moe", "qwen3_omni_moe_thinker"};
}

std::optional<Placement>
mlir::veomni::placementOf(const std::vector<PlanRule> &plan, StringRef name) {
  for (const PlanRule &rule : plan) {
    llvm::Expected<llvm::GlobPattern> glob =
        llvm::GlobPattern::create(rule.pattern);
    if (!glob) {
      llvm::consumeError(glob.takeError());
      continue;
    }
    if (glob->match(name))
      return rule.placement;
  }
  return std::nullopt;
}

namespace {

/// Checks the options every family shares; errors name the command-line
/// option.
absl::Status checkOptions(const ImportOptions &o) {
  auto bad = [&](StringRef option, int64_t value, StringRef what) {
    return absl::InvalidArgumentError(
        ("--" + option + " " + std::to_string(value) + ": " + what).str());
  };
  if (o.data.batchSize < 1)
    return bad("batch", o.data.batchSize, "must be >= 1");
  if (o.data.seqLen < 1)
    return bad("seq-len", o.data.seqLen, "must be >= 1");
  // Sizes whose products must stay far from 64-bit overflow (a step's
  // tokens times the widest row), checked before anything is built.
  for (auto [option, value] :
       {std::pair<StringRef, int64_t>{"batch", o.data.batchSize},
        {"seq-len", o.data.seqLen},
        {"image-patches", o.data.imagePatches},
        {"images", o.data.images},
        {"audio-frames", o.data.audioFrames}})
    if (value > kMaxImportSize)
      return bad(option, value,
                 "must be at most " + std::to_string(kMaxImportSize));
  if (o.data.batchSize * o.data.seqLen > kMaxImportSize)
    return bad("batch", o.data.batchSize,
               "times --seq-len " + std::to_string(o.data.seqLen) +
                   " must be at most " + std::to_string(kMaxImportSize) +
                   " tokens a step");
  if (o.data.imagePatches < 0)
    return bad("image-patches", o.data.imagePatches, "must be >= 0");
  if (o.data.images < 0)
    return bad("images", o.data.images, "must be >= 0");
  if (o.data.audioFrames < 0 || o.data.audioFrames % 4 != 0)
    return bad("audio-frames", o.data.audioFrames,
               "must be a non-negative multiple of 4 (conv stride 2, then "
               "pooling by 2)");
  if (o.model.dtype != "bf16" && o.model.dtype != "f32" &&
      o.model.dtype != "f16")
    return absl::InvalidArgumentError("--dtype " + o.model.dtype +
                                      ": must be bf16, f32 or f16");
  return absl::OkStatus();
}

Type dtypeOf(MLIRContext &ctx, StringRef name) {
  if (name == "f32")
    return Float32Type::get(&ctx);
  if (name == "f16")
    return Float16Type::get(&ctx);
  return BFloat16Type::get(&ctx);
}

/// The text inputs of a decoder: ids, positions ([B, S], or [N, B, S] with
/// multimodal rope), segment ids of packed sequences, and labels (already
/// shifted: labels[t] is the token after t, -100 where none counts).
struct TextInputs {
  Value ids, positions, segments, labels;
};

TextInputs declareTextInputs(ModelBuilder &b, const DecoderConfig &c,
                             const ImportOptions &o) {
  Type i32 = IntegerType::get(b.getContext(), 32);
  TextInputs in;
  in.ids = b.tokenInput("input_ids", {o.data.batchSize, o.data.seqLen}, i32);
  if (c.rope.mropeSection.empty())
    in.positions =
        b.tokenInput("position_ids", {o.data.batchSize, o.data.seqLen}, i32);
  else // [sections, B, S]
    in.positions =
        b.tokenInput("position_ids",
                     {static_cast<int64_t>(c.rope.mropeSection.size()),
                      o.data.batchSize, o.data.seqLen},
                     i32, /*batchDim=*/1);
  in.segments =
      b.tokenInput("segment_ids", {o.data.batchSize, o.data.seqLen}, i32);
  in.labels = b.tokenInput("labels", {o.data.batchSize, o.data.seqLen}, i32);
  return in;
}

/// Image or audio rows that enter the token stream at `name` positions.
Value mergeModality(ModelBuilder &b, Value embeds, Value rows,
                    StringRef positionsName) {
  if (!rows)
    return embeds;
  int64_t n = cast<RankedTensorType>(rows.getType()).getDimSize(0);
  Value positions =
      b.input(positionsName, {n}, IntegerType::get(b.getContext(), 32));
  return mergeRows(b, embeds, positions, rows);
}

/// An encoder's output width against the LLM's: its features take the place
/// of token embeddings, so they must match; the error names the field.
std::string widthMismatch(const ConfigReader &tower, llvm::StringRef field,
                          int64_t width, int64_t hidden) {
  if (width == hidden)
    return "";
  return tower.path() + ": field '" + tower.fieldName(field) +
         "': " + std::to_string(width) +
         " differs from the LLM's hidden_size " + std::to_string(hidden) +
         " (the encoder's features take the place of token embeddings)";
}

/// Whether a VL model ties its LM head to the embeddings. transformers 5
/// reads the top-level flag, which a true text_config flag turns on;
/// transformers 4 reads text_config's. Where the two would disagree the
/// config is ambiguous.
bool readTying(ConfigReader &root, ConfigReader *text) {
  std::optional<bool> top, nested;
  if (root.has("tie_word_embeddings"))
    top = root.getBool("tie_word_embeddings", false);
  if (text && text->has("tie_word_embeddings"))
    nested = text->getBool("tie_word_embeddings", false);
  if (top && *top && nested && !*nested && !root.failed())
    root.fail("tie_word_embeddings",
              "true, but text_config.tie_word_embeddings is false: "
              "transformers 5 would tie the LM head and 4.x would not");
  return top.value_or(false) || nested.value_or(false);
}

/// The decoder's sizes the planner reads.
void recordShape(ImportedModel &model, const DecoderConfig &c) {
  model.numExperts = c.experts;
  model.numHeads = c.heads;
  model.numKVHeads = c.kvHeads;
  model.numLayers = c.layers;
  model.expertsPerToken = c.topK;
  model.layerKinds.clear();
  for (int64_t i = 0; i < c.layers; ++i)
    model.layerKinds.push_back(std::string(c.isSparse(i) ? "moe" : "dense") +
                               "/window " + std::to_string(c.windowOf(i)));
}

/// "" when --image-patches is a multiple of the tower's merge group
/// (positive when `required`), else the error.
std::string checkImagePatches(const ImportOptions &o, const VisionConfig &v,
                              bool required) {
  int64_t group = v.merge * v.merge, patches = o.data.imagePatches;
  if (patches % group == 0 && (patches > 0 || !required))
    return "";
  return "--image-patches " + std::to_string(patches) + ": must be a " +
         (required ? "positive " : "") +
         "multiple of spatial_merge_size^2 = " + std::to_string(group);
}

/// The nested config `key`, which must exist.
std::optional<ConfigReader> requireObject(ConfigReader &r, StringRef key) {
  std::optional<ConfigReader> nested = r.getObject(key);
  if (!nested && !r.failed())
    r.fail(key, "missing (required)");
  return nested;
}

} // namespace

absl::StatusOr<ImportedModel>
mlir::veomni::importHFConfig(MLIRContext &context, StringRef path,
                             const ImportOptions &options) {
  VEOMNI_RETURN_IF_ERROR(checkOptions(options));
  ConfigReader r = ConfigReader::load(path);
  std::string modelType = r.getString("model_type");
  if (r.failed())
    return r.status();

  // Diagnostics from building (which validated configs should never see)
  // become the one error line.
  std::string diagnostic;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostic.empty()) {
      llvm::raw_string_ostream os(diagnostic);
      os << diag.getLocation() << ": " << diag;
    }
    return success();
  });

  ImportedModel model;
  model.modelType = modelType;
  auto loc = NameLoc::get(StringAttr::get(&context, path));
  ModelBuilder b(context, dtypeOf(context, options.model.dtype), loc);
  DecoderNames names;
  DecoderOutputs out;

  auto fail = [](const std::string &message) {
    return absl::InvalidArgumentError(message);
  };
  std::string error; // set by checkTokens
  auto checkTokens = [&](ConfigReader &cr, StringRef option, int64_t rows) {
    if (!cr.failed() && rows > options.data.batchSize * options.data.seqLen)
      error = ("--" + option + ": its " + std::to_string(rows) +
               " tokens do not fit in --batch x --seq-len = " +
               std::to_string(options.data.batchSize * options.data.seqLen))
                  .str();
  };

  if (modelType == "llama" || modelType == "qwen2" || modelType == "qwen3" ||
      modelType == "qwen3_moe" || modelType == "gpt_oss" ||
      modelType == "gemma3_text" || modelType == "deepseek_v3") {
    DecoderConfig c = parseDecoderConfig(r, modelType, options);
    if (r.failed())
      return fail(r.error());
    recordShape(model, c);
    TextInputs in = declareTextInputs(b, c, options);
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions,
                           in.segments, in.labels);
    appendDecoderPlan(model.plan, names);
  } else if (modelType == "gemma3") {
    // Gemma 3 with images: a SigLIP tower, an average-pooling projector,
    // and the Gemma 3 LLM, in which each run of image tokens attends to
    // itself bidirectionally (token_type_ids, as transformers masks them).
    std::optional<ConfigReader> text = requireObject(r, "text_config");
    std::optional<ConfigReader> vr = requireObject(r, "vision_config");
    if (r.failed())
      return fail(r.error());
    DecoderConfig c = parseDecoderConfig(*text, "gemma3_text", options);
    r.ignoreGenericKeys();
    // Token ids place images in the token stream: the data pipeline's work.
    r.ignore({"image_token_index", "image_token_id", "boi_token_index",
              "eoi_token_index"});
    // Gemma 3 ties by default (4.x configs may say nothing).
    if (r.has("tie_word_embeddings") || text->has("tie_word_embeddings"))
      c.tieEmbeddings = readTying(r, &*text);
    // Gemma3ForConditionalGeneration's head does not soft-cap its logits.
    c.finalLogitSoftcap = 0;
    int64_t tokensPerImage = r.getInt("mm_tokens_per_image", 256);
    if (r.failed() || text->failed())
      return fail(r.failed() ? r.error() : text->error());
    SiglipConfig v = parseSiglipConfig(*vr, tokensPerImage, c.hidden);
    if (vr->failed())
      return fail(vr->error());
    recordShape(model, c);
    // The tower takes whole images of one size: --images counts them.
    const int64_t images = options.data.images;
    checkTokens(r, "images", images * tokensPerImage);
    if (!error.empty())
      return fail(error);
    names.prefix = "language_model.model.";
    names.lmHead = "language_model.lm_head.weight";
    TextInputs in = declareTextInputs(b, c, options);
    Value image = images ? buildSiglipImages(b, v, "vision_tower.",
                                             "multi_modal_projector.", images)
                         : Value();
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    Value segments = in.segments;
    if (image) {
      embeds = mergeModality(b, embeds, image, "image_token_positions");
      // token_type_ids (1 on image tokens) become the bidirectional blocks
      // beside the segment ids: [2, B, S].
      const int64_t batch = options.data.batchSize, seq = options.data.seqLen;
      Value types = b.tokenInput("token_type_ids", {batch, seq},
                                 IntegerType::get(&context, 32));
      segments = b.concat({b.reshape(in.segments, {1, batch, seq}),
                           b.reshape(types, {1, batch, seq})},
                          0);
    }
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions, segments,
                           in.labels);
    appendDecoderPlan(model.plan, names);
    appendVisionPlan(model.plan, "vision_tower.");
    appendVisionPlan(model.plan, "multi_modal_projector.");
  } else if (modelType == "qwen2_vl" || modelType == "qwen2_5_vl") {
    // Older configs keep the text fields at the top level, newer ones in
    // text_config (transformers 4.x writes both; the nested ones count).
    std::optional<ConfigReader> text = r.getObject("text_config");
    ConfigReader &tr = text ? *text : r;
    DecoderConfig c = parseDecoderConfig(tr, modelType, options);
    if (text)
      r.ignoreKeysOf(*text);
    r.ignoreGenericKeys();
    // Token ids place images in the token stream: the data pipeline's work.
    r.ignore({"image_token_id", "video_token_id", "vision_start_token_id",
              "vision_end_token_id", "vision_token_id"});
    c.tieEmbeddings = readTying(r, text ? &*text : nullptr);
    std::optional<ConfigReader> vr = requireObject(r, "vision_config");
    if (r.failed())
      return fail(r.error());
    VisionConfig v = parseVisionConfig(
        *vr, modelType == "qwen2_5_vl" ? VisionKind::Qwen25 : VisionKind::Qwen2,
        c.hidden);
    if (std::string bad = widthMismatch(
            *vr, modelType == "qwen2_5_vl" ? "out_hidden_size" : "hidden_size",
            v.outHidden, c.hidden);
        !bad.empty() && !vr->failed())
      return fail(bad);
    recordShape(model, c);
    if (r.failed())
      return fail(r.error());
    if (std::string bad = checkImagePatches(options, v, true); !bad.empty())
      return fail(bad);
    int64_t group = v.merge * v.merge;
    checkTokens(r, "image-patches", options.data.imagePatches / group);
    if (!error.empty())
      return fail(error);
    TextInputs in = declareTextInputs(b, c, options);
    Value image = buildVisionTower(b, v, "visual.", options.data.imagePatches);
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    embeds = mergeModality(b, embeds, image, "image_token_positions");
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions,
                           in.segments, in.labels);
    appendDecoderPlan(model.plan, names);
    appendVisionPlan(model.plan, "visual.");
  } else if (modelType == "qwen3_vl" || modelType == "qwen3_vl_moe") {
    // Qwen3-VL(-MoE): a Qwen3(-MoE) LLM with interleaved MRoPE, whose first
    // layers also take the vision tower's DeepStack features.
    std::optional<ConfigReader> text = requireObject(r, "text_config");
    std::optional<ConfigReader> vr = requireObject(r, "vision_config");
    if (r.failed())
      return fail(r.error());
    DecoderConfig c = parseDecoderConfig(
        *text, modelType == "qwen3_vl" ? "qwen3_vl_text" : "qwen3_vl_moe_text",
        options);
    r.ignoreGenericKeys();
    r.ignore({"image_token_id", "video_token_id", "vision_start_token_id",
              "vision_end_token_id"});
    c.tieEmbeddings = readTying(r, &*text);
    if (r.failed() || text->failed())
      return fail(r.failed() ? r.error() : text->error());
    VisionConfig v = parseVisionConfig(*vr, VisionKind::Qwen3, c.hidden);
    if (vr->failed())
      return fail(vr->error());
    if (v.outHidden != c.hidden)
      return fail(vr->path() + ": field '" + vr->fieldName("out_hidden_size") +
                  "': " + std::to_string(v.outHidden) +
                  " differs from text_config.hidden_size " +
                  std::to_string(c.hidden));
    if (static_cast<int64_t>(v.deepstackIndexes.size()) > c.layers)
      return fail(vr->path() + ": field '" +
                  vr->fieldName("deepstack_visual_indexes") +
                  "': " + std::to_string(v.deepstackIndexes.size()) +
                  " DeepStack features but the LLM has " +
                  std::to_string(c.layers) + " layers");
    recordShape(model, c);
    // Each feature joins a layer of its own: no fewer layers import.
    model.fewestLayers = std::max<int64_t>(1, v.deepstackIndexes.size());
    for (size_t i = 0; i < v.deepstackIndexes.size(); ++i)
      model.layerKinds[i] += "/deepstack";
    if (std::string bad = checkImagePatches(options, v, true); !bad.empty())
      return fail(bad);
    int64_t group = v.merge * v.merge;
    checkTokens(r, "image-patches", options.data.imagePatches / group);
    if (!error.empty())
      return fail(error);
    names.prefix = "model.language_model.";
    TextInputs in = declareTextInputs(b, c, options);
    Deepstack deepstack;
    Value image = buildVisionTower(
        b, v, "model.visual.", options.data.imagePatches, &deepstack.features);
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    if (image) {
      int64_t n = cast<RankedTensorType>(image.getType()).getDimSize(0);
      deepstack.positions =
          b.input("image_token_positions", {n}, IntegerType::get(&context, 32));
      embeds = mergeRows(b, embeds, deepstack.positions, image);
    }
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions,
                           in.segments, in.labels, deepstack);
    appendDecoderPlan(model.plan, names);
    appendVisionPlan(model.plan, "model.visual.");
  } else if (modelType == "qwen3_omni_moe" ||
             modelType == "qwen3_omni_moe_thinker") {
    // Qwen3-Omni-MoE's thinker: the Qwen3-VL tower (mergers named as
    // Qwen2-VL's), a Conv2d audio encoder, and a Qwen3-MoE LLM with
    // interleaved MRoPE and DeepStack. Speech output (talker, code2wav) is
    // not trained here.
    std::optional<ConfigReader> thinker;
    if (modelType == "qwen3_omni_moe") {
      thinker = requireObject(r, "thinker_config");
      r.ignoreGenericKeys();
      r.ignore({"enable_audio_output", "talker_config", "code2wav_config",
                "assistant_token_id", "im_start_token_id", "im_end_token_id",
                "system_token_id", "user_token_id", "tts_bos_token_id",
                "tts_eos_token_id", "tts_pad_token_id"});
    }
    ConfigReader &th = thinker ? *thinker : r;
    th.ignoreGenericKeys();
    th.ignore({"audio_token_id", "image_token_id", "video_token_id",
               "audio_start_token_id", "audio_end_token_id",
               "vision_start_token_id", "vision_end_token_id", "user_token_id",
               "position_id_per_seconds", "seconds_per_chunk"});
    std::optional<ConfigReader> tr = requireObject(th, "text_config");
    std::optional<ConfigReader> vr = requireObject(th, "vision_config");
    std::optional<ConfigReader> ar = requireObject(th, "audio_config");
    if (r.failed())
      return fail(r.error());
    DecoderConfig c = parseDecoderConfig(*tr, "qwen3_omni_moe_text", options);
    // transformers 5 ties the thinker's head by thinker_config's flag.
    if (th.has("tie_word_embeddings"))
      c.tieEmbeddings = th.getBool("tie_word_embeddings", false);
    if (r.failed())
      return fail(r.error());
    VisionConfig v = parseVisionConfig(*vr, VisionKind::Qwen3, c.hidden);
    v.omniMergerNames = true;
    // The tower always adds its learned positions; image_size is
    // informational.
    vr->ignore({"apply_vit_abs_pos_embed", "image_size"});
    AudioConfig a = parseAudioConfig(*ar, /*qwen3=*/true);
    if (r.failed())
      return fail(r.error());
    for (std::string bad :
         {widthMismatch(*vr, "out_hidden_size", v.outHidden, c.hidden),
          widthMismatch(*ar, "output_dim", a.outDim, c.hidden)})
      if (!bad.empty() && !vr->failed() && !ar->failed())
        return fail(bad);
    recordShape(model, c);
    const int64_t chunk = 2 * a.nWindow, frames = options.data.audioFrames;
    if (frames > chunk && frames % chunk != 0)
      return fail("--audio-frames " + std::to_string(frames) +
                  ": must be at most one chunk (2 * n_window = " +
                  std::to_string(chunk) + ") or a multiple of it");
    const int64_t audioTokens =
        frames ? frames / std::min(frames, chunk) *
                     AudioConfig::convSteps(std::min(frames, chunk))
               : 0;
    if (std::string bad = checkImagePatches(options, v, false); !bad.empty())
      return fail(bad);
    int64_t group = v.merge * v.merge;
    checkTokens(r, "image-patches + --audio-frames",
                options.data.imagePatches / group + audioTokens);
    if (!error.empty())
      return fail(error);
    // Names as transformers saves each: the whole model's under
    // "thinker.", the thinker's alone without.
    const std::string at = thinker ? "thinker." : "";
    names.prefix = at + "model.";
    names.lmHead = at + "lm_head.weight";
    TextInputs in = declareTextInputs(b, c, options);
    Deepstack deepstack;
    Value image =
        options.data.imagePatches
            ? buildVisionTower(b, v, at + "visual.", options.data.imagePatches,
                               &deepstack.features)
            : Value();
    Value audio =
        frames ? buildAudioEncoder(b, a, at + "audio_tower.", frames) : Value();
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    if (image) {
      int64_t n = cast<RankedTensorType>(image.getType()).getDimSize(0);
      deepstack.positions =
          b.input("image_token_positions", {n}, IntegerType::get(&context, 32));
      embeds = mergeRows(b, embeds, deepstack.positions, image);
    }
    embeds = mergeModality(b, embeds, audio, "audio_token_positions");
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions,
                           in.segments, in.labels, deepstack);
    appendDecoderPlan(model.plan, names);
    appendVisionPlan(model.plan, at + "visual.");
    appendAudioPlan(model.plan, at + "audio_tower.");
  } else if (modelType == "qwen2_5_omni" ||
             modelType == "qwen2_5_omni_thinker") {
    std::optional<ConfigReader> thinker;
    if (modelType == "qwen2_5_omni") {
      thinker = requireObject(r, "thinker_config");
      // Speech output: the talker and the vocoder are not trained here.
      r.ignoreGenericKeys();
      r.ignore({"enable_audio_output", "talker_config", "token2wav_config"});
    }
    ConfigReader &th = thinker ? *thinker : r;
    th.ignoreGenericKeys();
    th.ignore({"audio_token_index", "image_token_index", "video_token_index",
               "audio_start_token_id", "audio_end_token_id",
               "vision_start_token_id", "vision_end_token_id", "user_token_id",
               "position_id_per_seconds", "seconds_per_chunk", "audio_token_id",
               "image_token_id", "video_token_id"});
    std::optional<ConfigReader> tr = requireObject(th, "text_config");
    std::optional<ConfigReader> vr = requireObject(th, "vision_config");
    std::optional<ConfigReader> ar = requireObject(th, "audio_config");
    if (r.failed())
      return fail(r.error());
    // The thinker's LLM is Qwen2.5-Omni's dense decoder unless text_config
    // names another decoder family, e.g. qwen3_moe for a MoE thinker in the
    // manner of Qwen3-Omni-MoE: VeOmni composes encoders with any LLM.
    std::string textType = tr->getString("model_type", "qwen2_5_omni_text");
    static const char *decoders[] = {"llama", "qwen2", "qwen3", "qwen3_moe"};
    if (!llvm::is_contained(decoders, textType))
      textType = "qwen2_5_omni_text";
    DecoderConfig c = parseDecoderConfig(*tr, textType, options);
    // transformers 5 ties the thinker's head by thinker_config's flag, 4.x
    // by text_config's (4.x configs leave the thinker's out).
    if (th.has("tie_word_embeddings"))
      c.tieEmbeddings = th.getBool("tie_word_embeddings", false);
    recordShape(model, c);
    if (r.failed())
      return fail(r.error());
    if (c.rope.mropeSection.empty())
      return fail(tr->path() + ": field '" + tr->fieldName("rope_parameters") +
                  ".mrope_section': missing (required for " + modelType + ")");
    VisionConfig v = parseVisionConfig(*vr, VisionKind::Qwen25, c.hidden);
    v.separateQKV = true;
    AudioConfig a = parseAudioConfig(*ar);
    if (r.failed())
      return fail(r.error());
    for (std::string bad :
         {widthMismatch(*vr, "out_hidden_size", v.outHidden, c.hidden),
          widthMismatch(*ar, "output_dim", a.outDim, c.hidden)})
      if (!bad.empty() && !vr->failed() && !ar->failed())
        return fail(bad);
    int64_t chunk = 2 * a.nWindow;
    if (options.data.audioFrames > chunk &&
        options.data.audioFrames % chunk != 0)
      return fail("--audio-frames " + std::to_string(options.data.audioFrames) +
                  ": must be at most one chunk (2 * n_window = " +
                  std::to_string(chunk) + ") or a multiple of it");
    if (std::string bad = checkImagePatches(options, v, false); !bad.empty())
      return fail(bad);
    int64_t group = v.merge * v.merge;
    checkTokens(r, "image-patches + --audio-frames",
                options.data.imagePatches / group +
                    options.data.audioFrames / 4);
    if (!error.empty())
      return fail(error);
    names.prefix = "thinker.model.";
    names.lmHead = "thinker.lm_head.weight";
    TextInputs in = declareTextInputs(b, c, options);
    Value image = options.data.imagePatches
                      ? buildVisionTower(b, v, "thinker.visual.",
                                         options.data.imagePatches)
                      : Value();
    Value audio = options.data.audioFrames
                      ? buildAudioEncoder(b, a, "thinker.audio_tower.",
                                          options.data.audioFrames)
                      : Value();
    auto [embeds, table] = buildTokenEmbedding(b, c, names, in.ids);
    embeds = mergeModality(b, embeds, image, "image_token_positions");
    embeds = mergeModality(b, embeds, audio, "audio_token_positions");
    out = buildDecoderLoss(b, c, names, embeds, table, in.positions,
                           in.segments, in.labels);
    appendDecoderPlan(model.plan, names);
    appendVisionPlan(model.plan, "thinker.visual.");
    appendAudioPlan(model.plan, "thinker.audio_tower.");
  } else {
    return fail(
        path.str() + ": field 'model_type': unknown model type \"" + modelType +
        "\" (supported: " + llvm::join(supportedModelTypes(), ", ") + ")");
  }
  model.plan.push_back({"*", Placement::Replicated});

  SmallVector<Value, 2> results = {out.loss};
  if (options.returnLogits)
    results.push_back(out.logits);
  FailureOr<OwningOpRef<ModuleOp>> module = b.finish(results);
  if (failed(module))
    return fail(path.str() + ": internal error while building the model: " +
                (diagnostic.empty() ? "unknown" : diagnostic));
  model.module = std::move(*module);
  func::FuncOp forward = *model.module->getOps<func::FuncOp>().begin();
  forward.setResultAttr(0, "veomni.output", StringAttr::get(&context, "loss"));
  forward.setResultAttr(0, VeOmniDialect::kRoleAttrName,
                        ResultRoleAttr::get(&context, ResultRole::Loss));
  if (options.returnLogits) {
    forward.setResultAttr(1, "veomni.output",
                          StringAttr::get(&context, "logits"));
    forward.setResultAttr(1, VeOmniDialect::kRoleAttrName,
                          ResultRoleAttr::get(&context, ResultRole::Logits));
  }
  // Each parameter's placement under the family's plan travels in the IR,
  // for veomni-apply-recipe.
  // (All at once: one by one would keep a copy of the list per argument.)
  SmallVector<DictionaryAttr> argAttrs;
  for (unsigned i = 0; i < forward.getNumArguments(); ++i) {
    NamedAttrList attrs(forward.getArgAttrDict(i));
    if (auto name = forward.getArgAttrOfType<StringAttr>(
            i, VeOmniDialect::kParamAttrName))
      if (std::optional<Placement> p = placementOf(model.plan, name))
        attrs.set(VeOmniDialect::kPlacementAttrName,
                  StringAttr::get(&context, placementName(*p)));
    argAttrs.push_back(attrs.getDictionary(&context));
  }
  forward.setAllArgAttrs(argAttrs);
  model.module->getOperation()->setAttr("veomni.model_type",
                                        StringAttr::get(&context, modelType));
  // The families whose transformers-4 expert modules transformers 5 fused
  // and PEFT converts configs for (transformers' qwen2_moe conversion
  // pattern): LoRA's targets gate/gate_proj/up_proj/down_proj mean their
  // fused parameters there (passes/Lora.cpp).
  if (peftFusesExperts(modelType))
    model.module->getOperation()->setAttr("veomni.peft_fused_experts",
                                          UnitAttr::get(&context));
  model.arguments = b.arguments();
  for (const std::string &key : r.unknownKeys())
    model.warnings.push_back(path.str() + ": field '" + key +
                             "' is not known to veomni and was ignored");
  return model;
}

//===----------------------------------------------------------------------===//
// Parameter summary
//===----------------------------------------------------------------------===//

/// The module a parameter belongs to, for the breakdown: layer indices fold
/// into `*`, the leaf (weight, bias) goes, stacked experts stay one module,
/// and names outside repeated blocks keep two levels below the root.
static std::string moduleOf(StringRef name) {
  SmallVector<StringRef> parts;
  name.split(parts, '.');
  parts.pop_back(); // weight / bias
  std::vector<std::string> out;
  bool repeated = false;
  size_t keep = parts.size();
  for (size_t i = 0; i < parts.size(); ++i) {
    bool index = parts[i] == "*" || llvm::all_of(parts[i], llvm::isDigit);
    if (parts[i] == "experts") {
      keep = i + 1;
      break;
    }
    // An index with modules below it is a repeated block (layers.3.mlp);
    // one right before the leaf is a position in a Sequential (mlp.0).
    if (index && !repeated && i + 1 < parts.size()) {
      repeated = true;
      keep = std::min(parts.size(), i + 2);
    }
  }
  if (!repeated && parts.size() > 2) {
    size_t root = parts.front() == "thinker" ? 1 : 0;
    keep = std::min(parts.size(), root + 2);
  }
  std::string module;
  for (size_t i = 0; i < keep; ++i) {
    bool index = parts[i] == "*" || llvm::all_of(parts[i], llvm::isDigit);
    module += (i ? "." : "") + (index ? std::string("*") : parts[i].str());
  }
  return module;
}

ParameterSummary mlir::veomni::summarizeParameters(const ImportedModel &m) {
  ParameterSummary s;
  for (const ArgumentInfo &arg : m.arguments) {
    if (!arg.isParam || arg.buffer) // buffers are not parameters (HF's count)
      continue;
    int64_t count = arg.type.getNumElements();
    int64_t active = count;
    if (m.numExperts > 0 && StringRef(arg.name).contains(".experts."))
      active = count / m.numExperts * m.expertsPerToken;
    std::string module = moduleOf(arg.name);
    auto row = llvm::find_if(s.rows, [&](const ParameterSummary::Row &r) {
      return r.module == module;
    });
    if (row == s.rows.end()) {
      s.rows.push_back({module, 0, 0});
      row = std::prev(s.rows.end());
    }
    row->total += count;
    row->active += active;
    s.total += count;
    s.active += active;
  }
  return s;
}
