//===- Decoder.cpp - decoder LLMs: llama, qwen2, qwen3, qwen3_moe ---------===//
//
// Field meanings and defaults follow transformers' LlamaConfig, Qwen2Config,
// Qwen3Config and Qwen3MoeConfig. The architecture-defining sizes are
// required even where transformers has a default: a config that omits
// hidden_size almost surely is not the model its author meant.
//
//===----------------------------------------------------------------------===//

#include "frontends/Families.h"
#include "runtime/support/Status.h"

#include "llvm/ADT/STLExtras.h"

#include "absl/status/statusor.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace mlir::veomni;

/// Locates the following ops in HF module `name`, of kind `kind` (in
/// decoder layer `layer`, -1 outside the layers).
static void locate(ModelBuilder &b, const std::string &name, ModuleKind kind,
                   int64_t layer = -1) {
  b.setModule(name, kind, layer);
}

//===----------------------------------------------------------------------===//
// Activations
//===----------------------------------------------------------------------===//

Value mlir::veomni::activation(ModelBuilder &b, StringRef name, Value x) {
  if (name == "silu" || name == "swish")
    return b.silu(x);
  if (name == "gelu")
    return b.gelu(x);
  if (name == "gelu_pytorch_tanh" || name == "gelu_new")
    return b.gelu(x, /*tanhApproximation=*/true);
  if (name == "quick_gelu") // x * sigmoid(1.702 x), CLIP's approximation
    return b.mul(x, b.sigmoid(b.scale(x, 1.702)));
  llvm_unreachable("activation names are checked when configs are read");
}

/// Reads an activation name and checks that activation() knows it.
static std::string readActivation(ConfigReader &r, StringRef key,
                                  StringRef otherwise) {
  std::string name = r.getString(key, otherwise);
  static const char *known[] = {
      "silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu"};
  if (!r.failed() && !llvm::is_contained(known, StringRef(name)))
    r.fail(key, "unsupported activation \"" + name +
                    "\" (supported: silu, gelu, gelu_new, "
                    "gelu_pytorch_tanh, quick_gelu)");
  return name;
}

//===----------------------------------------------------------------------===//
// Rope scaling: transformers' rope_init_functions, baked into inv_freq
//===----------------------------------------------------------------------===//

static std::vector<double> defaultInvFreq(double theta, int64_t dim) {
  std::vector<double> inv;
  for (int64_t j = 0; j < dim; j += 2)
    inv.push_back(1.0 / std::pow(theta, static_cast<double>(j) / dim));
  return inv;
}

namespace {
/// Where a decoder's rope settings come from: transformers 5 writes one
/// `rope_parameters` object, 4.x a top-level `rope_theta` and an optional
/// `rope_scaling`. As transformers 5 reads them: a legacy rope_scaling wins
/// over rope_parameters, and a theta inside the object over the top-level
/// one.
struct RopeSource {
  std::optional<ConfigReader> object;
  double theta;
};

RopeSource findRope(ConfigReader &r, double defaultTheta) {
  RopeSource src;
  std::optional<ConfigReader> params = r.getObject("rope_parameters");
  std::optional<ConfigReader> legacy = r.getObject("rope_scaling");
  src.object = legacy ? legacy : params;
  if (legacy && params)
    r.ignore({"rope_parameters"}); // read as transformers 5 does: unused
  double top = r.getFloat("rope_theta", defaultTheta);
  src.theta = src.object ? src.object->getFloat("rope_theta", top) : top;
  return src;
}
} // namespace

/// Rope settings of a decoder with `headDim`, with transformers'
/// rope_init_functions baked into inv_freq; `defaultTheta` is the family's.
/// Multimodal models (`mrope`) rotate by 3-D positions in sections: in runs
/// (Qwen2-VL, Qwen2.5-VL/Omni) or interleaved (Qwen3-VL, which transformers
/// always interleaves).
/// `defaultObject` (JSON) stands for a missing rope object: gpt-oss
/// configs without one get transformers' yarn defaults. `given`, when set,
/// is the rope object and theta to read (Gemma 3's, per layer type).
enum class Mrope { None, Runs, Interleaved };

static absl::StatusOr<RopeConfig> readRope(ConfigReader &r, int64_t headDim,
                                           double defaultTheta, Mrope mrope,
                                           const ImportOptions &options,
                                           StringRef defaultObject = {},
                                           const RopeSource *given = nullptr) {
  RopeConfig rope;
  bool multimodal = mrope != Mrope::None;
  rope.mropeInterleaved = mrope == Mrope::Interleaved;
  auto error = [&](ConfigReader &at, StringRef key, const Twine &what) {
    at.fail(key, what);
    return at.status();
  };
  RopeSource src = given ? *given : findRope(r, defaultTheta);
  if (!src.object && !defaultObject.empty() && !r.failed())
    src.object = ConfigReader::fromText(
        defaultObject, r.path() + " (transformers' default rope_parameters)");
  rope.theta = src.theta;
  if (r.failed())
    return r.status();
  ConfigReader &s = src.object ? *src.object : r;
  if (!(rope.theta > 0))
    return error(s, "rope_theta", "must be positive");
  int64_t maxPositions = r.getInt("max_position_embeddings", 0);
  auto checkSections = [&](ConfigReader &at) -> absl::Status {
    int64_t sum = 0;
    for (int64_t v : rope.mropeSection)
      sum += v > 0 ? v : (1 << 30);
    if (!at.failed() && sum != headDim / 2)
      return error(at, "mrope_section",
                   "sections must be positive and sum to head_dim / 2 = " +
                       Twine(headDim / 2));
    // Interleaved, section k >= 1 takes frequencies k, k + N, ...
    int64_t n = static_cast<int64_t>(rope.mropeSection.size());
    for (int64_t k = 1; rope.mropeInterleaved && k < n; ++k)
      if (!at.failed() && (rope.mropeSection[k] - 1) * n + k >= headDim / 2)
        return error(at, "mrope_section",
                     "interleaved section " + Twine(k) + " of " +
                         Twine(rope.mropeSection[k]) +
                         " frequencies reaches "
                         "past head_dim / 2 = " +
                         Twine(headDim / 2));
    return absl::OkStatus();
  };
  // transformers 5 falls back to [16, 24, 24] when the section is absent
  // (Qwen3-VL: [24, 20, 20]).
  const std::vector<int64_t> defaultSections =
      rope.mropeInterleaved ? std::vector<int64_t>{24, 20, 20}
                            : std::vector<int64_t>{16, 24, 24};
  if (!src.object) {
    if (multimodal) {
      rope.mropeSection = defaultSections;
      VEOMNI_RETURN_IF_ERROR(checkSections(r));
    }
    return rope;
  }

  double partial = s.getFloat("partial_rotary_factor", 1.0);
  if (!s.failed() && partial != 1.0)
    return error(s, "partial_rotary_factor",
                 "rotary embedding of part of each head (" +
                     Twine(std::to_string(partial)) + ") is not supported");
  if (multimodal || s.has("mrope_section")) {
    rope.mropeSection = s.getIntList("mrope_section", defaultSections);
    VEOMNI_RETURN_IF_ERROR(checkSections(s));
  }
  // Qwen3-Omni's configs also say "interleaved"; transformers reads
  // neither flag, the family decides.
  for (const char *key : {"mrope_interleaved", "interleaved"}) {
    s.ignore({key});
    if (s.getBool(key, rope.mropeInterleaved) != rope.mropeInterleaved)
      return error(s, key,
                   rope.mropeInterleaved
                       ? "false, but this family's rope is always "
                         "interleaved (transformers ignores the flag)"
                       : "interleaved multimodal rope is only Qwen3-VL's "
                         "and Qwen3-Omni's; this family's rotates in runs");
  }
  // "type" is 4.x's spelling; transformers 5 keeps both.
  std::string type = s.getString("rope_type", s.getString("type", "default"));
  if (s.failed())
    return s.status();
  if (type == "default" || type == "mrope")
    return rope;

  // Scaled types. llama3 and yarn take their pre-extension context from a
  // top-level original_max_position_embeddings, then from the object, then
  // from max_position_embeddings (transformers 5's standardisation).
  auto originalContext = [&]() -> double {
    if (r.has("original_max_position_embeddings"))
      return r.getInt("original_max_position_embeddings");
    return s.getInt("original_max_position_embeddings", maxPositions);
  };
  std::vector<double> inv = defaultInvFreq(rope.theta, headDim);
  if (type == "linear") {
    double factor = s.getFloat("factor");
    if (!s.failed() && !(factor > 0))
      return error(s, "factor", "must be positive");
    for (double &f : inv)
      f /= factor;
  } else if (type == "dynamic") {
    s.getFloat("factor");
    // Dynamic NTK scaling changes nothing up to max_position_embeddings.
    if (!s.failed() && maxPositions > 0 && options.data.seqLen > maxPositions)
      return error(s, "rope_type",
                   "dynamic rope scaling beyond max_position_embeddings " +
                       Twine(maxPositions) + " (--seq-len " +
                       Twine(options.data.seqLen) + ") is not supported");
    if (s.failed())
      return s.status();
    return rope;
  } else if (type == "llama3") {
    double factor = s.getFloat("factor");
    double low = s.getFloat("low_freq_factor");
    double high = s.getFloat("high_freq_factor");
    double old = originalContext();
    if (s.failed() || r.failed())
      return s.failed() ? s.status() : r.status();
    if (!(factor > 0))
      return error(s, "factor", "must be positive");
    if (!(old > 0))
      return error(s, "original_max_position_embeddings", "must be positive");
    if (!(high > low))
      return error(s, "high_freq_factor", "must exceed low_freq_factor");
    double lowWavelen = old / low, highWavelen = old / high;
    for (double &f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen > lowWavelen) {
        f /= factor;
      } else if (wavelen >= highWavelen) {
        double smooth = (old / wavelen - low) / (high - low);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
  } else if (type == "yarn") {
    double old = originalContext();
    if (!s.failed() && !r.failed() && !(old > 0))
      return error(s, "original_max_position_embeddings",
                   "missing (required for yarn)");
    // A null factor means max_position_embeddings / the original context.
    double factor = s.has("factor")
                        ? s.getFloat("factor")
                        : (maxPositions > 0 ? maxPositions / old : 0.0);
    if (!s.failed() && !(factor > 0))
      return error(s, "factor", "missing or not positive");
    double betaFast = s.getFloat("beta_fast", 32.0);
    double betaSlow = s.getFloat("beta_slow", 1.0);
    double mscale = s.getFloat("mscale", 0.0);
    double mscaleAllDim = s.getFloat("mscale_all_dim", 0.0);
    bool truncate = s.getBool("truncate", true);
    auto getMscale = [](double scale, double m) {
      return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
    };
    double derived =
        mscale != 0 && mscaleAllDim != 0
            ? getMscale(factor, mscale) / getMscale(factor, mscaleAllDim)
            : getMscale(factor, 1.0);
    rope.attentionScaling = s.getFloat("attention_factor", derived);
    if (s.failed() || r.failed())
      return s.failed() ? s.status() : r.status();
    auto correctionDim = [&](double rotations) {
      return headDim * std::log(old / (rotations * 2 * M_PI)) /
             (2 * std::log(rope.theta));
    };
    double lo = correctionDim(betaFast), hi = correctionDim(betaSlow);
    if (truncate) {
      lo = std::floor(lo);
      hi = std::ceil(hi);
    }
    lo = std::max(0.0, lo);
    hi = std::min(headDim - 1.0, hi);
    if (lo == hi)
      hi += 0.001;
    for (size_t j = 0; j < inv.size(); ++j) {
      double ramp = std::clamp((j - lo) / (hi - lo), 0.0, 1.0);
      double extrapolation = 1.0 - ramp;
      inv[j] = inv[j] / factor * (1 - extrapolation) + inv[j] * extrapolation;
    }
  } else {
    return error(s, src.object && s.has("rope_type") ? "rope_type" : "type",
                 "unsupported rope type \"" + type +
                     "\" (supported: default, linear, dynamic, llama3, "
                     "yarn, mrope)");
  }
  if (s.failed())
    return s.status();
  rope.invFreq.assign(inv.begin(), inv.end());
  return rope;
}

//===----------------------------------------------------------------------===//
// Config
//===----------------------------------------------------------------------===//

bool DecoderConfig::isSparse(int64_t i) const {
  return experts > 0 && !llvm::is_contained(mlpOnlyLayers, i) &&
         (i + 1) % sparseStep == 0 && i >= firstDense;
}

static void requirePositive(ConfigReader &r, StringRef key, int64_t value) {
  requireSize(r, key, value);
}

/// Sliding windows of llama-style decoders, by transformers' rules: the
/// window applies only with use_sliding_window; qwen3_moe then uses it in
/// every layer, the others in the layers layer_types marks
/// "sliding_attention" (by default those from max_window_layers on).
static void readSlidingWindows(ConfigReader &r, DecoderConfig &c, bool moe) {
  bool use = r.getBool("use_sliding_window", false);
  int64_t window = r.getInt("sliding_window", 4096);
  int64_t fullLayers = r.getInt("max_window_layers", c.layers);
  std::vector<std::string> types;
  if (r.has("layer_types")) {
    std::optional<std::vector<std::string>> list =
        r.getStringList("layer_types");
    if (!list)
      return;
    types = *list;
    if (!moe && static_cast<int64_t>(types.size()) !=
                    r.getInt("num_hidden_layers", c.layers))
      return r.fail("layer_types",
                    "lists " + std::to_string(types.size()) +
                        " layers, num_hidden_layers is " +
                        std::to_string(r.getInt("num_hidden_layers", 0)));
    for (const std::string &t : types)
      if (t != "full_attention" && t != "sliding_attention" && t != "attention")
        return r.fail("layer_types", "unsupported layer type \"" + t +
                                         "\" (supported: full_attention, "
                                         "sliding_attention)");
  }
  if (!r.failed() && use && window < 0)
    return r.fail("sliding_window", "must be positive");
  if (r.failed() || !use || window <= 0)
    return;
  for (int64_t i = 0; i < c.layers; ++i) {
    bool sliding = moe             ? true
                   : types.empty() ? i >= fullLayers
                                   : types[i] == "sliding_attention";
    c.layerWindows.push_back(sliding ? window : 0);
  }
}

/// Which of the first `used` layers slide: layer_types (sliding_attention
/// or full_attention, one per num_hidden_layers), or `byDefault` when the
/// config has none. Empty, with the reader failed, on a bad list.
static std::vector<bool>
readSlidingLayers(ConfigReader &r, int64_t used,
                  const std::function<bool(int64_t)> &byDefault) {
  std::vector<bool> sliding;
  int64_t total = r.getInt("num_hidden_layers", used);
  if (!r.has("layer_types")) {
    for (int64_t i = 0; i < used; ++i)
      sliding.push_back(byDefault(i));
    return sliding;
  }
  std::optional<std::vector<std::string>> types =
      r.getStringList("layer_types");
  if (!types)
    return {};
  if (static_cast<int64_t>(types->size()) != total) {
    r.fail("layer_types", "lists " + std::to_string(types->size()) +
                              " layers, num_hidden_layers is " +
                              std::to_string(total));
    return {};
  }
  for (int64_t i = 0; i < used; ++i) {
    const std::string &t = (*types)[i];
    if (t != "sliding_attention" && t != "full_attention") {
      r.fail("layer_types", "unsupported layer type \"" + t +
                                "\" (supported: full_attention, "
                                "sliding_attention)");
      return {};
    }
    sliding.push_back(t == "sliding_attention");
  }
  return sliding;
}

/// gpt-oss's own fields: sinks, the clamped SwiGLU and the layers'
/// windows (GptOssConfig: layer_types defaults to sliding attention in the
/// even layers, sliding_window to 128; null means no window).
static void readGptOss(ConfigReader &r, DecoderConfig &c) {
  c.sinks = true;
  c.gptOssExperts = true;
  c.swigluAlpha = r.getFloat("swiglu_alpha", 1.702);
  c.swigluLimit = r.getFloat("swiglu_limit", 7.0);
  if (!r.failed() && !(c.swigluLimit > 0))
    r.fail("swiglu_limit", "must be positive");
  // OpenAI's own spelling of num_experts_per_tok, and the context the
  // model was pretrained at (informational; the rope says how it scales).
  if (r.has("experts_per_token") && !r.failed() &&
      r.getInt("experts_per_token") != c.topK)
    r.fail("experts_per_token",
           "disagrees with num_experts_per_tok " + std::to_string(c.topK));
  r.ignore({"initial_context_length"});
  // OpenAI publishes the experts as MXFP4 blocks and scales; the weight
  // loader dequantizes them into the parameters (runtime/io/Weights.h).
  if (std::optional<ConfigReader> q = r.getObject("quantization_config")) {
    std::string method = q->getString("quant_method", "");
    if (!q->failed() && method != "mxfp4")
      return q->fail("quant_method",
                     "\"" + method +
                         "\" checkpoints are not supported (gpt_oss: mxfp4, "
                         "dequantized at load)");
    q->ignore({"modules_to_not_convert"});
  }
  int64_t window = r.getInt("sliding_window", 4096);
  if (!r.failed() && window < 0)
    r.fail("sliding_window", "must be positive");
  for (bool sliding :
       readSlidingLayers(r, c.layers, [](int64_t i) { return i % 2 == 0; }))
    c.layerWindows.push_back(sliding ? window : 0);
}

/// Gemma 3's fields (Gemma3TextConfig): its norms, scales and soft-cap,
/// layer_types (by default every sliding_window_pattern-th layer, 6, full,
/// the others sliding, sliding_window 4096) and its two ropes: full
/// attention's (rope_parameters.full_attention; 4.x: rope_theta and
/// rope_scaling, theta 1e6 by default) and sliding attention's
/// (rope_parameters.sliding_attention; 4.x: rope_local_base_freq, 1e4).
static void readGemma(ConfigReader &r, DecoderConfig &c,
                      const ImportOptions &options) {
  c.gemma = true;
  c.embedScale = std::sqrt(static_cast<double>(c.hidden));
  double scalar = r.getFloat("query_pre_attn_scalar", 256);
  if (!r.failed() && !(scalar > 0))
    return r.fail("query_pre_attn_scalar", "must be positive");
  c.attentionScale = 1.0 / std::sqrt(scalar);
  c.finalLogitSoftcap = r.getFloat("final_logit_softcapping", 0.0);
  if (!r.failed() && c.finalLogitSoftcap < 0)
    return r.fail("final_logit_softcapping", "must be positive");
  if (!r.failed() && r.has("attn_logit_softcapping"))
    return r.fail("attn_logit_softcapping",
                  "soft-capped attention scores (Gemma 2) are not supported");
  if (!r.failed() && r.getBool("use_bidirectional_attention", false))
    return r.fail("use_bidirectional_attention",
                  "bidirectional text attention is not supported");
  // Gemma3TextConfig's default is 4096; null: the sliding layers see all.
  int64_t window =
      r.isNull("sliding_window") ? 0 : r.getInt("sliding_window", 4096);
  if (!r.failed() && window < 0)
    return r.fail("sliding_window", "must be positive");
  // transformers 5 also saves its private copy, which it does not read back;
  // the KV-cache kind is a generation setting.
  r.ignore({"_sliding_window_pattern", "cache_implementation"});
  int64_t pattern = r.getInt("sliding_window_pattern", 6);
  if (!r.failed() && pattern < 1)
    return r.fail("sliding_window_pattern", "must be positive");
  for (bool sliding : readSlidingLayers(
           r, c.layers, [&](int64_t i) { return (i + 1) % pattern != 0; })) {
    c.layerSliding.push_back(sliding);
    c.layerWindows.push_back(sliding ? window : 0);
  }
  if (r.failed())
    return;

  // The two ropes.
  std::optional<ConfigReader> params = r.getObject("rope_parameters");
  std::optional<ConfigReader> legacy = r.getObject("rope_scaling");
  double topTheta = r.getFloat("rope_theta", 1e6);
  double localTheta = r.getFloat("rope_local_base_freq", 1e4);
  RopeSource full{legacy, topTheta}, local{std::nullopt, localTheta};
  if (params) {
    if (!params->has("full_attention") && !params->has("sliding_attention"))
      return params->fail("rope_type",
                          "Gemma 3 configs give rope_parameters per layer "
                          "type (full_attention, sliding_attention)");
    std::optional<ConfigReader> f = params->getObject("full_attention");
    local.object = params->getObject("sliding_attention");
    if (!full.object)
      full.object = f;
    if (f)
      full.theta = f->getFloat("rope_theta", topTheta);
    if (local.object)
      local.theta = local.object->getFloat("rope_theta", localTheta);
  }
  if (r.failed())
    return;
  absl::StatusOr<RopeConfig> globalRope =
      readRope(r, c.headDim, 1e6, Mrope::None, options, {}, &full);
  if (!globalRope.ok())
    return;
  absl::StatusOr<RopeConfig> localRope =
      readRope(r, c.headDim, 1e4, Mrope::None, options, {}, &local);
  if (!localRope.ok())
    return;
  c.rope = *std::move(globalRope);
  c.localRope = *std::move(localRope);
}

/// DeepSeek-V3's fields (DeepseekV3Config and the published config.json):
/// MLA's sizes, the router's groups and scale, shared experts.
static void readDeepseek(ConfigReader &r, DecoderConfig &c) {
  c.mla = true;
  c.qLoraRank = r.has("q_lora_rank") ? r.getInt("q_lora_rank") : 0;
  c.kvLoraRank = r.getInt("kv_lora_rank");
  c.qkNope = r.getInt("qk_nope_head_dim");
  c.qkRope = c.headDim;
  c.vHeadDim = r.getInt("v_head_dim");
  for (auto [key, value] :
       {std::pair<StringRef, int64_t>{"kv_lora_rank", c.kvLoraRank},
        {"qk_nope_head_dim", c.qkNope},
        {"qk_rope_head_dim", c.qkRope},
        {"v_head_dim", c.vHeadDim}})
    requirePositive(r, key, value);
  if (!r.failed() && c.qLoraRank < 0)
    r.fail("q_lora_rank", "must be positive (or null: q_proj)");
  // transformers saves the derived sum too.
  if (r.has("qk_head_dim") && !r.failed() &&
      r.getInt("qk_head_dim") != c.qkNope + c.qkRope)
    return r.fail("qk_head_dim", "must be qk_nope_head_dim + qk_rope_head_dim "
                                 "= " +
                                     std::to_string(c.qkNope + c.qkRope));
  c.ropeInterleave = r.getBool("rope_interleave", true);
  c.groupRouter = true;
  c.routerGroups = r.has("n_group") ? r.getInt("n_group") : 1;
  c.routerTopkGroups = r.has("topk_group") ? r.getInt("topk_group") : 1;
  c.routedScale = r.getFloat("routed_scaling_factor", 2.5);
  c.sharedExperts = r.getInt("n_shared_experts", 1);
  // Scores scale by (qk_nope + qk_rope)^-1/2, times yarn's mscale(factor,
  // mscale_all_dim) squared (transformers' yarn_apply_mscale).
  double scale = 1.0 / std::sqrt(static_cast<double>(c.qkNope + c.qkRope));
  RopeSource src = findRope(r, 10000.0);
  if (src.object) {
    std::string type = src.object->getString(
        "rope_type", src.object->getString("type", "default"));
    double m = src.object->getFloat("mscale_all_dim", 0.0);
    double factor = src.object->getFloat("factor", 1.0);
    if (type != "default" && m != 0 && factor > 1) {
      double ms = 0.1 * m * std::log(factor) + 1.0;
      scale *= ms * ms;
    }
  }
  c.attentionScale = scale;
  if (r.failed())
    return;
  if (c.routerGroups < 1 || c.experts % c.routerGroups != 0)
    return r.fail("n_group", std::to_string(c.routerGroups) +
                                 " does not divide n_routed_experts " +
                                 std::to_string(c.experts));
  if (c.routerTopkGroups < 1 || c.routerTopkGroups > c.routerGroups)
    return r.fail("topk_group", "must be in [1, n_group]");
  if (c.topK > c.routerTopkGroups * (c.experts / c.routerGroups))
    return r.fail("num_experts_per_tok",
                  "exceeds the experts of topk_group groups");
  if (c.sharedExperts < 0)
    return r.fail("n_shared_experts", "must be >= 0");
  // The original configs' spelling of the routing: only DeepSeek-V3's.
  if (r.getString("scoring_func", "sigmoid") != "sigmoid")
    return r.fail("scoring_func", "only sigmoid scoring is supported");
  if (r.getString("topk_method", "noaux_tc") != "noaux_tc")
    return r.fail("topk_method", "only noaux_tc (group-limited, "
                                 "e_score_correction_bias) is supported");
  // The sequence-wise auxiliary loss of the original code (transformers
  // does not train it), the expert-parallel hint, the MTP layers (not
  // trained: the main model's loss only) and the remote code's class map.
  r.ignore({"aux_loss_alpha", "seq_aux", "ep_size", "num_nextn_predict_layers",
            "num_mtp_layers", "auto_map"});
  // Published checkpoints are block-scaled FP8; the loader says so by name
  // (runtime/io/Weights.cpp) until it dequantizes them.
  if (std::optional<ConfigReader> q = r.getObject("quantization_config")) {
    std::string method = q->getString("quant_method", "");
    if (!q->failed() && method != "fp8")
      return q->fail("quant_method", "\"" + method +
                                         "\" checkpoints are not supported "
                                         "(deepseek_v3: fp8)");
    q->ignore({"activation_scheme", "fmt", "weight_block_size"});
  }
}

DecoderConfig mlir::veomni::parseDecoderConfig(ConfigReader &r,
                                               StringRef modelType,
                                               const ImportOptions &options) {
  DecoderConfig c;
  c.modelType = modelType.str();
  // Qwen3-VL's LLMs: Qwen3 and Qwen3-MoE with interleaved MRoPE (and
  // DeepStack, which the importer adds).
  bool qwen3vl =
      modelType == "qwen3_vl_text" || modelType == "qwen3_vl_moe_text";
  // Qwen3-Omni-MoE's thinker: Qwen3-MoE with interleaved MRoPE and
  // DeepStack too, its experts per expert in the checkpoints.
  bool omni = modelType == "qwen3_omni_moe_text";
  bool qwen3 =
      modelType == "qwen3" || modelType == "qwen3_moe" || qwen3vl || omni;
  bool gptOss = modelType == "gpt_oss";
  bool gemma = modelType == "gemma3_text";
  bool deepseek = modelType == "deepseek_v3";
  bool moe = modelType == "qwen3_moe" || modelType == "qwen3_vl_moe_text" ||
             omni || gptOss || deepseek;
  r.ignoreGenericKeys();

  if (gemma) {
    // Gemma3TextConfig's defaults (published Gemma 3 configs leave out
    // vocab_size, and the 4B's its layer counts' siblings).
    c.vocab = r.getInt("vocab_size", 262208);
    c.hidden = r.getInt("hidden_size", 2304);
    c.intermediate = r.getInt("intermediate_size", 9216);
    c.layers = r.getInt("num_hidden_layers", 26);
    c.heads = r.getInt("num_attention_heads", 8);
  } else {
    c.vocab = r.getInt("vocab_size");
    c.hidden = r.getInt("hidden_size");
    c.intermediate =
        moe ? r.getInt("intermediate_size", 0) : r.getInt("intermediate_size");
    c.layers = r.getInt("num_hidden_layers");
    c.heads = r.getInt("num_attention_heads");
  }
  for (auto [key, value] :
       {std::pair<StringRef, int64_t>{"vocab_size", c.vocab},
        {"hidden_size", c.hidden},
        {"num_hidden_layers", c.layers},
        {"num_attention_heads", c.heads}})
    requirePositive(r, key, value);
  c.kvHeads = r.getInt("num_key_value_heads", gemma ? 4 : c.heads);
  requirePositive(r, "num_key_value_heads", c.kvHeads);
  if (!r.failed() && c.heads % c.kvHeads != 0)
    r.fail("num_key_value_heads", std::to_string(c.kvHeads) +
                                      " does not divide num_attention_heads " +
                                      std::to_string(c.heads));
  bool vlText = modelType == "qwen2_vl" || modelType == "qwen2_5_vl";
  if (deepseek) {
    // The rope's dimension; MLA's head sizes are read in readDeepseek.
    c.headDim = r.getInt("qk_rope_head_dim", 64);
    r.ignore({"head_dim"});
  } else if (omni) {
    // Qwen3-Omni's attention reads head_dim with hidden / heads as its
    // default.
    c.headDim = r.getInt("head_dim", c.heads ? c.hidden / c.heads : 0);
    // (It always has q/k norms and no shared experts, whatever these say.)
    r.ignore({"use_qk_norm", "shared_expert_intermediate_size"});
  } else if (qwen3 || gptOss || gemma) {
    // Qwen3Config's default, GptOssConfig's, Gemma3TextConfig's.
    c.headDim = r.getInt("head_dim", gptOss ? 64 : gemma ? 256 : 128);
  } else if (r.has("head_dim") && !vlText) {
    c.headDim = r.getInt("head_dim");
  } else {
    // Qwen2-VL's and Qwen2.5-VL's text attention always uses hidden /
    // heads, whatever head_dim says.
    r.ignore({"head_dim"});
    if (!r.failed() && c.hidden % c.heads != 0)
      r.fail("hidden_size", std::to_string(c.hidden) +
                                " is not divisible by num_attention_heads " +
                                std::to_string(c.heads));
    c.headDim = c.heads ? c.hidden / c.heads : 0;
  }
  requirePositive(r, "head_dim", c.headDim);
  if (!r.failed() && c.headDim % 2 != 0)
    r.fail("head_dim", "must be even for rotary embeddings, got " +
                           std::to_string(c.headDim));
  c.rmsEps = r.getFloat("rms_norm_eps", gptOss ? 1e-5 : 1e-6);
  if (!r.failed() && !(c.rmsEps > 0))
    r.fail("rms_norm_eps", "must be positive");
  c.tieEmbeddings = r.getBool("tie_word_embeddings", gemma);
  if (gemma) {
    // Gemma's MLP activation is hidden_activation; hidden_act, which old
    // configs also carry, is not read by transformers 5.
    c.mlpAct = readActivation(r, "hidden_activation", "gelu_pytorch_tanh");
    r.ignore({"hidden_act"});
  } else {
    std::string act = readActivation(r, "hidden_act", "silu");
    if (!r.failed() && act != "silu")
      r.fail("hidden_act",
             "decoder MLPs support silu only, got \"" + act + "\"");
  }

  if (modelType == "qwen2" || modelType == "qwen2_vl" ||
      modelType == "qwen2_5_vl" || modelType == "qwen2_5_omni_text") {
    c.qkvBias = true; // Qwen2Attention: q/k/v with bias, o_proj without
  } else {
    c.qkvBias = c.oBias = r.getBool("attention_bias", gptOss);
    c.mlpBias = !qwen3 && !gptOss && r.getBool("mlp_bias", false);
  }
  c.qkNorm = qwen3 || gemma;

  if (moe) {
    // transformers >= 5.1 writes num_local_experts; num_experts is its alias.
    StringRef expertsKey = deepseek                     ? "n_routed_experts"
                           : r.has("num_local_experts") ? "num_local_experts"
                                                        : "num_experts";
    if (deepseek && !r.has("n_routed_experts") && r.has("num_local_experts"))
      expertsKey = "num_local_experts";
    r.ignore({"num_experts"});
    c.experts = r.getInt(expertsKey);
    c.topK = r.getInt("num_experts_per_tok");
    // gpt-oss's experts are intermediate_size wide.
    c.moeIntermediate =
        gptOss ? c.intermediate : r.getInt("moe_intermediate_size");
    requirePositive(r, expertsKey, c.experts);
    requirePositive(r, "num_experts_per_tok", c.topK);
    requirePositive(r, "moe_intermediate_size", c.moeIntermediate);
    if (!r.failed() && c.topK > c.experts)
      r.fail("num_experts_per_tok", std::to_string(c.topK) + " exceeds " +
                                        expertsKey.str() + " " +
                                        std::to_string(c.experts));
    if (deepseek) {
      c.firstDense = r.getInt("first_k_dense_replace", 3);
      if (!r.failed() && c.firstDense < 0)
        r.fail("first_k_dense_replace", "must be >= 0");
      if (!r.failed() && r.getInt("moe_layer_freq", 1) != 1)
        r.fail("moe_layer_freq", "only 1 (every layer from "
                                 "first_k_dense_replace on) is supported");
    } else if (!gptOss) {
      c.sparseStep = r.getInt("decoder_sparse_step", 1);
      requirePositive(r, "decoder_sparse_step", c.sparseStep);
      c.mlpOnlyLayers = r.getIntList("mlp_only_layers");
    }
    // gpt-oss softmaxes the top-k logits: the top-k of the softmax,
    // renormalised.
    // Qwen3-VL-MoE's router always renormalises (transformers reads no
    // norm_topk_prob there).
    if (qwen3vl)
      r.ignore({"norm_topk_prob"});
    c.normTopK = gptOss || qwen3vl || r.getBool("norm_topk_prob", deepseek);
    c.stackedExperts = qwen3vl;
    // The load-balancing loss joins transformers' loss only with
    // output_router_logits; its coefficient alone changes nothing.
    double coef = r.getFloat("router_aux_loss_coef", 0.001);
    if (r.getBool("output_router_logits", false) && deepseek && !r.failed()) {
      r.fail("output_router_logits",
             "DeepSeek-V3 balances its experts by e_score_correction_bias; "
             "a load-balancing loss is not supported");
    } else if (r.getBool("output_router_logits", false)) {
      if (!r.failed() && (!std::isfinite(coef) || coef < 0))
        r.fail("router_aux_loss_coef", "must be a number >= 0");
      c.routerAuxCoef = coef;
    }
  }
  if (!gptOss && !deepseek && r.has("quantization_config") && !r.failed()) {
    std::optional<ConfigReader> q = r.getObject("quantization_config");
    std::string method = q ? q->getString("quant_method", "") : "";
    r.fail("quantization_config",
           "\"" + method + "\" checkpoints are not supported for " +
               modelType.str() +
               " (veomni trains bf16/f16/f32 weights; dequantize them first)");
  }
  if (!r.failed() && r.getFloat("attention_dropout", 0.0) != 0.0)
    r.fail("attention_dropout",
           std::to_string(r.getFloat("attention_dropout", 0.0)) +
               ": dropout on attention probabilities in training is not "
               "supported; set it to 0.0");
  // Keys that do not change the trained function: pretraining_tp splits
  // matmuls into equal parts in older transformers, and pad_token_id only
  // freezes the embedding row of a padding token, which packed veomni
  // batches never contain (docs/frontends.md).
  r.ignore({"pretraining_tp", "pad_token_id"});
  // Token ids of images and video place them in the token stream: the data
  // pipeline's work (4.x VL configs repeat them in text_config).
  r.ignore({"image_token_id", "video_token_id", "vision_start_token_id",
            "vision_end_token_id", "vision_token_id"});

  if (options.model.numLayers >= 0) {
    if (!r.failed() && options.model.numLayers > c.layers)
      r.fail("num_hidden_layers",
             "--num-layers " + std::to_string(options.model.numLayers) +
                 " exceeds the model's " + std::to_string(c.layers));
    c.layers = std::min(c.layers, options.model.numLayers);
  }
  if (!r.failed() && c.sparseStep > 0)
    for (int64_t i = 0; i < c.layers; ++i)
      if (!c.isSparse(i) && c.intermediate <= 0) {
        r.fail("intermediate_size",
               "layer " + std::to_string(i) +
                   " has a dense MLP and needs a positive intermediate_size");
        break;
      }
  if (!moe || gptOss)
    requirePositive(r, "intermediate_size", c.intermediate);
  if (gptOss && !r.failed())
    readGptOss(r, c);
  else if (gemma && !r.failed())
    readGemma(r, c, options);
  else if (deepseek && !r.failed())
    readDeepseek(r, c);
  else if (qwen3vl || omni)
    // Their attention has no window (transformers reads none of these).
    r.ignore({"use_sliding_window", "sliding_window", "max_window_layers",
              "layer_types"});
  else if (!r.failed())
    readSlidingWindows(r, c, moe);
  if (!r.failed() && !gemma) {
    double defaultTheta = vlText || modelType == "qwen2_5_omni_text"
                              ? 1000000.0 // the VL and omni text configs'
                          : modelType == "qwen3_vl_text"     ? 5000000.0
                          : modelType == "qwen3_vl_moe_text" ? 500000.0
                          : omni                             ? 1000000.0
                          : gptOss                           ? 150000.0
                                                             : 10000.0;
    Mrope mrope = qwen3vl || omni ? Mrope::Interleaved
                  : vlText || modelType == "qwen2_5_omni_text" ? Mrope::Runs
                                                               : Mrope::None;
    // GptOssConfig's rope when a config has none.
    const char *gptOssRope =
        R"({"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
            "beta_slow": 1.0, "truncate": false,
            "original_max_position_embeddings": 4096})";
    absl::StatusOr<RopeConfig> rope = readRope(
        r, c.headDim, defaultTheta, mrope, options, gptOss ? gptOssRope : "");
    if (rope.ok())
      c.rope = *std::move(rope);
  }
  return c;
}

//===----------------------------------------------------------------------===//
// Building
//===----------------------------------------------------------------------===//

std::pair<Value, Value>
mlir::veomni::buildTokenEmbedding(ModelBuilder &b, const DecoderConfig &c,
                                  const DecoderNames &names, Value ids) {
  locate(b, names.prefix + "embed_tokens", ModuleKind::Embedding);
  Value table =
      b.param(names.prefix + "embed_tokens.weight", {c.vocab, c.hidden});
  Value embeds = b.gather(table, ids);
  // Gemma scales the token embeddings by sqrt(hidden), before image
  // features take the place of theirs (those are not scaled).
  if (c.embedScale > 0)
    embeds = b.scale(embeds, c.embedScale);
  return {embeds, table};
}

Value mlir::veomni::mergeRows(ModelBuilder &b, Value embeds, Value positions,
                              Value rows) {
  if (!embeds || !positions || !rows) // an earlier op failed, and said why
    return Value();
  auto type = cast<RankedTensorType>(embeds.getType());
  int64_t tokens = type.getDimSize(0) * type.getDimSize(1);
  int64_t hidden = type.getDimSize(2);
  int64_t n = cast<RankedTensorType>(positions.getType()).getDimSize(0);
  Value flat = b.reshape(embeds, {tokens, hidden});
  // keep = 1 - (1 at merged rows): exact, unlike adding a difference.
  Value mask =
      b.scatterAdd(b.splat(0, {tokens, 1}), positions, b.splat(1, {n, 1}));
  Value keep = b.broadcast(b.sub(b.splat(1, {tokens, 1}), mask),
                           {tokens, hidden}, {0, 1});
  Value placed = b.scatterAdd(b.splat(0, {tokens, hidden}), positions, rows);
  return b.reshape(b.add(b.mul(flat, keep), placed), type.getShape());
}

namespace {
struct LayerBuilder {
  ModelBuilder &b;
  const DecoderConfig &c;
  const DecoderNames &names;
  int64_t batch, seq;
  /// Per MoE layer, for the load-balancing loss: the router's
  /// probabilities summed over tokens, and the tokens sent to each expert.
  std::vector<Value> routerProbs, routerCounts;

  Value param(const std::string &name, ArrayRef<int64_t> shape) {
    return b.param(name, shape);
  }

  /// The RMSNorm `name`.weight over the last `dim` values of x: w * norm(x),
  /// or Gemma's (1 + w) * norm(x).
  Value norm(Value x, const std::string &name, int64_t dim) {
    Value w = param(name + ".weight", {dim});
    if (c.gemma) {
      b.initAs(w, "zeros"); // the norm scales by 1 + w
      w = b.add(w, b.splat(1.0, {dim}));
    }
    return b.rmsNorm(x, w, c.rmsEps);
  }

  /// HF Linear: weight [out, in], optional bias [out].
  Value linear(Value x, const std::string &name, int64_t out, int64_t in,
               bool bias) {
    Value weight = param(name + ".weight", {out, in}); // declared first
    return b.linear(x, weight, bias ? param(name + ".bias", {out}) : Value());
  }

  Value attention(const std::string &p, int64_t layer, Value h, Value positions,
                  Value segments) {
    locate(b, p + "self_attn", ModuleKind::Attention, layer);
    int64_t hd = c.headDim;
    auto project = [&](const char *name, int64_t heads) {
      Value y =
          linear(h, p + "self_attn." + name, heads * hd, c.hidden, c.qkvBias);
      return b.reshape(y, {batch, seq, heads, hd});
    };
    Value q = project("q_proj", c.heads);
    Value k = project("k_proj", c.kvHeads);
    Value v = project("v_proj", c.kvHeads);
    if (c.qkNorm) {
      q = norm(q, p + "self_attn.q_norm", hd);
      k = norm(k, p + "self_attn.k_norm", hd);
    }
    const RopeConfig &rope = c.ropeOf(layer);
    q = b.rope(q, positions, rope.theta, rope.mropeSection, rope.invFreq,
               rope.attentionScaling, rope.mropeInterleaved);
    k = b.rope(k, positions, rope.theta, rope.mropeSection, rope.invFreq,
               rope.attentionScaling, rope.mropeInterleaved);
    Value sinks = c.sinks ? param(p + "self_attn.sinks", {c.heads}) : Value();
    double scale = c.attentionScale > 0
                       ? c.attentionScale
                       : 1.0 / std::sqrt(static_cast<double>(hd));
    Value a = b.attention(q, k, v, segments, /*causal=*/true, scale,
                          c.windowOf(layer), sinks);
    a = b.reshape(a, {batch, seq, c.heads * hd});
    return linear(a, p + "self_attn.o_proj", c.hidden, c.heads * hd, c.oBias);
  }

  /// The gated MLP `<p>mlp.` (or `<p><module>.`), `inter` wide (default:
  /// intermediate_size).
  Value denseMlp(const std::string &p, int64_t layer, Value h,
                 int64_t inter = 0, const std::string &module = "mlp") {
    locate(b, p + "mlp", ModuleKind::Mlp, layer);
    inter = inter ? inter : c.intermediate;
    std::string m = p + module + ".";
    Value gate = linear(h, m + "gate_proj", inter, c.hidden, c.mlpBias);
    Value up = linear(h, m + "up_proj", inter, c.hidden, c.mlpBias);
    return linear(b.mul(activation(b, c.mlpAct, gate), up), m + "down_proj",
                  c.hidden, inter, c.mlpBias);
  }

  /// Even and odd positions of the last dimension apart: DeepSeek's
  /// interleaved rope pairs (x0, x1), (x2, x3), ... become rotate_half's.
  Value deinterleave(Value x) {
    auto type = cast<RankedTensorType>(x.getType());
    SmallVector<int64_t> zero(type.getRank(), 0), one(type.getRank(), 0),
        step(type.getRank(), 1);
    one.back() = 1;
    step.back() = 2;
    return b.concat({b.slice(x, zero, type.getShape(), step),
                     b.slice(x, one, type.getShape(), step)},
                    type.getRank() - 1);
  }

  /// DeepSeek's multi-head latent attention.
  Value mla(const std::string &p, int64_t layer, Value h, Value positions,
            Value segments) {
    locate(b, p + "self_attn", ModuleKind::Attention, layer);
    const int64_t H = c.heads, nope = c.qkNope, rot = c.qkRope, qk = nope + rot,
                  vd = c.vHeadDim, kv = c.kvLoraRank;
    std::string a = p + "self_attn.";
    Value q;
    if (c.qLoraRank > 0) {
      Value qa = linear(h, a + "q_a_proj", c.qLoraRank, c.hidden, c.qkvBias);
      // DeepSeek's latent norms keep RMSNorm's default epsilon.
      qa =
          b.rmsNorm(qa, param(a + "q_a_layernorm.weight", {c.qLoraRank}), 1e-6);
      q = linear(qa, a + "q_b_proj", H * qk, c.qLoraRank, false);
    } else {
      q = linear(h, a + "q_proj", H * qk, c.hidden, false);
    }
    q = b.reshape(q, {batch, seq, H, qk});
    Value qPass = b.slice(q, {0, 0, 0, 0}, {batch, seq, H, nope});
    Value qRot = b.slice(q, {0, 0, 0, nope}, {batch, seq, H, qk});
    Value latent =
        linear(h, a + "kv_a_proj_with_mqa", kv + rot, c.hidden, c.qkvBias);
    Value kvNope = b.slice(latent, {0, 0, 0}, {batch, seq, kv});
    Value kRot = b.reshape(b.slice(latent, {0, 0, kv}, {batch, seq, kv + rot}),
                           {batch, seq, 1, rot});
    kvNope = b.rmsNorm(kvNope, param(a + "kv_a_layernorm.weight", {kv}), 1e-6);
    if (c.ropeInterleave) {
      qRot = deinterleave(qRot);
      kRot = deinterleave(kRot);
    }
    const RopeConfig &rope = c.rope;
    qRot = b.rope(qRot, positions, rope.theta, rope.mropeSection, rope.invFreq,
                  rope.attentionScaling);
    kRot = b.rope(kRot, positions, rope.theta, rope.mropeSection, rope.invFreq,
                  rope.attentionScaling);
    Value kvb =
        b.reshape(linear(kvNope, a + "kv_b_proj", H * (nope + vd), kv, false),
                  {batch, seq, H, nope + vd});
    Value kNope = b.slice(kvb, {0, 0, 0, 0}, {batch, seq, H, nope});
    Value v = b.slice(kvb, {0, 0, 0, nope}, {batch, seq, H, nope + vd});
    // Every head shares the rope part of the key.
    Value kShared = b.broadcast(b.reshape(kRot, {batch, seq, rot}),
                                {batch, seq, H, rot}, {0, 1, 3});
    Value k = b.concat({kNope, kShared}, 3);
    q = b.concat({qPass, qRot}, 3);
    Value out =
        b.attention(q, k, v, segments, /*causal=*/true, c.attentionScale);
    out = b.reshape(out, {batch, seq, H * vd});
    return linear(out, a + "o_proj", c.hidden, H * vd, c.oBias);
  }

  /// gpt-oss's experts on the rows `sorted` (grouped by `groups`): x W +
  /// b per expert, W stacked [E, in, out] as the checkpoint stores it. The
  /// bias rides in the same grouped matmul as one more input row of W
  /// against a column of ones, so that rows travel to their experts (ep)
  /// once per projection.
  Value gptOssExperts(const std::string &p, Value sorted, Value groups) {
    int64_t rows = cast<RankedTensorType>(sorted.getType()).getDimSize(0);
    int64_t e = c.experts, inter = c.moeIntermediate;
    Value ones = b.splat(1.0, {rows, 1});
    // (order: torch registers gate_up_proj, its bias, down_proj, its bias.)
    auto project = [&](Value x, const char *name, int64_t order, int64_t in,
                       int64_t out) {
      std::string w = p + "mlp.experts." + name;
      Value weight = param(w, {e, in, out});
      Value bias = b.reshape(param(w + "_bias", {e, out}), {e, 1, out});
      Value y = b.groupedMatmul(b.concat({x, ones}, 1),
                                b.concat({weight, bias}, 1), groups, false);
      b.markExperts(y, w, order, 0, in);
      return y;
    };
    Value gateUp = project(sorted, "gate_up_proj", 0, c.hidden, 2 * inter);
    // Gate and up interleave: columns 0, 2, ... and 1, 3, ...
    Value gate = b.slice(gateUp, {0, 0}, {rows, 2 * inter}, {1, 2});
    Value up = b.slice(gateUp, {0, 1}, {rows, 2 * inter}, {1, 2});
    gate = b.clamp(gate, std::nullopt, c.swigluLimit);
    up = b.clamp(up, -c.swigluLimit, c.swigluLimit);
    Value glu = b.mul(gate, b.sigmoid(b.scale(gate, c.swigluAlpha)));
    Value act = b.mul(b.add(up, b.splat(1.0, {rows, inter})), glu);
    return project(act, "down_proj", 2, inter, c.hidden);
  }

  /// Qwen3-VL-MoE's experts, fused as transformers 5 holds and saves them:
  /// gate_up_proj [E, 2I, H] (gate rows, then up rows) and down_proj
  /// [E, H, I]. (The loader also reads the published [E, H, 2I] and
  /// [E, I, H], transposed, as transformers does.)
  Value stackedExperts(const std::string &p, Value sorted, Value groups) {
    int64_t rows = cast<RankedTensorType>(sorted.getType()).getDimSize(0);
    int64_t e = c.experts, inter = c.moeIntermediate;
    const std::string gateUpName = p + "mlp.experts.gate_up_proj";
    const std::string downName = p + "mlp.experts.down_proj";
    Value gateUp =
        b.groupedMatmul(sorted, param(gateUpName, {e, 2 * inter, c.hidden}),
                        groups, /*transposeWeight=*/true);
    b.markExperts(gateUp, gateUpName, 0, 0, c.hidden);
    Value gate = b.slice(gateUp, {0, 0}, {rows, inter});
    Value up = b.slice(gateUp, {0, inter}, {rows, 2 * inter});
    Value down =
        b.groupedMatmul(b.mul(b.silu(gate), up),
                        param(downName, {e, c.hidden, inter}), groups, true);
    b.markExperts(down, downName, 1, 0, inter);
    return down;
  }

  /// The stacked SwiGLU experts (`mlp.experts.*.{gate,up,down}_proj`, dim 0
  /// enumerating experts.<i>) on the rows `sorted`, grouped by `groups`.
  Value swigluExperts(const std::string &p, Value sorted, Value groups) {
    int64_t inter = c.moeIntermediate, e = c.experts;
    auto experts = [&](const char *name, int64_t out, int64_t in) {
      return param(p + "mlp.experts.*." + name + ".weight", {e, out, in});
    };
    Value gate = b.groupedMatmul(sorted, experts("gate_proj", inter, c.hidden),
                                 groups, /*transposeWeight=*/true);
    Value up = b.groupedMatmul(sorted, experts("up_proj", inter, c.hidden),
                               groups, true);
    Value down =
        b.groupedMatmul(b.mul(b.silu(gate), up),
                        experts("down_proj", c.hidden, inter), groups, true);
    // transformers 5 holds them fused, gate_up_proj [E, 2I, H] (the gate's
    // rows first) and down_proj [E, H, I], which is what PEFT adapts.
    const std::string fused = p + "mlp.experts.";
    b.markExperts(gate, fused + "gate_up_proj", 0, 0, c.hidden);
    b.markExperts(up, fused + "gate_up_proj", 0, inter, c.hidden);
    b.markExperts(down, fused + "down_proj", 1, 0, inter);
    return down;
  }

  /// The router's weights and expert indices [T, k] of the tokens `flat`:
  /// DeepSeek-V3's sigmoid scores with the group-limited choice and its
  /// e_score_correction_bias (a buffer), or a softmax top-k over the gate's
  /// (gpt-oss: the biased router's) logits, whose statistics the
  /// load-balancing loss collects.
  std::pair<Value, Value> route(const std::string &p, Value flat) {
    int64_t tokens = batch * seq, e = c.experts;
    if (c.groupRouter) {
      Value gate = param(p + "mlp.gate.weight", {e, c.hidden});
      b.markRouter(gate);
      Value logits = b.linear(flat, gate);
      Value bias = param(p + "mlp.gate.e_score_correction_bias", {e});
      b.initAs(bias, "zeros");
      b.markBuffer(bias);
      return b.moeGroupTopK(b.sigmoid(logits), bias, c.topK, c.routerGroups,
                            c.routerTopkGroups, c.normTopK, c.routedScale);
    }
    // (transformers 5's routers are modules of their own, no nn.Linear.)
    const std::string router =
        p + (c.gptOssExperts ? "mlp.router" : "mlp.gate");
    Value gate = param(router + ".weight", {e, c.hidden});
    b.markRouter(gate);
    Value logits = b.linear(
        flat, gate, c.gptOssExperts ? param(router + ".bias", {e}) : Value());
    auto [weights, indices] = b.moeTopK(logits, c.topK, c.normTopK);
    if (c.routerAuxCoef > 0) {
      Type f32 = Float32Type::get(b.getContext());
      routerProbs.push_back(
          b.reduce(ReduceKind::Sum, b.softmax(b.cast(logits, f32), 1), {0}));
      Value ones = b.splat(1.0, {tokens * c.topK}, f32);
      routerCounts.push_back(b.scatterAdd(
          b.splat(0.0, {e}, f32), b.reshape(indices, {tokens * c.topK}), ones));
    }
    return {weights, indices};
  }

  /// The MoE block: route, dispatch, the experts, combine; DeepSeek's
  /// shared experts run as one MLP on every token beside them.
  Value moe(const std::string &p, int64_t layer, Value h) {
    locate(b, p + "mlp", ModuleKind::Mlp, layer);
    Value flat = b.reshape(h, {batch * seq, c.hidden});
    auto [weights, indices] = route(p, flat);
    auto [sorted, groups] = b.moeDispatch(flat, indices, c.experts);
    Value down = c.gptOssExperts    ? gptOssExperts(p, sorted, groups)
                 : c.stackedExperts ? stackedExperts(p, sorted, groups)
                                    : swigluExperts(p, sorted, groups);
    Value routed =
        b.reshape(b.moeCombine(down, weights, indices), {batch, seq, c.hidden});
    if (c.sharedExperts == 0)
      return routed;
    return b.add(routed,
                 denseMlp(p, layer, h, c.moeIntermediate * c.sharedExperts,
                          "mlp.shared_experts"));
  }
};
} // namespace

DecoderOutputs
mlir::veomni::buildDecoderLoss(ModelBuilder &b, const DecoderConfig &c,
                               const DecoderNames &names, Value embeds,
                               Value table, Value positions, Value segments,
                               Value labels, const Deepstack &deepstack) {
  if (!embeds)
    return {};
  auto type = cast<RankedTensorType>(embeds.getType());
  LayerBuilder lb{b, c, names, type.getDimSize(0), type.getDimSize(1)};
  Value x = embeds;
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string p = names.prefix + "layers." + std::to_string(i) + ".";
    locate(b, p + "input_layernorm", ModuleKind::InputNorm, i);
    Value h = lb.norm(x, p + "input_layernorm", c.hidden);
    Value a = c.mla ? lb.mla(p, i, h, positions, segments)
                    : lb.attention(p, i, h, positions, segments);
    locate(b, p + "post_attention_layernorm", ModuleKind::PostAttentionNorm, i);
    if (c.gemma) {
      // Sandwich norms: the attention's and the MLP's outputs are normed
      // before their residual adds.
      x = b.add(x, lb.norm(a, p + "post_attention_layernorm", c.hidden));
      locate(b, p + "pre_feedforward_layernorm", ModuleKind::PostAttentionNorm,
             i);
      h = lb.norm(x, p + "pre_feedforward_layernorm", c.hidden);
      Value m = lb.denseMlp(p, i, h);
      locate(b, p + "post_feedforward_layernorm", ModuleKind::Mlp, i);
      x = b.add(x, lb.norm(m, p + "post_feedforward_layernorm", c.hidden));
      continue;
    }
    x = b.add(x, a);
    h = lb.norm(x, p + "post_attention_layernorm", c.hidden);
    x = b.add(x, c.isSparse(i) ? lb.moe(p, i, h) : lb.denseMlp(p, i, h));
    if (i < static_cast<int64_t>(deepstack.features.size())) {
      // DeepStack: the vision tower's features of block i join the image
      // tokens' hidden states. (Scattered into zeros, then added: the add
      // keeps x's sharding, where a scatter into x would need x whole.)
      int64_t tokens = lb.batch * lb.seq;
      Value placed = b.scatterAdd(b.splat(0, {tokens, c.hidden}),
                                  deepstack.positions, deepstack.features[i]);
      x = b.add(x, b.reshape(placed, {lb.batch, lb.seq, c.hidden}));
    }
  }
  locate(b, names.prefix + "norm", ModuleKind::FinalNorm);
  x = lb.norm(x, names.prefix + "norm", c.hidden);
  locate(b, "lm_head", ModuleKind::LmHead);
  Value head =
      c.tieEmbeddings ? table : b.param(names.lmHead, {c.vocab, c.hidden});
  Value logits = b.linear(x, head);
  if (c.finalLogitSoftcap > 0)
    logits = b.scale(b.tanh(b.scale(logits, 1.0 / c.finalLogitSoftcap)),
                     c.finalLogitSoftcap);
  Value loss = b.crossEntropy(logits, labels);
  if (!lb.routerProbs.empty()) {
    // transformers' load_balancing_loss_func over every MoE layer's tokens
    // together (n of them): E * sum_e (tokens sent to e / n) * (mean
    // probability of e), times router_aux_loss_coef.
    Value probs = lb.routerProbs[0], counts = lb.routerCounts[0];
    for (size_t i = 1; i < lb.routerProbs.size(); ++i) {
      probs = b.add(probs, lb.routerProbs[i]);
      counts = b.add(counts, lb.routerCounts[i]);
    }
    const double n =
        double(lb.routerProbs.size()) * double(lb.batch) * double(lb.seq);
    Value aux = b.reduce(ReduceKind::Sum, b.mul(counts, probs), {0});
    aux = b.scale(aux, c.routerAuxCoef * double(c.experts) / (n * n));
    loss = b.add(
        loss,
        b.cast(aux, cast<RankedTensorType>(loss.getType()).getElementType()));
  }
  return {loss, logits};
}

void mlir::veomni::appendDecoderPlan(std::vector<PlanRule> &plan,
                                     const DecoderNames &n) {
  const std::string l = n.prefix + "layers.*.";
  plan.insert(plan.end(),
              {
                  {n.prefix + "embed_tokens.weight", Placement::Vocab},
                  {l + "self_attn.q_proj.*", Placement::Column},
                  {l + "self_attn.k_proj.*", Placement::Column},
                  {l + "self_attn.v_proj.*", Placement::Column},
                  {l + "self_attn.o_proj.weight", Placement::Row},
                  {l + "self_attn.sinks", Placement::Column}, // per head
                  // MLA: the per-head up-projections split by heads; the
                  // latent down-projections and their norms stay whole.
                  {l + "self_attn.q_b_proj.*", Placement::Column},
                  {l + "self_attn.kv_b_proj.*", Placement::Column},
                  {l + "mlp.shared_experts.gate_proj.*", Placement::Column},
                  {l + "mlp.shared_experts.up_proj.*", Placement::Column},
                  {l + "mlp.shared_experts.down_proj.weight", Placement::Row},
                  {l + "mlp.experts.*", Placement::Expert},
                  {l + "mlp.gate_proj.*", Placement::Column},
                  {l + "mlp.up_proj.*", Placement::Column},
                  {l + "mlp.down_proj.weight", Placement::Row},
                  {n.lmHead, Placement::Vocab},
              });
}
