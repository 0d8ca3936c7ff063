#!/usr/bin/env python3
"""Golden files for Qwen2.5-Omni's audio in video (runtime/data/Multimodal.h,
data.audio_in_video): a video whose sound track's tokens go among its
frames' in chunks of seconds_per_chunk, against transformers.

Writes test/goldens/omni_video/ (the tokenizer, config and weights are
test/goldens/multimodal's, made by make_multimodal_goldens.py):
  talk4.mkv     24 frames of 32 x 24 at 6 fps (H.264) with a 4 s sound
                track (16 kHz PCM): 8 frames sampled at 2 fps, 4 temporal
                patches 25 positions apart, 100 audio tokens, two chunks
                of 50 positions
  videos.jsonl  one conversation with it
  expected.json its ids (Qwen2_5OmniProcessor's placeholder: per chunk the
                frames' tokens, then the clip's), trained flags, the
                thinker's get_rope_index positions (use_audio_in_video) and
                transformers' loss under omni.safetensors

    python3 tools/goldens/make_omni_video_golden.py
"""
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import WhisperFeatureExtractor

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens  # noqa: E402
import make_multimodal_goldens as mm  # noqa: E402

MEDIA = REPO / "test" / "goldens" / "multimodal"
OUT = REPO / "test" / "goldens" / "omni_video"
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Watch: "},
                                         {"type": "video", "video": "talk4.mkv"}]},
            {"role": "assistant", "content": "It moves and hums."}]


def write_media():
    rng = np.random.default_rng(9)
    frames = []
    for k in range(24):
        y, x = np.mgrid[0:24, 0:32]
        f = np.stack([x * 7, 255 - y * 9, 60 + 0 * x], -1).astype(np.float64)
        f[6:14, k:k + 8] = (240, 30, 200)
        frames.append(np.clip(f + rng.integers(0, 10, f.shape), 0, 255).astype(np.uint8))
    sr = 16000
    t = np.arange(4 * sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * t) * t) + 0.03 * rng.standard_normal(t.shape)
    pcm = np.round(np.clip(tone, -1, 1) * 32767).astype(np.int16)
    mm.write_av(OUT / "talk4.mkv", frames, pcm)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_media()
    tok = Tokenizer.from_file(str(MEDIA / "tokenizer.json"))
    config = json.loads((MEDIA / "omni.json").read_text())
    thinker = config["thinker_config"]
    vcfg, acfg = thinker["vision_config"], thinker["audio_config"]
    merge = vcfg["spatial_merge_size"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        hf_config = transformers.AutoConfig.from_pretrained(tmp)
    torch.manual_seed(0)
    model = transformers.Qwen2_5OmniForConditionalGeneration._from_config(
        hf_config, dtype=torch.float32).eval()
    make_goldens.init_weights(model)
    saved = load_file(MEDIA / "omni.safetensors")
    for name, value in make_goldens.checkpoint_weights("qwen2_5_omni", model).items():
        assert torch.equal(saved[name], value), f"{name}: not omni.safetensors' weights"
    pps = hf_config.thinker_config.position_id_per_seconds
    per_chunk = hf_config.thinker_config.seconds_per_chunk

    every = mm.video_frames(OUT / "talk4.mkv")
    meta = transformers.video_utils.VideoMetadata(total_num_frames=len(every), fps=mm.VIDEO_FPS,
                                                  width=32, height=24)
    vproc = transformers.Qwen2VLVideoProcessor(
        patch_size=vcfg["patch_size"], merge_size=merge, temporal_patch_size=vcfg["temporal_patch_size"],
        size={"shortest_edge": 64, "longest_edge": 1024})
    out = vproc(videos=[torch.from_numpy(every.copy()).permute(0, 3, 1, 2)], video_metadata=[meta],
                do_sample_frames=True, fps=2, return_tensors="pt")
    grid = out["video_grid_thw"]
    spg = vcfg["temporal_patch_size"] / 2
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(OUT / "talk4.mkv"), "-f", "s16le",
                          "-ac", "1", "-ar", "16000", "-"], check=True, capture_output=True).stdout
    sound = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768
    extractor = WhisperFeatureExtractor(feature_size=acfg["num_mel_bins"])
    mel = extractor._np_extract_fbank_features(sound[None].astype(np.float64), "cpu")[0].astype(np.float32)
    n = ((mel.shape[1] - 1) // 2 + 1 - 2) // 2 + 1
    # The processor's own placeholder (Qwen2_5OmniProcessor).
    names = types.SimpleNamespace(audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
                                  video_token="<|VIDEO|>", audio_token="<|AUDIO|>",
                                  video_processor=types.SimpleNamespace(merge_size=merge))
    names.get_chunked_index = lambda idx, tpc: transformers.Qwen2_5OmniProcessor.get_chunked_index(
        names, idx, tpc)
    placeholder = transformers.Qwen2_5OmniProcessor.replace_video_with_audio_token(
        names, {"video_grid_thw": grid, "video_second_per_grid": [spg]}, 0,
        {"num_audio_tokens": [n]}, 0, position_id_per_seconds=pps, seconds_per_chunk=per_chunk)
    text, spans = mm.render_chat(MESSAGES, lambda p: "<|vision_start|>" + placeholder + "<|vision_end|>")
    enc = tok.encode(text, add_special_tokens=False)
    trained = [int(any(a <= s < b for a, b in spans)) for s, _ in enc.offsets]
    input_ids = torch.tensor([enc.ids])
    rope = model.thinker.model if hasattr(model.thinker, "model") else model.thinker
    positions, _ = rope.get_rope_index(input_ids, None, grid, torch.ones_like(input_ids), True,
                                       torch.tensor([mel.shape[1]]), torch.tensor([spg]))
    labels = torch.tensor([[t if k else -100 for t, k in zip(enc.ids, trained)]])
    with torch.no_grad():
        loss = float(model.thinker(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                   labels=labels, pixel_values_videos=out["pixel_values_videos"],
                                   video_grid_thw=grid, video_second_per_grid=torch.tensor([spg]),
                                   input_features=torch.tensor(mel[None]),
                                   feature_attention_mask=torch.ones(1, mel.shape[1], dtype=torch.long),
                                   use_audio_in_video=True).loss)
    with open(OUT / "videos.jsonl", "w") as f:
        f.write(json.dumps({"messages": MESSAGES}, ensure_ascii=False) + "\n")
    (OUT / "expected.json").write_text(json.dumps(
        {"ids": enc.ids, "trained": trained, "positions": positions[:, 0].tolist(), "hf_loss": loss}))
    print(f"{len(enc.ids)} tokens, grid {grid.tolist()}, {n} audio tokens, transformers' loss {loss:.6f}")


if __name__ == "__main__":
    main()
