#!/usr/bin/env python3
"""Renames a Gemma 3 checkpoint as transformers 5 saves it into the names
Google published (the SigLIP tower under vision_tower.vision_model.),
without numpy:

    publish_gemma3.py IN.safetensors OUT.safetensors
"""
import sys

from fuse_experts import read, write


def main():
    tensors, meta = read(sys.argv[1])
    out = {}
    for name, value in tensors.items():
        if name.startswith("vision_tower."):
            name = "vision_tower.vision_model." + name[len("vision_tower.") :]
        out[name] = value
    write(sys.argv[2], out, meta)


if __name__ == "__main__":
    main()
