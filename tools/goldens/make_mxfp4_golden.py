#!/usr/bin/env python3
"""An MXFP4 gpt-oss checkpoint, as OpenAI publishes gpt-oss, and what
transformers makes of it: test/goldens/gpt_oss_mxfp4/.

Takes the tiny gpt_oss golden (test/goldens/gpt_oss: config.json,
model.safetensors, batch.safetensors, made by make_goldens.py), quantizes its
experts' gate_up_proj and down_proj to MXFP4 the way the published
checkpoints store them (per expert the transposed matrix [out, in], blocks of
32 values along `in`: U8 `<name>_blocks` [E, out, in / 32, 16] holding two
e2m1 values a byte, low nibble first, and U8 `<name>_scales` [E, out, in / 32],
power-of-two exponents biased by 127), and writes:

  config.json            the golden's config with quantization_config
                         {"quant_method": "mxfp4", "modules_to_not_convert": ...}
  model.safetensors      the golden's other tensors, unchanged; the experts as
                         blocks and scales
  batch.safetensors      the golden's batch
  expected.safetensors   `loss`: transformers' cross entropy of the logits of
                         that checkpoint loaded with Mxfp4Config(dequantize=True)
                         (its own dequantization), and `<name>` for every
                         expert weight: the dequantized tensor transformers
                         holds, [E, in, out]

Run from the repository root after make_goldens.py (--case gpt_oss):

    python tools/goldens/make_mxfp4_golden.py

Reference tooling (torch, transformers 5, safetensors); never a dependency of
the build or the tests.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "test" / "goldens" / "gpt_oss"
OUT = REPO / "test" / "goldens" / "gpt_oss_mxfp4"
FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def quantize(w):
    """w [E, in, out] (HF's layout) -> (blocks [E, out, in/32, 16], scales [E, out, in/32]) U8."""
    m = w.transpose(1, 2).double().numpy()  # [E, out, in]
    E, R, C = m.shape
    g = m.reshape(E, R, C // 32, 32)
    peak = np.abs(g).max(-1)
    # The smallest power of two that brings the block's peak within 6.
    exponent = np.where(peak > 0, np.ceil(np.log2(np.maximum(peak, 1e-30) / 6.0)), -127)
    exponent = np.clip(exponent, -127, 127)
    scaled = g / np.exp2(exponent)[..., None]
    codes = np.abs(scaled[..., None] - FP4[:8]).argmin(-1)  # magnitude code 0..7
    codes = np.where((scaled < 0) & (codes > 0), codes + 8, codes).astype(np.uint8)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (exponent + 127).astype(np.uint8)
    return blocks, scales


def main():
    cfg = json.loads((SOURCE / "config.json").read_text())
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
    }
    weights = load_file(str(SOURCE / "model.safetensors"))
    plain, raw = {}, {}
    for name, t in weights.items():
        if name.endswith(".mlp.experts.gate_up_proj") or name.endswith(".mlp.experts.down_proj"):
            raw[name + "_blocks"], raw[name + "_scales"] = quantize(t)
        else:
            plain[name] = t.numpy()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_numpy({**plain, **raw}, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(SOURCE / "batch.safetensors", OUT / "batch.safetensors")

    # transformers' own reading of it: dequantized on load.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        OUT,
        quantization_config=transformers.Mxfp4Config(dequantize=True),
        dtype=torch.float32,
        attn_implementation="eager",
    ).eval()
    batch = load_file(str(OUT / "batch.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"].long(), position_ids=batch["position_ids"].long()).logits
    labels = batch["labels"].long()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
    expected = {"loss": loss.reshape(()).contiguous()}
    params = dict(model.named_parameters())
    for name in weights:
        if name in params and (name.endswith("gate_up_proj") or name.endswith("down_proj")):
            expected[name] = params[name].detach().float().contiguous()
            err = (expected[name] - weights[name]).abs().max().item()
            print(f"{name}: dequantized {tuple(expected[name].shape)}, max |error| vs f32 {err:.3g}")
    save_file(expected, str(OUT / "expected.safetensors"))
    print(f"transformers' loss of the MXFP4 checkpoint: {loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
