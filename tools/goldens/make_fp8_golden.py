#!/usr/bin/env python3
"""A block-scaled FP8 DeepSeek-V3 checkpoint, as DeepSeek publishes theirs,
and what its dequantized weights compute in transformers:
test/goldens/deepseek_v3_fp8/.

Takes the tiny deepseek_v3 golden (test/goldens/deepseek_v3, made by
make_goldens.py) and stores the weights of its linear layers inside the
decoder layers (attention projections, the dense, shared and routed
experts' projections; not the router, norms, embeddings or head, as in the
published checkpoint) as F8_E4M3 with float32 `<name>_scale_inv` per 32 x 32
block (128 x 128 in the real model; the tiny model's 40-row latent
projection has a ragged last block): scale_inv = the block's max |w| / 448,
fp8 = round-to-nearest of w / scale_inv. Writes:

  config.json            the golden's config with DeepSeek's
                         quantization_config (fp8, e4m3, weight_block_size)
  model.safetensors      the FP8 weights and their scales, the rest unchanged
  batch.safetensors      the golden's batch
  expected.safetensors   `loss`: transformers' cross entropy with the
                         dequantized weights (fp8 * scale_inv of its block,
                         in float32) loaded into the tiny model, and those
                         dequantized weights by name

Run from the repository root after make_goldens.py (--case deepseek_v3):

    python tools/goldens/make_fp8_golden.py

Reference tooling (torch, transformers 5, safetensors); never a dependency of
the build or the tests.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "test" / "goldens" / "deepseek_v3"
OUT = REPO / "test" / "goldens" / "deepseek_v3_fp8"
BLOCK = 32


def quantized(name):
    return ".layers." in name and name.endswith("_proj.weight") and ".mlp.gate." not in name


def quantize(w):
    rows, cols = w.shape
    br, bc = -(-rows // BLOCK), -(-cols // BLOCK)
    scale = torch.zeros(br, bc)
    for i in range(br):
        for j in range(bc):
            block = w[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK]
            scale[i, j] = block.abs().max().clamp(min=1e-12) / 448.0
    full = scale.repeat_interleave(BLOCK, 0)[:rows].repeat_interleave(BLOCK, 1)[:, :cols]
    q = (w / full).to(torch.float8_e4m3fn)
    return q, scale, q.float() * full


def main():
    cfg = json.loads((SOURCE / "config.json").read_text())
    cfg["quantization_config"] = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [BLOCK, BLOCK],
    }
    weights = load_file(str(SOURCE / "model.safetensors"))
    stored, dequantized = {}, {}
    for name, w in weights.items():
        if quantized(name):
            q, scale, dq = quantize(w)
            stored[name], stored[name + "_scale_inv"] = q, scale
            dequantized[name] = dq
        else:
            stored[name] = w
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    save_file(stored, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(SOURCE / "batch.safetensors", OUT / "batch.safetensors")

    # transformers with the dequantized weights (its own config class).
    config = transformers.AutoConfig.from_pretrained(SOURCE)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        SOURCE, config=config, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    state = dict(weights)
    state.update(dequantized)
    # The checkpoint's per-expert names into transformers' stacked experts.
    own = model.state_dict()
    load = {}
    for key in own:
        if key.endswith("mlp.experts.gate_up_proj"):
            stem = key[: -len("gate_up_proj")]
            E = own[key].shape[0]
            load[key] = torch.stack(
                [torch.cat([state[f"{stem}{e}.gate_proj.weight"], state[f"{stem}{e}.up_proj.weight"]]) for e in range(E)]
            )
        elif key.endswith("mlp.experts.down_proj"):
            stem = key[: -len("down_proj")]
            load[key] = torch.stack([state[f"{stem}{e}.down_proj.weight"] for e in range(own[key].shape[0])])
        elif key in state:
            load[key] = state[key]
    missing = model.load_state_dict(load, strict=False)
    assert not [k for k in missing.missing_keys if "rotary" not in k], missing.missing_keys
    batch = load_file(str(OUT / "batch.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"].long(), position_ids=batch["position_ids"].long()).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].long().reshape(-1), ignore_index=-100)
    expected = {"loss": loss.reshape(()).contiguous()}
    expected.update({k: v.contiguous() for k, v in dequantized.items()})
    save_file(expected, str(OUT / "expected.safetensors"))
    worst = max((dequantized[k] - weights[k]).abs().max().item() for k in dequantized)
    print(f"{len(dequantized)} weights in FP8, max |dequantized - f32| {worst:.3g}")
    print(f"transformers' loss with the dequantized weights: {loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
