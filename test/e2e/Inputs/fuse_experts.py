#!/usr/bin/env python3
"""Rewrites a checkpoint's per-expert MoE weights in transformers 5's fused
layout, without numpy:

    fuse_experts.py IN.safetensors OUT.safetensors

...mlp.experts.<e>.{gate,up}_proj.weight [I, H] become
...mlp.experts.gate_up_proj [E, 2I, H] (expert e: its gate rows, then its up
rows) and ...mlp.experts.<e>.down_proj.weight [H, I] become
...mlp.experts.down_proj [E, H, I]; every other tensor is copied.
"""
import json
import re
import struct
import sys

SIZES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8}


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], body[begin:end])
    return out, meta


def write(path, tensors, meta):
    header, offset, chunks = {}, 0, []
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def main():
    tensors, meta = read(sys.argv[1])
    pattern = re.compile(r"(.*\.mlp\.experts\.)(\d+)\.(gate|up|down)_proj\.weight$")
    experts, out = {}, {}
    for name, t in tensors.items():
        m = pattern.match(name)
        if m:
            experts.setdefault(m.group(1), {})[(int(m.group(2)), m.group(3))] = t
        else:
            out[name] = t
    for stem, parts in experts.items():
        count = 1 + max(e for e, _ in parts)
        dtype, (inter, hidden), _ = parts[(0, "gate")]
        gate_up = b"".join(parts[(e, "gate")][2] + parts[(e, "up")][2] for e in range(count))
        down = b"".join(parts[(e, "down")][2] for e in range(count))
        out[stem + "gate_up_proj"] = (dtype, [count, 2 * inter, hidden], gate_up)
        out[stem + "down_proj"] = (dtype, [count, hidden, inter], down)
    write(sys.argv[2], out, meta)


if __name__ == "__main__":
    main()
