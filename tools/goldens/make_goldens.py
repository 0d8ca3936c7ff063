#!/usr/bin/env python3
"""Golden files for veomni's numerical parity tests against Hugging Face transformers.

For each tiny config in examples/tiny/<family>.json this builds the transformers
model in float32, fills its parameters with seeded random values (matrices and
embeddings N(0, 0.02); norm weights 1 + N(0, 0.1) and biases N(0, 0.02), so that
they are exercised too), runs one forward pass on a seeded batch (B=1, S=32) and
writes, under <out_root>/<family>/:

  weights.safetensors   every parameter under its HF *checkpoint* name, float32
                        (per-expert MoE weights, `visual.*` / `thinker.*` prefixes;
                        tied embeddings only as model.embed_tokens.weight)
  batch.safetensors     the veomni batch inputs of docs/frontends.md (int32 ids,
                        positions, labels already shifted; float32 pixels / mels)
  expected.safetensors  `logits` [1, 32, vocab] from the HF forward and `loss` []
                        = mean cross entropy of those logits vs the shifted labels
  grads.safetensors     d loss / d parameter (that `loss`, float32; no router aux
                        loss) by autograd through the HF forward, under the names
                        and shapes of weights.safetensors (per-expert; tied
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

Before writing, every family is checked: our loss equals HF's own loss (given
unshifted labels); the written weights load back into transformers by name (no
missing or unexpected keys) and reproduce the logits; and a small
re-implementation of veomni's semantics (frontends/Decoder.cpp, Encoders.cpp)
that uses nothing but the config and the tensors of weights.safetensors and
batch.safetensors reproduces the HF logits, and by autograd through it, the
gradients by checkpoint name. The AdamW result is checked against the update
written out in float64 (clip: g *= min(1, 1 / (norm + 1e-6)); p *= 1 - lr * wd;
p -= lr / (1 - b1) * m / (sqrt(v) / sqrt(1 - b2) + eps), m = (1 - b1) g,
v = (1 - b2) g^2). Qwen2.5-VL's window permutation is additionally checked on
a larger image whose windows are non-trivial (not written).

Run from the repository root:

    python tools/goldens/make_goldens.py [OUT_ROOT] [--family NAME ...]

OUT_ROOT defaults to test/goldens. Reruns write identical bytes. Regenerating the
goldens needs only torch + transformers (and safetensors) from PyPI; this script
is reference tooling, never a dependency of the build or the tests. Made with
torch 2.15 and transformers 5.24.
"""

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import vision_utils

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "tiny"
FAMILIES = ["llama", "qwen2", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_5_omni"]
VISION_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen2_5_omni")

SEED = 1234
BATCH, SEQ = 1, 32
TEXT_VOCAB = 500  # random text ids stay below the special ids (500 = image token)
IMAGE_GRID = (1, 4, 4)  # (t, h, w) patches: 16 patches -> 4 merged tokens
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


# ----------------------------------------------------------------------------
# Model construction and initialization
# ----------------------------------------------------------------------------


def load_config(family):
    config = transformers.AutoConfig.from_pretrained(CONFIGS / f"{family}.json")
    if family == "qwen2_5_omni":
        for key, value in OMNI_SPECIAL_IDS.items():
            setattr(config.thinker_config, key, value)
    return config


def model_class(family):
    return {
        "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
        "qwen2_5_omni": transformers.Qwen2_5OmniForConditionalGeneration,
    }.get(family, transformers.AutoModelForCausalLM)


def build_model(family, config):
    kwargs = {"attn_implementation": "eager", "dtype": torch.float32}
    if family == "qwen3_moe":
        kwargs["experts_implementation"] = "eager"
    torch.manual_seed(SEED)
    cls = model_class(family)
    if cls is transformers.AutoModelForCausalLM:
        model = cls.from_config(config, **kwargs)
    else:
        model = cls._from_config(config, **kwargs)
    return model.eval()


def is_norm(module):
    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


@torch.no_grad()
def init_weights(model):
    """Seeded init: N(0, .02) everywhere, but norm weights 1 + N(0, .1), biases N(0, .02)."""
    gen = torch.Generator().manual_seed(SEED)
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():  # tied parameters appear once
        owner = modules[name.rpartition(".")[0]]
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
        if is_norm(owner) and name.endswith(".weight"):
            param.copy_(1.0 + 0.1 * noise)
        else:
            param.copy_(0.02 * noise)


# ----------------------------------------------------------------------------
# HF parameter names -> checkpoint names
# ----------------------------------------------------------------------------

# transformers 5 nests the multimodal models; hub checkpoints use the old names.
PREFIXES = {
    "qwen2_vl": [("model.language_model.", "model."), ("model.visual.", "visual.")],
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


def checkpoint_weights(family, model):
    """{checkpoint name: float32 tensor}, experts split per expert."""
    return checkpoint_tensors(family, ((name, param.detach()) for name, param in model.named_parameters()))


def checkpoint_tensors(family, named):
    """{checkpoint name: float32 tensor} of (HF parameter name, tensor) pairs:
    the parameters themselves, or anything shaped like them (gradients)."""
    out = {}
    for name, tensor in named:  # tied lm_head is not listed
        tensor = tensor.detach().to(torch.float32)
        name = checkpoint_name(family, name)
        if name.endswith(".mlp.experts.gate_up_proj"):  # [E, 2I, H], gate half first
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
    vcfg = config.thinker_config.vision_config if family == "qwen2_5_omni" else config.vision_config
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
    vcfg = config.thinker_config.vision_config if family == "qwen2_5_omni" else config.vision_config
    merge = vcfg.spatial_merge_size
    unit = merge * merge
    patches = int(grid_thw.prod())
    assert grid_thw.shape == (1, 3) and pixels.shape[0] == patches, "one image"

    positions = vision_utils.get_vision_position_ids(grid_thw, merge)  # [P, 2] (row, col)
    cu_seqlens = vision_utils.get_vision_cu_seqlens(grid_thw)  # one segment per frame
    segments = torch.repeat_interleave(
        torch.arange(len(cu_seqlens) - 1), (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    )
    windowed = family != "qwen2_vl"
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
    if windowed:
        window_ids = torch.repeat_interleave(
            torch.arange(len(cu_windows) - 1), (cu_windows[1:] - cu_windows[:-1]).long()
        )
        inputs["vision_window_segment_ids"] = window_ids.reshape(1, patches)
    return window_index, inputs


def make_batch(family, model, config, gen, grid=IMAGE_GRID):
    """Returns (veomni batch, HF forward kwargs, HF kwargs that let HF derive positions).

    The HF kwargs carry the batch's position_ids explicitly; the second set
    instead gives HF what it needs to compute them itself (None for text).
    """
    ids = torch.randint(0, TEXT_VOCAB, (BATCH, SEQ), generator=gen)
    segments = torch.zeros(BATCH, SEQ, dtype=torch.long)
    if family not in VISION_FAMILIES:
        positions = torch.arange(SEQ).expand(BATCH, SEQ)
        labels = shift_labels(ids, [])
        batch = {"input_ids": ids, "position_ids": positions, "segment_ids": segments, "labels": labels}
        return batch, {"input_ids": ids, "position_ids": positions}, None

    omni = family == "qwen2_5_omni"
    tcfg = config.thinker_config if omni else config
    grid_thw, pixels = random_image(config, family, grid, gen)
    n_image = int(grid_thw.prod()) // tcfg.vision_config.spatial_merge_size**2
    start = 2  # <vision_start> at 2, the image tokens, <vision_end>
    ids[0, start] = tcfg.vision_start_token_id
    ids[0, start + 1 : start + 1 + n_image] = tcfg.image_token_id
    ids[0, start + 1 + n_image] = tcfg.vision_end_token_id
    features = None
    if omni:
        # One audio clip after the image: text <audio_start> <audio> x 4 <audio_end>.
        n_audio = AUDIO_FRAMES // 4
        a0 = start + n_image + 5  # <vision_end>, two text tokens, <audio_start>
        ids[0, a0 - 1] = tcfg.audio_start_token_id
        ids[0, a0 : a0 + n_audio] = tcfg.audio_token_id
        ids[0, a0 + n_audio] = tcfg.audio_end_token_id
        features = torch.randn(1, tcfg.audio_config.num_mel_bins, AUDIO_FRAMES, generator=gen)
    return multimodal_batch(family, model, config, ids, grid_thw, pixels, features)


def multimodal_batch(family, model, config, ids, grid_thw, pixels, features=None):
    """(veomni batch, HF kwargs, HF kwargs that let HF derive positions) of one document.

    ids [1, S] already holds the placeholders: <vision_start>, one image token
    per merged patch, <vision_end> (and for omni <audio_start>, one audio token
    per 4 mel frames, <audio_end>); pixels [P, C*T*p*p] are the image's patches
    in HF's processor order, grid_thw [[t, h, w]]; features [1, mel, F] are the
    omni clip's log-mel frames. Every token is in segment 0; labels are shifted.
    """
    omni = family == "qwen2_5_omni"
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
        # HF convolves each n_window * 2 frame chunk separately (zero padded);
        # veomni convolves the clips end to end, so one chunk is what agrees.
        assert frames <= 2 * acfg.n_window, "the clip must fit one attention chunk"
        assert frames % 4 == 0 and int((ids == audio_id).sum()) == frames // 4, "one audio token per 4 frames"
        ignore.append(audio_id)
        hf["input_features"] = features
        hf["feature_attention_mask"] = torch.ones(1, frames, dtype=torch.long)
        steps = frames // 2
        batch["input_features"] = features
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
            positions, _ = model.thinker.model.get_rope_index(
                ids, grid_thw, None, mask, False, torch.tensor([frames])
            )
            own = dict(hf, attention_mask=mask)
        else:
            mm_token_type_ids = (ids == image_id).int()  # 1 = image
            positions, _ = model.model.get_rope_index(ids, mm_token_type_ids, image_grid_thw=grid_thw)
            own = dict(hf, mm_token_type_ids=mm_token_type_ids)
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
    if family == "qwen3_moe":
        kwargs["output_router_logits"] = False  # veomni's loss has no aux loss
    if labels is not None:
        kwargs["labels"] = unshifted_labels(labels)
    out = module(**kwargs)
    return out.logits.float(), out.loss


# ----------------------------------------------------------------------------
# veomni semantics, re-implemented from the written files only
# ----------------------------------------------------------------------------


def rms_norm(x, w, eps):
    x = x.float()
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope(x, positions, inv_freq, sections, scaling=1.0):
    """x [B, S, H, D]; positions [N, B, S]; frequency j uses position row sec(j) % N."""
    rows = torch.repeat_interleave(torch.arange(len(sections)), torch.tensor(sections))
    rows = rows % positions.shape[0]
    angle = positions[rows].permute(1, 2, 0).float() * inv_freq  # [B, S, D/2]
    angle = torch.cat((angle, angle), dim=-1)[:, :, None, :]
    return x * (angle.cos() * scaling) + rotate_half(x) * (angle.sin() * scaling)


def attention(q, k, v, segments, causal, scale):
    """q [B, S, H, D], k/v [B, S, KV, D]; a token attends within its segment."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bshd,bthd->bhst", q, k) * scale
    allowed = segments[:, :, None] == segments[:, None, :]
    if causal:
        seq = q.shape[1]
        allowed = allowed & torch.ones(seq, seq, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)


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
    heads = vcfg.num_heads
    hd = dim // heads
    x = pixels @ conv.reshape(dim, -1).T
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd // 2, 2, dtype=torch.float64) / (hd // 2)))
    inv = torch.cat((inv, inv)).float()
    positions = batch["vision_position_ids"].long()  # [2, 1, P]
    segments = batch["vision_segment_ids"].long()
    windows = batch.get("vision_window_segment_ids")
    act = ACTS[vcfg.hidden_act]

    def norm(v, name):
        if qwen25:
            return rms_norm(v, W[name + ".weight"], 1e-6)
        return layer_norm(v, W[name + ".weight"], W[name + ".bias"], 1e-6)

    x = x[None]  # [1, P, d]
    full = getattr(vcfg, "fullatt_block_indexes", [])
    for i in range(vcfg.depth):
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
    unit = vcfg.spatial_merge_size**2
    x = norm(x, p + "merger.ln_q").reshape(patches // unit, unit * dim)
    x = F.gelu(linear(x, W[p + "merger.mlp.0.weight"], W[p + "merger.mlp.0.bias"]))
    return linear(x, W[p + "merger.mlp.2.weight"], W[p + "merger.mlp.2.bias"])


def ref_audio(W, p, acfg, batch):
    """buildAudioEncoder: clips end to end, one conv over all frames."""
    x = batch["input_features"].float()
    act = ACTS[acfg.activation_function]
    x = act(F.conv1d(x, W[p + "conv1.weight"], W[p + "conv1.bias"], padding=1))
    x = act(F.conv1d(x, W[p + "conv2.weight"], W[p + "conv2.bias"], stride=2, padding=1))
    x = x[0].T  # [steps, d]
    steps, dim = x.shape
    half = dim // 2
    inc = torch.log(torch.tensor(10000.0, dtype=torch.float64)) / (half - 1)
    timescales = torch.exp(-inc * torch.arange(half, dtype=torch.float64)).float()
    angle = batch["audio_position_ids"].float()[:, None] * timescales
    x = (x + torch.cat((angle.sin(), angle.cos()), -1))[None]
    heads = acfg.encoder_attention_heads
    hd = dim // heads
    segments = batch["audio_segment_ids"].long()
    for i in range(acfg.encoder_layers):
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


def ref_decoder(W, family, tcfg, embeds, batch, inv_freq, scaling, stats):
    """buildDecoderLoss: layers, final norm, LM head; returns logits."""
    pre = "thinker.model." if family == "qwen2_5_omni" else "model."
    head_name = "thinker.lm_head.weight" if family == "qwen2_5_omni" else "lm_head.weight"
    eps = tcfg.rms_norm_eps
    heads, kv = tcfg.num_attention_heads, tcfg.num_key_value_heads
    hd = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // heads
    positions = batch["position_ids"].long()
    if positions.dim() == 2:
        positions = positions[None]
    sections = tcfg.rope_parameters.get("mrope_section") if positions.shape[0] == 3 else None
    sections = sections or [hd // 2]
    segments = batch["segment_ids"].long()
    B, S, _ = embeds.shape
    x = embeds
    for i in range(tcfg.num_hidden_layers):
        b = f"{pre}layers.{i}."
        h = rms_norm(x, W[b + "input_layernorm.weight"], eps)

        def proj(name, n):
            y = linear(h, W[f"{b}self_attn.{name}.weight"], W.get(f"{b}self_attn.{name}.bias"))
            return y.reshape(B, S, n, hd)

        q, k, v = proj("q_proj", heads), proj("k_proj", kv), proj("v_proj", kv)
        if b + "self_attn.q_norm.weight" in W:
            q = rms_norm(q, W[b + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[b + "self_attn.k_norm.weight"], eps)
        q = rope(q, positions, inv_freq, sections, scaling)
        k = rope(k, positions, inv_freq, sections, scaling)
        a = attention(q, k, v, segments, True, hd**-0.5).reshape(B, S, heads * hd)
        x = x + linear(a, W[b + "self_attn.o_proj.weight"], W.get(b + "self_attn.o_proj.bias"))
        h = rms_norm(x, W[b + "post_attention_layernorm.weight"], eps)
        if b + "mlp.gate.weight" in W:
            x = x + ref_moe(W, b, tcfg, h, stats)
        else:
            g = linear(h, W[b + "mlp.gate_proj.weight"], W.get(b + "mlp.gate_proj.bias"))
            u = linear(h, W[b + "mlp.up_proj.weight"], W.get(b + "mlp.up_proj.bias"))
            x = x + linear(F.silu(g) * u, W[b + "mlp.down_proj.weight"], W.get(b + "mlp.down_proj.bias"))
    x = rms_norm(x, W[pre + "norm.weight"], eps)
    return linear(x, W.get(head_name, W[pre + "embed_tokens.weight"]))


def ref_moe(W, b, tcfg, h, stats):
    flat = h.reshape(-1, h.shape[-1])
    probs = linear(flat, W[b + "mlp.gate.weight"]).float().softmax(-1)
    top = probs.sort(-1, descending=True).values
    k = tcfg.num_experts_per_tok
    gap = (top[:, k - 1] - top[:, k]).min().item()
    stats["min_topk_gap"] = min(stats.get("min_topk_gap", 1.0), gap)
    weights, index = probs.topk(k, -1)
    if tcfg.norm_topk_prob:
        weights = weights / weights.sum(-1, keepdim=True)
    out = torch.zeros_like(flat)
    for t in range(flat.shape[0]):
        for j in range(k):
            e = f"{b}mlp.experts.{int(index[t, j])}."
            y = F.silu(flat[t] @ W[e + "gate_proj.weight"].T) * (flat[t] @ W[e + "up_proj.weight"].T)
            out[t] += weights[t, j] * (y @ W[e + "down_proj.weight"].T)
    return out.reshape(h.shape)


def merge_rows(embeds, positions, rows):
    flat = embeds.reshape(-1, embeds.shape[-1]).clone()
    flat[positions.long()] = rows
    return flat.reshape(embeds.shape)


@torch.no_grad()
def ref_forward(family, config, model, W, batch):
    """Logits from the written weights and batch, the way veomni's IR computes them."""
    return ref_logits(family, config, model, W, batch)


def ref_logits(family, config, model, W, batch):
    """ref_forward, differentiable: W's tensors may require grad."""
    stats = {}
    omni = family == "qwen2_5_omni"
    tcfg = config.thinker_config.text_config if omni else config.get_text_config()
    text = forward_module(family, model)
    lm = text.model.language_model if family in VISION_FAMILIES else text.model
    # Text rope frequencies as HF computed them (veomni bakes the same scaling
    # into the rope op's inv_freq at import).
    inv_freq, scaling = lm.rotary_emb.inv_freq.float(), lm.rotary_emb.attention_scaling
    pre = "thinker.model." if omni else "model."
    embeds = W[pre + "embed_tokens.weight"][batch["input_ids"].long()]
    if family in VISION_FAMILIES:
        vcfg = config.thinker_config.vision_config if omni else config.vision_config
        vp = "thinker.visual." if omni else "visual."
        rows = ref_vision(W, vp, vcfg, batch, qwen25=family != "qwen2_vl")
        embeds = merge_rows(embeds, batch["image_token_positions"], rows)
    if omni:
        rows = ref_audio(W, "thinker.audio_tower.", config.thinker_config.audio_config, batch)
        embeds = merge_rows(embeds, batch["audio_token_positions"], rows)
    logits = ref_decoder(W, family, tcfg, embeds, batch, inv_freq, scaling, stats)
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
    if family == "qwen3_moe":
        kwargs["output_router_logits"] = False
    with torch.enable_grad():
        loss = cross_entropy(forward_module(family, model)(**kwargs).logits, labels)
        loss.backward()
    unused = []
    for name, param in model.named_parameters():
        if param.grad is None:
            unused.append(checkpoint_name(family, name))
            param.grad = torch.zeros_like(param)
    grads = checkpoint_tensors(family, ((name, p.grad) for name, p in model.named_parameters()))
    return loss.detach(), grads, unused


def ref_gradients(family, config, model, W, batch):
    """{name: d loss / d W[name]} through ref_logits (zeros where W[name] is not read)."""
    W = {k: v.clone().requires_grad_() for k, v in W.items()}
    with torch.enable_grad():
        logits, _ = ref_logits(family, config, model, W, batch)
        cross_entropy(logits, batch["labels"]).backward()
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
def roundtrip_logits(family, weights, hf):
    """Loads the checkpoint-named weights with transformers' own loader."""
    # The omni thinker loads from a full omni checkpoint ("thinker.*" names);
    # the full omni class would also want the talker's voices (spk_dict.pt).
    cls = model_class(family)
    if family == "qwen2_5_omni":
        cls = transformers.Qwen2_5OmniThinkerForConditionalGeneration
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(CONFIGS / f"{family}.json", Path(tmp) / "config.json")
        save_file(weights, str(Path(tmp) / "model.safetensors"))
        loaded, info = cls.from_pretrained(
            tmp, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
        )
    if any(info.values()):
        raise SystemExit(f"{family}: weights do not load by checkpoint name: {info}")
    return hf_forward(family, loaded.eval(), hf)[0]


def check(what, a, b, tol=TOLERANCE):
    diff = (a - b).abs().max().item()
    if not diff <= tol:
        raise SystemExit(f"check failed: {what}: max |diff| = {diff:.3g} > {tol:g}")
    return diff


def window_selfcheck(family, config, model):
    """Qwen2.5 window order on an 8x8-patch image (4 windows); nothing written."""
    gen = torch.Generator().manual_seed(SEED + 7)
    batch, hf, _ = make_batch(family, model, config, gen, grid=(1, 8, 8))
    logits, _ = hf_forward(family, forward_module(family, model), hf)
    W = checkpoint_weights(family, model)
    ref, _ = ref_forward(family, config, model, W, batch)
    perm = batch["image_token_positions"] - batch["image_token_positions"].min()
    assert not torch.equal(perm, torch.arange(len(perm))), "window order should be non-trivial here"
    return check(f"{family} window self-check", ref, logits)


def check_all(what, a, b, tol):
    """check() of every tensor of two dicts with the same names and shapes."""
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a), f"{what}: names or shapes"
    return max(check(f"{what}: {k}", a[k], b[k], tol) for k in a)


def human(n):
    return f"{n / 1024:.1f} KiB"


def make_family(family, out_root):
    config = load_config(family)
    model = build_model(family, config)
    init_weights(model)
    weights = checkpoint_weights(family, model)

    gen = torch.Generator().manual_seed(SEED)
    batch, hf, hf_own = make_batch(family, model, config, gen)
    logits, hf_loss = hf_forward(family, forward_module(family, model), hf, batch["labels"])
    loss = cross_entropy(logits, batch["labels"])

    # Self-checks (exit non-zero on failure).
    notes = []
    check(f"{family} loss vs HF loss", loss, hf_loss.float(), 1e-6)
    if hf_own is not None:
        own = hf_forward(family, forward_module(family, model), hf_own)[0]
        notes.append(f"HF-own-positions {check(f'{family} HF own positions', own, logits, 0.0):.1g}")
    file_batch = to_file_dtypes(batch)
    notes.append(
        f"reload {check(f'{family} reload', roundtrip_logits(family, weights, hf), logits, 0.0):.1g}"
    )
    ref, stats = ref_forward(family, config, model, weights, {k: v.clone() for k, v in file_batch.items()})
    notes.append(f"veomni-ref {check(f'{family} veomni reference', ref, logits):.1g}")
    if family in ("qwen2_5_vl", "qwen2_5_omni"):
        notes.append(f"windows {window_selfcheck(family, config, model):.1g}")
    if "min_topk_gap" in stats:
        notes.append(f"min router top-k gap {stats['min_topk_gap']:.2g}")

    # Gradients, then one optimizer step: this changes the model's parameters, so last.
    grad_loss, grads, unused = hf_gradients(family, model, hf, batch["labels"])
    check(f"{family} loss with autograd", grad_loss, loss, 0.0)
    gmax = max(g.abs().max().item() for g in grads.values())
    ref_grads = ref_gradients(family, config, model, weights, {k: v.clone() for k, v in file_batch.items()})
    notes.append(f"grads vs veomni-ref {check_all(f'{family} grads', ref_grads, grads, 1e-6 * gmax):.1g}")
    grad_norm, adamw = adamw_step(family, model)
    ref_norm, ref_adamw = adamw_reference(weights, grads)
    check(f"{family} grad norm", torch.tensor(grad_norm / ref_norm), torch.tensor(1.0), 1e-6)
    notes.append(f"adamw vs formula {check_all(f'{family} adamw', ref_adamw, adamw, 1e-7):.1g}")

    out = Path(out_root) / family
    out.mkdir(parents=True, exist_ok=True)
    expected = {"logits": logits.contiguous(), "loss": loss.reshape(()).contiguous()}
    files = {
        "weights.safetensors": (weights, None),
        "batch.safetensors": (file_batch, None),
        "expected.safetensors": (expected, None),
        "grads.safetensors": (grads, None),
        "adamw.safetensors": (adamw, adamw_metadata(grad_norm)),
    }
    sizes = []
    for name, (tensors, metadata) in files.items():
        path = out / name
        save_file(tensors, str(path), metadata=metadata)
        sizes.append(f"{name} {human(path.stat().st_size)}")
        assert path.stat().st_size < 1 << 20, f"{name} over 1 MB"
    params = sum(t.numel() for t in weights.values())
    clip = min(1.0, MAX_GRAD_NORM / (grad_norm + CLIP_EPS))
    print(f"{family:13s} loss {loss.item():.6f}  params {params}  " + ", ".join(sizes))
    print(
        f"{'':13s} grad norm {grad_norm:.6g} ({'clipped x %.6g' % clip if clip < 1 else 'not clipped'}), "
        f"max |grad| {gmax:.6g}" + (f", unread: {', '.join(unused)}" if unused else "")
    )
    print(f"{'':13s} checks: " + "; ".join(notes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_root", nargs="?", default=str(REPO / "test" / "goldens"))
    parser.add_argument("--family", action="append", choices=FAMILIES, help="default: all")
    args = parser.parse_args()
    torch.set_num_threads(1)  # bitwise-reproducible CPU reductions
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__} -> {args.out_root}")
    for family in args.family or FAMILIES:
        make_family(family, args.out_root)


if __name__ == "__main__":
    sys.exit(main())
