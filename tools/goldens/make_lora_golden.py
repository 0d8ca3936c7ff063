#!/usr/bin/env python3
"""Golden files for LoRA (passes/Lora.cpp, train.lora): one AdamW step of
PEFT's adapters on the tiny Llama golden, against peft and torch.

Writes test/goldens/lora/:
  initial/    adapter_model.safetensors + adapter_config.json as peft's
              save_pretrained writes them: LoraConfig(r=4, lora_alpha=8,
              target_modules=["q_proj", "v_proj", "down_proj"]), both
              matrices random (init_lora_weights=False, torch seed 0) so
              that every adapter gradient is non-zero
  stepped/    the same after one step on test/goldens/llama/batch.safetensors
              (its labels; the mean token cross entropy, as veomni's loss):
              torch.nn.utils.clip_grad_norm_(max_norm=1.0) over the adapters,
              then torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
              weight_decay=0.1) on them (matrices: all decayed)
  expected.json  the loss and the gradient norm before clipping, the
              loss with the stepped adapters (what a second step starts at),
              and the initial adapters' loss with use_rslora (alpha/sqrt(r))

    python3 tools/goldens/make_lora_golden.py
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "test" / "goldens" / "llama"
OUT = REPO / "test" / "goldens" / "lora"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        lora_dropout=0.0, init_lora_weights=False)
    peft = get_peft_model(model, config)
    peft.save_pretrained(OUT / "initial")
    batch = load_file(BASE / "batch.safetensors")
    ids, labels = batch["input_ids"].long(), batch["labels"].long()
    logits = peft(input_ids=ids, position_ids=batch["position_ids"].long()).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=-100)
    loss.backward()
    params = [p for p in peft.parameters() if p.requires_grad]
    assert len(params) == 2 * 3 * model.config.num_hidden_layers
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=1.0))
    torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                      foreach=False).step()
    peft.save_pretrained(OUT / "stepped")
    for d in ("initial", "stepped"):  # peft's model card is not needed
        (OUT / d / "README.md").unlink(missing_ok=True)
        cfg = json.loads((OUT / d / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = "test/goldens/llama"
        (OUT / d / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    with torch.no_grad():
        after = peft(input_ids=ids, position_ids=batch["position_ids"].long()).logits
        stepped = F.cross_entropy(after.reshape(-1, after.shape[-1]).float(), labels.reshape(-1),
                                  ignore_index=-100)
    # The initial adapters under rank-stabilised scaling.
    rs = get_peft_model(AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval(),
                        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                   lora_dropout=0.0, init_lora_weights=False, use_rslora=True))
    set_peft_model_state_dict(rs, load_file(OUT / "initial" / "adapter_model.safetensors"))
    with torch.no_grad():
        out = rs(input_ids=ids, position_ids=batch["position_ids"].long()).logits
        rs_loss = F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), labels.reshape(-1),
                                  ignore_index=-100)
    (OUT / "expected.json").write_text(json.dumps(
        {"loss": float(loss.detach()), "grad_norm": norm, "stepped_loss": float(stepped),
         "rslora_loss": float(rs_loss)}))
    print(f"loss {float(loss):.6f}, grad norm {norm:.6f}, {len(params)} adapter matrices")


if __name__ == "__main__":
    sys.exit(main())
