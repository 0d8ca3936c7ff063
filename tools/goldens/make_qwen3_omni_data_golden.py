#!/usr/bin/env python3
"""Golden files for Qwen3-Omni's data path (runtime/data/Multimodal.h):
conversations with an image and audio clips through its processors, its
audio feature counts and attention windows, and transformers' own losses.

Writes test/goldens/qwen3_omni_data/ (the media and tokenizer are
test/goldens/multimodal's, made by make_multimodal_goldens.py):
  config.json        examples/tiny/qwen3_omni_moe.json's thinker, alone, with the
                     tokenizer's media ids, 16 mel bins, n_window_infer 100
                     (windows of 13 features) and a 640-token vocabulary
  model.safetensors  the thinker's seeded weights (make_goldens' init)
  samples.jsonl      small.png with tone.wav (34 frames: one chunk, cut at
                     its length); long.wav (150 frames: a chunk and a
                     zero-padded half, in two windows)
  expected.json      per sample: ids, trained flags, audio frames and
                     features, and transformers' loss under model.safetensors
                     (positions from its own get_rope_index)
  talk.mkv           12 frames of 32 x 24 at 6 fps (H.264) with a 2 s sound
                     track (16 kHz PCM)
  videos.jsonl       ../multimodal/clip.mp4 (no sound track); talk.mkv
  videos.json        per video sample, with use_audio_in_video: ids (the
                     processor's interleaving of talk.mkv's frames and sound
                     by time), trained flags, get_rope_index's positions,
                     transformers' loss; frames sampled at 2 fps by
                     Qwen2VLVideoProcessor (mean and std 0.5, 64 to 1024
                     pixels a frame), video_second_per_grid 1

    python3 tools/goldens/make_qwen3_omni_data_golden.py
"""
import json
import subprocess
import sys
import types
import wave
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import Qwen2VLImageProcessorPil, WhisperFeatureExtractor

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402
import make_multimodal_goldens as mm  # noqa: E402

MEDIA = REPO / "test" / "goldens" / "multimodal"
OUT = REPO / "test" / "goldens" / "qwen3_omni_data"
SAMPLES = [
    [{"role": "user", "content": [
        {"type": "image", "image": "../multimodal/small.png"},
        {"type": "audio", "audio": "../multimodal/tone.wav"},
        {"type": "text", "text": "What do you see and hear?"}]},
     {"role": "assistant", "content": "A gradient and a tone."}],
    [{"role": "user", "content": [
        {"type": "audio", "audio": "../multimodal/long.wav"},
        {"type": "text", "text": "And this?"}]},
     {"role": "assistant", "content": "A sweep."}],
]


def check_audio(model, acfg, mel, features):
    """veomni's layout of a clip (whole chunks, zero padded; a clip of one
    chunk or less cut at its length by audio_frame_mask, a longer one not)
    gives transformers' features of the clip, and the other choice would
    not: make_goldens' reference of the encoder on that layout."""
    frames, chunk = mel.shape[1], 100
    aligned = -(-frames // chunk) * chunk
    padded = np.zeros((mel.shape[0], aligned), np.float32)
    padded[:, :frames] = mel
    W = {k: v for k, v in make_goldens.checkpoint_weights("qwen3_omni_moe", model).items()}
    steps = aligned // chunk * 13
    window = acfg["n_window_infer"] // chunk * 13
    segments = [k // window if k < features else 10**6 for k in range(steps)]
    with torch.no_grad():
        want = model.model.audio_tower(torch.tensor(mel), feature_lens=torch.tensor([frames])).last_hidden_state
        outs = {}
        for cut in (True, False):
            mask = np.zeros((1, aligned), np.float32)
            mask[0, : (frames if cut else aligned)] = 1
            batch = {"input_features": torch.tensor(padded[None]), "audio_frame_mask": torch.tensor(mask),
                     "audio_segment_ids": torch.tensor([segments])}
            outs[cut] = make_goldens.ref_audio_qwen3(W, "audio_tower.", acfg, batch)[:features]
    chosen = frames <= chunk
    diff = (outs[chosen] - want).abs().max().item()
    other = (outs[not chosen] - want).abs().max().item()
    assert diff < 1e-5, f"{frames} frames: veomni's layout is {diff:.3g} from transformers"
    assert other > 10 * diff or frames > chunk, f"{frames} frames: the other layout is as close ({other:.3g})"
    print(f"  audio of {frames} frames: layout {diff:.2g} from transformers (the other: {other:.2g})")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(str(MEDIA / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in mm.SPECIALS}
    whole = json.loads((REPO / "examples" / "tiny" / "qwen3_omni_moe.json").read_text())
    thinker = whole["thinker_config"]
    thinker.update(image_token_id=ids["<|image_pad|>"], audio_token_id=ids["<|AUDIO|>"],
                   vision_start_token_id=ids["<|vision_start|>"],
                   vision_end_token_id=ids["<|vision_end|>"],
                   audio_start_token_id=ids["<|audio_bos|>"],
                   audio_end_token_id=ids["<|audio_eos|>"], video_token_id=ids["<|VIDEO|>"])
    thinker["text_config"]["vocab_size"] = 640
    thinker["audio_config"].update(num_mel_bins=16, n_window_infer=100)
    # The thinker's config alone, as transformers saves the thinker (its
    # parameters named without "thinker.").
    config = dict(thinker, architectures=["Qwen3OmniMoeThinkerForConditionalGeneration"])
    (OUT / "config.json").write_text(json.dumps(config, indent=1))
    vcfg, acfg = thinker["vision_config"], thinker["audio_config"]
    merge = vcfg["spatial_merge_size"]

    hf_config = make_goldens.load_json_config(config)
    torch.manual_seed(make_goldens.SEED)
    model = transformers.Qwen3OmniMoeThinkerForConditionalGeneration._from_config(
        hf_config, **make_goldens.model_kwargs("qwen3_omni_moe")).eval()
    make_goldens.init_weights(model)
    save_file(make_goldens.checkpoint_weights("qwen3_omni_moe", model), str(OUT / "model.safetensors"))

    processor = Qwen2VLImageProcessorPil(
        min_pixels=mm.MIN_PIXELS, max_pixels=mm.MAX_PIXELS, patch_size=vcfg["patch_size"],
        merge_size=merge, temporal_patch_size=vcfg["temporal_patch_size"],
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    extractor = WhisperFeatureExtractor(feature_size=acfg["num_mel_bins"])
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        _get_feat_extract_output_lengths,
    )

    def log_mel(path):
        with wave.open(str(path)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        return extractor._np_extract_fbank_features(x[None].astype(np.float64), "cpu")[0].astype(np.float32)

    expected = []
    with open(OUT / "samples.jsonl", "w") as lines:
        for messages in SAMPLES:
            lines.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            grids, pixels, mels = [], [], []

            def media(p):
                if p["type"] == "image":
                    out = processor(images=[Image.open(OUT / p["image"]).convert("RGB")], return_tensors="np")
                    grid = [int(v) for v in out["image_grid_thw"][0]]
                    grids.append(grid)
                    pixels.append(out["pixel_values"].astype(np.float32))
                    return "<|vision_start|>" + "<|image_pad|>" * (np.prod(grid) // merge**2) + "<|vision_end|>"
                mels.append(log_mel(OUT / p["audio"]))
                n = int(_get_feat_extract_output_lengths(torch.tensor(mels[-1].shape[1]), acfg["n_window"]))
                return "<|audio_bos|>" + "<|AUDIO|>" * n + "<|audio_eos|>"

            text, spans = mm.render_chat(messages, media)
            enc = tok.encode(text, add_special_tokens=False)
            trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
            input_ids = torch.tensor([enc.ids])
            labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
            hf = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
            if pixels:
                hf.update(pixel_values=torch.tensor(np.concatenate(pixels)), image_grid_thw=torch.tensor(grids))
            assert len(mels) == 1, "one clip a sample"
            hf["input_features"] = torch.tensor(mels[0][None])
            hf["feature_attention_mask"] = torch.ones(1, mels[0].shape[1], dtype=torch.long)
            with torch.no_grad():
                loss = float(model(**hf).loss)
            frames = mels[0].shape[1]
            features = int(_get_feat_extract_output_lengths(torch.tensor(frames), acfg["n_window"]))
            check_audio(model, acfg, mels[0], features)
            expected.append({"ids": enc.ids, "trained": trained, "grids": grids, "frames": frames,
                             "features": features, "hf_loss": loss})
            print(f"{len(enc.ids)} tokens, grids {grids}, {frames} frames -> {features} features, "
                  f"transformers' loss {loss:.6f}")
    (OUT / "expected.json").write_text(json.dumps(expected))
    video_samples(tok, thinker, model, extractor)


def write_talk():
    """talk.mkv: a square moving over a gradient and a rising tone."""
    rng = np.random.default_rng(5)
    frames = []
    for k in range(12):
        y, x = np.mgrid[0:24, 0:32]
        f = np.stack([255 - x * 7, y * 9, 40 + 0 * x], -1).astype(np.float64)
        f[10:18, 28 - 2 * k:36 - 2 * k] = (30, 230, 240)
        frames.append(np.clip(f + rng.integers(0, 10, f.shape), 0, 255).astype(np.uint8))
    sr = 16000
    t = np.arange(2 * sr) / sr
    tone = 0.35 * np.sin(2 * np.pi * (400 + 300 * t) * t) + 0.03 * rng.standard_normal(t.shape)
    pcm = np.round(np.clip(tone, -1, 1) * 32767).astype(np.int16)
    mm.write_av(OUT / "talk.mkv", frames, pcm)


def track(path):
    """The sound track of `path` as the ffmpeg tool decodes it (16 kHz mono)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                          "-ar", "16000", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768


def video_samples(tok, thinker, model, extractor):
    write_talk()
    vcfg, acfg = thinker["vision_config"], thinker["audio_config"]
    merge, pps = vcfg["spatial_merge_size"], thinker["position_id_per_seconds"]
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        _get_feat_extract_output_lengths,
    )
    processor = transformers.Qwen2VLVideoProcessor(
        patch_size=vcfg["patch_size"], merge_size=merge, temporal_patch_size=vcfg["temporal_patch_size"],
        image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"shortest_edge": 64, "longest_edge": 1024})
    # The processor's own interleaving (Qwen3OmniMoeProcessor's tokens).
    names = types.SimpleNamespace(audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
                                  video_token="<|VIDEO|>", audio_token="<|AUDIO|>",
                                  video_processor=types.SimpleNamespace(merge_size=merge))
    samples = [
        [{"role": "user", "content": [{"type": "video", "video": "../multimodal/clip.mp4"},
                                      {"type": "text", "text": "Where does it go?"}]},
         {"role": "assistant", "content": "Right."}],
        [{"role": "user", "content": [{"type": "text", "text": "Watch: "},
                                      {"type": "video", "video": "talk.mkv"}]},
         {"role": "assistant", "content": "It moves left and hums."}],
    ]
    expected = []
    with open(OUT / "videos.jsonl", "w") as lines:
        for messages in samples:
            lines.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            hf = {}

            def media(p):
                path = OUT / p["video"]
                every = mm.video_frames(path)
                meta = transformers.video_utils.VideoMetadata(
                    total_num_frames=len(every), fps=mm.VIDEO_FPS, width=32, height=24)
                out = processor(videos=[torch.from_numpy(every.copy()).permute(0, 3, 1, 2)],
                                video_metadata=[meta], do_sample_frames=True, fps=2, return_tensors="pt")
                grid = out["video_grid_thw"]
                spg = vcfg["temporal_patch_size"] / 2
                hf.update(pixel_values_videos=out["pixel_values_videos"], video_grid_thw=grid,
                          video_second_per_grid=torch.tensor([spg]))
                if path.suffix != ".mkv":
                    return "<|vision_start|>" + "<|VIDEO|>" * int(grid[0].prod() // merge**2) + "<|vision_end|>"
                sound = track(path)
                mel = extractor._np_extract_fbank_features(sound[None].astype(np.float64), "cpu")[0]
                mel = mel.astype(np.float32)
                n = int(_get_feat_extract_output_lengths(torch.tensor(mel.shape[1]), acfg["n_window"]))
                hf.update(input_features=torch.tensor(mel[None]),
                          feature_attention_mask=torch.ones(1, mel.shape[1], dtype=torch.long),
                          use_audio_in_video=True)
                text = transformers.Qwen3OmniMoeProcessor.replace_video_with_audio_token(
                    names, {"video_grid_thw": grid, "video_second_per_grid": [spg]}, 0,
                    {"num_audio_tokens": [n]}, 0, position_id_per_seconds=pps)
                return "<|vision_start|>" + text + "<|vision_end|>"

            text, spans = mm.render_chat(messages, media)
            enc = tok.encode(text, add_special_tokens=False)
            trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
            input_ids = torch.tensor([enc.ids])
            labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
            mask = torch.ones_like(input_ids)
            audio_lengths = (torch.tensor([hf["input_features"].shape[-1]])
                             if "input_features" in hf else None)
            positions, _ = model.get_rope_index(
                input_ids, None, hf["video_grid_thw"], mask, hf.get("use_audio_in_video", False),
                audio_lengths, hf["video_second_per_grid"])
            with torch.no_grad():
                loss = float(model(input_ids=input_ids, attention_mask=mask, labels=labels, **hf).loss)
            expected.append({"ids": enc.ids, "trained": trained,
                             "positions": positions[:, 0].tolist(), "hf_loss": loss})
            print(f"video sample: {len(enc.ids)} tokens, {enc.ids.count(tok.token_to_id('<|AUDIO|>'))} "
                  f"audio tokens, transformers' loss {loss:.6f}")
    (OUT / "videos.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
