#!/usr/bin/env python3
"""Small learnable multimodal example batch files for the tiny models of examples/tiny/.

Writes two veomni batch files (docs/data.md, "Batch files"): safetensors files
whose tensors are named like the program's batch inputs (docs/frontends.md),
each with a leading dimension of N = 16 batches; ids, positions and labels are
int32, pixels and mel frames float32.

  examples/data/omni_samples.safetensors  qwen2_5_omni: B=1, S=64, 16 image patches,
                                          32 audio frames (--seq-len 64
                                          --image-patches 16 --audio-frames 32)
  examples/data/vl_samples.safetensors    qwen2_vl: B=1, S=32, 16 image patches
                                          (--seq-len 32 --image-patches 16)

Every batch is one document followed by padding. Tokens are bytes of UTF-8 text
(id = byte value, all < 128) plus the special ids that
tools/goldens/make_goldens.py uses (image 500, <vision_start> 501,
<vision_end> 502, omni audio 503, <audio_start> 504, <audio_end> 505: the
tiny configs' own, and for omni's markers, which its config leaves outside
the 512-token vocabulary, make_goldens.OMNI_SPECIAL_IDS):

  omni  <vision_start> <image> x4 <vision_end> <audio_start> <audio> x8 <audio_end>
        "the square is COLOR and the tone is PITCH."
  vl    <vision_start> <image> x4 <vision_end> "the square is COLOR."

COLOR (red, green, blue, yellow) is the colour of the image and PITCH (low,
high) that of the audio clip, so the caption can only be predicted from the
media: a model that learns the data must read the image (and hear the clip).
Sample i has colour i % 4 and, for omni, pitch (i // 4) % 2: each combination
occurs equally often, with different noise.

  image   a 16 x 16 RGB uint8 picture of one colour (brightness jittered, plus
          per-pixel Gaussian noise), turned into patches as transformers'
          Qwen2-VL image processor does for a still image (equal to float32
          rounding):
          rescale by 1/255, normalize with the OpenAI CLIP mean/std, repeat the
          frame temporal_patch_size = 2 times, cut 4 x 4 patches and order them
          by 2 x 2 spatial-merge block ([16, 3*2*4*4] in HF's order; one 4 x 4
          patch grid, 4 image tokens after the merger).
  audio   0.32 s at 16 kHz (5120 samples) of a pure sine tone, low (200-400 Hz)
          or high (2-4 kHz), random amplitude and phase, plus faint white
          noise, turned into 32 frames x 16 bins of a Whisper-style log-mel
          spectrogram (numpy, this file: 400-point periodic Hann window, hop 160,
          reflect-padded centred STFT, power, 16 Slaney mel filters over
          0-8 kHz, log10 floored at 1e-10, last frame dropped, clamped to
          max - 8, then (x + 4) / 4). That is what transformers'
          WhisperFeatureExtractor(feature_size=16) computes; the script checks
          the two agree. 32 frames: 16 after the encoder's conv, 8 audio tokens.
  text    the caption above; labels are shifted (labels[t] = token t+1), -100
          where the target is an image or audio placeholder and at the
          document's last token.
  padding byte 0 up to S, in its own segment (segment_ids 1, positions from
          0), labels -100: it changes no loss and sees nothing of the document.

The veomni inputs of the document come from tools/goldens/make_goldens.py
(multimodal_batch: mrope position ids from the model's own get_rope_index,
vision positions in spatial-merge order, window order for Qwen2.5, audio chunk
positions, placeholder token positions), so they are what transformers uses.

Before writing, samples 0 and N-1 of each file are checked against transformers
the way make_goldens checks its goldens: the tiny model (float32, make_goldens'
seeded random weights) runs forward on the HF-style inputs (the document alone,
pixels in HF's order, mel features with their mask); our cross entropy equals
HF's own loss; HF deriving the positions itself gives the same logits; and
make_goldens' re-implementation of veomni's semantics, run on the tensors read
back from the written file (padding included), reproduces HF's logits and loss.
If Pillow is installed, the pixels are also compared with transformers' own
Qwen2-VL image processor (skipped otherwise).

Run from the repository root:

    python tools/data/make_samples.py [OUT_DIR]

OUT_DIR defaults to examples/data. Reruns write identical bytes (fixed seeds,
numpy's legacy RandomState stream, one CPU thread); other numpy / torch /
transformers versions may change the last bits of the float tensors. Regenerating the files needs only numpy, torch and
transformers (and safetensors) from PyPI; this is reference tooling, never a
dependency of the build or the tests. Made with numpy 2.4, torch 2.15 and
transformers 5.24.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "goldens"))
import make_goldens as mg  # noqa: E402

REPO = mg.REPO
SEED = 2024
N_SAMPLES = 16
CHECKED = (0, N_SAMPLES - 1)  # samples compared with transformers
PAD_ID = 0  # byte 0; padding is its own segment with labels -100

COLORS = {  # name: RGB
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 50, 220),
    "yellow": (230, 220, 30),
}
PITCHES = {"low": (200.0, 400.0), "high": (2000.0, 4000.0)}  # tone frequency range, Hz

IMAGE_SIZE = 16  # pixels, square: 4 x 4 patches of 4 pixels
SAMPLING_RATE = 16000
N_FFT, HOP = 400, 160  # Whisper's window and hop (25 ms, 10 ms)
AUDIO_FRAMES = 32  # mel frames per clip: 16 after the conv, 8 audio tokens

# OpenAI CLIP statistics, as transformers' Qwen2-VL image processor uses them.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])

SPECS = {
    # family: output file, sequence length, whether the samples have audio, seed
    "qwen2_5_omni": ("omni_samples.safetensors", 64, True, SEED),
    "qwen2_vl": ("vl_samples.safetensors", 32, False, SEED + 1),
}


# ----------------------------------------------------------------------------
# Media
# ----------------------------------------------------------------------------


def make_image(rgb, rng):
    """[16, 16, 3] uint8: one colour, brightness x U(0.75, 1), pixel noise N(0, 16)."""
    base = np.array(rgb, dtype=np.float64) * rng.uniform(0.75, 1.0)
    pixels = base + rng.normal(0.0, 16.0, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def image_patches(image, vcfg):
    """HF Qwen2-VL processor layout of a still image: [P, C*T*p*p], P in merge-block order."""
    p, m, t = vcfg.patch_size, vcfg.spatial_merge_size, vcfg.temporal_patch_size
    x = ((image.astype(np.float64) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)  # C, H, W
    c, h, w = x.shape
    gh, gw = h // p, w // p
    x = x.reshape(c, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # blocks, merge, C, p, p
    x = np.broadcast_to(x[:, :, :, :, :, None], x.shape[:5] + (t, p, p))  # the frame t times
    return torch.from_numpy(np.ascontiguousarray(x.reshape(gh * gw, c * t * p * p), dtype=np.float32))


def make_tone(lo_hi, rng):
    """Waveform of AUDIO_FRAMES hops: a sine of random frequency in lo_hi, plus faint noise."""
    n = AUDIO_FRAMES * HOP
    freq = rng.uniform(*lo_hi)
    amp = rng.uniform(0.2, 0.6)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    t = np.arange(n) / SAMPLING_RATE
    wave = amp * np.sin(2.0 * np.pi * freq * t + phase) + rng.normal(0.0, 0.003, n)
    return wave.astype(np.float32), freq


def hz_to_mel(hz):  # Slaney: linear below 1 kHz, logarithmic above
    hz = np.asarray(hz, dtype=np.float64)
    logstep = 27.0 / np.log(6.4)
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * logstep)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(logstep * (mel - 15.0)))


def mel_filters(n_mels):
    """[N_FFT/2 + 1, n_mels] Slaney-normalized triangular filters over 0-8 kHz."""
    fft_freqs = np.linspace(0.0, SAMPLING_RATE // 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), n_mels + 2))
    diff = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[None, :]


def log_mel(wave, n_mels):
    """Whisper-style log-mel frames [n_mels, len / HOP] of a float32 waveform."""
    x = np.pad(wave.astype(np.float64), N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    n_frames = 1 + (len(x) - N_FFT) // HOP
    frames = np.stack([x[i * HOP : i * HOP + N_FFT] for i in range(n_frames)]) * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # [frames, N_FFT/2 + 1]
    spec = np.log10(np.maximum(mel_filters(n_mels).T @ power.T, 1e-10))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


# ----------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------


def caption(color, pitch):
    if pitch is None:
        return f"the square is {color}."
    return f"the square is {color} and the tone is {pitch}."


def text_ids(text):
    ids = list(text.encode("utf-8"))
    assert all(0 <= i < mg.TEXT_VOCAB for i in ids)
    return ids


def pad_document(batch, seq):
    """Pads one document's [.., 1, L] inputs to S = seq with a padding segment."""
    length = batch["input_ids"].shape[-1]
    assert length <= seq, f"document of {length} tokens does not fit {seq}"
    rest = seq - length
    out = dict(batch)
    out["input_ids"] = torch.cat([batch["input_ids"], torch.full((1, rest), PAD_ID)], -1)
    out["segment_ids"] = torch.cat([batch["segment_ids"], torch.ones(1, rest, dtype=torch.long)], -1)
    out["labels"] = torch.cat([batch["labels"], torch.full((1, rest), -100)], -1)
    positions = batch["position_ids"]
    pad_positions = torch.arange(rest).expand(positions.shape[0], 1, rest)  # restart at 0
    out["position_ids"] = torch.cat([positions, pad_positions], -1)
    return out


def make_samples(family, model, config, seed, count):
    """[make_sample(...) for samples 0 .. count-1], drawn from one seeded stream."""
    rng = np.random.RandomState(seed)  # the legacy stream: fixed across numpy versions
    return [make_sample(family, model, config, i, rng, SPECS[family][2]) for i in range(count)]


def make_sample(family, model, config, index, rng, has_audio):
    """(veomni batch of one document, HF kwargs, HF kwargs with HF's own positions, description)."""
    tcfg = config.thinker_config if has_audio else config
    vcfg = tcfg.vision_config
    color = list(COLORS)[index % len(COLORS)]
    pitch = list(PITCHES)[(index // len(COLORS)) % len(PITCHES)] if has_audio else None

    image = make_image(COLORS[color], rng)
    pixels = image_patches(image, vcfg)
    grid_thw = torch.tensor([[1, IMAGE_SIZE // vcfg.patch_size, IMAGE_SIZE // vcfg.patch_size]])
    n_image = int(grid_thw.prod()) // vcfg.spatial_merge_size**2
    ids = [tcfg.vision_start_token_id] + [tcfg.image_token_id] * n_image + [tcfg.vision_end_token_id]
    features, desc = None, {"index": index, "color": color}
    if has_audio:
        wave, freq = make_tone(PITCHES[pitch], rng)
        mel = log_mel(wave, tcfg.audio_config.num_mel_bins)
        features = torch.from_numpy(mel.astype(np.float32))[None]  # [1, mel, F]
        n_audio = AUDIO_FRAMES // 4
        ids += [tcfg.audio_start_token_id] + [tcfg.audio_token_id] * n_audio + [tcfg.audio_end_token_id]
        desc.update(pitch=pitch, tone_hz=round(float(freq), 1))
        desc["_wave"] = wave
    desc["_image"] = image
    text = caption(color, pitch)
    desc["caption"] = text
    ids = torch.tensor([ids + text_ids(text)])
    batch, hf, own = mg.multimodal_batch(family, model, config, ids, grid_thw, pixels, features)
    return batch, hf, own, desc


# ----------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------


def hf_image_processor(vcfg):
    """transformers' Qwen2-VL image processor for our image size, or None without Pillow."""
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    except ImportError:  # the PIL backend needs Pillow, the default one torchvision
        return None
    size = IMAGE_SIZE * IMAGE_SIZE
    return Qwen2VLImageProcessorPil(
        min_pixels=size,
        max_pixels=size,
        patch_size=vcfg.patch_size,
        merge_size=vcfg.spatial_merge_size,
        temporal_patch_size=vcfg.temporal_patch_size,
    )


def check_media(family, config, samples):
    """Our pixels and log-mel frames against transformers' own processors."""
    notes = []
    omni = family == "qwen2_5_omni"
    tcfg = config.thinker_config if omni else config
    proc = hf_image_processor(tcfg.vision_config)
    if proc is None:
        notes.append("pixels vs HF image processor skipped (no Pillow)")
    else:
        worst = 0.0
        for _, hf, _, d in samples:
            out = proc(images=[d["_image"]], return_tensors="pt")
            assert out["image_grid_thw"].tolist() == hf["image_grid_thw"].tolist()
            what = f"{family} sample {d['index']}: pixels vs HF image processor"
            worst = max(worst, mg.check(what, hf["pixel_values"], out["pixel_values"], 1e-6))
        notes.append(f"pixels vs HF image processor {worst:.1g}")
    if omni:
        mels = tcfg.audio_config.num_mel_bins
        fe = transformers.WhisperFeatureExtractor(
            feature_size=mels, sampling_rate=SAMPLING_RATE, hop_length=HOP, n_fft=N_FFT
        )
        worst = 0.0
        for _, hf, _, d in samples:
            ref = fe(d["_wave"], sampling_rate=SAMPLING_RATE, padding="longest", return_tensors="pt")
            what = f"{family} sample {d['index']}: log-mel vs WhisperFeatureExtractor"
            worst = max(worst, mg.check(what, hf["input_features"], ref["input_features"].float(), 1e-4))
        notes.append(f"log-mel vs WhisperFeatureExtractor {worst:.1g}")
    return notes


def check_sample(family, config, model, weights, file_batch, doc, hf, own, index):
    """HF on the document vs make_goldens' veomni re-implementation on the file's batch `index`."""
    module = mg.forward_module(family, model)
    logits, hf_loss = mg.hf_forward(family, module, hf, doc["labels"])
    loss = mg.cross_entropy(logits, doc["labels"])
    mg.check(f"{family} sample {index}: loss vs HF loss", loss, hf_loss, 1e-6)
    mg.check(f"{family} sample {index}: HF own positions", mg.hf_forward(family, module, own)[0], logits, 0.0)
    sample = {k: v[index].clone() for k, v in file_batch.items()}
    ref, _ = mg.ref_forward(family, config, model, weights, sample)
    length = doc["input_ids"].shape[-1]
    diff = mg.check(f"{family} sample {index}: veomni reference logits", ref[:, :length], logits)
    ref_loss = mg.cross_entropy(ref, sample["labels"])
    mg.check(f"{family} sample {index}: veomni reference loss", ref_loss, hf_loss, 1e-5)
    return hf_loss.item(), ref_loss.item(), diff


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------


def make_file(family, out_dir):
    name, seq, has_audio, seed = SPECS[family]
    config = mg.load_config(family)
    model = mg.build_model(family, config)
    mg.init_weights(model)
    weights = mg.checkpoint_weights(family, model)

    samples = make_samples(family, model, config, seed, N_SAMPLES)
    descs = [s[3] for s in samples]
    notes = check_media(family, config, samples)

    padded = [mg.to_file_dtypes(pad_document(s[0], seq)) for s in samples]
    tensors = {k: torch.stack([p[k] for p in padded]).contiguous() for k in padded[0]}
    public = [{k: v for k, v in d.items() if not k.startswith("_")} for d in descs]
    # One metadata key only: safetensors writes several in a random order.
    metadata = {"veomni_samples": json.dumps({"family": family, "seq_len": seq, "samples": public})}
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)

    written = load_file(str(path))
    assert set(written) == set(tensors) and all(torch.equal(written[k], tensors[k]) for k in tensors)
    for i in CHECKED:
        doc, hf, own, _ = samples[i]
        hf_loss, ref_loss, diff = check_sample(family, config, model, weights, written, doc, hf, own, i)
        notes.append(f"sample {i} HF loss {hf_loss:.6f} = veomni-ref {ref_loss:.6f} (logits {diff:.1g})")

    size = path.stat().st_size
    assert size < 1 << 20, f"{path} is over 1 MB"
    labeled = int((tensors["labels"] != -100).sum())
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"{family:13s} {shown}: {size / 1024:.1f} KiB, {N_SAMPLES} batches, {labeled} labeled tokens")
    for k, v in sorted(tensors.items()):
        print(f"{'':15s}{k:26s} {str(v.dtype).removeprefix('torch.'):8s} {list(v.shape)}")
    for d in public:
        tone = f" ({d['tone_hz']:.0f} Hz tone)" if "tone_hz" in d else ""
        print(f"{'':15s}sample {d['index']:2d}: {d['caption']}{tone}")
    print(f"{'':13s} checks: " + "; ".join(notes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(REPO / "examples" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # bitwise-reproducible CPU reductions
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    versions = f"numpy {np.__version__}, torch {torch.__version__}, transformers {transformers.__version__}"
    print(f"{versions} -> {args.out_dir}")
    for family in SPECS:
        make_file(family, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
