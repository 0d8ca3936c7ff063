#!/usr/bin/env python3
"""Reference parameter counts from Hugging Face transformers (meta device).

Usage: python ref_param_counts.py CONFIG.json [CONFIG.json ...]

For each config, builds the model named in `architectures` on the meta
device (no weights, no downloads) and prints total parameter count (tied
weights counted once, as model.parameters() does), the active count for
MoE models, and a per-module breakdown. Parameter names/shapes of the first
decoder layer (and first vision block) plus all non-layer params go to
/tmp/refout/<config-stem>.txt.
"""
import json
import os
import re
import sys

import torch
import transformers
from transformers import AutoConfig

OUT_DIR = os.environ.get("REFOUT", "/tmp/refout")


def numel(mod):
    return sum(p.numel() for p in mod.parameters())


def find(model, *candidates):
    """Return (name, module) for the first dotted path that exists."""
    mods = dict(model.named_modules())
    for c in candidates:
        if c in mods:
            return c, mods[c]
    return None, None


def conversion_rules(model):
    """(renames, fusions) checkpoint->module rules, as lists of (src, tgt).

    Older transformers: class attribute _checkpoint_conversion_mapping
    (regex -> replacement). transformers >= 5: conversion_mapping module
    (WeightRenaming / WeightConverter objects)."""
    renames, fused = [], []
    conv = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    renames += list(conv.items())
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        try:  # skip generic legacy renames (LayerNorm.gamma etc.)
            rules = get_model_conversion_mapping(model, add_legacy=False)
        except TypeError:
            rules = get_model_conversion_mapping(model)
    except Exception:  # older transformers
        rules = []
    for r in rules:
        srcs = getattr(r, "source_patterns", None)
        tgts = getattr(r, "target_patterns", None)
        if srcs is None:
            continue
        srcs = srcs if isinstance(srcs, (list, tuple)) else [srcs]
        tgts = tgts if isinstance(tgts, (list, tuple)) else [tgts]
        if any(c.__name__ == "WeightRenaming" for c in type(r).__mro__):
            renames += [(s, t) for s, t in zip(srcs, tgts)]
        else:
            fused.append((tuple(srcs), tuple(tgts)))
    return renames, fused


def _forward_rename(name, renames):
    for src, tgt in renames:
        new = re.sub(src, tgt, name)
        if new != name:
            return new
    return name


def checkpoint_names(name, shape, renames):
    """Map a module parameter name back to checkpoint name(s)+shape(s).

    Renames are inverted by trying candidates and checking that the forward
    rule reproduces the module name. Fused MoE expert tensors
    (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]) expand to
    per-expert Linear weights (expert 0 and last expert shown)."""
    cands = [name]
    if ".language_model." in name:
        cands.append(name.replace(".language_model.", ".", 1))
    if name.startswith("model.visual."):
        cands.append(name[len("model."):])
    ckpt = name
    for c in cands[::-1]:
        if _forward_rename(c, renames) == name:
            ckpt = c
            break
    m = re.match(r"(.*\.experts)\.(gate_up_proj|down_proj)$", ckpt)
    if m and len(shape) == 3:
        base, kind = m.groups()
        E = shape[0]
        res = []
        for e in (0, E - 1):
            if kind == "gate_up_proj":
                half = (shape[1] // 2, shape[2])
                res.append((f"{base}.{e}.gate_proj.weight", half))
                res.append((f"{base}.{e}.up_proj.weight", half))
            else:
                res.append((f"{base}.{e}.down_proj.weight", shape[1:]))
        return res
    return [(ckpt, shape)]


def main(paths):
    os.makedirs(OUT_DIR, exist_ok=True)
    print(f"transformers {transformers.__version__}  torch {torch.__version__}")
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        arch = d["architectures"][0]
        model_type = d.pop("model_type")
        cfg = AutoConfig.for_model(model_type, **d)
        cls = getattr(transformers, arch)
        with torch.device("meta"):
            model = cls._from_config(cfg)
        stem = os.path.splitext(os.path.basename(path))[0]
        total = numel(model)
        print(f"\n=== {os.path.basename(path)}  ({arch}, {type(model).__module__})")
        print(f"total {total}")
        conv = getattr(model, "_checkpoint_conversion_mapping", None)
        if conv:
            print(f"_checkpoint_conversion_mapping {conv}")
        renames, fused = conversion_rules(model)
        for src, tgt in renames:
            print(f"  ckpt rename {src} -> {tgt}")
        for src, tgt in fused:
            print(f"  ckpt fuse {src} -> {tgt}")

        # Locate pieces; support both old and new nesting.
        lm_name, lm = find(model, "model.language_model", "model")
        layers_name = f"{lm_name}.layers"
        _, layer0 = find(model, f"{layers_name}.0")
        emb_name, emb = find(model, f"{lm_name}.embed_tokens")
        norm_name, norm = find(model, f"{lm_name}.norm")
        head_name, head = find(model, "lm_head")

        print(f"  {emb_name}: {numel(emb)}")
        print(f"  {layers_name}.0 (one layer): {numel(layer0)}")
        for n, m in layer0.named_children():
            print(f"    .{n}: {numel(m)}")
            if n == "mlp":
                for n2, m2 in m.named_children():
                    print(f"      .{n2}: {numel(m2)}")
                for n2, p in m.named_parameters(recurse=False):
                    print(f"      .{n2} (direct param): {p.numel()}")
        layers = dict(model.named_modules())[layers_name]
        print(f"  {layers_name} (all {len(layers)}): {numel(layers)}")
        print(f"  {norm_name}: {numel(norm)}")
        print(f"  {head_name}: {numel(head)}"
              f"{'  (TIED to embed_tokens)' if head.weight is emb.weight else ''}")

        vis_name, vis = find(model, "model.visual", "visual")
        if vis is not None:
            print(f"  {vis_name} total: {numel(vis)}")
            for n, m in vis.named_children():
                if n == "blocks":
                    print(f"    .blocks (all {len(m)}): {numel(m)}")
                    print(f"    .blocks.0 (one block): {numel(m[0])}")
                    for n2, m2 in m[0].named_children():
                        print(f"      .{n2}: {numel(m2)}")
                else:
                    print(f"    .{n}: {numel(m)}")
            print(f"  language part (total - visual): {total - numel(vis)}")

        if model_type == "qwen3_moe":
            E = cfg.num_experts
            k = cfg.num_experts_per_tok
            mlp = layer0.mlp
            experts = mlp.experts
            if isinstance(experts, torch.nn.ModuleList):
                one_expert = numel(experts[0])
            else:  # fused 3-D expert tensors
                one_expert = numel(experts) // E
            sparse = []
            for i, lyr in enumerate(layers):
                if hasattr(lyr.mlp, "gate") and hasattr(lyr.mlp, "experts"):
                    sparse.append(i)
            inactive = (E - k) * one_expert * len(sparse)
            print(f"  one expert (gate+up+down): {one_expert}")
            print(f"  sparse layers: {len(sparse)}")
            print(f"active {total - inactive}")

        # Detailed names/shapes to file.
        out = os.path.join(OUT_DIR, stem + ".txt")
        vis_blocks = f"{vis_name}.blocks." if vis is not None else None
        with open(out, "w") as f:
            for src, tgt in renames:
                f.write(f"# ckpt rename {src} -> {tgt}\n")
            for src, tgt in fused:
                f.write(f"# ckpt fuse {src} -> {tgt}\n")
            f.write(f"# {path}\n# transformers {transformers.__version__}\n")
            f.write(f"# class {type(model).__module__}.{type(model).__name__}\n")
            if conv:
                f.write(f"# _checkpoint_conversion_mapping {conv}\n")
            f.write(f"# total {total}\n\n## first decoder layer\n")
            for n, p in model.named_parameters():
                if n.startswith(f"{layers_name}.0."):
                    f.write(f"{n} {tuple(p.shape)} {p.numel()}\n")
            if vis is not None:
                f.write("\n## first vision block\n")
                for n, p in model.named_parameters():
                    if n.startswith(vis_blocks + "0."):
                        f.write(f"{n} {tuple(p.shape)} {p.numel()}\n")
            f.write("\n## non-layer params\n")
            for n, p in model.named_parameters():
                if n.startswith(f"{layers_name}.") or (
                        vis_blocks and n.startswith(vis_blocks)):
                    continue
                f.write(f"{n} {tuple(p.shape)} {p.numel()}\n")
            f.write("\n## checkpoint (safetensors) layout: first layer/block + "
                    "non-layer; 'ckpt_name shape <- module_param'\n")
            for n, p in model.named_parameters():
                if ".layers." in n and f"{layers_name}.0." not in n:
                    continue
                if vis_blocks and n.startswith(vis_blocks) and not n.startswith(vis_blocks + "0."):
                    continue
                for cn, shape in checkpoint_names(n, tuple(p.shape), renames):
                    f.write(f"{cn} {shape} <- {n}\n")
        print(f"  (names/shapes -> {out})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
