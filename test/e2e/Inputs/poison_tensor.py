"""Copies a .safetensors file with one element of one tensor replaced
(nan, inf, -inf or a number), as a damaged file or a diverged run leaves it.

    python poison_tensor.py IN.safetensors TENSOR INDEX VALUE OUT.safetensors
"""
import json
import struct
import sys


def main():
    source, tensor, index, value, out = sys.argv[1:6]
    data = bytearray(open(source, "rb").read())
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    entry = header[tensor]
    start = 8 + size + entry["data_offsets"][0] + int(index) * {"F32": 4, "BF16": 2}[entry["dtype"]]
    packed = struct.pack("<f", float(value))
    if entry["dtype"] == "F32":
        data[start:start + 4] = packed
    else:  # bf16: the upper half of the f32
        data[start:start + 2] = packed[2:]
    open(out, "wb").write(bytes(data))


if __name__ == "__main__":
    main()
