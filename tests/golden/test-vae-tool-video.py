#!/usr/bin/python3
"""vae-tool end to end on the video models, against ../shared/testdata/reference-video.

usage: test-vae-tool-video.py PATH/TO/vae-tool [--reduced] [FILTER...]

For every reference file (and every model file holding its weights):
the reference `frames` are written as PNGs (by this script, with zlib) to
f_%04d.png; `vae-tool encode --input 'f_%04d.png'` must give tensor
`latents`, F32 [1,C,T',h,w], equal to latent_normalized (Wan) /
latent_mean (TAEHV) within the float32 bounds (the original-layout Wan
file normalises by the real Wan 2.1 statistics: its latents are
denormalised with the values `info` prints and compared with
latent_mean), with metadata frames, temporal_factor, spatial_factor, model,
width and height; `vae-tool decode --output 'o_%04d.png'` must write
exactly T PNGs, matching decoded_u8 within one level.  Clips of 1 + 4k
frames give the reference's latents; T = 7 is kept whole (the last group
padded with copies of frame 6): 3 latents whose first 2 are the
reference's, and 7 PNGs whose first 5 are decoded_u8.
Per model, once: the reference latents decoded (decoder alone), one PNG as
a 1-frame clip (OUT.png back), a frame size that is not a multiple of the
spatial factor (padded, cropped back on decode), latents with the wrong
channel count, info, bench.  Then the error paths of frame patterns: each
must exit non-zero (not by a signal) with exactly one line on stderr,
"vae-tool: ...".

Without the test data (or numpy) the script exits 77 (skip) after a loud
message and writes $VAE_GOLDEN_SKIP_MARKER, so CI can fail when golden
tests were skipped.  Arguments after the tool: substrings selecting
reference files or model paths; --reduced (ASan trees) runs the T = 1 and
T = 5 files only.
"""
import importlib.util
import os
import shutil
import sys
import tempfile
import time

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("vae_tool_test",
                                               os.path.join(_here, "test-vae-tool.py"))
vt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vt)
np = vt.np

MODEL_FILES = {
    "wan21-mini": ["wan21-mini", "wan21-mini-original.safetensors"],
    "wan22-mini": ["wan22-mini"],
    "taew2_1-random": ["taew2_1-random.safetensors"],
    "taew2_2-random": ["taew2_2-random.safetensors"],
}
# Single files carry no config: the real Wan 2.1 statistics.
BUILTIN_NORM = {"wan21-mini-original.safetensors"}


def skip(why):
    marker = os.environ.get("VAE_GOLDEN_SKIP_MARKER") or "golden-skipped.marker"
    try:
        with open(marker, "w") as f:
            f.write("test-vae-tool-video: %s\n" % why)
    except OSError as e:
        print("cannot write skip marker %s: %s" % (marker, e), file=sys.stderr)
    banner = "*" * 60
    msg = ("\n%s\n** vae-tool VIDEO GOLDEN TESTS SKIPPED: %s\n"
           "** Nothing was checked against the reference outputs.\n"
           "** Marker written: %s\n%s\n" % (banner, why, marker, banner))
    print(msg)
    print(msg, file=sys.stderr)
    sys.exit(77)


def ncthw(tensor, meta):
    """A reference tensor as [1, C, T, H, W] (TAEHV files are NTCHW)."""
    if meta.get("layout") == "NTCHW":
        return np.ascontiguousarray(tensor.transpose(0, 2, 1, 3, 4))
    return tensor


def write_frames(d, frames, name="f_%04d.png"):
    os.makedirs(d, exist_ok=True)
    for i, fr in enumerate(frames):
        vt.write_png(os.path.join(d, name % i), fr)
    return os.path.join(d, name)


def read_frames(pattern, max_frames):
    """The PNGs of PATTERN from 0 up to the first missing one."""
    out = []
    while os.path.exists(pattern % len(out)) and len(out) <= max_frames:
        out.append(vt.read_png(pattern % len(out)))
    return out


def info_of(chk, tool, model):
    ok, out = vt.expect_ok(chk, "%s: info" % model, tool, "info", "--model", model)
    kv = {}
    for line in out.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            kv[k.strip()] = v.strip()
    return kv if ok else None


def check_metadata(chk, label, meta, want):
    for k, v in want.items():
        chk.ok(meta.get(k) == str(v), "%s: metadata %s = %r (want %r)" % (label, k, meta.get(k), v))


def per_model(chk, tool, tmp, model, label, tensors, meta, info):
    """Once per model: decoder alone, 1-frame clip, odd sizes, channels, bench."""
    frames = tensors["frames"]
    zref = ncthw(tensors["latent_normalized"], meta)
    c = zref.shape[1]
    sf = int(meta["spatial_factor"])
    d = os.path.join(tmp, label + "-extra")
    os.makedirs(d, exist_ok=True)

    # The reference latents through decode alone (Wan: normalised, TAEHV as is).
    if label not in BUILTIN_NORM:
        zr = os.path.join(d, "zref.safetensors")
        vt.write_st(zr, {"latents": ("F32", zref.astype("<f4"))},
                    {"frames": meta["frames"], "width": meta["width"], "height": meta["height"]})
        pat = os.path.join(d, "r_%04d.png")
        ok, _ = vt.expect_ok(chk, "%s: decode reference latents" % label, tool, "decode",
                             "--model", model, "--input", zr, "--output", pat)
        if ok:
            got = read_frames(pat, 100)
            want = tensors["decoded_u8"]
            if chk.ok(len(got) == len(want), "%s: reference latents: %d PNGs (want %d)"
                      % (label, len(got), len(want))):
                chk.pixels("%s: decode(reference latents) vs decoded_u8" % label,
                           np.stack(got), want)

    # One PNG: a 1-frame clip, and OUT.png (not numbered) back.
    one = os.path.join(d, "one.png")
    vt.write_png(one, frames[0])
    z1 = os.path.join(d, "one.safetensors")
    ok, _ = vt.expect_ok(chk, "%s: encode one PNG" % label, tool, "encode", "--model", model,
                         "--input", one, "--output", z1)
    if ok:
        t, m = vt.read_st(z1)
        lat = t["latents"]
        chk.ok(lat.shape == (1, c, 1, zref.shape[3], zref.shape[4]) and meta.get("frames") and
               m.get("frames") == "1", "%s: one PNG: latents %s, frames=%s"
               % (label, lat.shape, m.get("frames")))
        o1 = os.path.join(d, "one-out.png")
        ok, _ = vt.expect_ok(chk, "%s: decode a 1-frame clip to OUT.png" % label, tool, "decode",
                             "--model", model, "--input", z1, "--output", o1)
        if ok:
            chk.ok(os.path.exists(o1) and not os.path.exists(os.path.join(d, "one-out_0000.png")),
                   "%s: a 1-frame clip decodes to exactly OUT.png" % label)
            if os.path.exists(o1):
                img = vt.read_png(o1)
                chk.ok(img.shape == frames[0].shape, "%s: 1-frame clip back: %s"
                       % (label, img.shape))

    # A frame size that is not a multiple of the spatial factor: padded for
    # the encoder, cropped back on decode.  5 frames of W-4 x H-12.
    h, w = frames.shape[1] - 12, frames.shape[2] - 4
    pat = write_frames(os.path.join(d, "odd"), frames[:5, :h, :w])
    zo = os.path.join(d, "odd.safetensors")
    ok, _ = vt.expect_ok(chk, "%s: encode %dx%d frames" % (label, w, h), tool, "encode",
                         "--model", model, "--input", pat, "--output", zo)
    if ok:
        t, m = vt.read_st(zo)
        lh, lw = -(-h // sf), -(-w // sf)
        chk.ok(t["latents"].shape == (1, c, 2, lh, lw),
               "%s: %dx%d frames: latents %s (want [1,%d,2,%d,%d])"
               % (label, w, h, t["latents"].shape, c, lh, lw))
        check_metadata(chk, "%s: %dx%d" % (label, w, h), m,
                       {"width": w, "height": h, "frames": 5})
        op = os.path.join(d, "odd", "o_%04d.png")
        ok, _ = vt.expect_ok(chk, "%s: decode %dx%d" % (label, w, h), tool, "decode",
                             "--model", model, "--input", zo, "--output", op)
        if ok:
            got = read_frames(op, 100)
            chk.ok(len(got) == 5 and all(g.shape == (h, w, 3) for g in got),
                   "%s: decoded %d PNGs of %s (want 5 of %dx%d)"
                   % (label, len(got), got[0].shape if got else None, w, h))

    # Latents with the wrong channel count.
    zb = os.path.join(d, "bad-channels.safetensors")
    vt.write_st(zb, {"latents": ("F32", np.zeros((1, c - 1, 2, 4, 4), "<f4"))})
    rc, _, err = vt.run(tool, "decode", "--model", model, "--input", zb, "--output",
                        os.path.join(d, "bad_%04d.png"))
    vt.expect_error(chk, "%s: decode latents of %d channels" % (label, c - 1), tool, "decode",
                    "--model", model, "--input", zb, "--output", os.path.join(d, "bad_%04d.png"),
                    must_not_exist=os.path.join(d, "bad_0000.png"))
    chk.ok("channels" in err and str(c) in err and str(c - 1) in err,
           "%s: the error names the channels: %s" % (label, err.strip()))

    # info
    if info:
        fam = info.get("family", "")
        chk.ok(fam in ("wan", "taehv") or "wan" in fam.lower() or "taehv" in fam.lower(),
               "%s: info family: %s" % (label, fam))
        check_metadata(chk, "%s: info" % label, info,
                       {"temporal_factor": 4, "spatial_factor": sf, "latent_channels": c})
        norm = info.get("normalisation", "")
        if label.startswith("wan"):
            chk.ok("latents_mean" in norm and len(info.get("latents_mean", "").split(",")) == c
                   and len(info.get("latents_std", "").split(",")) == c,
                   "%s: info normalisation: %s (latents_mean/std of %d)" % (label, norm, c))
        else:
            chk.ok(norm.startswith("none"), "%s: info normalisation: %s" % (label, norm))

    # bench: the last line is median_s=<seconds>.
    for op in ("encode", "decode"):
        ok, out = vt.expect_ok(chk, "%s: bench %s" % (label, op), tool, "bench", "--model", model,
                               "--op", op, "--frames", "5", "--width", "64", "--height", "64",
                               "--runs", "1")
        if ok:
            last = out.strip().splitlines()[-1] if out.strip() else ""
            good = last.startswith("median_s=")
            try:
                good = good and float(last.split("=", 1)[1]) > 0
            except ValueError:
                good = False
            chk.ok(good, "%s: bench %s last line %r" % (label, op, last))


def pattern_errors(chk, tool, tmp, model, frames):
    d = os.path.join(tmp, "errors")
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, "z.safetensors")
    write_frames(d, frames[:2])
    vt.expect_error(chk, "pattern with two %d", tool, "encode", "--model", model, "--input",
                    os.path.join(d, "f_%04d_%d.png"), "--output", out, must_not_exist=out)
    vt.expect_error(chk, "pattern with %s", tool, "encode", "--model", model, "--input",
                    os.path.join(d, "f_%s.png"), "--output", out, must_not_exist=out)
    miss = os.path.join(d, "missing")
    write_frames(miss, frames[:3])
    os.remove(os.path.join(miss, "f_0000.png"))
    rc, _, err = vt.run(tool, "encode", "--model", model, "--input",
                        os.path.join(miss, "f_%04d.png"), "--output", out)
    vt.expect_error(chk, "missing first frame", tool, "encode", "--model", model, "--input",
                    os.path.join(miss, "f_%04d.png"), "--output", out, must_not_exist=out)
    chk.ok("first frame" in err, "missing first frame: the error says so: %s" % err.strip())
    sizes = os.path.join(d, "sizes")
    write_frames(sizes, frames[:2])
    vt.write_png(os.path.join(sizes, "f_0002.png"), frames[2, :32, :48])
    rc, _, err = vt.run(tool, "encode", "--model", model, "--input",
                        os.path.join(sizes, "f_%04d.png"), "--output", out)
    vt.expect_error(chk, "frames of different sizes", tool, "encode", "--model", model,
                    "--input", os.path.join(sizes, "f_%04d.png"), "--output", out,
                    must_not_exist=out)
    chk.ok("same size" in err and "48x32" in err, "different sizes: the error says which: %s"
           % err.strip())
    z = os.path.join(d, "ok.safetensors")
    ok, _ = vt.expect_ok(chk, "encode for the decode errors", tool, "encode", "--model", model,
                         "--input", os.path.join(d, "f_%04d.png"), "--output", z)
    if ok:
        vt.expect_error(chk, "decode output pattern with two %d", tool, "decode", "--model",
                        model, "--input", z, "--output", os.path.join(d, "o_%d_%d.png"))
    vt.expect_error(chk, "decode a missing latents file", tool, "decode", "--model", model,
                    "--input", os.path.join(tmp, "no-such.safetensors"), "--output",
                    os.path.join(d, "o_%04d.png"))


def main():
    if len(sys.argv) < 2:
        print("usage: test-vae-tool-video.py PATH/TO/vae-tool [--reduced] [FILTER...]", file=sys.stderr)
        return 2
    tool = sys.argv[1]
    filters = [a for a in sys.argv[2:] if a != "--reduced"]
    # ASan trees: the T = 1 and T = 5 files only, to keep that tree quick.
    reduced = "--reduced" in sys.argv[2:]
    if np is None:
        skip("numpy is not installed (Debian: python3-numpy)")
    testdata = os.environ.get("VAE_TESTDATA")
    if not testdata:
        skip("VAE_TESTDATA is not set")
    ref_dir = os.path.join(testdata, "reference-video")
    models_dir = os.path.join(testdata, "models")
    names = sorted(n for n in os.listdir(ref_dir) if n.endswith(".safetensors") and "__" in n) \
        if os.path.isdir(ref_dir) else []
    if not names:
        skip("no reference files in %s" % ref_dir)

    chk = vt.Checker()
    tmp = tempfile.mkdtemp(prefix="vae-tool-video-")
    seen, infos, err_model = set(), {}, None
    try:
        for name in names:
            stem = name[:-len(".safetensors")]
            if reduced and not stem.endswith(("x1", "x5")):
                continue
            tensors, meta = vt.read_st(os.path.join(ref_dir, name))
            for label in MODEL_FILES.get(name.split("__")[0], []):
                if filters and not any(f in name or f in label for f in filters):
                    continue
                t0 = time.time()
                model = os.path.join(models_dir, label)
                print("== %s / %s" % (stem, label))
                if label not in infos:
                    infos[label] = info_of(chk, tool, model)
                info = infos[label]
                frames = tensors["frames"]
                T = frames.shape[0]
                d = os.path.join(tmp, label, stem)
                pat = write_frames(d, frames)
                z = os.path.join(d, "z.safetensors")
                ok, _ = vt.expect_ok(chk, "%s: encode" % stem, tool, "encode", "--model", model,
                                     "--input", pat, "--output", z)
                if ok:
                    t, m = vt.read_st(z)
                    lat = t["latents"]
                    want_t = int(meta["latent_frames"])
                    lt = 1 + (T - 1 + 3) // 4     # the whole clip: 4 T' - 3 >= T
                    sf = int(meta["spatial_factor"])
                    mean = ncthw(tensors["latent_mean"], meta)
                    c = mean.shape[1]
                    chk.ok(lat.dtype == np.float32 and lat.shape ==
                           (1, c, lt, mean.shape[3], mean.shape[4]),
                           "%s: latents %s %s (want F32 [1,%d,%d,%d,%d])"
                           % (stem, lat.dtype, lat.shape, c, lt, mean.shape[3], mean.shape[4]))
                    check_metadata(chk, stem, m, {"frames": T, "temporal_factor": 4,
                                                  "spatial_factor": sf,
                                                  "width": frames.shape[2],
                                                  "height": frames.shape[1]})
                    chk.ok(bool(m.get("model")), "%s: metadata model = %r" % (stem, m.get("model")))
                    got = lat[:, :, :want_t]
                    if label in BUILTIN_NORM and info:
                        # Denormalise with the model's own (real Wan 2.1) statistics.
                        lm = np.array([float(x) for x in info["latents_mean"].split(",")],
                                      np.float64).reshape(1, -1, 1, 1, 1)
                        ls = np.array([float(x) for x in info["latents_std"].split(",")],
                                      np.float64).reshape(1, -1, 1, 1, 1)
                        chk.floats("%s: latents * std + mean vs latent_mean" % stem,
                                   got.astype(np.float64) * ls + lm, mean)
                    else:
                        chk.floats("%s: latents vs latent_normalized" % stem, got,
                                   ncthw(tensors["latent_normalized"], meta))
                    op = os.path.join(d, "o_%04d.png")
                    ok, _ = vt.expect_ok(chk, "%s: decode" % stem, tool, "decode", "--model",
                                         model, "--input", z, "--output", op)
                    if ok:
                        outs = read_frames(op, 1000)
                        want = tensors["decoded_u8"]
                        if chk.ok(len(outs) == T, "%s: decode wrote %d PNGs (want %d)"
                                  % (stem, len(outs), T)):
                            chk.pixels("%s: decoded PNGs (first %d) vs decoded_u8"
                                       % (stem, len(want)), np.stack(outs[:len(want)]), want)
                    if label not in seen and T == 5:
                        seen.add(label)
                        per_model(chk, tool, tmp, model, label, tensors, meta, info)
                        if err_model is None:
                            err_model = (model, frames)
                print("   (%.1f s)" % (time.time() - t0))
        if err_model:
            print("== frame pattern errors")
            pattern_errors(chk, tool, tmp, err_model[0], err_model[1])
        print("\n%d checks passed, %d failed" % (chk.passed, len(chk.failures)))
        if chk.failures:
            print("FAILED:\n  " + "\n  ".join(chk.failures))
            return 1
        return 0 if chk.passed else 77
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
