#!/usr/bin/env python3
"""Golden files for LoRA on MoE experts (passes/Lora.cpp, train.lora.
target_parameters): PEFT's ParamWrapper adapters on transformers 5's fused
expert parameters, against peft and torch.

Writes test/goldens/lora_moe/:
  experts/    the tiny Qwen3-MoE golden (test/goldens/qwen3_moe) with
              LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
              target_parameters=["mlp.experts.gate_up_proj",
              "mlp.experts.down_proj"]), every matrix random
              (init_lora_weights=False, torch seed 0), as peft saves it
  stepped/    the same after one step on the golden's batch (mean token
              cross entropy): clip_grad_norm_(1.0) over the adapters, then
              AdamW(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
  all_linear/ the same model with target_modules="all-linear" (peft 0.21
              converts it: attention Linears, the router's gate.weight,
              gate_up_proj at rank 2r and alpha 2 alpha, down_proj), random
  gpt_oss/    the tiny gpt-oss golden with target_parameters on its
              [E, in, out] experts, random
  expected.json  the losses of each, the experts' gradient norm before
              clipping and the loss with the stepped adapters

    python3 tools/goldens/make_lora_moe_golden.py
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
GOLDENS = REPO / "test" / "goldens"
OUT = GOLDENS / "lora_moe"
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def batch_of(family):
    batch = load_file(GOLDENS / family / "batch.safetensors")
    return batch["input_ids"].long(), batch["labels"].long(), batch["position_ids"].long()


def loss_of(model, family):
    ids, labels, positions = batch_of(family)
    logits = model(input_ids=ids, position_ids=positions).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=-100)


def adapted(family, config):
    model = AutoModelForCausalLM.from_pretrained(GOLDENS / family, dtype=torch.float32).eval()
    torch.manual_seed(0)
    return get_peft_model(model, config)


def save(peft, name, family):
    peft.save_pretrained(OUT / name)
    (OUT / name / "README.md").unlink(missing_ok=True)
    cfg = json.loads((OUT / name / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = f"test/goldens/{family}"
    (OUT / name / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}

    peft = adapted("qwen3_moe", LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                           target_parameters=EXPERTS, lora_dropout=0.0,
                                           init_lora_weights=False))
    save(peft, "experts", "qwen3_moe")
    loss = loss_of(peft, "qwen3_moe")
    loss.backward()
    params = [p for p in peft.parameters() if p.requires_grad]
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=1.0))
    torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                      foreach=False).step()
    save(peft, "stepped", "qwen3_moe")
    with torch.no_grad():
        stepped = loss_of(peft, "qwen3_moe")
    expected.update(loss=float(loss.detach()), grad_norm=norm, stepped_loss=float(stepped))
    print(f"experts: loss {float(loss):.6f}, grad norm {norm:.6f}, {len(params)} matrices")

    peft = adapted("qwen3_moe", LoraConfig(r=2, lora_alpha=4, target_modules="all-linear",
                                           lora_dropout=0.0, init_lora_weights=False))
    save(peft, "all_linear", "qwen3_moe")
    with torch.no_grad():
        expected["all_linear_loss"] = float(loss_of(peft, "qwen3_moe"))
    print(f"all-linear: loss {expected['all_linear_loss']:.6f}")

    peft = adapted("gpt_oss", LoraConfig(r=2, lora_alpha=4, target_modules=[],
                                         target_parameters=EXPERTS, lora_dropout=0.0,
                                         init_lora_weights=False))
    save(peft, "gpt_oss", "gpt_oss")
    with torch.no_grad():
        expected["gpt_oss_loss"] = float(loss_of(peft, "gpt_oss"))
    print(f"gpt-oss: loss {expected['gpt_oss_loss']:.6f}")

    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
