#!/usr/bin/python3
"""vae-tool end to end, against ../shared/testdata/reference.

usage: test-vae-tool.py PATH/TO/vae-tool

For every reference file: the reference `image` is written as a PNG (by
this script, with zlib), `vae-tool encode` must give `latent_scaled`
(max |diff| <= 1e-3, relative L2 <= 1e-4) with the right metadata, and
`vae-tool decode` of `latent_scaled` must give `decoded_u8` within one
level (PNG read back by this script).  Per model, once: a frame size that is
not a multiple of the spatial factor (pad + crop), a batch of two frames
(numbered outputs), [C,h,w] latents, F16/BF16 latents, info and bench.
Then the error paths: each must exit non-zero (not by a signal) with
exactly one line on stderr, "vae-tool: ...".

Without the test data (or numpy) the script exits 77 (skip) after a loud
message and writes $VAE_GOLDEN_SKIP_MARKER (default
./golden-skipped.marker), so CI can fail when golden tests were skipped.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

SKIP = 77
MAX_ABS_TOL = 1e-3
REL_L2_TOL = 1e-4
U8_TOL = 1


def skip(why):
    marker = os.environ.get("VAE_GOLDEN_SKIP_MARKER") or "golden-skipped.marker"
    try:
        with open(marker, "w") as f:
            f.write("test-vae-tool: %s\n" % why)
    except OSError as e:
        print("test-vae-tool: cannot write skip marker %s: %s" % (marker, e), file=sys.stderr)
    banner = "*" * 60
    msg = ("\n%s\n** vae-tool GOLDEN TESTS SKIPPED: %s\n"
           "** Nothing was checked against the reference outputs.\n"
           "** Marker written: %s\n%s\n" % (banner, why, marker, banner))
    print(msg)
    print(msg, file=sys.stderr)
    sys.exit(SKIP)


try:
    import numpy as np
except ImportError:
    np = None

# ---------------------------------------------------------------- safetensors

ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4",
             "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1", "BF16": "<u2"}


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        a = np.frombuffer(data[base + b:base + e], dtype=ST_DTYPES[t["dtype"]])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a.reshape(t["shape"])
    return tensors, meta


def write_st(path, tensors, meta=None):
    """tensors: name -> (dtype name, numpy array already in that dtype's bytes)."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_bf16(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)

# ----------------------------------------------------------------------- PNG


def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, body):
        c = struct.pack(">I", len(body)) + kind + body
        return c + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def read_png(path):
    """8-bit RGB, non-interlaced PNGs (what vae-tool writes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("%s: not a PNG" % path)
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError("%s: bad CRC in %r" % (path, kind))
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype != 2 or interlace != 0:
        raise ValueError("%s: not 8-bit RGB non-interlaced (%r)" % (path, ihdr))
    raw = zlib.decompress(b"".join(idat))
    stride, bpp = w * 3, 3
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ft == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif ft == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xFF
        elif ft == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif ft == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        elif ft != 0:
            raise ValueError("%s: bad filter type %d" % (path, ft))
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(h, w, 3)

# --------------------------------------------------------------------- checks


class Checker:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
            print("  ok   %s" % what)
        else:
            self.failures.append(what)
            print("  FAIL %s" % what)
        return cond

    def floats(self, label, got, want):
        if got.shape != want.shape:
            return self.ok(False, "%s: shape %s, expected %s" % (label, got.shape, want.shape))
        d = got.astype(np.float64) - want.astype(np.float64)
        mx = float(np.nanmax(np.abs(d))) if d.size else 0.0
        nan = bool(np.isnan(d).any())
        den = float(np.linalg.norm(want.astype(np.float64)))
        rel = float(np.linalg.norm(np.nan_to_num(d, nan=1e30))) / (den if den > 0 else 1.0)
        return self.ok(not nan and mx <= MAX_ABS_TOL and rel <= REL_L2_TOL,
                       "%s: max|diff| = %.3g, rel L2 = %.3g%s" % (label, mx, rel,
                                                                  " (NaN)" if nan else ""))

    def pixels(self, label, got, want, tol=U8_TOL):
        if got.shape != want.shape:
            return self.ok(False, "%s: image %s, expected %s" % (label, got.shape, want.shape))
        d = np.abs(got.astype(np.int32) - want.astype(np.int32))
        mx = int(d.max())
        return self.ok(mx <= tol, "%s: max level diff = %d (%d of %d values differ)"
                       % (label, mx, int((d > 0).sum()), d.size))

    def psnr(self, label, got, want, min_db):
        if got.shape != want.shape:
            return self.ok(False, "%s: image %s, expected %s" % (label, got.shape, want.shape))
        mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
        db = 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
        return self.ok(db >= min_db, "%s: PSNR %.1f dB (>= %.0f)" % (label, db, min_db))


def run(tool, *args, timeout=900):
    cmd = [tool] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1000, "", "timed out after %d s" % timeout
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_ok(chk, label, tool, *args):
    rc, out, err = run(tool, *args)
    good = chk.ok(rc == 0, "%s: exit status %d" % (label, rc))
    if not good:
        print("    command: %s %s" % (tool, " ".join(str(a) for a in args)))
        print("    stderr: %s" % err.strip()[-2000:])
    return good, out


def expect_error(chk, label, tool, *args, must_not_exist=None):
    rc, out, err = run(tool, *args)
    lines = [l for l in err.splitlines()]
    one_line = len(lines) == 1 and lines[0].startswith("vae-tool: ") and len(lines[0]) > 12
    signal = rc < 0 or rc >= 128
    good = chk.ok(rc != 0 and not signal and one_line,
                  "error %s: exit %d, stderr %d line(s): %s"
                  % (label, rc, len(lines), lines[0] if lines else "(none)"))
    if not good and len(lines) > 1:
        print("    stderr:\n      " + "\n      ".join(lines[:20]))
    if must_not_exist is not None:
        chk.ok(not os.path.exists(must_not_exist),
               "error %s: no output file left behind" % label)
    return good

# ----------------------------------------------------------------------- main


def error_cases(chk, tool, tmp, model=None, latent_channels=None, png=None):
    """Error paths; those that need a working model only when MODEL is given."""
    garbage = os.path.join(tmp, "garbage.safetensors")
    with open(garbage, "wb") as f:
        f.write(b"\x13\x37garbage!")
    not_png = os.path.join(tmp, "not-a-png.png")
    with open(not_png, "wb") as f:
        f.write(b"this is not a PNG file at all")
    out = os.path.join(tmp, "err-out.safetensors")
    out_png = os.path.join(tmp, "err-out.png")
    some_png = png or not_png

    expect_error(chk, "no command", tool)
    expect_error(chk, "unknown command", tool, "frobnicate")
    expect_error(chk, "unknown option", tool, "info", "--model", garbage, "--frob")
    expect_error(chk, "missing --model", tool, "encode", "--input", some_png, "--output", out)
    expect_error(chk, "stray argument", tool, "info", "--model", garbage, "extra")
    expect_error(chk, "nonexistent model (encode)", tool, "encode", "--model",
                 os.path.join(tmp, "no-such-model"), "--input", some_png, "--output", out,
                 must_not_exist=out)
    expect_error(chk, "nonexistent model (info)", tool, "info", "--model",
                 os.path.join(tmp, "no-such-model"))
    expect_error(chk, "corrupt model file (info)", tool, "info", "--model", garbage)
    expect_error(chk, "corrupt model file (encode)", tool, "encode", "--model", garbage,
                 "--input", some_png, "--output", out, must_not_exist=out)
    expect_error(chk, "corrupt model file (decode)", tool, "decode", "--model", garbage,
                 "--input", garbage, "--output", out_png, must_not_exist=out_png)
    expect_error(chk, "bench with bad --op", tool, "bench", "--model", garbage, "--op",
                 "sideways", "--width", "64", "--height", "64")
    expect_error(chk, "bench without size", tool, "bench", "--model", garbage, "--op",
                 "encode")
    expect_error(chk, "bad --precision", tool, "encode", "--model", garbage, "--input",
                 some_png, "--output", out, "--precision", "f7")
    expect_error(chk, "bad --threads", tool, "encode", "--model", garbage, "--input",
                 some_png, "--output", out, "--threads", "-3")
    for cmd in ("encode", "decode", "bench", "info"):
        rc, stdout, _ = run(tool, cmd, "--help")
        chk.ok(rc == 0 and "--model" in stdout, "%s --help: exit %d" % (cmd, rc))
    rc, stdout, _ = run(tool, "--help")
    chk.ok(rc == 0 and "encode" in stdout, "--help: exit %d" % rc)

    if model is None:
        return

    # A diffusers folder whose weights file is cut short.
    broken = os.path.join(tmp, "truncated-model")
    os.makedirs(broken, exist_ok=True)
    if os.path.isdir(model) and os.path.exists(os.path.join(model, "config.json")):
        shutil.copy(os.path.join(model, "config.json"), broken)
        src = os.path.join(model, "diffusion_pytorch_model.safetensors")
        with open(src, "rb") as f:
            data = f.read()
        with open(os.path.join(broken, "diffusion_pytorch_model.safetensors"), "wb") as f:
            f.write(data[:len(data) // 2])
        expect_error(chk, "truncated model weights", tool, "info", "--model", broken)
        with open(os.path.join(broken, "config.json"), "w") as f:
            f.write("{ not json")
        with open(os.path.join(broken, "diffusion_pytorch_model.safetensors"), "wb") as f:
            f.write(data)
        expect_error(chk, "broken config.json", tool, "info", "--model", broken)

    expect_error(chk, "missing input PNG", tool, "encode", "--model", model, "--input",
                 os.path.join(tmp, "no-such.png"), "--output", out, must_not_exist=out)
    expect_error(chk, "input not a PNG", tool, "encode", "--model", model, "--input",
                 not_png, "--output", out, must_not_exist=out)
    if png:
        with open(png, "rb") as f:
            data = f.read()
        cut = os.path.join(tmp, "truncated.png")
        with open(cut, "wb") as f:
            f.write(data[:len(data) // 2])
        expect_error(chk, "truncated PNG", tool, "encode", "--model", model, "--input", cut,
                     "--output", out, must_not_exist=out)
    expect_error(chk, "missing input latents", tool, "decode", "--model", model, "--input",
                 os.path.join(tmp, "no-such.safetensors"), "--output", out_png,
                 must_not_exist=out_png)
    expect_error(chk, "latents file is garbage", tool, "decode", "--model", model,
                 "--input", garbage, "--output", out_png, must_not_exist=out_png)

    c = latent_channels
    wrong = os.path.join(tmp, "wrong-channels.safetensors")
    write_st(wrong, {"latents": ("F32", np.zeros((1, c + 1, 8, 8), np.float32))})
    expect_error(chk, "wrong-channel latents (%d for %d)" % (c + 1, c), tool, "decode",
                 "--model", model, "--input", wrong, "--output", out_png,
                 must_not_exist=out_png)
    nolat = os.path.join(tmp, "no-latents.safetensors")
    write_st(nolat, {"something": ("F32", np.zeros((1, c, 8, 8), np.float32))})
    expect_error(chk, "no 'latents' tensor", tool, "decode", "--model", model, "--input",
                 nolat, "--output", out_png, must_not_exist=out_png)
    intlat = os.path.join(tmp, "int-latents.safetensors")
    write_st(intlat, {"latents": ("I32", np.zeros((1, c, 8, 8), np.int32))})
    expect_error(chk, "integer latents", tool, "decode", "--model", model, "--input",
                 intlat, "--output", out_png, must_not_exist=out_png)
    flat = os.path.join(tmp, "flat-latents.safetensors")
    write_st(flat, {"latents": ("F32", np.zeros((c * 64,), np.float32))})
    expect_error(chk, "1-D latents", tool, "decode", "--model", model, "--input", flat,
                 "--output", out_png, must_not_exist=out_png)
    empty = os.path.join(tmp, "empty-latents.safetensors")
    write_st(empty, {"latents": ("F32", np.zeros((1, c, 0, 8), np.float32))})
    expect_error(chk, "empty latents", tool, "decode", "--model", model, "--input", empty,
                 "--output", out_png, must_not_exist=out_png)
    expect_error(chk, "unwritable output", tool, "encode", "--model", model, "--input",
                 some_png, "--output", os.path.join(tmp, "no-such-dir", "z.safetensors"))


def per_model_extras(chk, tool, tmp, model, ref, tensors, meta):
    """Padding/cropping, batches, [C,h,w] and reduced-precision latents, info, bench."""
    name = os.path.basename(model)
    image = tensors["image"]
    H, W, _ = image.shape
    z = tensors["latent_scaled"].astype(np.float32)
    C = z.shape[1]

    ok, out = expect_ok(chk, "%s: info" % name, tool, "info", "--model", model)
    if ok:
        chk.ok("latent_channels: %d" % C in out, "%s: info reports %d latent channels"
               % (name, C))
    f = H // z.shape[2]

    # Not a multiple of the spatial factor: padded on encode, cropped on decode.
    cw, chh = W - 3, H - f - 1
    crop_png = os.path.join(tmp, "%s-crop.png" % name)
    write_png(crop_png, np.ascontiguousarray(image[:chh, :cw]))
    zc = os.path.join(tmp, "%s-crop.safetensors" % name)
    ok, _ = expect_ok(chk, "%s: encode %dx%d" % (name, cw, chh), tool, "encode", "--model",
                      model, "--input", crop_png, "--output", zc)
    if ok:
        t, m = read_st(zc)
        lat = t["latents"]
        want = (1, C, -(-chh // f), -(-cw // f))
        chk.ok(lat.shape == want, "%s: padded latents shape %s (want %s)"
               % (name, lat.shape, want))
        chk.ok(m.get("width") == str(cw) and m.get("height") == str(chh),
               "%s: metadata keeps the source size %sx%s" % (name, m.get("width"),
                                                          m.get("height")))
        oc = os.path.join(tmp, "%s-crop-out.png" % name)
        ok, _ = expect_ok(chk, "%s: decode padded latents" % name, tool, "decode",
                          "--model", model, "--input", zc, "--output", oc)
        if ok:
            img = read_png(oc)
            chk.ok(img.shape == (chh, cw, 3), "%s: decoded image cropped to %s (want %s)"
                   % (name, img.shape, (chh, cw, 3)))

    # Two frames: numbered outputs, each as the reference.
    z2 = os.path.join(tmp, "%s-two.safetensors" % name)
    write_st(z2, {"latents": ("F32", np.concatenate([z, z]))},
             {"width": str(W), "height": str(H)})
    o2 = os.path.join(tmp, "%s-two.png" % name)
    ok, _ = expect_ok(chk, "%s: decode 2 frames" % name, tool, "decode", "--model", model,
                      "--input", z2, "--output", o2)
    if ok:
        chk.ok(not os.path.exists(o2), "%s: batch output goes to numbered files" % name)
        for i in range(2):
            p = os.path.join(tmp, "%s-two_%04d.png" % (name, i))
            if chk.ok(os.path.exists(p), "%s: frame file %s" % (name, os.path.basename(p))):
                chk.pixels("%s: frame %d vs decoded_u8" % (name, i), read_png(p),
                           tensors["decoded_u8"])

    # [C,h,w] latents without metadata.
    z3 = os.path.join(tmp, "%s-chw.safetensors" % name)
    write_st(z3, {"latents": ("F32", z[0])})
    o3 = os.path.join(tmp, "%s-chw.png" % name)
    ok, _ = expect_ok(chk, "%s: decode [C,h,w] latents" % name, tool, "decode", "--model",
                      model, "--input", z3, "--output", o3)
    if ok:
        chk.pixels("%s: [C,h,w] decode vs decoded_u8" % name, read_png(o3),
                   tensors["decoded_u8"])

    # Reduced-precision latents: the decoder sees rounded inputs.
    for dtype, arr in (("F16", z.astype(np.float16)), ("BF16", to_bf16(z))):
        zp = os.path.join(tmp, "%s-%s.safetensors" % (name, dtype))
        write_st(zp, {"latents": (dtype, arr)}, {"width": str(W), "height": str(H)})
        op = os.path.join(tmp, "%s-%s.png" % (name, dtype))
        ok, _ = expect_ok(chk, "%s: decode %s latents" % (name, dtype), tool, "decode",
                          "--model", model, "--input", zp, "--output", op)
        if ok:
            chk.psnr("%s: %s latents decode vs decoded_u8" % (name, dtype), read_png(op),
                     tensors["decoded_u8"], 30.0)

    # bench: the last line is median_s=<seconds>.
    for op in ("encode", "decode"):
        ok, out = expect_ok(chk, "%s: bench %s" % (name, op), tool, "bench", "--model",
                            model, "--op", op, "--width", 64, "--height", 64, "--runs", 2)
        if ok:
            last = out.strip().splitlines()[-1] if out.strip() else ""
            good = last.startswith("median_s=")
            if good:
                try:
                    good = float(last.split("=", 1)[1]) > 0
                except ValueError:
                    good = False
            chk.ok(good, "%s: bench %s last line %r" % (name, op, last))


def flux2_cases(chk, tool, tmp, testdata):
    """FLUX.2 (reference-flux2/): info shows both latent layouts; encode gives
    the normalised 128-channel latents by default and the raw 32 with
    --latent-format raw, each with its metadata; decode takes either (by the
    file's latent_format, and by channel count without it)."""
    ref_dir = os.path.join(testdata, "reference-flux2")
    refs = sorted(n for n in os.listdir(ref_dir) if n.endswith(".safetensors")) \
        if os.path.isdir(ref_dir) else []
    if not chk.ok(bool(refs), "reference-flux2: reference files present"):
        return
    for name in refs:
        model_name = name.split("__")[0]
        variants = [(model_name, [])]
        if model_name == "flux2-mini":
            variants.append(("flux2-mini-original.safetensors", ["--norm-groups", "16"]))
        tensors, meta = read_st(os.path.join(ref_dir, name))
        stem = name[:-len(".safetensors")]
        png = os.path.join(tmp, stem + ".png")
        write_png(png, tensors["image"])
        for mname, extra in variants:
            model = os.path.join(testdata, "models", mname)
            label = "%s [%s]" % (stem, mname)
            print("== flux2 %s" % label)
            ok, out = expect_ok(chk, "%s: info" % label, tool, "info", "--model", model, *extra)
            if ok:
                chk.ok("family: AutoencoderKLFlux2" in out and "normalized: 128 channels at 16x" in out
                       and "raw: 32 channels at 8x" in out, "%s: info shows the latent layout" % label)
            for fmt, want, ch, f in (("normalized", "latent_normalized", 128, 16),
                                     ("raw", "latent_mean", 32, 8)):
                z = os.path.join(tmp, "%s-%s.safetensors" % (stem, fmt))
                args = ["encode", "--model", model, "--input", png, "--output", z] + extra
                if fmt == "raw":
                    args += ["--latent-format", "raw"]
                ok, _ = expect_ok(chk, "%s: encode %s" % (label, fmt), tool, *args)
                if not ok:
                    continue
                t, m = read_st(z)
                lat = t.get("latents")
                if chk.ok(lat is not None and lat.shape[1] == ch, "%s: %s latents have %d channels"
                          % (label, fmt, ch)):
                    chk.floats("%s: %s latents vs %s" % (label, fmt, want), lat, tensors[want])
                chk.ok(m.get("latent_format") == fmt and m.get("spatial_factor") == str(f),
                       "%s: %s metadata (latent_format, spatial_factor %d)" % (label, fmt, f))
                # Decode by the file's format, and (stripped metadata) by channels.
                bare = os.path.join(tmp, "%s-%s-bare.safetensors" % (stem, fmt))
                write_st(bare, {"latents": ("F32", lat.astype(np.float32))})
                for src in (z, bare):
                    out_png = os.path.join(tmp, "%s-%s.png" % (stem, fmt))
                    ok, _ = expect_ok(chk, "%s: decode %s" % (label, fmt), tool, "decode",
                                      "--model", model, "--input", src, "--output", out_png, *extra)
                    if ok:
                        chk.pixels("%s: decoded (%s) vs %s" % (label, fmt,
                                   "decoded_from_normalized_u8" if fmt == "normalized" else "decoded_u8"),
                                   read_png(out_png),
                                   tensors["decoded_from_normalized_u8" if fmt == "normalized"
                                           else "decoded_u8"])


def main():
    if len(sys.argv) != 2:
        print("usage: %s PATH/TO/vae-tool" % sys.argv[0], file=sys.stderr)
        return 2
    tool = os.path.abspath(sys.argv[1])
    if not os.access(tool, os.X_OK):
        print("test-vae-tool: %s is not an executable" % tool, file=sys.stderr)
        return 1
    chk = Checker()
    tmp = tempfile.mkdtemp(prefix="test-vae-tool-")
    try:
        testdata = os.environ.get("VAE_TESTDATA")
        ref_dir = os.path.join(testdata, "reference") if testdata else None
        refs = sorted(n for n in os.listdir(ref_dir)
                      if n.endswith(".safetensors") and "__" in n) \
            if ref_dir and os.path.isdir(ref_dir) else []
        if np is None:
            skip("python3-numpy is not installed for %s" % sys.executable)
        if not refs:
            print("== error paths that need no model")
            error_cases(chk, tool, tmp)
            if chk.failures:
                print("\n%d FAILED:\n  %s" % (len(chk.failures), "\n  ".join(chk.failures)))
                return 1
            skip("VAE_TESTDATA is not set" if not testdata
                 else "no reference files in %s" % ref_dir)

        seen_models = set()
        first_png = None
        error_model = None
        for name in refs:
            model_name = name.split("__")[0]
            model = os.path.join(testdata, "models", model_name)
            stem = name[:-len(".safetensors")]
            print("== %s" % stem)
            tensors, meta = read_st(os.path.join(ref_dir, name))
            image = tensors["image"]
            png = os.path.join(tmp, stem + ".png")
            write_png(png, image)
            if first_png is None:
                first_png = png

            z = os.path.join(tmp, stem + ".safetensors")
            ok, _ = expect_ok(chk, "%s: encode" % stem, tool, "encode", "--model", model,
                              "--input", png, "--output", z)
            if ok:
                t, m = read_st(z)
                lat = t.get("latents")
                if chk.ok(lat is not None and lat.dtype == np.float32,
                          "%s: 'latents' is F32" % stem):
                    chk.floats("%s: latents vs latent_scaled" % stem, lat,
                               tensors["latent_scaled"])
                H, W, _ = image.shape
                f = H // tensors["latent_scaled"].shape[2]
                good = (m.get("width") == str(W) and m.get("height") == str(H)
                        and m.get("spatial_factor") == str(f) and bool(m.get("model")))
                try:
                    good = good and abs(float(m["scaling_factor"])
                                        - float(meta["scaling_factor"])) < 1e-6 \
                        and abs(float(m["shift_factor"]) - float(meta["shift_factor"])) < 1e-6
                except (KeyError, ValueError):
                    good = False
                chk.ok(good, "%s: metadata %s" % (stem, json.dumps(m, sort_keys=True)))

                out = os.path.join(tmp, stem + "-roundtrip.png")
                ok, _ = expect_ok(chk, "%s: decode own latents" % stem, tool, "decode",
                                  "--model", model, "--input", z, "--output", out)
                if ok:
                    chk.pixels("%s: round trip vs decoded_u8" % stem, read_png(out),
                               tensors["decoded_u8"])

            zr = os.path.join(tmp, stem + "-ref.safetensors")
            write_st(zr, {"latents": ("F32", tensors["latent_scaled"].astype(np.float32))},
                     {"width": str(image.shape[1]), "height": str(image.shape[0])})
            out = os.path.join(tmp, stem + "-ref.png")
            ok, _ = expect_ok(chk, "%s: decode latent_scaled" % stem, tool, "decode",
                              "--model", model, "--input", zr, "--output", out)
            if ok:
                chk.pixels("%s: decode(latent_scaled) vs decoded_u8" % stem, read_png(out),
                           tensors["decoded_u8"])

            if model_name not in seen_models:
                seen_models.add(model_name)
                per_model_extras(chk, tool, tmp, model, name, tensors, meta)
                if error_model is None and os.path.isdir(model):
                    error_model = (model, tensors["latent_scaled"].shape[1])

        print("== error paths")
        if error_model:
            error_cases(chk, tool, tmp, error_model[0], error_model[1], first_png)
        else:
            error_cases(chk, tool, tmp)

        flux2_cases(chk, tool, tmp, testdata)

        print("\n%d checks passed, %d failed" % (chk.passed, len(chk.failures)))
        if chk.failures:
            print("FAILED:\n  " + "\n  ".join(chk.failures))
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
