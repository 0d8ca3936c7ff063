#!/usr/bin/env python3
"""test/goldens/deepseek_v3/router_loads.safetensors: per MoE layer, the
tokens transformers routes to each expert (the choice its
e_score_correction_bias steers) on the golden batch under the golden
weights, named by that bias. DeepSeek-V3's auxiliary-loss-free balancing
moves each bias by rate * sign(mean load - load) after a step
(GoldenTrainingTest's RouterBias test checks veomni's step against these).

    python3 tools/goldens/make_router_load_golden.py
"""
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

DIR = Path(__file__).resolve().parents[2] / "test" / "goldens" / "deepseek_v3"


def main():
    model = transformers.AutoModelForCausalLM.from_pretrained(
        DIR, attn_implementation="eager", dtype=torch.float32, experts_implementation="eager"
    ).eval()
    batch = load_file(str(DIR / "batch.safetensors"))
    loads = {}

    def hook(name, experts):
        def record(module, args, out):
            indices = out[2].reshape(-1)
            loads[name] = torch.bincount(indices, minlength=experts).float()

        return record

    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is not None and hasattr(gate, "e_score_correction_bias"):
            name = f"model.layers.{i}.mlp.gate.e_score_correction_bias"
            gate.register_forward_hook(hook(name, gate.e_score_correction_bias.numel()))
    with torch.no_grad():
        model(input_ids=batch["input_ids"].long(), position_ids=batch["position_ids"].long())
    assert loads, "no group router"
    for name, load in sorted(loads.items()):
        print(name, load.tolist())
    save_file(loads, str(DIR / "router_loads.safetensors"))


if __name__ == "__main__":
    main()
