#!/usr/bin/env python3
"""Golden files for veomni's numerical parity tests against Hugging Face transformers.

Each golden *case* is a tiny model: a family, its base config
examples/tiny/<family>.json and a few overrides (CASES below). The ten
family cases (llama, qwen2, qwen3, qwen3_moe, gpt_oss, gemma3_text,
deepseek_v3, qwen2_vl, qwen2_5_vl, qwen2_5_omni) use their base config
unchanged; the others exercise what
configs written by transformers 5 broke:

  llama3_tied      llama3 rope scaling (factor 8, low/high freq factors 1/4,
                   original_max_position_embeddings 64, so that of the 8
                   frequencies one is kept, one smoothly interpolated and six
                   divided by 8), rope theta 500000, tied embeddings
  qwen2_yarn       YaRN as Qwen's model cards spell it ("type": "yarn";
                   factor 4, original_max_position_embeddings 256 =
                   max_position_embeddings / 4, beta_fast/beta_slow default:
                   of the 8 frequencies one kept, two blended (1/3, 2/3 of the
                   way) and five divided by 4; cos and sin scaled by
                   0.1 ln 4 + 1), rope theta 1e6
  qwen3_head_dim   head_dim 32 while hidden_size / num_attention_heads is 16
                   (q_proj [128, 64], o_proj [64, 128]), one key/value head,
                   untied LM head, rope theta 1e6
  qwen3_moe_dense  norm_topk_prob false (no top-k renormalisation), 3 layers,
                   mlp_only_layers [1]: layers 0 and 2 sparse, 1 dense
  qwen3_moe_aux    output_router_logits with router_aux_loss_coef 0.02: the
                   load-balancing loss in the loss
  qwen2_window     use_sliding_window with sliding_window 8 and
                   max_window_layers 1: layer 1 attends through a window
  gpt_oss          (a family case) sinks, sliding window 8 in layer 0, full
                   attention in layer 1, yarn as gpt-oss's (factor 32, no
                   truncation), biased router and experts, swiglu_limit 7
                   (which the tiny model's values never reach)
  gpt_oss_clamped  swiglu_limit 0.1, so that the clamps act, and the
                   load-balancing loss (coefficient 0.02)
  deepseek_v3      (a family case) MLA with q_lora_rank 32, kv_lora_rank 32,
                   nope 16 + rope 8 (interleaved; yarn x4 with mscale_all_dim
                   1), v 16; 8 experts in 4 groups, 2 kept, top 2, scale
                   2.5, one shared expert, layer 0 dense; the choice biases
                   (a buffer) N(0, 0.05), written with zero gradients and
                   unchanged by the step
  gemma3           (a family case) Gemma 3 with its SigLIP tower: two 32x32
                   images (16 patches of 8x8, pooled 2x2 to 4 tokens each)
                   between text, token_type_ids 1 on their tokens (each run
                   bidirectional), a window of 4 in the sliding layer; the
                   reference's image blocks must move the logits
  gemma3_text      (a family case) sliding layer 0 (window 8, local rope
                   theta 1e4) and full layer 1 (linear rope x8, theta 1e6),
                   query_pre_attn_scalar 24, tied embeddings; its self-checks
                   allow 4e-6 of the largest gradient and of the norm (the
                   sqrt(hidden)-scaled embeddings and (1 + w) norms make
                   gradients 10x larger: float32 sums in another order)

This builds the transformers model in float32, fills its parameters with
seeded random values (matrices and embeddings N(0, 0.02); norm weights
1 + N(0, 0.1) and biases N(0, 0.02), so that they are exercised too), runs one
forward pass on a seeded batch (B=1, S=32) and writes, under
<out_root>/<case>/:

  config.json           the config as transformers 5 writes it (save_pretrained:
                        rope_parameters, dtype, text_config for the VL models,
                        num_local_experts for qwen3_moe, ...); omni's thinker
                        also carries the special token ids of OMNI_SPECIAL_IDS
  config.v4.json        the same config in transformers 4.x form: written by
                        save_pretrained of transformers 4.55 (rope_theta,
                        rope_scaling with "rope_type" (and "type"), torch_dtype,
                        the text keys also at the top level of the VL models),
                        run by tools/goldens/save_v4_config.py in another
                        Python (--v4-python) on the case's config with
                        config.json's architectures; transformers 5 loads it
                        into the same config as config.json
  model.safetensors     the weights exactly as transformers 5's
                        model.save_pretrained writes them: float32, __metadata__
                        {"format": "pt"}, HF *checkpoint* names: per-expert MoE
                        weights mlp.experts.<e>.{gate,up,down}_proj.weight
                        (transformers 5 holds them stacked, gate_up_proj
                        [E, 2I, H] and down_proj [E, H, I], and splits them on
                        saving), `model.*` + `visual.*` and `thinker.model.*`,
                        `thinker.visual.*`, `thinker.audio_tower.*` prefixes
                        (not the nested model.language_model.* of its modules);
                        tied embeddings only as model.embed_tokens.weight, no
                        lm_head.weight. Were those names ever to differ from
                        this script's checkpoint names (checkpoint_tensors), it
                        would also write weights.safetensors in the latter
  batch.safetensors     the veomni batch inputs of docs/frontends.md (int32 ids,
                        positions, labels already shifted; float32 pixels / mels)
  expected.safetensors  `logits` [1, 32, vocab] from the HF forward and `loss` []
                        = mean cross entropy of those logits vs the shifted labels
  grads.safetensors     d loss / d parameter (that `loss`, float32; no router aux
                        loss) by autograd through the HF forward, under the names
                        and shapes of the checkpoint (per-expert; tied
                        embeddings: model.embed_tokens.weight holds the whole
                        gradient, input side plus LM head); a parameter the
                        forward never reads (omni's audio_bos_eos_token) is zeros
  adamw.safetensors     every parameter after one step, float32, same names:
                        torch.nn.utils.clip_grad_norm_(max_norm=1.0) on those
                        gradients, then torch.optim.AdamW(lr=1e-3, betas=(0.9,
                        0.95), eps=1e-8), weight_decay 0.1 for parameters with
                        ndim >= 2 (matrices, embeddings, convs, the router) and
                        0.0 for the others (norm weights, biases); every
                        parameter is stepped, unread ones included. The one
                        __metadata__ key "veomni_adamw" holds a JSON object of
                        strings: the hyperparameters and "grad_norm", the total
                        gradient norm before clipping

Before writing, every case is checked: our loss equals HF's own loss (given
unshifted labels); model.safetensors holds exactly the checkpoint-named
parameters; the case directory (config.json + model.safetensors) loads back
with from_pretrained (no missing or unexpected keys) and reproduces the logits
bit for bit, and so does config.v4.json with the same weights; config.v4.json
has the 4.x keys and loads into a config equal to config.json's; and a small
re-implementation of veomni's semantics (frontends/Decoder.cpp, Encoders.cpp)
that reads nothing but config.json, model.safetensors and batch.safetensors
(rope theta and scaling: default, linear, llama3, yarn with its attention
factor; head_dim; norm_topk_prob; mlp_only_layers / decoder_sparse_step; tied
embeddings) reproduces the HF logits, and by autograd through it, the
gradients by checkpoint name; its rope frequencies also equal HF's. The AdamW
result is checked against the update written out in float64 (clip: g *= min(1,
1 / (norm + 1e-6)); p *= 1 - lr * wd; p -= lr / (1 - b1) * m / (sqrt(v) /
sqrt(1 - b2) + eps), m = (1 - b1) g, v = (1 - b2) g^2). Qwen2.5-VL's window
permutation is additionally checked on a larger image whose windows are
non-trivial (not written).

Run from the repository root:

    python tools/goldens/make_goldens.py [OUT_ROOT] [--case NAME ...] [--v4-python PATH]

OUT_ROOT defaults to test/goldens; --case (or --family, the same) picks cases,
all by default; --v4-python is a Python with transformers 4.x (no torch
needed), /root/venvs/t4cfg/bin/python by default. Reruns write identical bytes.
Regenerating the goldens needs only packages from PyPI: torch + transformers 5
(and safetensors) for this script, transformers 4.x for the 4.x configs:

    python3 -m venv V5 && V5/bin/pip install torch transformers safetensors numpy
    python3 -m venv V4 && V4/bin/pip install 'transformers==4.55.4'
    V5/bin/python tools/goldens/make_goldens.py --v4-python V4/bin/python

(4.55 is the last 4.x whose configs say torch_dtype; 4.56+ write dtype.) This
script is reference tooling, never a dependency of the build or the tests.
Made with torch 2.15.0 and transformers 5.25.0, 4.x configs with transformers
4.55.4.
"""

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import vision_utils

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "tiny"
V4_HELPER = Path(__file__).resolve().parent / "save_v4_config.py"
DEFAULT_V4_PYTHON = "/root/venvs/t4cfg/bin/python"
FAMILIES = [
    "llama",
    "qwen2",
    "qwen3",
    "qwen3_moe",
    "gpt_oss",
    "gemma3_text",
    "gemma3",
    "deepseek_v3",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen2_5_omni",
    "qwen3_vl",
    "qwen3_vl_moe",
    "qwen3_omni_moe",
]
MOE_FAMILIES = ("qwen3_moe", "gpt_oss", "deepseek_v3", "qwen3_vl_moe", "qwen3_omni_moe")
# Persistent buffers that checkpoints hold beside the parameters: written,
# with zero gradients and unchanged by the step (veomni trains them by no
# gradient either).
BUFFERS = (".e_score_correction_bias",)
VISION_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen2_5_omni", "qwen3_vl", "qwen3_vl_moe", "qwen3_omni_moe")
OMNI = ("qwen2_5_omni", "qwen3_omni_moe")  # a thinker with vision and audio
# DeepStack, interleaved MRoPE, learned vision positions (Qwen3-Omni's thinker too).
QWEN3_VL = ("qwen3_vl", "qwen3_vl_moe", "qwen3_omni_moe")
# Gemma 3 with its SigLIP tower: two 32x32 images (16 patches, pooled to 4
# tokens each), each in a run of image tokens that sees itself whole.
GEMMA3_IMAGES = 2
GEMMA_FAMILIES = ("gemma3_text", "gemma3")
# Families that transformers 4.55 (the 4.x config writer) does not know.
NO_V4 = QWEN3_VL
# Qwen3-Omni's clip: 64 frames, less than a chunk (2 n_window = 100): 8 steps
# after the three stride-2 convolutions.
QWEN3_OMNI_FRAMES = 64

SEED = 1234
BATCH, SEQ = 1, 32
TEXT_VOCAB = 500  # random text ids stay below the special ids (500 = image token)
IMAGE_GRID = (1, 4, 4)  # (t, h, w) patches: 16 patches -> 4 merged tokens
# Qwen3-VL: a 4 x 6 grid, unlike the 6 x 6 learned position grid, so that the
# bilinear resampling mixes rows.
QWEN3_VL_GRID = (1, 4, 6)
AUDIO_FRAMES = 16  # mel frames of the omni audio clip: 8 after the conv, 4 tokens
# Omni token ids that the tiny config does not define inside its 512-token vocab:
# only HF's get_rope_index reads them, to find where images and audio start.
OMNI_SPECIAL_IDS = {
    "vision_start_token_id": 501,
    "vision_end_token_id": 502,
    "audio_start_token_id": 504,
    "audio_end_token_id": 505,
}
TOLERANCE = 2e-5  # max |logit difference| accepted in the self-checks

# name: (family, overrides of examples/tiny/<family>.json, in the 4.x keys that
# transformers 4 and 5 both read; dicts merge into dicts).
CASES = {family: (family, {}) for family in FAMILIES}
CASES["qwen2_5_omni"] = ("qwen2_5_omni", {"thinker_config": OMNI_SPECIAL_IDS})
CASES.update(
    {
        "llama3_tied": (
            "llama",
            {
                "rope_theta": 500000.0,
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
                "tie_word_embeddings": True,
            },
        ),
        "qwen2_yarn": (
            "qwen2",
            {
                "rope_theta": 1000000.0,
                "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256},
                "max_position_embeddings": 1024,
            },
        ),
        "qwen3_head_dim": (
            "qwen3",
            {
                "head_dim": 32,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "num_key_value_heads": 1,
                "rope_theta": 1000000.0,
                "tie_word_embeddings": False,
            },
        ),
        "qwen3_moe_dense": (
            "qwen3_moe",
            {
                "norm_topk_prob": False,
                "num_hidden_layers": 3,
                "mlp_only_layers": [1],
                "decoder_sparse_step": 1,
            },
        ),
        # The router's load-balancing loss in the training loss.
        "qwen3_moe_aux": (
            "qwen3_moe",
            {"output_router_logits": True, "router_aux_loss_coef": 0.02},
        ),
        # Qwen2's sliding window: layer 1 (from max_window_layers on) attends
        # through the last 8 tokens.
        "qwen2_window": (
            "qwen2",
            {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
        ),
        # gpt-oss with its SwiGLU clamped where the tiny model's values are
        # (0.1: a good share of the gate and up values are cut), and the
        # load-balancing loss.
        "gpt_oss_clamped": (
            "gpt_oss",
            {"swiglu_limit": 0.1, "output_router_logits": True, "router_aux_loss_coef": 0.02},
        ),
    }
)


def router_aux(family, cfg_text, router_logits):
    """router_aux_loss_coef x transformers' load_balancing_loss_func of the
    routers' logits (0 unless the config sets output_router_logits)."""
    if family not in MOE_FAMILIES or not cfg_text.get("output_router_logits", False):
        return 0.0
    if family == "gpt_oss":
        from transformers.models.gpt_oss.modeling_gpt_oss import load_balancing_loss_func
    else:
        from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    experts = cfg_text.get("num_experts", cfg_text.get("num_local_experts"))
    aux = load_balancing_loss_func(
        tuple(router_logits), experts, cfg_text["num_experts_per_tok"], None
    )
    return cfg_text.get("router_aux_loss_coef", 0.001) * aux


# ----------------------------------------------------------------------------
# Configs and model construction and initialization
# ----------------------------------------------------------------------------


def merged(base, overrides):
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def case_source(case):
    """The case's config as a dict: its base tiny config with the overrides."""
    family, overrides = CASES[case]
    return merged(json.loads((CONFIGS / f"{family}.json").read_text()), overrides)


def load_json_config(source):
    """A transformers config of a config dict (written out, loaded from the file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(source))
        return transformers.AutoConfig.from_pretrained(path)


def model_class(family):
    return {
        "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
        "qwen2_5_omni": transformers.Qwen2_5OmniForConditionalGeneration,
        "qwen3_vl": transformers.Qwen3VLForConditionalGeneration,
        "qwen3_vl_moe": transformers.Qwen3VLMoeForConditionalGeneration,
        # The thinker alone: its checkpoints and config as transformers saves them.
        "qwen3_omni_moe": transformers.Qwen3OmniMoeThinkerForConditionalGeneration,
        "gemma3": transformers.Gemma3ForConditionalGeneration,
    }.get(family, transformers.AutoModelForCausalLM)


def model_kwargs(family):
    kwargs = {"attn_implementation": "eager", "dtype": torch.float32}
    if family in MOE_FAMILIES:
        kwargs["experts_implementation"] = "eager"
    return kwargs


def build_model(family, config):
    torch.manual_seed(SEED)
    cls = model_class(family)
    if cls is transformers.AutoModelForCausalLM:
        model = cls.from_config(config, **model_kwargs(family))
    elif family == "qwen3_omni_moe":
        model = cls._from_config(config.thinker_config, **model_kwargs(family))
    else:
        model = cls._from_config(config, **model_kwargs(family))
    return model.eval()


def is_norm(module):
    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


@torch.no_grad()
def init_weights(model):
    """Seeded init: N(0, .02) everywhere, but norm weights 1 + N(0, .1), biases N(0, .02);
    DeepSeek's choice biases N(0, .05), so that they change the choice."""
    gen = torch.Generator().manual_seed(SEED)
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():  # tied parameters appear once
        owner = modules[name.rpartition(".")[0]]
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
        if is_norm(owner) and name.endswith(".weight"):
            param.copy_(1.0 + 0.1 * noise)
        else:
            param.copy_(0.02 * noise)
    for name, buf in model.named_buffers():
        if name.endswith(BUFFERS):
            buf.copy_(0.05 * torch.randn(buf.shape, generator=gen, dtype=torch.float32))


# ----------------------------------------------------------------------------
# HF parameter names -> checkpoint names
# ----------------------------------------------------------------------------

# transformers 5 nests the multimodal models; hub checkpoints use the old names.
PREFIXES = {
    # The thinker saved alone (what transformers writes for it).
    "qwen3_omni_moe": [
        ("model.language_model.", "model."),
        ("model.visual.", "visual."),
        ("model.audio_tower.", "audio_tower."),
    ],
    "qwen2_vl": [("model.language_model.", "model."), ("model.visual.", "visual.")],
    # transformers 5 saves Gemma 3 so (its tower without the hub's
    # vision_model. level, which veomni's loader also reads).
    "gemma3": [
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    ],
    "qwen2_5_vl": [("model.language_model.", "model."), ("model.visual.", "visual.")],
    "qwen2_5_omni": [
        ("thinker.model.language_model.", "thinker.model."),
        ("thinker.model.visual.", "thinker.visual."),
        ("thinker.model.audio_tower.", "thinker.audio_tower."),
    ],
}


def checkpoint_name(family, name):
    """The checkpoint name of an HF parameter (before any per-expert split)."""
    for old, new in PREFIXES.get(family, []):
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def named_buffers(model):
    return [(n, b) for n, b in model.named_buffers() if n.endswith(BUFFERS)]


def checkpoint_weights(family, model):
    """{checkpoint name: float32 tensor}, experts split per expert (and the BUFFERS)."""
    named = [(name, param.detach()) for name, param in model.named_parameters()]
    return checkpoint_tensors(family, named + named_buffers(model))


def checkpoint_tensors(family, named):
    """{checkpoint name: float32 tensor} of (HF parameter name, tensor) pairs:
    the parameters themselves, or anything shaped like them (gradients)."""
    out = {}
    for name, tensor in named:  # tied lm_head is not listed
        tensor = tensor.detach().to(torch.float32)
        name = checkpoint_name(family, name)
        if family == "gpt_oss":  # its checkpoints keep the experts stacked
            out[name] = tensor
        elif family == "qwen3_vl_moe":  # fused experts, saved as transformers 5 holds them
            out[name] = tensor
        elif name.endswith(".mlp.experts.gate_up_proj"):  # [E, 2I, H], gate half first
            stem = name[: -len("gate_up_proj")]
            inter = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                out[f"{stem}{e}.gate_proj.weight"] = tensor[e, :inter]
                out[f"{stem}{e}.up_proj.weight"] = tensor[e, inter:]
        elif name.endswith(".mlp.experts.down_proj"):  # [E, H, I]
            stem = name[: -len("down_proj")]
            for e in range(tensor.shape[0]):
                out[f"{stem}{e}.down_proj.weight"] = tensor[e]
        else:
            out[name] = tensor
    return {k: v.clone().contiguous() for k, v in sorted(out.items())}


# ----------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------


def shift_labels(ids, ignore):
    """labels[t] = ids[t + 1]; -100 at the end and where the target is in `ignore`."""
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    for token in ignore:
        labels[:, :-1][ids[:, 1:] == token] = -100
    return labels


def random_image(config, family, grid, gen):
    """(grid_thw, seeded random patches [P, C*T*p*p]) of one image of `grid` patches."""
    vcfg = config.thinker_config.vision_config if family in OMNI else config.vision_config
    grid_thw = torch.tensor([grid])
    patches = int(grid_thw.prod())
    width = vcfg.in_channels * vcfg.temporal_patch_size * vcfg.patch_size**2
    return grid_thw, torch.randn(patches, width, generator=gen)


def vision_inputs(config, family, grid_thw, pixels):
    """(window_index, veomni vision inputs) of one image, `pixels` in HF's order.

    HF's processor emits the patches of an image in spatial-merge-block order
    (each merge x merge block of neighbouring patches consecutive); the tower's
    rope positions (vision_utils.get_vision_position_ids) assume that order. For
    Qwen2.5-VL the tower then permutes merge blocks into window order
    (get_vision_window_index), runs its blocks, and un-permutes the merger's
    output. veomni does no permutation: it gets the patches already in window
    order and the image token positions in the order the merger emits them.
    """
    vcfg = config.thinker_config.vision_config if family in OMNI else config.vision_config
    merge = vcfg.spatial_merge_size
    unit = merge * merge
    patches = int(grid_thw.prod())
    assert grid_thw.shape == (1, 3) and pixels.shape[0] == patches, "one image"

    positions = vision_utils.get_vision_position_ids(grid_thw, merge)  # [P, 2] (row, col)
    cu_seqlens = vision_utils.get_vision_cu_seqlens(grid_thw)  # one segment per frame
    segments = torch.repeat_interleave(
        torch.arange(len(cu_seqlens) - 1), (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    )
    windowed = family in ("qwen2_5_vl", "qwen2_5_omni")
    if windowed:
        window_index, cu_windows = vision_utils.get_vision_window_index(
            grid_thw, merge, vcfg.window_size, vcfg.patch_size
        )
    else:
        window_index = torch.arange(patches // unit)
    order = (window_index[:, None] * unit + torch.arange(unit)).reshape(-1)  # patch permutation

    inputs = {
        "pixel_values": pixels[order],
        "vision_position_ids": positions[order].T.reshape(2, 1, patches),
        "vision_segment_ids": segments[order].reshape(1, patches),
    }
    if family in QWEN3_VL:
        # The learned position grid's bilinear taps and weights per patch.
        side = int(vcfg.num_position_embeddings**0.5)
        ids, weights = vision_utils.get_vision_interpolation_indices_and_weights(
            grid_thw, side, mode="bilinear", align_corners=True, spatial_merge_size=merge
        )
        inputs["vision_pos_embed_ids"] = ids[order]
        inputs["vision_pos_embed_weights"] = weights[order].float()
    if windowed:
        window_ids = torch.repeat_interleave(
            torch.arange(len(cu_windows) - 1), (cu_windows[1:] - cu_windows[:-1]).long()
        )
        inputs["vision_window_segment_ids"] = window_ids.reshape(1, patches)
    return window_index, inputs


def make_batch(family, model, config, gen, grid=None):
    """Returns (veomni batch, HF forward kwargs, HF kwargs that let HF derive positions).

    The HF kwargs carry the batch's position_ids explicitly; the second set
    instead gives HF what it needs to compute them itself (None for text).
    """
    ids = torch.randint(0, TEXT_VOCAB, (BATCH, SEQ), generator=gen)
    segments = torch.zeros(BATCH, SEQ, dtype=torch.long)
    if family == "gemma3":
        return gemma3_batch(config, ids, segments, gen)
    if family not in VISION_FAMILIES:
        positions = torch.arange(SEQ).expand(BATCH, SEQ)
        labels = shift_labels(ids, [])
        batch = {"input_ids": ids, "position_ids": positions, "segment_ids": segments, "labels": labels}
        return batch, {"input_ids": ids, "position_ids": positions}, None

    omni = family in OMNI
    tcfg = config.thinker_config if omni else config
    grid = grid or (QWEN3_VL_GRID if family in QWEN3_VL else IMAGE_GRID)
    grid_thw, pixels = random_image(config, family, grid, gen)
    n_image = int(grid_thw.prod()) // tcfg.vision_config.spatial_merge_size**2
    start = 2  # <vision_start> at 2, the image tokens, <vision_end>
    ids[0, start] = tcfg.vision_start_token_id
    ids[0, start + 1 : start + 1 + n_image] = tcfg.image_token_id
    ids[0, start + 1 + n_image] = tcfg.vision_end_token_id
    features = None
    if omni:
        # One audio clip after the image: text <audio_start> <audio> x n <audio_end>.
        frames = QWEN3_OMNI_FRAMES if family == "qwen3_omni_moe" else AUDIO_FRAMES
        n_audio = audio_tokens(family, tcfg.audio_config, frames)
        a0 = start + n_image + 5  # <vision_end>, two text tokens, <audio_start>
        ids[0, a0 - 1] = tcfg.audio_start_token_id
        ids[0, a0 : a0 + n_audio] = tcfg.audio_token_id
        ids[0, a0 + n_audio] = tcfg.audio_end_token_id
        features = torch.randn(1, tcfg.audio_config.num_mel_bins, frames, generator=gen)
    return multimodal_batch(family, model, config, ids, grid_thw, pixels, features)


def gemma3_batch(config, ids, segments, gen):
    """Gemma 3: GEMMA3_IMAGES images, each <start_of_image>, mm_tokens_per_image
    image tokens, <end_of_image> with text between; token_type_ids 1 on the
    image tokens (transformers' bidirectional blocks), positions 0..S-1."""
    vcfg = config.vision_config
    per_image = config.mm_tokens_per_image
    at = 2
    for _ in range(GEMMA3_IMAGES):
        ids[0, at] = config.boi_token_index
        ids[0, at + 1 : at + 1 + per_image] = config.image_token_index
        ids[0, at + 1 + per_image] = config.eoi_token_index
        at += per_image + 5
    pixels = torch.randn(GEMMA3_IMAGES, vcfg.num_channels, vcfg.image_size, vcfg.image_size, generator=gen)
    types = (ids == config.image_token_index).long()
    positions = torch.arange(SEQ).expand(BATCH, SEQ)
    labels = shift_labels(ids, [config.image_token_index])
    batch = {
        "input_ids": ids,
        "position_ids": positions,
        "segment_ids": segments,
        "labels": labels,
        "token_type_ids": types,
        "pixel_values": pixels,
        "image_token_positions": (ids.reshape(-1) == config.image_token_index).nonzero()[:, 0],
    }
    hf = {"input_ids": ids, "position_ids": positions, "pixel_values": pixels, "token_type_ids": types}
    return batch, hf, None


def audio_tokens(family, acfg, frames):
    """The audio tower's features (placeholder tokens) of a clip of `frames`."""
    if family == "qwen3_omni_moe":
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
            _get_feat_extract_output_lengths,
        )

        return int(_get_feat_extract_output_lengths(torch.tensor(frames), acfg.n_window))
    return frames // 4


def multimodal_batch(family, model, config, ids, grid_thw, pixels, features=None):
    """(veomni batch, HF kwargs, HF kwargs that let HF derive positions) of one document.

    ids [1, S] already holds the placeholders: <vision_start>, one image token
    per merged patch, <vision_end> (and for omni <audio_start>, one audio token
    per 4 mel frames, <audio_end>); pixels [P, C*T*p*p] are the image's patches
    in HF's processor order, grid_thw [[t, h, w]]; features [1, mel, F] are the
    omni clip's log-mel frames. Every token is in segment 0; labels are shifted.
    """
    omni = family in OMNI
    tcfg = config.thinker_config if omni else config
    image_id = tcfg.image_token_id
    window_index, vision = vision_inputs(config, family, grid_thw, pixels)
    assert int((ids == image_id).sum()) == len(window_index), "one image token per merged patch"
    segments = torch.zeros_like(ids)
    ignore = [image_id]

    hf = {"input_ids": ids, "pixel_values": pixels, "image_grid_thw": grid_thw}
    batch = dict(vision)
    if omni:
        acfg = tcfg.audio_config
        audio_id = tcfg.audio_token_id
        frames = features.shape[-1]
        n_audio = audio_tokens(family, acfg, frames)
        assert int((ids == audio_id).sum()) == n_audio, "one audio token per feature"
        ignore.append(audio_id)
        hf["input_features"] = features
        hf["feature_attention_mask"] = torch.ones(1, frames, dtype=torch.long)
        batch["input_features"] = features
        if family == "qwen3_omni_moe":
            # Whole chunks of 2 n_window frames; attention windows of
            # n_window_infer frames' steps (transformers' get_audio_cu_seqlens).
            from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
                get_audio_cu_seqlens,
            )

            chunk = min(frames, 2 * acfg.n_window)
            assert frames % chunk == 0, "whole chunks"
            lens = torch.full((frames // chunk,), chunk)
            cu = get_audio_cu_seqlens(lens, torch.tensor([frames]), acfg.n_window_infer, acfg.n_window)
            windows = torch.repeat_interleave(torch.arange(len(cu) - 1), (cu[1:] - cu[:-1]).long())
            assert len(windows) == n_audio, "a window id per step"
            batch["audio_segment_ids"] = windows.reshape(1, n_audio)
            batch["audio_frame_mask"] = torch.ones(1, frames)  # every frame real
        else:
            # HF convolves each n_window * 2 frame chunk separately (zero padded);
            # veomni convolves the clips end to end, so one chunk is what agrees.
            assert frames <= 2 * acfg.n_window, "the clip must fit one attention chunk"
            steps = frames // 2
            batch["audio_position_ids"] = torch.arange(steps)  # position inside its chunk
            batch["audio_segment_ids"] = torch.zeros(1, steps, dtype=torch.long)  # one chunk
        batch["audio_token_positions"] = (ids.reshape(-1) == audio_id).nonzero()[:, 0]

    # HF's masked_scatter fills the image tokens (flat B*S order) with the
    # merger's rows after undoing the window permutation: the merger's row j
    # (window order) lands in image slot window_index[j].
    slots = (ids.reshape(-1) == image_id).nonzero()[:, 0]
    batch["image_token_positions"] = slots[window_index]

    # Multimodal rope positions from the model's own get_rope_index.
    with torch.no_grad():
        if omni:
            mask = torch.ones_like(ids)
            thinker = model.thinker if family == "qwen2_5_omni" else model
            positions, _ = thinker.model.get_rope_index(
                ids, grid_thw, None, mask, False, torch.tensor([frames])
            )
            own = dict(hf, attention_mask=mask)
        else:
            mm_token_type_ids = (ids == image_id).int()  # 1 = image
            positions, _ = model.model.get_rope_index(ids, mm_token_type_ids, image_grid_thw=grid_thw)
            own = dict(hf, mm_token_type_ids=mm_token_type_ids)
    # (Qwen3-Omni's come as floats, whole numbers.)
    assert torch.equal(positions, positions.round()), "integral positions"
    positions = positions.long()
    hf["position_ids"] = positions
    batch.update(input_ids=ids, position_ids=positions, segment_ids=segments)
    batch["labels"] = shift_labels(ids, ignore)
    return batch, hf, own


# ----------------------------------------------------------------------------
# HF forward
# ----------------------------------------------------------------------------


def forward_module(family, model):
    return model.thinker if family == "qwen2_5_omni" else model


def unshifted_labels(labels):
    """HF's convention: labels[t] is the target *at* t; HF shifts internally."""
    out = torch.full_like(labels, -100)
    out[:, 1:] = labels[:, :-1]
    return out


def cross_entropy(logits, labels):
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, vocab).float(), labels.reshape(-1).long(), ignore_index=-100)


@torch.no_grad()
def hf_forward(family, module, hf, labels=None):
    """Logits and HF's loss of `module` (the thinker for omni)."""
    kwargs = dict(hf)
    if family in MOE_FAMILIES:
        kwargs["output_router_logits"] = False  # veomni's loss has no aux loss
    if labels is not None:
        kwargs["labels"] = unshifted_labels(labels)
    out = module(**kwargs)
    return out.logits.float(), out.loss


# ----------------------------------------------------------------------------
# veomni semantics, re-implemented from the written files only
# ----------------------------------------------------------------------------
#
# Everything below reads the case's config.json (transformers 5 form, as a
# plain dict), the tensors of model.safetensors and those of batch.safetensors.


def text_config(family, cfg):
    """The decoder's part of a config.json: 5.x nests it in text_config."""
    if family == "qwen2_5_omni":
        return cfg["thinker_config"]["text_config"]
    return cfg.get("text_config", cfg)


def vision_config(family, cfg):
    return cfg["thinker_config"]["vision_config"] if family == "qwen2_5_omni" else cfg["vision_config"]


def tied_embeddings(family, cfg):
    """tie_word_embeddings of the text config, else of the model's config."""
    top = cfg["thinker_config"] if family == "qwen2_5_omni" else cfg
    text = text_config(family, cfg)
    flags = {c["tie_word_embeddings"] for c in (text, top) if "tie_word_embeddings" in c}
    assert len(flags) <= 1, f"tie_word_embeddings disagree: {flags}"
    return flags.pop() if flags else True  # transformers' default


def head_dim(text):
    return text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]


def rope_type(rp):
    return rp.get("rope_type", rp.get("type", "default"))


def yarn_mscale(scale, mscale=1.0):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def layer_rope(text, layer_type="full_attention"):
    """A text config's rope_parameters; Gemma 3's per layer type."""
    rp = text["rope_parameters"]
    if "full_attention" in rp or "sliding_attention" in rp:
        return rp[layer_type]
    return rp


def rope_frequencies(text, layer_type="full_attention"):
    """(inv_freq [D/2] float32, cos/sin scaling) of a text config's rope_parameters.

    In float64, then rounded: default, linear, llama3 and yarn (with its
    attention factor), the computations of transformers' modeling_rope_utils.
    """
    rp = layer_rope(text, layer_type)
    theta, kind = float(rp["rope_theta"]), rope_type(rp)
    dim = int(head_dim(text) * rp.get("partial_rotary_factor", 1.0))
    base = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    scaling = 1.0
    if kind == "default":
        inv = base
    elif kind == "linear":
        inv = base / rp["factor"]
    elif kind == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        wavelen = 2 * math.pi / base
        smooth = (old / wavelen - lo) / (hi - lo)
        blended = (1 - smooth) * base / factor + smooth * base
        inv = torch.where(wavelen < old / hi, base, torch.where(wavelen > old / lo, base / factor, blended))
    elif kind == "yarn":
        orig = rp["original_max_position_embeddings"]
        factor = rp.get("factor") or text["max_position_embeddings"] / orig
        scaling = rp.get("attention_factor")
        if scaling is None:
            mscale, mscale_all = rp.get("mscale"), rp.get("mscale_all_dim")
            if mscale and mscale_all:
                scaling = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
            else:
                scaling = yarn_mscale(factor)
        fast, slow = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

        def correction_dim(rotations):
            return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(theta))

        low, high = correction_dim(fast), correction_dim(slow)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        inv = base / factor * ramp + base * (1 - ramp)
    else:
        raise SystemExit(f"rope_type {kind!r}: not in the reference")
    return inv.float(), float(scaling)


def rope_regimes(text):
    """How the scaled frequencies relate to the unscaled ones: counts of kept,
    blended and divided-by-factor entries (a string), or None for default rope."""
    rp = layer_rope(text)
    if rope_type(rp) == "default":
        return None
    inv, _ = rope_frequencies(text)
    dim = int(head_dim(text) * rp.get("partial_rotary_factor", 1.0))
    base = (1.0 / float(rp["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)).float()
    ratio = (inv / base).double()
    factor = rp.get("factor") or 1.0
    kept = int(torch.isclose(ratio, torch.tensor(1.0, dtype=torch.float64), rtol=1e-5).sum())
    divided = int(torch.isclose(ratio, torch.tensor(1.0 / factor, dtype=torch.float64), rtol=1e-5).sum())
    return kept, len(ratio) - kept - divided, divided


def rms_norm(x, w, eps):
    x = x.float()
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope(x, positions, inv_freq, sections, scaling=1.0, interleaved=False):
    """x [B, S, H, D]; positions [N, B, S]; frequency j uses position row sec(j) % N;
    interleaved (Qwen3-VL): row k >= 1 for j = k, k + N, ... below N * sections[k], else row 0."""
    rows = torch.repeat_interleave(torch.arange(len(sections)), torch.tensor(sections))
    if interleaved:
        n = len(sections)
        rows = torch.zeros(sum(sections), dtype=torch.long)
        for k in range(1, n):
            rows[k : n * sections[k] : n] = k
    rows = rows % positions.shape[0]
    angle = positions[rows].permute(1, 2, 0).float() * inv_freq  # [B, S, D/2]
    angle = torch.cat((angle, angle), dim=-1)[:, :, None, :]
    return x * (angle.cos() * scaling) + rotate_half(x) * (angle.sin() * scaling)


def image_blocks(types):
    """Gemma 3's blocks of token_type_ids [B, S] (1: image): a run of image
    tokens gets its own id, text -1 (transformers' block_sequence_ids)."""
    image = types == 1
    start = image & ~F.pad(image, (1, 0))[:, :-1]
    return torch.where(image, start.long().cumsum(1) - 1, -1)


def attention(q, k, v, segments, causal, scale, window=0, sinks=None, blocks=None):
    """q [B, S, H, D], k/v [B, S, KV, D]; a token attends within its segment,
    to the `window` last keys (0: all), and with `sinks` [H] one more logit per
    head whose value is zero. With `blocks` [B, S] (>= 0: a block) a token also
    sees its whole block, later tokens included (the window still applies)."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bshd,bthd->bhst", q, k) * scale
    allowed = segments[:, :, None] == segments[:, None, :]
    seq = q.shape[1]
    if causal:
        causal_mask = torch.ones(seq, seq, dtype=torch.bool).tril()[None]
        if blocks is not None:
            same = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
            causal_mask = causal_mask | same
        allowed = allowed & causal_mask
    if window:
        allowed = allowed & torch.ones(seq, seq, dtype=torch.bool).triu(-(window - 1))
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    if sinks is None:
        return torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)
    sink = sinks.reshape(1, -1, 1, 1).expand(scores.shape[0], -1, seq, 1)
    probs = torch.cat([scores, sink], dim=-1).softmax(-1)[..., :-1]
    return torch.einsum("bhst,bthd->bshd", probs, v)


def linear(x, w, b=None):
    return F.linear(x, w, b)


ACTS = {
    "silu": F.silu,
    "gelu": F.gelu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def ref_vision(W, p, vcfg, batch, qwen25):
    """buildVisionTower: patches in the given order, no permutation."""
    pixels = batch["pixel_values"].float()
    patches = pixels.shape[0]
    conv = W[p + "patch_embed.proj.weight"]
    dim = conv.shape[0]
    heads = vcfg["num_heads"]
    hd = dim // heads
    x = pixels @ conv.reshape(dim, -1).T
    theta = (vcfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hd // 2, 2, dtype=torch.float64) / (hd // 2)))
    inv = torch.cat((inv, inv)).float()
    positions = batch["vision_position_ids"].long()  # [2, 1, P]
    segments = batch["vision_segment_ids"].long()
    windows = batch.get("vision_window_segment_ids")
    act = ACTS[vcfg["hidden_act"]]

    def norm(v, name):
        if qwen25:
            return rms_norm(v, W[name + ".weight"], 1e-6)
        return layer_norm(v, W[name + ".weight"], W[name + ".bias"], 1e-6)

    x = x[None]  # [1, P, d]
    full = vcfg.get("fullatt_block_indexes") or []
    for i in range(vcfg["depth"]):
        b = f"{p}blocks.{i}."
        h = norm(x, b + "norm1")
        if b + "attn.qkv.weight" in W:
            qkv = linear(h, W[b + "attn.qkv.weight"], W[b + "attn.qkv.bias"])
        else:  # Qwen2.5-Omni keeps q, k, v separate
            qkv = torch.cat([linear(h, W[f"{b}attn.{n}.weight"], W[f"{b}attn.{n}.bias"]) for n in "qkv"], -1)
        q, k, v = qkv.reshape(1, patches, 3, heads, hd).unbind(2)
        q = rope(q, positions, inv, [hd // 4, hd // 4])
        k = rope(k, positions, inv, [hd // 4, hd // 4])
        seg = windows.long() if (qwen25 and i not in full) else segments
        a = attention(q, k, v, seg, False, hd**-0.5).reshape(1, patches, dim)
        x = x + linear(a, W[b + "attn.proj.weight"], W[b + "attn.proj.bias"])
        h = norm(x, b + "norm2")
        if qwen25:
            g = linear(h, W[b + "mlp.gate_proj.weight"], W[b + "mlp.gate_proj.bias"])
            u = linear(h, W[b + "mlp.up_proj.weight"], W[b + "mlp.up_proj.bias"])
            m = linear(act(g) * u, W[b + "mlp.down_proj.weight"], W[b + "mlp.down_proj.bias"])
        else:
            u = linear(h, W[b + "mlp.fc1.weight"], W[b + "mlp.fc1.bias"])
            m = linear(act(u), W[b + "mlp.fc2.weight"], W[b + "mlp.fc2.bias"])
        x = x + m
    unit = vcfg["spatial_merge_size"] ** 2
    x = norm(x, p + "merger.ln_q").reshape(patches // unit, unit * dim)
    x = F.gelu(linear(x, W[p + "merger.mlp.0.weight"], W[p + "merger.mlp.0.bias"]))
    return linear(x, W[p + "merger.mlp.2.weight"], W[p + "merger.mlp.2.bias"])


def ref_vision_qwen3(W, p, vcfg, batch):
    """buildVisionTower for Qwen3-VL: (merged rows, [DeepStack features])."""
    pixels = batch["pixel_values"].float()
    patches = pixels.shape[0]
    conv = W[p + "patch_embed.proj.weight"]
    dim = conv.shape[0]
    heads = vcfg["num_heads"]
    hd = dim // heads
    x = pixels @ conv.reshape(dim, -1).T + W[p + "patch_embed.proj.bias"]
    taps = W[p + "pos_embed.weight"][batch["vision_pos_embed_ids"].long()]  # [P, 4, d]
    x = x + (taps * batch["vision_pos_embed_weights"].float()[:, :, None]).sum(1)
    theta = (vcfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hd // 2, 2, dtype=torch.float64) / (hd // 2)))
    inv = torch.cat((inv, inv)).float()
    positions = batch["vision_position_ids"].long()
    segments = batch["vision_segment_ids"].long()
    act = ACTS[vcfg["hidden_act"]]
    unit = vcfg["spatial_merge_size"] ** 2

    def ln(v, name):
        return layer_norm(v, W[name + ".weight"], W[name + ".bias"], 1e-6)

    # Qwen3-Omni names its mergers as Qwen2-VL did (ln_q, mlp.0, mlp.2).
    omni_names = p + "merger.ln_q.weight" in W
    norm_, fc1, fc2 = ("ln_q", "mlp.0", "mlp.2") if omni_names else ("norm", "linear_fc1", "linear_fc2")
    stack = "merger_list" if omni_names else "deepstack_merger_list"

    def merger(v, name, postshuffle):
        v = ln(v.reshape(patches // unit, unit * dim), f"{name}.{norm_}") if postshuffle else ln(v, f"{name}.{norm_}")
        v = F.gelu(linear(v.reshape(patches // unit, unit * dim), W[f"{name}.{fc1}.weight"], W[f"{name}.{fc1}.bias"]))
        return linear(v, W[f"{name}.{fc2}.weight"], W[f"{name}.{fc2}.bias"])

    x = x[None]
    deepstack = []
    indexes = vcfg.get("deepstack_visual_indexes", [8, 16, 24])
    for i in range(vcfg["depth"]):
        b = f"{p}blocks.{i}."
        qkv = linear(ln(x, b + "norm1"), W[b + "attn.qkv.weight"], W[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(1, patches, 3, heads, hd).unbind(2)
        q = rope(q, positions, inv, [hd // 4, hd // 4])
        k = rope(k, positions, inv, [hd // 4, hd // 4])
        a = attention(q, k, v, segments, False, hd**-0.5).reshape(1, patches, dim)
        x = x + linear(a, W[b + "attn.proj.weight"], W[b + "attn.proj.bias"])
        u = linear(ln(x, b + "norm2"), W[b + "mlp.linear_fc1.weight"], W[b + "mlp.linear_fc1.bias"])
        x = x + linear(act(u), W[b + "mlp.linear_fc2.weight"], W[b + "mlp.linear_fc2.bias"])
        if i in indexes:
            deepstack.append(merger(x[0], f"{p}{stack}.{indexes.index(i)}", True))
    return merger(x[0], p + "merger", False), deepstack


def ref_siglip(W, cfg, batch):
    """buildSiglipImages: the SigLIP tower per image, then Gemma 3's projector."""
    vcfg = cfg["vision_config"]
    pixels = batch["pixel_values"].float()
    n, _, size, _ = pixels.shape
    patch, d, heads = vcfg["patch_size"], vcfg["hidden_size"], vcfg["num_attention_heads"]
    eps = vcfg.get("layer_norm_eps", 1e-6)
    side = size // patch
    # Conv2d with stride == kernel as a matmul over (channel, row, column) patches.
    patches = pixels.reshape(n, -1, side, patch, side, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, side * side, -1)
    conv = W["vision_tower.embeddings.patch_embedding.weight"]
    x = patches @ conv.reshape(d, -1).T + W["vision_tower.embeddings.patch_embedding.bias"]
    x = x + W["vision_tower.embeddings.position_embedding.weight"]
    p = "vision_tower.encoder.layers."
    no_segments = torch.zeros(n, side * side, dtype=torch.long)
    for i in range(vcfg["num_hidden_layers"]):
        b = f"{p}{i}."
        h = layer_norm(x, W[b + "layer_norm1.weight"], W[b + "layer_norm1.bias"], eps)

        def proj(name):
            y = linear(h, W[f"{b}self_attn.{name}.weight"], W[f"{b}self_attn.{name}.bias"])
            return y.reshape(n, side * side, heads, d // heads)

        a = attention(proj("q_proj"), proj("k_proj"), proj("v_proj"), no_segments, False, (d // heads) ** -0.5)
        x = x + linear(a.reshape(n, side * side, d), W[b + "self_attn.out_proj.weight"], W[b + "self_attn.out_proj.bias"])
        h = layer_norm(x, W[b + "layer_norm2.weight"], W[b + "layer_norm2.bias"], eps)
        up = ACTS[vcfg.get("hidden_act", "gelu_pytorch_tanh")](linear(h, W[b + "mlp.fc1.weight"], W[b + "mlp.fc1.bias"]))
        x = x + linear(up, W[b + "mlp.fc2.weight"], W[b + "mlp.fc2.bias"])
    x = layer_norm(x, W["vision_tower.post_layernorm.weight"], W["vision_tower.post_layernorm.bias"], eps)
    # k x k average pooling of the row-major grid, (1 + w) RMSNorm, x @ W.
    t = int(round(cfg.get("mm_tokens_per_image", 256) ** 0.5))
    k = side // t
    pooled = x.reshape(n, t, k, t, k, d).mean(dim=(2, 4)).reshape(n * t * t, d)
    normed = rms_norm(pooled, 1.0 + W["multi_modal_projector.mm_soft_emb_norm.weight"], eps)
    return normed @ W["multi_modal_projector.mm_input_projection_weight"]


def ref_audio_qwen3(W, p, acfg, batch):
    """buildAudioEncoder for Qwen3-Omni: chunks of 2 n_window frames through
    three Conv2d, sinusoids restarting every chunk, windowed attention."""
    x = batch["input_features"].float()[0]  # [mel, F]
    mel, frames = x.shape
    chunk = min(frames, 2 * acfg.get("n_window", 50))
    x = x.reshape(mel, frames // chunk, chunk).permute(1, 0, 2)[:, None]  # [chunks, 1, mel, chunk]
    mask = batch["audio_frame_mask"].float().reshape(frames // chunk, chunk)
    for k in (1, 2, 3):
        x = F.gelu(F.conv2d(x, W[f"{p}conv2d{k}.weight"], W[f"{p}conv2d{k}.bias"], stride=2, padding=1))
        mask = mask[:, ::2]
        x = x * mask[:, None, None, :]
    n, c, f, t = x.shape
    x = linear(x.permute(0, 3, 1, 2).reshape(n, t, c * f), W[p + "conv_out.weight"])
    dim = x.shape[-1]
    half = dim // 2
    inc = math.log(10000.0) / (half - 1)
    inv = torch.exp(-inc * torch.arange(half).float())
    angle = torch.arange(t)[:, None] * inv[None, :]
    x = (x + torch.cat([angle.sin(), angle.cos()], -1)[None]).reshape(1, n * t, dim)
    heads = acfg["encoder_attention_heads"]
    hd = dim // heads
    segments = batch["audio_segment_ids"].long()
    act = ACTS[acfg.get("activation_function", "gelu")]
    steps = n * t
    for i in range(acfg["encoder_layers"]):
        b = f"{p}layers.{i}."
        h = layer_norm(x, W[b + "self_attn_layer_norm.weight"], W[b + "self_attn_layer_norm.bias"], 1e-5)

        def proj(name):
            y = linear(h, W[f"{b}self_attn.{name}.weight"], W[f"{b}self_attn.{name}.bias"])
            return y.reshape(1, steps, heads, hd)

        a = attention(proj("q_proj"), proj("k_proj"), proj("v_proj"), segments, False, hd**-0.5)
        x = x + linear(a.reshape(1, steps, dim), W[b + "self_attn.out_proj.weight"], W[b + "self_attn.out_proj.bias"])
        h = layer_norm(x, W[b + "final_layer_norm.weight"], W[b + "final_layer_norm.bias"], 1e-5)
        x = x + linear(act(linear(h, W[b + "fc1.weight"], W[b + "fc1.bias"])), W[b + "fc2.weight"], W[b + "fc2.bias"])
    x = layer_norm(x[0], W[p + "ln_post.weight"], W[p + "ln_post.bias"], 1e-5)
    x = act(linear(x, W[p + "proj1.weight"], W[p + "proj1.bias"]))
    return linear(x, W[p + "proj2.weight"], W[p + "proj2.bias"])


def ref_audio(W, p, acfg, batch):
    """buildAudioEncoder: clips end to end, one conv over all frames."""
    x = batch["input_features"].float()
    act = ACTS[acfg["activation_function"]]
    x = act(F.conv1d(x, W[p + "conv1.weight"], W[p + "conv1.bias"], padding=1))
    x = act(F.conv1d(x, W[p + "conv2.weight"], W[p + "conv2.bias"], stride=2, padding=1))
    x = x[0].T  # [steps, d]
    steps, dim = x.shape
    half = dim // 2
    inc = torch.log(torch.tensor(10000.0, dtype=torch.float64)) / (half - 1)
    timescales = torch.exp(-inc * torch.arange(half, dtype=torch.float64)).float()
    angle = batch["audio_position_ids"].float()[:, None] * timescales
    x = (x + torch.cat((angle.sin(), angle.cos()), -1))[None]
    heads = acfg["encoder_attention_heads"]
    hd = dim // heads
    segments = batch["audio_segment_ids"].long()
    for i in range(acfg["encoder_layers"]):
        b = f"{p}layers.{i}."
        h = layer_norm(x, W[b + "self_attn_layer_norm.weight"], W[b + "self_attn_layer_norm.bias"], 1e-5)

        def proj(name, bias=True):
            y = linear(h, W[f"{b}self_attn.{name}.weight"], W[f"{b}self_attn.{name}.bias"] if bias else None)
            return y.reshape(1, steps, heads, hd)

        a = attention(proj("q_proj"), proj("k_proj", False), proj("v_proj"), segments, False, hd**-0.5)
        x = x + linear(
            a.reshape(1, steps, dim), W[b + "self_attn.out_proj.weight"], W[b + "self_attn.out_proj.bias"]
        )
        h = layer_norm(x, W[b + "final_layer_norm.weight"], W[b + "final_layer_norm.bias"], 1e-5)
        h = act(linear(h, W[b + "fc1.weight"], W[b + "fc1.bias"]))
        x = x + linear(h, W[b + "fc2.weight"], W[b + "fc2.bias"])
    x = x.reshape(steps // 2, 2, dim).mean(1)
    x = layer_norm(x, W[p + "ln_post.weight"], W[p + "ln_post.bias"], 1e-5)
    return linear(x, W[p + "proj.weight"], W[p + "proj.bias"])


def sparse_layer(text, i):
    """Whether decoder layer i is a MoE layer (Qwen3-MoE's rule; DeepSeek's
    from first_k_dense_replace on)."""
    experts = text.get("num_experts") or text.get("num_local_experts") or text.get("n_routed_experts") or 0
    step = text.get("decoder_sparse_step") or 1
    first = text.get("first_k_dense_replace") or 0
    return experts > 0 and i not in (text.get("mlp_only_layers") or []) and (i + 1) % step == 0 and i >= first


def decoder_prefix(family):
    return {"qwen2_5_omni": "thinker.model.", "qwen3_omni_moe": "model.", "gemma3": "language_model.model."}.get(
        family, "model.language_model." if family in QWEN3_VL else "model."
    )


def ref_decoder(W, family, cfg, embeds, batch, stats, deepstack=()):
    """buildDecoderLoss: layers, final norm, LM head; returns logits."""
    text = text_config(family, cfg)
    pre = decoder_prefix(family)
    head_name = {"qwen2_5_omni": "thinker.lm_head.weight", "gemma3": "language_model.lm_head.weight"}.get(
        family, "lm_head.weight"
    )
    tied = tied_embeddings(family, cfg)
    assert tied == (
        head_name not in W
    ), f"tie_word_embeddings {tied} but {head_name} in weights: {head_name in W}"
    eps = text["rms_norm_eps"]
    heads, kv = text["num_attention_heads"], text.get("num_key_value_heads") or text["num_attention_heads"]
    hd = head_dim(text)
    gemma = family in GEMMA_FAMILIES

    def norm(x, w):
        return rms_norm(x, 1.0 + w if gemma else w, eps)

    scale = text["query_pre_attn_scalar"] ** -0.5 if gemma else hd**-0.5
    inv_freq, scaling = rope_frequencies(text)
    positions = batch["position_ids"].long()
    if positions.dim() == 2:
        positions = positions[None]
    sections = text["rope_parameters"].get("mrope_section") if positions.shape[0] == 3 else None
    sections = sections or [hd // 2]
    interleaved = family in QWEN3_VL and text["rope_parameters"].get("mrope_interleaved", True)
    segments = batch["segment_ids"].long()
    blocks = image_blocks(batch["token_type_ids"]) if "token_type_ids" in batch else None
    B, S, _ = embeds.shape
    x = embeds
    for i in range(text["num_hidden_layers"]):
        b = f"{pre}layers.{i}."
        h = norm(x, W[b + "input_layernorm.weight"])

        def proj(name, n):
            y = linear(h, W[f"{b}self_attn.{name}.weight"], W.get(f"{b}self_attn.{name}.bias"))
            return y.reshape(B, S, n, hd)

        if family == "deepseek_v3":
            a = ref_mla(W, b, text, h, positions, inv_freq, scaling, segments)
            x = x + a
            h = rms_norm(x, W[b + "post_attention_layernorm.weight"], eps)
            if sparse_layer(text, i):
                x = x + ref_deepseek_moe(W, b, text, h, stats)
            else:
                x = x + ref_mlp(W, b + "mlp.", h)
            continue
        q, k, v = proj("q_proj", heads), proj("k_proj", kv), proj("v_proj", kv)
        if b + "self_attn.q_norm.weight" in W:
            q = norm(q, W[b + "self_attn.q_norm.weight"])
            k = norm(k, W[b + "self_attn.k_norm.weight"])
        sliding = text.get("layer_types", [None] * (i + 1))[i] == "sliding_attention"
        freqs, sc = rope_frequencies(text, "sliding_attention") if gemma and sliding else (inv_freq, scaling)
        q = rope(q, positions, freqs, sections, sc, interleaved)
        k = rope(k, positions, freqs, sections, sc, interleaved)
        window = text.get("sliding_window") or 0 if sliding else 0
        if family == "qwen3_moe" and text.get("use_sliding_window"):  # every layer
            window = text.get("sliding_window") or 0
        sinks = W.get(b + "self_attn.sinks")
        a = attention(q, k, v, segments, True, scale, window, sinks, blocks).reshape(B, S, heads * hd)
        a = linear(a, W[b + "self_attn.o_proj.weight"], W.get(b + "self_attn.o_proj.bias"))
        if gemma:  # sandwich norms around attention and MLP
            x = x + norm(a, W[b + "post_attention_layernorm.weight"])
            h = norm(x, W[b + "pre_feedforward_layernorm.weight"])
            g = linear(h, W[b + "mlp.gate_proj.weight"])
            u = linear(h, W[b + "mlp.up_proj.weight"])
            m = linear(ACTS[text["hidden_activation"]](g) * u, W[b + "mlp.down_proj.weight"])
            x = x + norm(m, W[b + "post_feedforward_layernorm.weight"])
            continue
        x = x + a
        h = rms_norm(x, W[b + "post_attention_layernorm.weight"], eps)
        sparse = sparse_layer(text, i)
        router = b + ("mlp.router.weight" if family == "gpt_oss" else "mlp.gate.weight")
        assert sparse == (router in W), f"layer {i}: sparse {sparse} vs the weights"
        if sparse:
            x = x + ref_moe(W, b, text, h, stats)
        else:
            g = linear(h, W[b + "mlp.gate_proj.weight"], W.get(b + "mlp.gate_proj.bias"))
            u = linear(h, W[b + "mlp.up_proj.weight"], W.get(b + "mlp.up_proj.bias"))
            x = x + linear(F.silu(g) * u, W[b + "mlp.down_proj.weight"], W.get(b + "mlp.down_proj.bias"))
        if i < len(deepstack):  # DeepStack: added at the image tokens
            flat = x.reshape(B * S, -1).clone()
            flat[batch["image_token_positions"].long()] += deepstack[i]
            x = flat.reshape(x.shape)
    x = norm(x, W[pre + "norm.weight"])
    logits = linear(x, W[pre + "embed_tokens.weight"] if tied else W[head_name])
    cap = text.get("final_logit_softcapping")
    return torch.tanh(logits / cap) * cap if cap else logits


def ref_mlp(W, p, h):
    g = linear(h, W[p + "gate_proj.weight"])
    return linear(F.silu(g) * linear(h, W[p + "up_proj.weight"]), W[p + "down_proj.weight"])


def deepseek_scale(text):
    """MLA's score scale: (qk_nope + qk_rope)^-1/2, times yarn's mscale(factor, mscale_all_dim)^2."""
    scale = (text["qk_nope_head_dim"] + text["qk_rope_head_dim"]) ** -0.5
    rp = text["rope_parameters"]
    if rope_type(rp) != "default" and rp.get("mscale_all_dim"):
        scale *= yarn_mscale(rp["factor"], rp["mscale_all_dim"]) ** 2
    return scale


def ref_mla(W, b, text, h, positions, inv_freq, scaling, segments):
    """DeepSeek's multi-head latent attention, as frontends/Decoder.cpp builds it."""
    B, S, _ = h.shape
    H, nope, rot, vd = (
        text["num_attention_heads"],
        text["qk_nope_head_dim"],
        text["qk_rope_head_dim"],
        text["v_head_dim"],
    )
    kv = text["kv_lora_rank"]
    a = b + "self_attn."
    if text.get("q_lora_rank"):
        qa = linear(h, W[a + "q_a_proj.weight"], W.get(a + "q_a_proj.bias"))
        q = linear(rms_norm(qa, W[a + "q_a_layernorm.weight"], 1e-6), W[a + "q_b_proj.weight"])
    else:
        q = linear(h, W[a + "q_proj.weight"])
    q = q.reshape(B, S, H, nope + rot)
    lat = linear(h, W[a + "kv_a_proj_with_mqa.weight"], W.get(a + "kv_a_proj_with_mqa.bias"))
    kv_nope = rms_norm(lat[..., :kv], W[a + "kv_a_layernorm.weight"], 1e-6)
    q_rot, k_rot = q[..., nope:], lat[..., kv:].reshape(B, S, 1, rot)
    if text.get("rope_interleave", True):  # pairs (x0, x1), (x2, x3), ...
        q_rot = torch.cat([q_rot[..., 0::2], q_rot[..., 1::2]], -1)
        k_rot = torch.cat([k_rot[..., 0::2], k_rot[..., 1::2]], -1)
    q_rot = rope(q_rot, positions, inv_freq, [rot // 2], scaling)
    k_rot = rope(k_rot, positions, inv_freq, [rot // 2], scaling)
    kvb = linear(kv_nope, W[a + "kv_b_proj.weight"]).reshape(B, S, H, nope + vd)
    k = torch.cat([kvb[..., :nope], k_rot.expand(B, S, H, rot)], -1)
    q = torch.cat([q[..., :nope], q_rot], -1)
    o = attention(q, k, kvb[..., nope:], segments, True, deepseek_scale(text)).reshape(B, S, H * vd)
    return linear(o, W[a + "o_proj.weight"], W.get(a + "o_proj.bias"))


def ref_deepseek_moe(W, b, text, h, stats):
    """Sigmoid scores, the group-limited choice on scores + bias, routed and shared experts."""
    flat = h.reshape(-1, h.shape[-1])
    s = linear(flat, W[b + "mlp.gate.weight"]).sigmoid()
    E = s.shape[-1]
    bias = W.get(b + "mlp.gate.e_score_correction_bias", torch.zeros(E))
    choice = s + bias
    G, keep, k = text.get("n_group") or 1, text.get("topk_group") or 1, text["num_experts_per_tok"]
    per = E // G
    grouped = choice.reshape(-1, G, per)
    gscore = grouped.topk(min(2, per), -1).values.sum(-1)
    gmask = torch.zeros_like(gscore).scatter_(1, gscore.topk(keep, -1).indices, 1.0)
    masked = choice.masked_fill(~gmask.repeat_interleave(per, 1).bool(), float("-inf"))
    top = masked.sort(-1, descending=True).values
    gap = (top[:, k - 1] - top[:, k]).min().item() if k < keep * per else 1.0
    stats["min_topk_gap"] = min(stats.get("min_topk_gap", 1.0), gap)
    index = masked.topk(k, -1).indices
    weights = s.gather(1, index)
    if text.get("norm_topk_prob", True):
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    weights = weights * text.get("routed_scaling_factor", 1.0)
    out = torch.zeros_like(flat)
    for t in range(flat.shape[0]):
        for j in range(k):
            e = f"{b}mlp.experts.{int(index[t, j])}."
            y = F.silu(flat[t] @ W[e + "gate_proj.weight"].T) * (flat[t] @ W[e + "up_proj.weight"].T)
            out[t] += weights[t, j] * (y @ W[e + "down_proj.weight"].T)
    if text.get("n_shared_experts", 1):
        out = out + ref_mlp(W, b + "mlp.shared_experts.", flat)
    return out.reshape(h.shape)


def ref_gpt_oss_experts(W, b, text, x, e):
    """gpt-oss's expert e on the rows x: stacked weights [E, in, out], biases,
    gate and up interleaved, the clamped SwiGLU."""
    p, limit = f"{b}mlp.experts.", text.get("swiglu_limit", 7.0)
    alpha = text.get("swiglu_alpha", 1.702)
    gu = x @ W[p + "gate_up_proj"][e] + W[p + "gate_up_proj_bias"][e]
    gate, up = gu[..., 0::2].clamp(max=limit), gu[..., 1::2].clamp(-limit, limit)
    y = (up + 1) * gate * torch.sigmoid(alpha * gate)
    return y @ W[p + "down_proj"][e] + W[p + "down_proj_bias"][e]


def ref_moe(W, b, text, h, stats):
    flat = h.reshape(-1, h.shape[-1])
    gpt_oss = b + "mlp.router.weight" in W
    if gpt_oss:
        router = linear(flat, W[b + "mlp.router.weight"], W[b + "mlp.router.bias"])
    else:
        router = linear(flat, W[b + "mlp.gate.weight"])
    stats.setdefault("router_logits", []).append(router)
    probs = router.float().softmax(-1)
    top = probs.sort(-1, descending=True).values
    k = text["num_experts_per_tok"]
    gap = (top[:, k - 1] - top[:, k]).min().item()
    stats["min_topk_gap"] = min(stats.get("min_topk_gap", 1.0), gap)
    weights, index = probs.topk(k, -1)
    stacked = b + "mlp.experts.gate_up_proj" in W and not gpt_oss  # Qwen3-VL-MoE: always normalised
    if gpt_oss or stacked or text.get("norm_topk_prob", False):  # transformers' default: none
        weights = weights / weights.sum(-1, keepdim=True)
    out = torch.zeros_like(flat)
    for t in range(flat.shape[0]):
        for j in range(k):
            if gpt_oss:
                out[t] += weights[t, j] * ref_gpt_oss_experts(W, b, text, flat[t], int(index[t, j]))
                continue
            if stacked:  # gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I]
                e = int(index[t, j])
                gate, up = (flat[t] @ W[b + "mlp.experts.gate_up_proj"][e].T).chunk(2, -1)
                out[t] += weights[t, j] * ((F.silu(gate) * up) @ W[b + "mlp.experts.down_proj"][e].T)
                continue
            e = f"{b}mlp.experts.{int(index[t, j])}."
            y = F.silu(flat[t] @ W[e + "gate_proj.weight"].T) * (flat[t] @ W[e + "up_proj.weight"].T)
            out[t] += weights[t, j] * (y @ W[e + "down_proj.weight"].T)
    return out.reshape(h.shape)


def merge_rows(embeds, positions, rows):
    flat = embeds.reshape(-1, embeds.shape[-1]).clone()
    flat[positions.long()] = rows
    return flat.reshape(embeds.shape)


@torch.no_grad()
def ref_forward(family, cfg, W, batch):
    """Logits from the written config, weights and batch, the way veomni's IR computes them."""
    return ref_logits(family, cfg, W, batch)


def ref_logits(family, cfg, W, batch):
    """ref_forward, differentiable: W's tensors may require grad."""
    stats = {}
    omni = family == "qwen2_5_omni"
    pre = decoder_prefix(family)
    embeds = W[pre + "embed_tokens.weight"][batch["input_ids"].long()]
    if family in GEMMA_FAMILIES:  # scaled by sqrt(hidden), in the weights' dtype
        hidden = text_config(family, cfg)["hidden_size"]
        embeds = embeds * torch.tensor(hidden**0.5, dtype=embeds.dtype)
    if family == "gemma3":
        rows = ref_siglip(W, cfg, batch)
        embeds = merge_rows(embeds, batch["image_token_positions"], rows)
    deepstack = ()
    if family in QWEN3_VL:
        vp = "visual." if family == "qwen3_omni_moe" else "model.visual."
        rows, deepstack = ref_vision_qwen3(W, vp, vision_config(family, cfg), batch)
        embeds = merge_rows(embeds, batch["image_token_positions"], rows)
    elif family in VISION_FAMILIES:
        vp = "thinker.visual." if omni else "visual."
        rows = ref_vision(W, vp, vision_config(family, cfg), batch, qwen25=family != "qwen2_vl")
        embeds = merge_rows(embeds, batch["image_token_positions"], rows)
    if omni:
        rows = ref_audio(W, "thinker.audio_tower.", cfg["thinker_config"]["audio_config"], batch)
        embeds = merge_rows(embeds, batch["audio_token_positions"], rows)
    if family == "qwen3_omni_moe":
        rows = ref_audio_qwen3(W, "audio_tower.", cfg["audio_config"], batch)
        embeds = merge_rows(embeds, batch["audio_token_positions"], rows)
    logits = ref_decoder(W, family, cfg, embeds, batch, stats, deepstack)
    return logits, stats


# ----------------------------------------------------------------------------
# Gradients and one AdamW step
# ----------------------------------------------------------------------------

# adamw.safetensors: one torch.optim.AdamW step after torch.nn.utils.clip_grad_norm_.
LR, BETAS, EPS = 1e-3, (0.9, 0.95), 1e-8
WEIGHT_DECAY = 0.1  # parameters with ndim >= 2 (matrices, embeddings, convs); norms, biases: 0
MAX_GRAD_NORM = 1.0
CLIP_EPS = 1e-6  # clip_grad_norm_ scales by min(1, max_norm / (total norm + 1e-6))


def hf_gradients(family, model, hf, labels):
    """(loss, {checkpoint name: d loss / d parameter}, [checkpoint names never read]).

    Backprop through HF's forward of cross_entropy(logits, labels), the loss of
    expected.safetensors; no router aux loss (router logits are off, and HF
    would only add it to its own loss). Leaves every parameter's .grad set: one
    that the forward never reads (omni's audio_tower.audio_bos_eos_token) gets
    an explicit zero gradient, so that the AdamW step still decays it, as
    veomni's optimizer, which steps every parameter, does.
    """
    model.zero_grad(set_to_none=True)
    kwargs = dict(hf)
    text = text_config(family, model.config.to_dict())
    if family in MOE_FAMILIES:
        kwargs["output_router_logits"] = bool(text.get("output_router_logits", False))
    with torch.enable_grad():
        out = forward_module(family, model)(**kwargs)
        loss = cross_entropy(out.logits, labels)
        if kwargs.get("output_router_logits"):
            loss = loss + router_aux(family, text, out.router_logits)
        loss.backward()
    unused = []
    for name, param in model.named_parameters():
        if param.grad is None:
            unused.append(checkpoint_name(family, name))
            param.grad = torch.zeros_like(param)
    named = [(name, p.grad) for name, p in model.named_parameters()]
    named += [(name, torch.zeros_like(b)) for name, b in named_buffers(model)]
    grads = checkpoint_tensors(family, named)
    return loss.detach(), grads, unused


def ref_gradients(family, cfg, W, batch):
    """{name: d loss / d W[name]} through ref_logits (zeros where W[name] is not read)."""
    W = {k: v.clone().requires_grad_() for k, v in W.items()}
    with torch.enable_grad():
        logits, stats = ref_logits(family, cfg, W, batch)
        loss = cross_entropy(logits, batch["labels"])
        loss = loss + router_aux(family, text_config(family, cfg), stats.get("router_logits", []))
        loss.backward()
    return {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in W.items()}


def adamw_step(family, model):
    """Clips the model's gradients and takes one AdamW step on its parameters in
    place; returns (total gradient norm before clipping, the new weights)."""
    params = list(model.parameters())  # tied embeddings once
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm=MAX_GRAD_NORM, foreach=False)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, foreach=False).step()
    return grad_norm.item(), checkpoint_weights(family, model)


def adamw_reference(weights, grads):
    """(pre-clip norm, new weights): the step written out in float64 on the
    checkpoint-named tensors, the formula that veomni's optimizer implements."""
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
    coef = min(1.0, MAX_GRAD_NORM / (norm + CLIP_EPS))
    b1, b2 = BETAS
    out = {}
    for name, p in weights.items():
        g = grads[name].double() * coef
        p = p.double() * (1.0 - LR * (WEIGHT_DECAY if p.ndim >= 2 else 0.0))  # decoupled decay first
        m, v = (1.0 - b1) * g, (1.0 - b2) * g * g  # moments from zero, step t = 1
        out[name] = p - LR / (1.0 - b1) * m / (v.sqrt() / math.sqrt(1.0 - b2) + EPS)
    return norm, out


def adamw_metadata(grad_norm):
    # One metadata key only: safetensors writes several in a random order.
    return {
        "veomni_adamw": json.dumps(
            {
                "optimizer": "torch.optim.AdamW",
                "lr": repr(LR),
                "betas": f"{BETAS[0]!r},{BETAS[1]!r}",
                "eps": repr(EPS),
                "weight_decay": repr(WEIGHT_DECAY),
                "weight_decay_applies_to": "ndim >= 2 (others 0.0)",
                "max_grad_norm": repr(MAX_GRAD_NORM),
                "grad_norm": repr(grad_norm),
                "step": "1",
            }
        )
    }


# ----------------------------------------------------------------------------
# Checks and writing
# ----------------------------------------------------------------------------


def to_file_dtypes(batch):
    return {
        k: (v.to(torch.int32) if not v.is_floating_point() else v.to(torch.float32)).contiguous()
        for k, v in sorted(batch.items())
    }


@torch.no_grad()
def reload_logits(family, directory, hf):
    """Loads a directory (config.json + model.safetensors) with transformers' own loader."""
    # The omni thinker loads from a full omni checkpoint ("thinker.*" names);
    # the full omni class would also want the talker's voices (spk_dict.pt).
    cls = model_class(family)
    if family == "qwen2_5_omni":
        cls = transformers.Qwen2_5OmniThinkerForConditionalGeneration
    loaded, info = cls.from_pretrained(directory, output_loading_info=True, **model_kwargs(family))
    if any(info.values()):
        raise SystemExit(f"{family}: {directory} does not load by checkpoint name: {info}")
    return hf_forward(family, loaded.eval(), hf)[0]


def check(what, a, b, tol=TOLERANCE):
    diff = (a - b).abs().max().item()
    if not diff <= tol:
        raise SystemExit(f"check failed: {what}: max |diff| = {diff:.3g} > {tol:g}")
    return diff


def window_selfcheck(family, config, cfg, model):
    """Qwen2.5 window order on an 8x8-patch image (4 windows); nothing written."""
    gen = torch.Generator().manual_seed(SEED + 7)
    batch, hf, _ = make_batch(family, model, config, gen, grid=(1, 8, 8))
    logits, _ = hf_forward(family, forward_module(family, model), hf)
    W = checkpoint_weights(family, model)
    ref, _ = ref_forward(family, cfg, W, batch)
    perm = batch["image_token_positions"] - batch["image_token_positions"].min()
    assert not torch.equal(perm, torch.arange(len(perm))), "window order should be non-trivial here"
    return check(f"{family} window self-check", ref, logits)


def check_all(what, a, b, tol):
    """check() of every tensor of two dicts with the same names and shapes."""
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a), f"{what}: names or shapes"
    return max(check(f"{what}: {k}", a[k], b[k], tol) for k in a)


def human(n):
    return f"{n / 1024:.1f} KiB"


def hf_rotary(family, model, layer_type="full_attention"):
    text = forward_module(family, model)
    lm = text.model.language_model if family in VISION_FAMILIES + ("gemma3",) else text.model
    rotary = lm.rotary_emb
    if hasattr(rotary, f"{layer_type}_inv_freq"):  # Gemma 3: one per layer type
        return getattr(rotary, f"{layer_type}_inv_freq").float(), float(
            getattr(rotary, f"{layer_type}_attention_scaling")
        )
    return rotary.inv_freq.float(), float(rotary.attention_scaling)


def write_v4_config(v4_python, source, out):
    """config.v4.json: `source` (a config dict) saved by transformers 4.x; returns its version."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "config.json"
        src.write_text(json.dumps(source, indent=2, sort_keys=True))
        env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
        run = subprocess.run(
            [v4_python, str(V4_HELPER), str(src), str(out)], capture_output=True, text=True, env=env
        )
    if run.returncode != 0:
        raise SystemExit(f"{V4_HELPER.name} failed ({v4_python}):\n{run.stdout}{run.stderr}")
    return run.stdout.strip().splitlines()[-1]


def without(d, keys):
    """A config dict without `keys`, recursively; rope dicts also without "type"
    (4.x writes "type": "default" where 5.x keeps the file's "mrope")."""
    out = {}
    for k, v in d.items():
        if k in keys:
            continue
        if isinstance(v, dict):
            v = without(v, keys | ({"type"} if k == "rope_parameters" else set()))
        out[k] = v
    return out


def dict_diff(a, b, path=""):
    """(keys of `a` that `b` lacks or holds another value for, keys only `b` has), recursively."""
    differ, extra = [], []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            d, e = dict_diff(a[k], b[k], f"{path}{k}.")
            differ, extra = differ + d, extra + e
        elif k not in a:
            extra.append(f"{path}{k}")
        elif a[k] != b.get(k, "<absent>"):
            differ.append(f"{path}{k}: {a[k]!r} vs {b.get(k, '<absent>')!r}")
    return differ, extra


def check_v4_config(family, path, config_json):
    """config.v4.json has the 4.x keys and loads into config.json's config.

    Equal: every value of config.json's config (transformers 5 loads both) is
    the same in config.v4.json's, except the sub-configs' dtype, which 4.55
    leaves null there. config.v4.json's may have more: the VL models' 4.x
    top-level text keys (then equal to text_config's), and keys that 4.x
    copied into text_config. Returns the number of those extra keys.
    """
    v4 = json.loads(Path(path).read_text())
    text = {"qwen2_5_omni": v4.get("thinker_config", {}).get("text_config"), "gemma3": v4.get("text_config")}.get(
        family, v4
    )
    for key in ("rope_theta",) + (("torch_dtype",) if family != "gemma3" else ()):
        assert key in text, f"{path}: no {key}"
    assert "rope_parameters" not in json.dumps(v4), f"{path}: rope_parameters in a 4.x config"
    assert "torch_dtype" in v4, f"{path}: no top-level torch_dtype"
    if family in ("qwen2_vl", "qwen2_5_vl"):
        assert "hidden_size" in v4 and "rope_theta" in v4["text_config"], f"{path}: 4.x VL layout"
    a = transformers.AutoConfig.from_pretrained(config_json)
    b = transformers.AutoConfig.from_pretrained(path)
    rp = layer_rope({"rope_parameters": a.get_text_config().rope_parameters})
    if rope_type(rp) != "default" or "mrope_section" in rp:
        scaling = text.get("rope_scaling")
        assert scaling and "rope_type" in scaling, f"{path}: no rope_scaling.rope_type"
    ignore = {"transformers_version", "_name_or_path", "architectures"}
    a, b = without(a.to_dict(), ignore), without(b.to_dict(), ignore)
    differ, extra = dict_diff(a, b)
    differ = [d for d in differ if not (d.split(":")[0].endswith(".dtype") and d.endswith("vs None"))]
    for key in extra:
        if "." not in key and "text_config" in b:  # a 4.x VL top-level text key
            assert b[key] == b["text_config"].get(key, b[key]), f"{path}: {key} differs from text_config's"
    if differ:
        raise SystemExit(f"{path} loads into another config than config.json:\n  " + "\n  ".join(differ))
    return len(extra)


def sensitivities(family, cfg):
    """(what, config.json changed so): configs whose logits must differ from the
    case's by far more than the tolerance, so that a reader that drops the
    case's rope scaling or its router setting would fail the parity tests."""
    text = text_config(family, cfg)
    rp = layer_rope(text)
    nested = rp is not text["rope_parameters"]  # Gemma 3: per layer type
    out = []
    if rope_type(rp) != "default":
        changed = copy.deepcopy(cfg)
        unscaled = {"rope_type": "default", "rope_theta": rp["rope_theta"]}
        if nested:
            text_config(family, changed)["rope_parameters"]["full_attention"] = unscaled
        else:
            text_config(family, changed)["rope_parameters"] = unscaled
        out.append(("unscaled rope", changed))
    if rope_type(rp) == "yarn" and rope_frequencies(text)[1] != 1.0:  # DeepSeek's is 1
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["rope_parameters"]["attention_factor"] = 1.0
        out.append(("yarn without attention factor", changed))
    if family == "deepseek_v3":
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["rope_interleave"] = False
        out.append(("rope without interleave", changed))
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["n_group"] = 1
        text_config(family, changed)["topk_group"] = 1
        out.append(("one expert group", changed))
    if family in ("gpt_oss",) + GEMMA_FAMILIES or text.get("use_sliding_window"):
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["sliding_window"] = None
        out.append(("no sliding window", changed))
    if family in GEMMA_FAMILIES:
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["query_pre_attn_scalar"] = head_dim(text)
        out.append(("query_pre_attn_scalar = head_dim", changed))
        changed = copy.deepcopy(cfg)
        rp = text_config(family, changed)["rope_parameters"]
        rp["sliding_attention"] = copy.deepcopy(rp["full_attention"])
        out.append(("the global rope in sliding layers", changed))
        if text.get("swiglu_limit", 7.0) < 1:
            changed = copy.deepcopy(cfg)
            text_config(family, changed)["swiglu_limit"] = 7.0
            out.append(("an unclamped SwiGLU", changed))
    if family in QWEN3_VL:
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["rope_parameters"]["mrope_interleaved"] = False
        out.append(("MRoPE in runs", changed))
        changed = copy.deepcopy(cfg)
        vision_config(family, changed)["deepstack_visual_indexes"] = []
        out.append(("no DeepStack", changed))
    if (text.get("num_experts") or text.get("num_local_experts")) and family not in ("gpt_oss", "qwen3_vl_moe"):
        changed = copy.deepcopy(cfg)
        text_config(family, changed)["norm_topk_prob"] = not text.get("norm_topk_prob", False)
        out.append(("the other norm_topk_prob", changed))
    return out


def make_case(case, out_root, v4_python):
    family, _ = CASES[case]
    source = case_source(case)
    config = load_json_config(source)
    model = build_model(family, config)
    init_weights(model)
    weights = checkpoint_weights(family, model)

    gen = torch.Generator().manual_seed(SEED)
    batch, hf, hf_own = make_batch(family, model, config, gen)
    logits, hf_loss = hf_forward(family, forward_module(family, model), hf, batch["labels"])
    loss = cross_entropy(logits, batch["labels"])
    text0 = text_config(family, model.config.to_dict())
    if family in MOE_FAMILIES and text0.get("output_router_logits", False):
        # transformers adds the routers' load-balancing loss to its own.
        with torch.no_grad():
            out = forward_module(family, model)(
                **dict(hf, output_router_logits=True, labels=unshifted_labels(batch["labels"]))
            )
        aux = router_aux(family, text0, out.router_logits)
        check(f"{case} loss + router aux vs HF", loss + aux, out.loss.float(), 1e-6)
        hf_loss = hf_loss + aux
        loss = loss + aux
    file_batch = to_file_dtypes(batch)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The files, first in a scratch directory: written by transformers 5
        # (before the optimizer step below changes the parameters) and 4.x.
        model.save_pretrained(tmp / "v5", safe_serialization=True)
        cfg = json.loads((tmp / "v5" / "config.json").read_text())
        source["architectures"] = cfg["architectures"]  # the class that saved it
        v4 = family not in NO_V4
        v4_version = write_v4_config(v4_python, source, tmp / "config.v4.json") if v4 else "none (4.55 lacks it)"
        model_file = tmp / "v5" / "model.safetensors"
        with safe_open(str(model_file), "pt") as f:
            model_meta = f.metadata()
        W = load_file(str(model_file))

        # Self-checks (exit non-zero on failure).
        notes = []
        check(f"{case} loss vs HF loss", loss, hf_loss.float(), 1e-6)
        if hf_own is not None:
            own = hf_forward(family, forward_module(family, model), hf_own)[0]
            notes.append(f"HF-own-positions {check(f'{case} HF own positions', own, logits, 0.0):.1g}")
        same_names = sorted(W) == sorted(weights)
        if same_names:
            check_all(f"{case} model.safetensors vs checkpoint", dict(sorted(W.items())), weights, 0.0)
        else:
            notes.append("model.safetensors names differ from the checkpoint names: weights.safetensors too")
            W = weights
        # (Qwen3-VL-MoE's fused experts, reloaded, run on memory of another
        # alignment: a few 1e-8 apart, with equal weights and buffers.)
        reload_tol = 1e-6 if family == "qwen3_vl_moe" else 0.0
        notes.append(
            f"reload {check(f'{case} reload', reload_logits(family, tmp / 'v5', hf), logits, reload_tol):.1g}"
        )
        if v4:
            (tmp / "v4").mkdir()
            shutil.copy(tmp / "config.v4.json", tmp / "v4" / "config.json")
            shutil.copy(model_file, tmp / "v4" / "model.safetensors")
            extra = check_v4_config(family, tmp / "config.v4.json", tmp / "v5" / "config.json")
            notes.append(f"4.x config equal ({extra} extra keys)" if extra else "4.x config equal")
            v4_logits = reload_logits(family, tmp / "v4", hf)
            notes.append(f"reload 4.x config {check(f'{case} reload v4', v4_logits, logits, 0.0):.1g}")
        text = text_config(family, cfg)
        inv_freq, scaling = rope_frequencies(text)
        hf_inv, hf_scaling = hf_rotary(family, model)
        check(f"{case} rope inv_freq vs HF", inv_freq / hf_inv, torch.ones_like(inv_freq), 1e-6)
        check(f"{case} rope attention scaling vs HF", torch.tensor(scaling), torch.tensor(hf_scaling), 1e-6)
        if "sliding_attention" in text["rope_parameters"]:
            local_inv, _ = rope_frequencies(text, "sliding_attention")
            hf_local, _ = hf_rotary(family, model, "sliding_attention")
            check(f"{case} local rope inv_freq vs HF", local_inv / hf_local, torch.ones_like(local_inv), 1e-6)
        regimes = rope_regimes(text)
        if regimes is not None:
            kept, blended, divided = regimes
            notes.append(
                f"rope {rope_type(layer_rope(text))}: {kept} kept, {blended} blended, "
                f"{divided} divided, scaling {scaling:.6g}"
            )
            if rope_type(layer_rope(text)) == "linear":
                assert divided == len(inv_freq), f"{case}: linear scaling divides every frequency"
            else:
                assert blended >= 1 and divided >= 1, f"{case}: the rope scaling should blend and divide"
        ref, stats = ref_forward(family, cfg, W, {k: v.clone() for k, v in file_batch.items()})
        notes.append(f"veomni-ref {check(f'{case} veomni reference', ref, logits):.1g}")
        if family in ("qwen2_5_vl", "qwen2_5_omni"):
            notes.append(f"windows {window_selfcheck(family, config, cfg, model):.1g}")
        if "min_topk_gap" in stats:
            notes.append(f"min router top-k gap {stats['min_topk_gap']:.2g}")
        if "token_type_ids" in file_batch:  # the bidirectional image blocks matter
            causal_only = dict(file_batch, token_type_ids=torch.zeros_like(file_batch["token_type_ids"]))
            moved = (ref_forward(family, cfg, W, causal_only)[0] - logits).abs().max().item()
            assert moved > 10 * TOLERANCE, f"{case}: causal image tokens should move the logits"
            notes.append(f"causal image tokens move logits {moved:.2g}")
        for what, changed in sensitivities(family, cfg):
            moved = (ref_forward(family, changed, W, file_batch)[0] - logits).abs().max().item()
            assert moved > 10 * TOLERANCE, f"{case}: {what} should move the logits"
            notes.append(f"{what} moves logits {moved:.2g}")

        # Gradients, then one optimizer step: this changes the model's parameters, so last.
        grad_loss, grads, unused = hf_gradients(family, model, hf, batch["labels"])
        check(f"{case} loss with autograd", grad_loss, loss, 0.0)
        gmax = max(g.abs().max().item() for g in grads.values())
        ref_grads = ref_gradients(family, cfg, W, {k: v.clone() for k, v in file_batch.items()})
        ref_grads = {k: ref_grads[k] for k in grads}
        # Gemma's tied table sums the sqrt(hidden)-scaled lookup's gradient
        # and the head's in another order than autograd: 2.5e-6 of 2.0 apart.
        grad_tol = (4e-6 if family in GEMMA_FAMILIES else 1e-6) * gmax
        notes.append(f"grads vs veomni-ref {check_all(f'{case} grads', ref_grads, grads, grad_tol):.1g}")
        grad_norm, adamw = adamw_step(family, model)
        ref_norm, ref_adamw = adamw_reference(weights, grads)
        # (torch sums the squares in float32: gemma's 1.6e-6 relative)
        check(f"{case} grad norm", torch.tensor(grad_norm / ref_norm), torch.tensor(1.0), 4e-6 if family in GEMMA_FAMILIES else 1e-6)
        notes.append(f"adamw vs formula {check_all(f'{case} adamw', ref_adamw, adamw, 1e-7):.1g}")

        out = Path(out_root) / case
        out.mkdir(parents=True, exist_ok=True)
        expected = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
        tensors = {
            "batch.safetensors": (file_batch, None),
            "expected.safetensors": (expected, None),
            "grads.safetensors": (grads, None),
            "adamw.safetensors": (adamw, adamw_metadata(grad_norm)),
        }
        if not same_names:
            tensors["weights.safetensors"] = (weights, None)
        copies = {
            "config.json": tmp / "v5" / "config.json",
            "model.safetensors": model_file,
        }
        if v4:
            copies["config.v4.json"] = tmp / "config.v4.json"
        written = sorted(list(tensors) + list(copies))
        for stale in out.iterdir():  # e.g. weights.safetensors of an older version of this script
            if stale.is_file() and stale.suffix in (".json", ".safetensors") and stale.name not in written:
                stale.unlink()
        for name, (tensors_, metadata) in tensors.items():
            save_file(tensors_, str(out / name), metadata=metadata)
        for name, path in copies.items():
            shutil.copyfile(path, out / name)
    sizes = []
    for name in written:
        size = (out / name).stat().st_size
        sizes.append(f"{name} {human(size)}")
        assert size < 1 << 20, f"{name} over 1 MiB"
    total = sum((out / name).stat().st_size for name in written)
    assert total < 3 << 20, f"{case}: {human(total)}, over 3 MiB"

    params = sum(t.numel() for t in weights.values())
    clip = min(1.0, MAX_GRAD_NORM / (grad_norm + CLIP_EPS))
    print(f"{case:15s} loss {loss.item():.6f}  params {params}  ({family}, {human(total)})")
    print(f"{'':15s} " + ", ".join(sizes))
    print(
        f"{'':15s} model.safetensors: {len(W)} tensors, __metadata__ {model_meta}, 4.x config by {v4_version}"
    )
    print(
        f"{'':15s} grad norm {grad_norm:.6g} ({'clipped x %.6g' % clip if clip < 1 else 'not clipped'}), "
        f"max |grad| {gmax:.6g}" + (f", unread: {', '.join(unused)}" if unused else "")
    )
    print(f"{'':15s} checks: " + "; ".join(notes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_root", nargs="?", default=str(REPO / "test" / "goldens"))
    parser.add_argument(
        "--case", "--family", dest="case", action="append", choices=list(CASES), help="default: all"
    )
    parser.add_argument(
        "--v4-python",
        default=DEFAULT_V4_PYTHON,
        help="a Python with transformers 4.x (torch not needed) for config.v4.json; default %(default)s",
    )
    args = parser.parse_args()
    if not (Path(args.v4_python).is_file() and os.access(args.v4_python, os.X_OK)):
        raise SystemExit(
            f"--v4-python {args.v4_python}: no such executable. config.v4.json needs a Python with "
            "transformers 4.x, e.g.: python3 -m venv /root/venvs/t4cfg && "
            "/root/venvs/t4cfg/bin/pip install 'transformers==4.55.4'"
        )
    if int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit(f"transformers {transformers.__version__}: this script needs transformers 5")
    torch.set_num_threads(1)  # bitwise-reproducible CPU reductions
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__} -> {args.out_root}")
    for case in args.case or CASES:
        make_case(case, args.out_root, args.v4_python)


if __name__ == "__main__":
    sys.exit(main())
