#!/usr/bin/env python3
"""Writes the small seed files in tests/fuzz/corpus/ (no model weights: just
a few hand-picked values).  Run from anywhere: python3 make-corpus.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


seeds = {
    "empty.safetensors": safetensors([]),
    "floats.safetensors": safetensors([
        ("conv.weight", "F32", [2, 2], struct.pack("<4f", 1.0, -2.5, 0.125, 3e-3)),
        ("conv.bias", "F16", [2], struct.pack("<2H", 0x3c00, 0x03ff)),
        ("norm.weight", "BF16", [1, 3], struct.pack("<3H", 0x3f80, 0x7f80, 0xc040)),
        ("scale", "F64", [], struct.pack("<d", 0.18215)),
    ], {"format": "pt", "model": "seed"}),
    "mixed.safetensors": safetensors([
        ("step", "I64", [2], struct.pack("<2q", -1, 42)),
        ("idx", "I32", [1, 1, 2], struct.pack("<2i", 7, -7)),
        ("small", "I16", [1], struct.pack("<h", 3)),
        ("tiny", "I8", [2], struct.pack("<2b", -1, 1)),
        ("pixels", "U8", [3], bytes([0, 128, 255])),
        ("mask", "BOOL", [2], bytes([0, 1])),
        ("nothing", "F32", [0, 4], b""),
    ]),
}

os.makedirs(os.path.join(HERE, "corpus"), exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(HERE, "corpus", name), "wb") as f:
        f.write(blob)
