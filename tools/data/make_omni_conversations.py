#!/usr/bin/env python3
"""A small learnable dataset of conversations with real image and audio files
for the tiny omni models of examples/tiny/ (scripts/demo.sh trains on it).

Writes examples/data/omni/:
  conversations.jsonl  16 conversations, one a line:
      user: [an image, a clip, "Colour and pitch?"]
      assistant: "The square is COLOR and the tone is PITCH."
  images/NN.png|jpg    a square of one colour (red, green, blue, yellow:
                       sample i has colour i % 4), brightness jittered, with
                       noise; sizes 16 to 40 pixels a side, PNG and JPEG
  audio/NN.wav|flac|mp3  0.32 s of a pure tone, low (200-400 Hz) or high
                       (2-4 kHz): sample i has pitch (i // 4) % 2; WAV at
                       16 kHz, FLAC at 44.1 kHz stereo, MP3 at 22.05 kHz
  tokenizer.json       a byte-level BPE (Qwen2's pre-tokenizer) trained with
                       `tokenizers` on the texts: 256 bytes, a few merges,
                       <|endoftext|>, <|im_start|>, <|im_end|>: every id
                       below 500, so none is one of the tiny configs'
                       placeholder ids (500-505)

The caption's colour and pitch words can only be predicted from the image
and the clip, so the loss falls as far as it does only when the model sees
and hears. Each combination occurs equally often.

    python3 tools/data/make_omni_conversations.py [OUT_DIR]

Needs numpy, Pillow and tokenizers (PyPI) and the ffmpeg tool (for FLAC and
MP3); reference tooling, never a dependency of the build or the tests.
"""
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np
from PIL import Image
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220),
           "yellow": (230, 220, 30)}
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QUESTION = "Colour and pitch?"


def write_wav(path, samples, rate, channels=1):
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def tone(rng, rate, high, seconds=0.32):
    t = np.arange(int(seconds * rate)) / rate
    freq = rng.uniform(2000, 4000) if high else rng.uniform(200, 400)
    x = rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return x + 0.01 * rng.standard_normal(t.shape)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "examples", "data", "omni")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "audio"), exist_ok=True)
    rng = np.random.RandomState(7)
    lines, texts = [], [QUESTION]
    for i in range(16):
        name = list(COLOURS)[i % 4]
        high = (i // 4) % 2 == 1
        side = [16, 24, 32, 40][i % 4]
        base = np.array(COLOURS[name], dtype=np.float64) * rng.uniform(0.8, 1.0)
        pixels = base + rng.normal(0, 12, (side, side, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image_file = f"images/{i:02d}." + ("png" if i % 2 == 0 else "jpg")
        image.save(os.path.join(out, image_file), **({} if i % 2 == 0 else {"quality": 92}))
        kind = ["wav", "flac", "mp3", "wav"][i % 4]
        audio_file = f"audio/{i:02d}.{kind}"
        path = os.path.join(out, audio_file)
        if kind == "wav":
            write_wav(path, tone(rng, 16000, high), 16000)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "x.wav")
                if kind == "flac":
                    x = tone(rng, 44100, high)
                    write_wav(src, np.stack([x, 0.9 * x], 1).reshape(-1), 44100, channels=2)
                    codec = ["-c:a", "flac"]
                else:
                    write_wav(src, tone(rng, 22050, high), 22050)
                    codec = ["-c:a", "libmp3lame", "-b:a", "64k"]
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, *codec, "-bitexact", path],
                               check=True)
        answer = f"The square is {name} and the tone is {'high' if high else 'low'}."
        texts.append(answer)
        lines.append({"messages": [
            {"role": "user", "content": [{"type": "image", "image": image_file},
                                         {"type": "audio", "audio": audio_file},
                                         {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": answer}]})
    with open(os.path.join(out, "conversations.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 4 + ["user\n", "assistant\n"] * 4, trainer)
    assert tok.get_vocab_size() < 500, tok.get_vocab_size()
    tok.save(os.path.join(out, "tokenizer.json"))
    print(f"{out}: {len(lines)} conversations, tokenizer of {tok.get_vocab_size()} ids")


if __name__ == "__main__":
    main()
