#!/usr/bin/env python3
"""Golden files for veomni's multimodal samples and batches
(runtime/data/Multimodal.h) against transformers and `tokenizers`.

Writes test/goldens/multimodal/:
  tokenizer.json  the Qwen2-style golden tokenizer of test/goldens/tokenizers
                  with Qwen's media special tokens added (ids 570..575)
  omni.json       examples/tiny/qwen2_5_omni.json with those ids as the
                  thinker's placeholder ids and a 640-token vocabulary
  small.png       a 40 x 24 RGB image already at its target size (factor 8)
  wide.jpg        a 50 x 30 JPEG that the processor resizes to 40 x 24
  tone.wav        0.35 s of 16 kHz mono PCM
  samples.jsonl   two conversations that use them
  expected.json   per sample: ids, trained flags, image grids, the mrope
                  positions of the model's own get_rope_index, each image's
                  window order and patch (row, column)s (transformers'
                  vision_utils), the audio frames
  sample<i>.pixels.f32    Qwen2VLImageProcessor's pixel_values (PIL path;
                          min_pixels 64, max_pixels 1024, patch 4, merge 2)
  sample<i>.features.f32  WhisperFeatureExtractor's 16-bin features of the
                          clip, cut to a multiple of 4 frames
  omni.safetensors  the tiny thinker's seeded weights (make_goldens' init,
                    checkpoint names), and in expected.json each sample's
                    loss under them from transformers' own forward (the
                    processors' inputs, get_rope_index's positions): what
                    veomni's first steps must report on these samples

The ids come from rendering each conversation as Qwen's chat template does
(content parts in order, <|vision_start|><|image_pad|>*n<|vision_end|> per
image, <|audio_bos|><|AUDIO|>*n<|audio_eos|> per clip) and tokenizing the
whole text with `tokenizers`; a token is trained where it starts inside an
assistant's content or its <|im_end|>.

    python3 tools/goldens/make_multimodal_goldens.py
"""
import json
import os
import tempfile
import wave
from pathlib import Path

import sys

import numpy as np
import torch
from safetensors.torch import save_file
import transformers
from PIL import Image
from tokenizers import AddedToken, Tokenizer
from transformers import Qwen2VLImageProcessor, WhisperFeatureExtractor, vision_utils

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402  (its seeded init and checkpoint names)

OUT = REPO / "test" / "goldens" / "multimodal"
MIN_PIXELS, MAX_PIXELS = 64, 1024
SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"]


def write_media(rng):
    y, x = np.mgrid[0:24, 0:40]
    small = np.stack([x * 6, y * 10, (x + y) * 4], -1) + rng.integers(0, 30, (24, 40, 3))
    Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).save(OUT / "small.png")
    y, x = np.mgrid[0:30, 0:50]
    wide = np.stack([255 - x * 5, y * 8, 128 + 0 * x], -1) + rng.integers(0, 40, (30, 50, 3))
    Image.fromarray(np.clip(wide, 0, 255).astype(np.uint8)).save(OUT / "wide.jpg", quality=90)
    sr = 16000
    t = np.arange(int(0.35 * sr)) / sr
    tone = 0.4 * np.sin(2 * np.pi * 523 * t) + 0.05 * rng.standard_normal(t.shape)
    pcm = np.round(np.clip(tone, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(OUT / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768


SAMPLES = [
    [{"role": "user", "content": [
        {"type": "image", "image": "small.png"},
        {"type": "audio", "audio": "tone.wav"},
        {"type": "text", "text": "What do you see and hear?"}]},
     {"role": "assistant", "content": "A gradient and a tone."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": [
         {"type": "text", "text": "Compare "},
         {"type": "image", "image": "wide.jpg"},
         {"type": "text", "text": " with "},
         {"type": "image", "path": "small.png"},
         {"type": "text", "text": "."}]},
     {"role": "assistant", "content": "They differ."},
     {"role": "user", "content": "Sure?"},
     {"role": "assistant", "content": "Yes."}],
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    clip = write_media(rng)

    tok = Tokenizer.from_file(str(REPO / "test" / "goldens" / "tokenizers" / "qwen2.json"))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(OUT / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIALS}

    config = json.loads((REPO / "examples" / "tiny" / "qwen2_5_omni.json").read_text())
    thinker = config["thinker_config"]
    thinker.update(image_token_index=ids["<|image_pad|>"], audio_token_index=ids["<|AUDIO|>"],
                   vision_start_token_id=ids["<|vision_start|>"],
                   vision_end_token_id=ids["<|vision_end|>"],
                   audio_start_token_id=ids["<|audio_bos|>"],
                   audio_end_token_id=ids["<|audio_eos|>"])
    thinker["text_config"]["vocab_size"] = 640
    (OUT / "omni.json").write_text(json.dumps(config, indent=1))
    vcfg = thinker["vision_config"]
    merge, patch, window = vcfg["spatial_merge_size"], vcfg["patch_size"], vcfg["window_size"]

    processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                                      patch_size=patch, merge_size=merge,
                                      temporal_patch_size=vcfg["temporal_patch_size"])
    features = WhisperFeatureExtractor(feature_size=thinker["audio_config"]["num_mel_bins"])
    mel = features._np_extract_fbank_features(clip[None].astype(np.float64), "cpu")[0]
    frames = mel.shape[1] // 4 * 4
    mel = mel[:, :frames].astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        hf_config = transformers.AutoConfig.from_pretrained(tmp)
    torch.manual_seed(0)
    model = transformers.Qwen2_5OmniForConditionalGeneration._from_config(
        hf_config, dtype=torch.float32).eval()
    make_goldens.init_weights(model)
    save_file(make_goldens.checkpoint_weights("qwen2_5_omni", model), str(OUT / "omni.safetensors"))
    rope = model.thinker.model if hasattr(model.thinker, "model") else model.thinker

    expected = []
    with open(OUT / "samples.jsonl", "w") as lines:
        for i, messages in enumerate(SAMPLES):
            lines.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            text, spans, grids, pixels, audios = "", [], [], [], 0
            for m in messages:
                text += f"<|im_start|>{m['role']}\n"
                start = len(text)
                parts = m["content"] if isinstance(m["content"], list) else [
                    {"type": "text", "text": m["content"]}]
                for p in parts:
                    if p["type"] == "text":
                        text += p["text"]
                    elif p["type"] == "image":
                        image = Image.open(OUT / p.get("image", p.get("path"))).convert("RGB")
                        out = processor(images=[image], return_tensors="np")
                        grid = [int(v) for v in out["image_grid_thw"][0]]
                        grids.append(grid)
                        pixels.append(out["pixel_values"].astype(np.float32))
                        n = grid[0] * grid[1] * grid[2] // merge**2
                        text += "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"
                    else:
                        audios += 1
                        text += "<|audio_bos|>" + "<|AUDIO|>" * (frames // 4) + "<|audio_eos|>"
                text += "<|im_end|>"
                if m["role"] == "assistant":
                    spans.append((start, len(text)))
                text += "\n"
            enc = tok.encode(text, add_special_tokens=False)
            trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
            input_ids = torch.tensor([enc.ids])
            positions, _ = rope.get_rope_index(
                input_ids, torch.tensor(grids), None, torch.ones_like(input_ids), False,
                torch.tensor([frames] * audios) if audios else None)
            windows, rowcols = [], []
            for grid in grids:
                g = torch.tensor([grid])
                index, _ = vision_utils.get_vision_window_index(g, merge, window, patch)
                windows.append(index.tolist())
                rowcols.append(vision_utils.get_vision_position_ids(g, merge).tolist())
            if pixels:
                np.concatenate(pixels).tofile(OUT / f"sample{i}.pixels.f32")
            if audios:
                np.concatenate([mel] * audios, axis=1).tofile(OUT / f"sample{i}.features.f32")
            # transformers' loss of the sample: its labels where trained
            # (HF shifts them itself).
            labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
            hf = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "pixel_values": torch.tensor(np.concatenate(pixels)),
                  "image_grid_thw": torch.tensor(grids), "labels": labels}
            if audios:
                hf["input_features"] = torch.tensor(np.concatenate([mel[None]] * audios))
                hf["feature_attention_mask"] = torch.ones(audios, frames, dtype=torch.long)
            with torch.no_grad():
                loss = float(model.thinker(**hf).loss)
            expected.append({"ids": enc.ids, "trained": trained, "grids": grids, "hf_loss": loss,
                             "positions": positions[:, 0].tolist(), "windows": windows,
                             "rowcols": rowcols, "frames": [frames] * audios})
            print(f"sample {i}: {len(enc.ids)} tokens, grids {grids}, {audios} clips of {frames} "
                  f"frames, transformers' loss {loss:.6f}")
    (OUT / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
