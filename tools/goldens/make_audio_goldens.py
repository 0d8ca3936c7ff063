#!/usr/bin/env python3
"""Golden files for veomni's Whisper log-mel features (runtime/data/Audio.h)
against transformers' WhisperFeatureExtractor (its float64 numpy path),
as Qwen2.5-Omni configures it (128 mel bins, n_fft 400, hop 160, 16 kHz).

Writes test/goldens/audio/:
  signal.f32     1.3 s of a chirp, a tone burst and seeded noise (f32 LE)
  whisper128.f32 its features [128, frames] (f32 LE)
  whisper80.f32  the same with 80 mel bins (Whisper's default)
  shapes.json    the frame count

and audio files with what FFmpeg's own command-line tool decodes from them
(runtime/data/Media.h's DecodeAudio: channels averaged, resampled to
16 kHz by libswresample):
  tone16k.wav    0.5 s of 16 kHz mono 16-bit PCM: 440 Hz + 1 kHz
  tone16k.f32    its samples / 32768 (numpy; no resampling)
  stereo44k.flac 0.6 s of 44.1 kHz stereo FLAC: 440 Hz left, 1.2 kHz right
  stereo44k.f32  `ffmpeg -af pan=mono|c0=0.5*c0+0.5*c1 -ar 16000` of it
  tone22k.mp3    0.5 s of 22.05 kHz mono MP3 (libmp3lame, 64 kb/s): 660 Hz
  tone22k.f32    `ffmpeg -ac 1 -ar 16000` of it

    python3 tools/goldens/make_audio_goldens.py   (needs the ffmpeg tool)
"""
import json
import os
import subprocess
import wave

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
    audio_files()


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def decoded(path, *filters):
    """What the ffmpeg tool decodes from `path`: mono f32 at 16 kHz."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, *filters,
                          "-ar", "16000", "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def write_wav(path, pcm, rate, channels=1):
    """16-bit PCM samples (interleaved when stereo) as a WAV file."""
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def audio_files():
    # 16 kHz mono WAV: decoded as it is.
    sr = 16000
    t = np.arange(sr // 2) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1000 * t)
    pcm = np.round(x * 32767).astype(np.int16)
    write_wav(os.path.join(OUT, "tone16k.wav"), pcm, sr)
    (pcm.astype(np.float32) / 32768).tofile(os.path.join(OUT, "tone16k.f32"))

    # 44.1 kHz stereo FLAC: two tones, averaged and resampled.
    sr = 44100
    t = np.arange(int(0.6 * sr)) / sr
    left = 0.6 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 1200 * t + 0.5)
    pcm = np.round(np.stack([left, right], 1) * 32767).astype(np.int16)
    tmp = os.path.join(OUT, "stereo44k.tmp.wav")
    write_wav(tmp, pcm, sr, channels=2)
    flac = os.path.join(OUT, "stereo44k.flac")
    ffmpeg("-i", tmp, "-c:a", "flac", "-bitexact", flac)
    os.remove(tmp)
    decoded(flac, "-af", "pan=mono|c0=0.5*c0+0.5*c1").tofile(
        os.path.join(OUT, "stereo44k.f32"))

    # 22.05 kHz mono MP3.
    sr = 22050
    t = np.arange(sr // 2) / sr
    pcm = np.round(0.5 * np.sin(2 * np.pi * 660 * t) * 32767).astype(np.int16)
    tmp = os.path.join(OUT, "tone22k.tmp.wav")
    write_wav(tmp, pcm, sr)
    mp3 = os.path.join(OUT, "tone22k.mp3")
    ffmpeg("-i", tmp, "-c:a", "libmp3lame", "-b:a", "64k", "-bitexact", mp3)
    os.remove(tmp)
    decoded(mp3, "-ac", "1").tofile(os.path.join(OUT, "tone22k.f32"))
    for name in ("tone16k", "stereo44k", "tone22k"):
        n = os.path.getsize(os.path.join(OUT, name + ".f32")) // 4
        print(name, n, "samples at 16 kHz")


if __name__ == "__main__":
    main()
