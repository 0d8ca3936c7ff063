#!/usr/bin/env python3
"""Golden files for veomni's Qwen2-VL image inputs (runtime/data/Image.h)
against transformers' Qwen2VLImageProcessorPil (PIL, the slow one).

Writes test/goldens/images/:
  smart_resize.txt  "height width target_height target_width" for sizes
                    that round, tie (Python rounds ties to even), shrink
                    past max_pixels and grow past min_pixels
  rgb_HxW.u8        seeded random RGB images at their target sizes
  pixels_HxW.f32    their pixel_values (rows x 1176, f32 LE)
  meta.json         each image's image_grid_thw
  *.png, *.jpg      RGB, gray+alpha and palette PNGs, a colour and a gray
                    JPEG, and a BMP, a GIF, a lossless WebP and an RGBA
                    TIFF, with PIL's RGB pixels of each in FILE.rgb

    python3 tools/goldens/make_image_goldens.py
"""
import json
import os

import numpy as np
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil, smart_resize)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "test", "goldens", "images")


def main():
    sizes = [(28, 28), (42, 70), (70, 42), (98, 154), (100, 100),
             (14, 14), (30, 2000), (3000, 4000), (1080, 1920), (56, 84),
             (57, 85), (83, 97), (5000, 30)]
    with open(os.path.join(OUT, "smart_resize.txt"), "w") as f:
        for h, w in sizes:
            th, tw = smart_resize(h, w)
            f.write(f"{h} {w} {th} {tw}\n")
    proc = Qwen2VLImageProcessorPil()
    rng = np.random.default_rng(3)
    meta = {}
    for h, w in [(56, 84), (112, 56)]:
        rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        rgb.tofile(os.path.join(OUT, f"rgb_{h}x{w}.u8"))
        out = proc(images=[Image.fromarray(rgb)], return_tensors="np")
        pv = np.asarray(out["pixel_values"], dtype=np.float32)
        pv.tofile(os.path.join(OUT, f"pixels_{h}x{w}.f32"))
        meta[f"{h}x{w}"] = {"grid_thw": np.asarray(out["image_grid_thw"])[0].tolist(),
                            "shape": list(pv.shape)}
    # Files to decode, and PIL's RGB pixels of each.
    rgb = rng.integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    files = {
        "rgb.png": Image.fromarray(rgb),
        "gray_alpha.png": Image.fromarray(rgb[:, :, :2].copy(), "LA"),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "photo.jpg": Image.fromarray(rgb),
        "gray.jpg": Image.fromarray(rgb[:, :, 0].copy(), "L"),
        # Other formats datasets use, read through FFmpeg.
        "rgb.bmp": Image.fromarray(rgb),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "lossless.webp": Image.fromarray(rgb),
        "rgba.tiff": Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA"),
    }
    for name, img in files.items():
        path = os.path.join(OUT, name)
        if name.endswith(".jpg"):
            img.save(path, quality=90)
        elif name.endswith(".webp"):
            img.save(path, lossless=True)
        else:
            img.save(path)
        np.asarray(Image.open(path).convert("RGB")).tofile(path + ".rgb")
    # Resampling: PIL's bicubic resize of a smooth and a random image, up
    # and down, to Qwen2-VL target sizes.
    yy, xx = np.mgrid[0:70, 0:97]
    smooth = np.stack([(xx * 2.6) % 256, (yy * 3.6) % 256,
                       ((xx + yy) * 1.5) % 256], -1).astype(np.uint8)
    smooth.tofile(os.path.join(OUT, "smooth_70x97.u8"))
    noisy = rng.integers(0, 256, size=(70, 97, 3), dtype=np.uint8)
    noisy.tofile(os.path.join(OUT, "noisy_70x97.u8"))
    for name, img in (("smooth", smooth), ("noisy", noisy)):
        for h, w in ((56, 84), (140, 196), (28, 112)):
            out = Image.fromarray(img).resize((w, h), Image.BICUBIC)
            np.asarray(out).tofile(os.path.join(OUT, f"{name}_to_{h}x{w}.u8"))
    # The processor on an image it must resize (70x97 -> 56x84).
    out = proc(images=[Image.fromarray(noisy)], return_tensors="np")
    np.asarray(out["pixel_values"], dtype=np.float32).tofile(
        os.path.join(OUT, "pixels_noisy_70x97.f32"))
    json.dump(meta, open(os.path.join(OUT, "meta.json"), "w"))
    print(meta)


if __name__ == "__main__":
    main()
