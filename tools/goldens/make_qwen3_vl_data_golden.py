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
  video.jsonl      one conversation with clip.mp4 (12 frames at 6 fps)
  video.f32        Qwen3VLVideoProcessor's pixel_values_videos of it: the
                   frames it samples at 2 fps from the ffmpeg tool's
                   decoding (cap_pixels_per_frame, shortest_edge 256,
                   longest_edge 8192, max_video_tokens 32); expected.json's
                   "video" holds the sampled frame numbers, the ids with
                   Qwen3VLProcessor's "<T seconds>" frames, trained flags,
                   the grid, get_rope_index's positions and transformers'
                   loss; "sampling" and "sizes" hold sample_frames' and the
                   video processor's resize for other lengths and sizes

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
    expected["video"] = video_sample(tok, config, model, merge)
    expected["sampling"], expected["sizes"] = video_cases()
    (OUT / "expected.json").write_text(json.dumps(expected))
    print(f"{len(enc.ids)} tokens, grids {grids}, {taps.shape[0]} patches, transformers' loss {loss:.6f}")


VIDEO_MIN, VIDEO_TOTAL, VIDEO_TOKENS = 256, 8192, 32


def video_processor(vcfg, **size):
    return transformers.Qwen3VLVideoProcessor(
        patch_size=vcfg["patch_size"], merge_size=vcfg["spatial_merge_size"],
        temporal_patch_size=vcfg["temporal_patch_size"], image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size=size or {"shortest_edge": VIDEO_MIN, "longest_edge": VIDEO_TOTAL},
        cap_pixels_per_frame=True, max_video_tokens=VIDEO_TOKENS)


def video_sample(tok, config, model, merge):
    """The conversation with clip.mp4 through Qwen3-VL's video processor
    and its processor's timestamped prompt."""
    messages = json.loads(json.dumps(mm.SAMPLES[2]).replace('"clip.mp4"', '"../multimodal/clip.mp4"'))
    vcfg = config["vision_config"]
    every = mm.video_frames(MEDIA / "clip.mp4")
    meta = transformers.video_utils.VideoMetadata(
        total_num_frames=len(every), fps=mm.VIDEO_FPS, width=32, height=24)
    out = video_processor(vcfg)(videos=[torch.from_numpy(every.copy()).permute(0, 3, 1, 2)],
                                video_metadata=[meta], do_sample_frames=True, fps=2,
                                return_metadata=True, return_tensors="pt")
    grid = [int(v) for v in out["video_grid_thw"][0]]
    indices = [int(i) for i in out["video_metadata"][0].frames_indices]
    times = transformers.Qwen3VLProcessor._calculate_timestamps(
        None, list(indices), mm.VIDEO_FPS, vcfg["temporal_patch_size"])

    def video(p):
        per = grid[1] * grid[2] // merge**2
        return "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|VIDEO|>" * per + "<|vision_end|>"
                       for t in times)

    text, spans = mm.render_chat(messages, video)
    enc = tok.encode(text, add_special_tokens=False)
    trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
    input_ids = torch.tensor([enc.ids])
    mm_types = (input_ids == config["video_token_id"]).int() * 2
    positions, _ = model.model.get_rope_index(input_ids, mm_types,
                                              video_grid_thw=torch.tensor([grid]))
    labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
    with torch.no_grad():
        loss = float(model(input_ids=input_ids, pixel_values_videos=out["pixel_values_videos"],
                           video_grid_thw=torch.tensor([grid]), mm_token_type_ids=mm_types,
                           labels=labels).loss)
    out["pixel_values_videos"].numpy().astype(np.float32).tofile(OUT / "video.f32")
    with open(OUT / "video.jsonl", "w") as f:
        f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    print(f"video: frames {indices}, times {times}, grid {grid}, {len(enc.ids)} tokens, "
          f"transformers' loss {loss:.6f}")
    return {"indices": indices, "ids": enc.ids, "trained": trained, "grid": grid,
            "positions": positions[:, 0].tolist(), "hf_loss": loss}


def video_cases():
    """sample_frames' frame numbers for (total, video fps, fps, max_frames),
    and the processor's resize of (frames, height, width) under (shortest,
    longest, max_video_tokens), with patch 16 and merge 2."""
    sampling = []
    for total, vfps, fps, most in [(12, 6, 2, 768), (300, 30, 2, 768), (7, 24, 2, 768),
                                   (1000, 29.97, 2, 16), (50, 25, 1.5, 768), (3, 1, 2, 768)]:
        p = transformers.Qwen3VLVideoProcessor(max_frames=most)
        meta = transformers.video_utils.VideoMetadata(total_num_frames=total, fps=vfps)
        sampling.append({"total": total, "video_fps": vfps, "fps": fps, "max_frames": most,
                         "indices": [int(i) for i in p.sample_frames(meta, fps=fps)]})
    sizes = []
    for n, h, w, lo, hi, tokens in [(4, 480, 640, 4096, 25165824, 768), (9, 480, 640, 4096, 25165824, 768),
                                    (64, 1080, 1920, 4096, 25165824, 768), (4, 20, 300, 4096, 786432, 768),
                                    (6, 100, 90, 131072, 786432, 768), (2, 720, 1280, 4096, 1000000, 64),
                                    (5, 33, 47, 40000, 90000, 100)]:
        p = transformers.Qwen3VLVideoProcessor(max_video_tokens=tokens)
        x = torch.zeros(1, n, 3, h, w, dtype=torch.uint8)
        y = p.resize(x, size=transformers.image_utils.SizeDict(shortest_edge=lo, longest_edge=hi),
                     resample=None, factor=32, temporal_factor=2, cap_pixels_per_frame=True,
                     max_video_tokens=tokens)
        sizes.append({"frames": n, "height": h, "width": w, "min": lo, "total": hi,
                      "frame_max": tokens * 32 * 32, "size": [int(y.shape[-2]), int(y.shape[-1])]})
    return sampling, sizes


if __name__ == "__main__":
    main()
