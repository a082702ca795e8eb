#!/usr/bin/python3
"""Checks for tests/pipeline/test-pipelines.sh: safetensors and PNG files
read and written with numpy, zlib and struct only (no PIL, no safetensors
package).  Every check prints what it saw; a failed check exits 1."""
import json
import struct
import sys
import zlib

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
          "U8": np.uint8, "BOOL": np.bool_}


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def read_st(path):
    """-> ({name: ndarray}, {metadata})"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"{path}: {len(data)} bytes is not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        if t["dtype"] == "BF16":
            raw = np.frombuffer(data[base + b:base + e], dtype=np.uint16)
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[base + b:base + e], dtype=DTYPES[t["dtype"]])
        tensors[name] = arr.reshape(t["shape"])
    return tensors, meta


def write_png(path, img):
    """IMG: HWC uint8, C = 3 (RGB) or 4 (RGBA)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w, c = img.shape
    ctype = {3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def read_png(path):
    """-> HWC uint8 (8-bit, non-interlaced gray/RGB/gray+alpha/RGBA)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace != 0:
        fail(f"{path}: bit depth {depth}, interlace {interlace} not handled")
    c = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * c
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    p = 0
    for y in range(h):
        ft = raw[p]
        line = np.frombuffer(raw[p + 1:p + 1 + stride], dtype=np.uint8).astype(np.int32)
        p += 1 + stride
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        else:
            cur = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                a = cur[i - c] if i >= c else 0
                b = prev[i]
                cc = prev[i - c] if i >= c else 0
                if ft == 1:
                    pred = a
                elif ft == 3:
                    pred = (a + b) >> 1
                elif ft == 4:
                    pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc)
                else:
                    fail(f"{path}: bad filter {ft}")
                cur[i] = (line[i] + pred) & 255
        out[y] = cur
        prev = cur
    img = out.reshape(h, w, c)
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c == 2:
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3]


def png_size(path):
    with open(path, "rb") as f:
        d = f.read(33)
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: not a PNG")
    return struct.unpack(">II", d[16:24])


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ---- commands ----

def cmd_ref_png(ref, out):
    """Writes the reference's `image` tensor as a PNG; prints W H."""
    t, _ = read_st(ref)
    img = t["image"]
    write_png(out, img)
    print(img.shape[1], img.shape[0])


def cmd_latents_shape(path, channels, width, height, factor):
    """latents is [1,C,ceil(H/f),ceil(W/f)]."""
    t, meta = read_st(path)
    lat = t.get("latents")
    if lat is None:
        fail(f"{path}: no 'latents' tensor")
    f = int(factor)
    want = [1, int(channels), -(-int(height) // f), -(-int(width) // f)]
    print(f"{path}: latents {list(lat.shape)} {lat.dtype}, pts {t.get('pts')}, metadata {meta}")
    if list(lat.shape) != want:
        fail(f"{path}: latents shape {list(lat.shape)}, expected {want}")
    if meta.get("width") != str(width) or meta.get("height") != str(height):
        fail(f"{path}: metadata size {meta.get('width')}x{meta.get('height')}, expected {width}x{height}")
    if not np.all(np.isfinite(lat.astype(np.float32))):
        fail(f"{path}: non-finite latents")


def cmd_png_size(path, width, height):
    w, h = png_size(path)
    print(f"{path}: {w}x{h}")
    if (w, h) != (int(width), int(height)):
        fail(f"{path}: size {w}x{h}, expected {width}x{height}")


def cmd_golden_latents(path, ref):
    t, meta = read_st(path)
    r, _ = read_st(ref)
    lat = t["latents"].astype(np.float32)
    want = r["latent_scaled"].astype(np.float32)
    if lat.shape != want.shape:
        fail(f"{path}: latents {list(lat.shape)} vs reference {list(want.shape)}")
    md = float(np.max(np.abs(lat - want)))
    rl = rel_l2(lat, want)
    print(f"latents vs latent_scaled: max|diff| {md:.3g}, rel L2 {rl:.3g} (metadata {meta})")
    if not (md <= 1e-3 and rl <= 1e-4):
        fail(f"{path}: latents differ from {ref}: max|diff| {md:.3g} (<= 1e-3), rel L2 {rl:.3g} (<= 1e-4)")


def cmd_golden_decoded(png, ref):
    img = read_png(png).astype(np.int32)
    r, _ = read_st(ref)
    want = r["decoded_u8"].astype(np.int32)
    if img.shape != want.shape:
        fail(f"{png}: {img.shape} vs reference {want.shape}")
    md = int(np.max(np.abs(img - want)))
    print(f"decoded vs decoded_u8: max |diff| {md} level(s), "
          f"{int(np.sum(np.abs(img - want) > 0))} of {img.size} values differ")
    if md > 1:
        fail(f"{png}: decoded frame off by {md} levels from decoded_u8 of {ref}")


def cmd_clip(path, frames, fps_n, fps_d):
    t, meta = read_st(path)
    lat, pts = t["latents"], t.get("pts")
    n = int(frames)
    print(f"{path}: latents {list(lat.shape)} {lat.dtype}, metadata {meta}")
    if lat.ndim != 4 or lat.shape[0] != n:
        fail(f"{path}: {list(lat.shape)} does not hold {n} frames")
    if pts is None or list(pts.shape) != [n]:
        fail(f"{path}: pts {None if pts is None else list(pts.shape)}, expected [{n}]")
    step = 1e9 * int(fps_d) / int(fps_n)
    print(f"pts (ns): {pts.tolist()}")
    for i in range(n):
        if abs(int(pts[i]) - int(pts[0]) - i * step) > 1000:
            fail(f"{path}: pts[{i}] = {int(pts[i])} is not pts[0] + {i} * {step:.0f} ns")
    if meta.get("framerate") != f"{fps_n}/{fps_d}":
        fail(f"{path}: framerate metadata {meta.get('framerate')!r}")


def cmd_same_latents(a, b):
    ta, _ = read_st(a)
    tb, _ = read_st(b)
    la = ta["latents"].astype(np.float32)
    lb = tb["latents"].astype(np.float32)
    if la.shape != lb.shape:
        fail(f"{a} {list(la.shape)} vs {b} {list(lb.shape)}")
    rl = rel_l2(la, lb)
    rmax = float(np.max(np.abs(la - lb)) / max(float(np.max(np.abs(lb))), 1e-30))
    print(f"batched vs unbatched: rel L2 {rl:.3g}, max|diff|/max|x| {rmax:.3g}")
    if rl > 1e-5 or rmax > 1e-5:
        fail(f"batched and unbatched latents differ: rel L2 {rl:.3g}, rel max {rmax:.3g} (> 1e-5)")
    if not np.array_equal(ta["pts"], tb["pts"]):
        fail("batched and unbatched pts differ")


COMMANDS = {"ref-png": cmd_ref_png, "latents-shape": cmd_latents_shape,
            "png-size": cmd_png_size, "golden-latents": cmd_golden_latents,
            "golden-decoded": cmd_golden_decoded, "clip": cmd_clip,
            "same-latents": cmd_same_latents}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail("usage: pipeline_check.py " + "|".join(COMMANDS) + " ARGS...")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
