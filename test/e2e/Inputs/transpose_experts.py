#!/usr/bin/env python3
"""Rewrites a checkpoint's fused MoE experts in the layout Qwen3-VL-MoE's
published checkpoints use, without numpy:

    transpose_experts.py IN.safetensors OUT.safetensors

...mlp.experts.gate_up_proj [E, 2I, H] and ...mlp.experts.down_proj
[E, H, I] (transformers 5's) become [E, H, 2I] and [E, I, H]: each expert's
matrix transposed; every other tensor is copied.
"""
import sys

from fuse_experts import SIZES, read, write


def transposed(dtype, shape, raw):
    experts, rows, cols = shape
    width = SIZES[dtype]
    out = bytearray(len(raw))
    for e in range(experts):
        base = e * rows * cols
        for r in range(rows):
            for c in range(cols):
                src = (base + r * cols + c) * width
                dst = (base + c * rows + r) * width
                out[dst : dst + width] = raw[src : src + width]
    return dtype, [experts, cols, rows], bytes(out)


def main():
    tensors, meta = read(sys.argv[1])
    out = {}
    for name, (dtype, shape, raw) in tensors.items():
        if name.endswith((".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")):
            out[name] = transposed(dtype, shape, raw)
        else:
            out[name] = (dtype, shape, raw)
    write(sys.argv[2], out, meta)


if __name__ == "__main__":
    main()
