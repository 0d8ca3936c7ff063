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
  tone.wav        0.34 s of 16 kHz mono PCM (34 feature frames)
  clip.mp4        2 s of 32 x 24 H.264 at 6 fps (12 frames)
  long.wav        1.5 s of 16 kHz mono PCM: 150 frames, two of the audio
                  tower's 100-frame chunks
  long.jsonl      one conversation about it (sample 3 of expected.json)
  pair.jsonl      samples 0 and 3: two clips in one batch
  samples.jsonl   two conversations that use them
  expected.json   per sample: ids, trained flags, image grids, the mrope
                  positions of the model's own get_rope_index, each image's
                  window order and patch (row, column)s (transformers'
                  vision_utils), the audio frames
  sample<i>.pixels.f32    Qwen2VLImageProcessor's pixel_values (PIL path;
                          min_pixels 64, max_pixels 1024, patch 4, merge 2)
  sample<i>.features.f32  WhisperFeatureExtractor's 16-bin features of the
                          clip
  sample2.video.f32       the video's patches: the frames Qwen2VLVideoProcessor
                          samples at 2 fps (its sample_frames), decoded by the
                          ffmpeg tool, patched as its patchify does
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
import subprocess
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
from transformers import Qwen2VLImageProcessorPil, WhisperFeatureExtractor, vision_utils

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402  (its seeded init and checkpoint names)

OUT = REPO / "test" / "goldens" / "multimodal"
MIN_PIXELS, MAX_PIXELS = 64, 1024
SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>", "<|VIDEO|>"]
VIDEO_FPS = 6  # the clip's own rate; frames are sampled at 2 a second


def write_media(rng):
    y, x = np.mgrid[0:24, 0:40]
    small = np.stack([x * 6, y * 10, (x + y) * 4], -1) + rng.integers(0, 30, (24, 40, 3))
    Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).save(OUT / "small.png")
    y, x = np.mgrid[0:30, 0:50]
    wide = np.stack([255 - x * 5, y * 8, 128 + 0 * x], -1) + rng.integers(0, 40, (30, 50, 3))
    Image.fromarray(np.clip(wide, 0, 255).astype(np.uint8)).save(OUT / "wide.jpg", quality=90)
    sr = 16000
    t = np.arange(int(0.34 * sr)) / sr
    tone = 0.4 * np.sin(2 * np.pi * 523 * t) + 0.05 * rng.standard_normal(t.shape)
    pcm = np.round(np.clip(tone, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(OUT / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    # A video: a square moving over a gradient, 12 frames at 6 fps.
    frames = []
    for k in range(12):
        y, x = np.mgrid[0:24, 0:32]
        f = np.stack([x * 7, y * 9, 80 + 0 * x], -1).astype(np.float64)
        f[4:12, 2 + 2 * k:10 + 2 * k] = (250, 240, 20)
        frames.append(np.clip(f + rng.integers(0, 10, f.shape), 0, 255).astype(np.uint8))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", "32x24", "-r", str(VIDEO_FPS), "-i", "-", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-bitexact", str(OUT / "clip.mp4")],
                   input=np.stack(frames).tobytes(), check=True)
    t = np.arange(int(1.5 * sr)) / sr
    sweep = 0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) + 0.02 * rng.standard_normal(t.shape)
    with wave.open(str(OUT / "long.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.round(sweep * 32767).astype(np.int16).tobytes())
    return pcm.astype(np.float32) / 32768


def write_av(path, frames, pcm, rate=16000):
    """An H.264 video of `frames` (RGB, 32 x 24, VIDEO_FPS a second) with
    `pcm` (int16 mono at `rate`) as its sound track, in PCM: a Matroska file
    whose track decodes to exactly those samples."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "track.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.tobytes())
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                        "-s", "32x24", "-r", str(VIDEO_FPS), "-i", "-", "-i", str(wav),
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
                        "-bitexact", "-fflags", "+bitexact", str(path)],
                       input=np.stack(frames).tobytes(), check=True)


def video_frames(path):
    """Every frame of `path` as the ffmpeg tool decodes it to RGB."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 24, 32, 3)


def patchify(frames, patch, merge, temporal):
    """transformers' Qwen2VLVideoProcessor.patchify (rescaled, normalized)."""
    mean = np.array(transformers.image_utils.OPENAI_CLIP_MEAN, dtype=np.float32)
    std = np.array(transformers.image_utils.OPENAI_CLIP_STD, dtype=np.float32)
    x = (frames.astype(np.float32) * np.float32(1 / 255) - mean) / std  # [n, h, w, c]
    x = x.transpose(0, 3, 1, 2)  # [n, c, h, w]
    n, c, h, w = x.shape
    gt, gh, gw = n // temporal, h // patch, w // patch
    x = x.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal * patch * patch), [gt, gh, gw]


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
    [{"role": "user", "content": [
        {"type": "video", "video": "clip.mp4"},
        {"type": "text", "text": "Where does it go?"}]},
     {"role": "assistant", "content": "Right."}],
    [{"role": "user", "content": [
        {"type": "audio", "audio": "long.wav"},
        {"type": "text", "text": "And this?"}]},
     {"role": "assistant", "content": "A sweep."}],
]


def render_chat(messages, media):
    """(text, spans of the trained characters) of a conversation as Qwen's
    chat template renders it: media(part) gives an image's or a clip's
    placeholder text; the assistant's content and <|im_end|> are trained."""
    text, spans = "", []
    for m in messages:
        text += f"<|im_start|>{m['role']}\n"
        start = len(text)
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in parts:
            text += p["text"] if p["type"] == "text" else media(p)
        text += "<|im_end|>"
        if m["role"] == "assistant":
            spans.append((start, len(text)))
        text += "\n"
    return text, spans


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
                   audio_end_token_id=ids["<|audio_eos|>"],
                   video_token_index=ids["<|VIDEO|>"])
    thinker["text_config"]["vocab_size"] = 640
    (OUT / "omni.json").write_text(json.dumps(config, indent=1))
    vcfg = thinker["vision_config"]
    merge, patch, window = vcfg["spatial_merge_size"], vcfg["patch_size"], vcfg["window_size"]

    processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                                      patch_size=patch, merge_size=merge,
                                      temporal_patch_size=vcfg["temporal_patch_size"])
    features = WhisperFeatureExtractor(feature_size=thinker["audio_config"]["num_mel_bins"])

    def log_mel(path):
        """The clip's features: every frame."""
        with wave.open(str(path)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        return features._np_extract_fbank_features(x[None].astype(np.float64), "cpu")[0].astype(
            np.float32)

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
    lines = open(OUT / "samples.jsonl", "w")
    long_lines = open(OUT / "long.jsonl", "w")
    if True:
        for i, messages in enumerate(SAMPLES):
            (long_lines if i == 3 else lines).write(
                json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            text, spans, grids, pixels, audios = "", [], [], [], 0
            mels = []
            video_grids, video_pixels, seconds, indices = [], [], [], []
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
                    elif p["type"] == "video":
                        every = video_frames(OUT / p["video"])
                        sampler = transformers.Qwen2VLVideoProcessor(temporal_patch_size=2)
                        meta = transformers.video_utils.VideoMetadata(
                            total_num_frames=len(every), fps=VIDEO_FPS, width=32, height=24)
                        indices = [int(k) for k in sampler.sample_frames(meta, fps=2)]
                        values, grid = patchify(every[indices], patch, merge,
                                                vcfg["temporal_patch_size"])
                        video_grids.append(grid)
                        video_pixels.append(values)
                        seconds.append(vcfg["temporal_patch_size"] / 2)
                        n = grid[0] * grid[1] * grid[2] // merge**2
                        text += "<|vision_start|>" + "<|VIDEO|>" * n + "<|vision_end|>"
                    else:
                        audios += 1
                        mels.append(log_mel(OUT / p["audio"]))
                        n = ((mels[-1].shape[1] - 1) // 2 + 1 - 2) // 2 + 1
                        text += "<|audio_bos|>" + "<|AUDIO|>" * n + "<|audio_eos|>"
                text += "<|im_end|>"
                if m["role"] == "assistant":
                    spans.append((start, len(text)))
                text += "\n"
            enc = tok.encode(text, add_special_tokens=False)
            trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
            input_ids = torch.tensor([enc.ids])
            positions, _ = rope.get_rope_index(
                input_ids, torch.tensor(grids) if grids else None,
                torch.tensor(video_grids) if video_grids else None,
                torch.ones_like(input_ids), False,
                torch.tensor([m.shape[1] for m in mels]) if audios else None,
                torch.tensor(seconds) if seconds else None)
            windows, rowcols = [], []
            for grid in grids:
                g = torch.tensor([grid])
                index, _ = vision_utils.get_vision_window_index(g, merge, window, patch)
                windows.append(index.tolist())
                rowcols.append(vision_utils.get_vision_position_ids(g, merge).tolist())
            if pixels:
                np.concatenate(pixels).tofile(OUT / f"sample{i}.pixels.f32")
            if audios:
                np.concatenate(mels, axis=1).tofile(OUT / f"sample{i}.features.f32")
            if video_pixels:
                np.concatenate(video_pixels).astype(np.float32).tofile(OUT / f"sample{i}.video.f32")
            # transformers' loss of the sample: its labels where trained
            # (HF shifts them itself).
            labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
            hf = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "labels": labels}
            if pixels:
                hf.update(pixel_values=torch.tensor(np.concatenate(pixels)),
                          image_grid_thw=torch.tensor(grids))
            if video_pixels:
                hf.update(pixel_values_videos=torch.tensor(np.concatenate(video_pixels)),
                          video_grid_thw=torch.tensor(video_grids),
                          video_second_per_grid=torch.tensor(seconds))
            if audios:
                assert audios == 1, "one clip a sample here"
                hf["input_features"] = torch.tensor(mels[0][None])
                hf["feature_attention_mask"] = torch.ones(1, mels[0].shape[1], dtype=torch.long)
            with torch.no_grad():
                loss = float(model.thinker(**hf).loss)
            expected.append({"ids": enc.ids, "trained": trained, "grids": grids, "hf_loss": loss,
                             "positions": positions[:, 0].tolist(), "windows": windows,
                             "rowcols": rowcols, "frames": [m.shape[1] for m in mels],
                             "video_grids": video_grids, "video_indices": indices})
            print(f"sample {i}: {len(enc.ids)} tokens, grids {grids}, clips of "
                  f"{[m.shape[1] for m in mels]} frames, transformers' loss {loss:.6f}")
    lines.close()
    long_lines.close()
    with open(OUT / "pair.jsonl", "w") as pair:
        for i in (0, 3):
            pair.write(json.dumps({"messages": SAMPLES[i]}, ensure_ascii=False) + "\n")
    (OUT / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
