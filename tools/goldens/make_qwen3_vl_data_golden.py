#!/usr/bin/env python3
"""Golden files for Qwen3-VL's data path (runtime/data/Multimodal.h):
images through its processor, its get_rope_index and the learned position
grid's bilinear taps, against transformers.

Writes test/goldens/qwen3_vl_data/ (the media and tokenizer are
test/goldens/multimodal's, made by make_multimodal_goldens.py):
  config.json      examples/tiny/qwen3_vl.json with the tokenizer's media
                   ids and a 640-token vocabulary
  model.safetensors  the tiny model's seeded weights (make_goldens' init)
  samples.jsonl    one conversation with wide.jpg and small.png
  expected.json    its ids, trained flags, image grids, the model's own
                   get_rope_index positions, each patch's position-grid
                   taps (vision_utils, bilinear, align_corners, in
                   merge-block order), and transformers' loss of the sample
                   under model.safetensors
  pos_embed_weights.f32  the taps' weights, [patches, 4]
  pixels.f32       Qwen3-VL's processor's pixel_values (Qwen2VLImageProcessor
                   with mean 0.5, std 0.5, as its preprocessor config sets;
                   min_pixels 64, max_pixels 1024, patch 4, merge 2)

    python3 tools/goldens/make_qwen3_vl_data_golden.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import Qwen2VLImageProcessorPil, vision_utils

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402
import make_multimodal_goldens as mm  # noqa: E402

MEDIA = REPO / "test" / "goldens" / "multimodal"
OUT = REPO / "test" / "goldens" / "qwen3_vl_data"
# A system prompt, wide.jpg and small.png, two turns; the media paths
# relative to the JSONL's folder.
MESSAGES = json.loads(json.dumps(mm.SAMPLES[1]).replace(
    '"wide.jpg"', '"../multimodal/wide.jpg"').replace('"small.png"', '"../multimodal/small.png"'))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(MEDIA / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in mm.SPECIALS}
    config = json.loads((REPO / "examples" / "tiny" / "qwen3_vl.json").read_text())
    config.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|VIDEO|>"],
                  vision_start_token_id=ids["<|vision_start|>"],
                  vision_end_token_id=ids["<|vision_end|>"])
    config["text_config"]["vocab_size"] = 640
    (OUT / "config.json").write_text(json.dumps(config, indent=1))
    vcfg = config["vision_config"]
    merge, side = vcfg["spatial_merge_size"], int(vcfg["num_position_embeddings"] ** 0.5)

    hf_config = make_goldens.load_json_config(config)
    model = make_goldens.build_model("qwen3_vl", hf_config)
    make_goldens.init_weights(model)
    save_file(make_goldens.checkpoint_weights("qwen3_vl", model), str(OUT / "model.safetensors"))

    processor = Qwen2VLImageProcessorPil(
        min_pixels=mm.MIN_PIXELS, max_pixels=mm.MAX_PIXELS, patch_size=vcfg["patch_size"],
        merge_size=merge, temporal_patch_size=vcfg["temporal_patch_size"],
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    grids, pixels = [], []

    def image(p):
        out = processor(images=[Image.open(OUT / p.get("image", p.get("path"))).convert("RGB")],
                        return_tensors="np")
        grid = [int(v) for v in out["image_grid_thw"][0]]
        grids.append(grid)
        pixels.append(out["pixel_values"].astype(np.float32))
        return "<|vision_start|>" + "<|image_pad|>" * (grid[0] * grid[1] * grid[2] // merge**2) + "<|vision_end|>"

    text, spans = mm.render_chat(MESSAGES, image)
    enc = tok.encode(text, add_special_tokens=False)
    trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
    input_ids = torch.tensor([enc.ids])
    mm_types = (input_ids == config["image_token_id"]).int()
    grid_thw = torch.tensor(grids)
    positions, _ = model.model.get_rope_index(input_ids, mm_types, image_grid_thw=grid_thw)
    taps, weights = vision_utils.get_vision_interpolation_indices_and_weights(
        grid_thw, side, mode="bilinear", align_corners=True, spatial_merge_size=merge)
    labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
    with torch.no_grad():
        loss = float(model(input_ids=input_ids, pixel_values=torch.tensor(np.concatenate(pixels)),
                           image_grid_thw=grid_thw, mm_token_type_ids=mm_types, labels=labels).loss)
    np.concatenate(pixels).tofile(OUT / "pixels.f32")
    with open(OUT / "samples.jsonl", "w") as f:
        f.write(json.dumps({"messages": MESSAGES}, ensure_ascii=False) + "\n")
    weights.numpy().astype(np.float32).tofile(OUT / "pos_embed_weights.f32")
    expected = {"ids": enc.ids, "trained": trained, "grids": grids,
                "positions": positions[:, 0].tolist(), "pos_embed_ids": taps.tolist(),
                "hf_loss": loss}
    (OUT / "expected.json").write_text(json.dumps(expected))
    print(f"{len(enc.ids)} tokens, grids {grids}, {taps.shape[0]} patches, transformers' loss {loss:.6f}")


if __name__ == "__main__":
    main()
