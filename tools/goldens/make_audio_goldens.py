#!/usr/bin/env python3
"""Golden files for veomni's Whisper log-mel features (runtime/data/Audio.h)
against transformers' WhisperFeatureExtractor (its float64 numpy path),
as Qwen2.5-Omni configures it (128 mel bins, n_fft 400, hop 160, 16 kHz).

Writes test/goldens/audio/:
  signal.f32     1.3 s of a chirp, a tone burst and seeded noise (f32 LE)
  whisper128.f32 its features [128, frames] (f32 LE)
  whisper80.f32  the same with 80 mel bins (Whisper's default)
  shapes.json    the frame count

    python3 tools/goldens/make_audio_goldens.py
"""
import json
import os

import numpy as np
from transformers import WhisperFeatureExtractor

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "test", "goldens", "audio")


def main():
    sr = 16000
    t = np.arange(int(1.3 * sr)) / sr
    rng = np.random.default_rng(7)
    x = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t)      # a chirp
    x += 0.3 * np.sin(2 * np.pi * 3000 * t) * (t > 0.6) * (t < 0.9)
    x += 0.02 * rng.standard_normal(t.shape)
    x = x.astype(np.float32)
    x.tofile(os.path.join(OUT, "signal.f32"))
    shapes = {}
    for mels in (128, 80):
        fe = WhisperFeatureExtractor(feature_size=mels)
        feats = fe._np_extract_fbank_features(x[None].astype(np.float64),
                                              "cpu")[0].astype(np.float32)
        feats.tofile(os.path.join(OUT, f"whisper{mels}.f32"))
        shapes[f"whisper{mels}"] = list(feats.shape)
    json.dump(shapes, open(os.path.join(OUT, "shapes.json"), "w"))
    print(shapes)


if __name__ == "__main__":
    main()
