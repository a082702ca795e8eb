#!/usr/bin/python3
"""A client written to the Hybrid Inference protocol
(../shared/docs/hybrid-inference-protocol.md) with Python's requests and
numpy, against vae-server on 127.0.0.1, every reply checked against the
golden references of ../shared/testdata (diffusers' outputs; vae-server runs
the local CPU engine):

  kl-flux-mini (KL, 16 channels, scaling 0.3611, shift 0.1159):
    encode a PNG body; a raw uint8 [2,3,H,W] tensor; a raw float16 tensor;
    decode to pt float [-1,1]; to pt uint8 NHWC (partial_postprocess); to PNG.
  taef2 (a real, trained model, so that its pictures are natural images):
    decode to JPEG (read by jpeg_baseline.py, no PIL); encode a JPEG body.

Tolerances (../shared/testdata/README.md): float32 paths max |diff| <= 1e-3
(2e-3 on [-1,1] pixels, the doubled [0,1] bound); float16 in and out: the
reduced-precision bound, relative L2 <= 1e-2; uint8 and PNG: 1 level.
JPEG: see JPEG_MIN_PSNR.

Usage: test-protocol-client.py PATH-TO-vae-server"""
import sys

import numpy as np
import requests

import jpeg_baseline
from server_test_helpers import (check, finish, is_json_error, png_read, png_write, psnr, qs,
                                 read_safetensors, rel_l2, start, tensor_of, testdata)

# vae-server writes JPEG at quality 90 with 4:4:4 chroma (jpeg-memory.h).
# TAEF2's astronaut at 64x64, a small picture dense in detail (the worst
# case for JPEG), comes back at 35 dB; larger or smoother pictures do
# better.  32 dB leaves room for other libjpeg builds, while any real fault -
# channels swapped, rows shifted, the [-1,1] range not undone, another
# picture - lands under 20 dB.
JPEG_MIN_PSNR = 32.0

SERVER = sys.argv[1]
KL, KL_REF, TAEF2, TAEF2_REF = testdata(
    "the protocol client test",
    "models/kl-flux-mini", "reference/kl-flux-mini__astronaut_64x64.safetensors",
    "models/taef2", "reference/taef2__astronaut_64x64.safetensors")

RAW = {"Content-Type": "tensor/binary"}


def post(url, body, **kw):
    r = requests.post(url, data=body, timeout=120, **kw)
    if r.status_code != 200:
        print(f"  {url}: {r.status_code} {r.text[:200]!r}")
    return r


# ---- kl-flux-mini: tensors, factors, PNG ----
ref = read_safetensors(KL_REF)
image = ref["image"]                          # [64,64,3] u8
chw = np.ascontiguousarray(image.transpose(2, 0, 1))
scaling, shift = 0.3611, 0.1159
want_lat = ref["latent_scaled"]               # [1,16,8,8], (mean - shift) * scaling
want_dec = ref["decoded"]                     # [1,3,64,64], about [-1,1]
want_u8 = ref["decoded_u8"]                   # [64,64,3]
factors = {"scaling_factor": scaling, "shift_factor": shift}
shape_lat = list(want_lat.shape)

proc, url = start(SERVER, KL)
try:
    # PNG body: no shape/dtype, no Content-Type (as diffusers' remote_encode).
    r = post(url + "/encode?scaling_factor=%s&shift_factor=%s" % (scaling, shift),
             png_write(image))
    if r.status_code == 200:
        lat = tensor_of(r)
        err = float(np.abs(lat - want_lat).max())
        check(list(lat.shape) == shape_lat and err <= 1e-3,
              f"encode PNG: {r.headers['shape']} {r.headers['dtype']}, max diff {err:.2e}")
    else:
        check(False, f"encode PNG: status {r.status_code}")

    # Raw uint8 [2,3,64,64]: a batch of two frames in one request.
    two = np.stack([chw, chw])
    r = post(url + "/encode" + qs(two.shape, "uint8", **factors), two.tobytes(), headers=RAW)
    if r.status_code == 200:
        lat = tensor_of(r)
        err = max(float(np.abs(lat[i] - want_lat[0]).max()) for i in range(2)) \
            if lat.shape[0] == 2 else float("inf")
        check(r.headers["dtype"] == "float32" and err <= 1e-3,
              f"encode uint8 [2,3,64,64]: {r.headers['shape']}, max diff {err:.2e}")
    else:
        check(False, f"encode uint8: status {r.status_code}")

    # Raw float16 in [-1,1]: float16 latents back.
    f16 = (chw.astype(np.float32) / 255.0 * 2.0 - 1.0).astype(np.float16)[None]
    r = post(url + "/encode" + qs(f16.shape, "float16", **factors), f16.tobytes(), headers=RAW)
    if r.status_code == 200:
        lat = tensor_of(r)
        rel = rel_l2(lat, want_lat) if list(lat.shape) == shape_lat else float("inf")
        check(r.headers["dtype"] == "float16" and rel <= 1e-2,
              f"encode float16: dtype {r.headers['dtype']}, relative L2 {rel:.2e}")
    else:
        check(False, f"encode float16: status {r.status_code}")

    lat_bytes = want_lat.astype(np.float32).tobytes()
    # Decode to pt float: [B,3,H,W] in [-1,1], the request's dtype.
    r = post(url + "/decode" + qs(shape_lat, "float32", output_type="pt",
                                  partial_postprocess="False", **factors),
             lat_bytes, headers={**RAW, "Accept": "tensor/binary"})
    if r.status_code == 200:
        dec = tensor_of(r)
        err = float(np.abs(dec - want_dec).max()) if dec.shape == want_dec.shape else float("inf")
        check(r.headers["dtype"] == "float32" and err <= 2e-3,
              f"decode pt float: {r.headers['shape']} {r.headers['dtype']}, max diff {err:.2e}")
    else:
        check(False, f"decode pt float: status {r.status_code}")

    # Decode to pt uint8 (partial_postprocess=True): [B,H,W,3] NHWC, batch of 2.
    two_lat = np.concatenate([want_lat, want_lat]).astype(np.float32)
    r = post(url + "/decode" + qs(two_lat.shape, "float32", output_type="pt",
                                  partial_postprocess="True", **factors),
             two_lat.tobytes(), headers={**RAW, "Accept": "tensor/binary"})
    if r.status_code == 200:
        u8 = tensor_of(r)
        ok = r.headers["dtype"] == "uint8" and list(u8.shape) == [2, 64, 64, 3]
        err = int(np.abs(u8.astype(int) - want_u8[None].astype(int)).max()) if ok else 999
        check(ok and err <= 1, f"decode pt uint8: {r.headers['shape']} {r.headers['dtype']}, "
                               f"max diff {err} level(s)")
    else:
        check(False, f"decode pt uint8: status {r.status_code}")

    # Decode to PNG (output_type=pil, image_format=png).
    r = post(url + "/decode" + qs(shape_lat, "float32", output_type="pil", image_format="png",
                                  **factors), lat_bytes, headers={**RAW, "Accept": "image/png"})
    if r.status_code == 200 and r.headers.get("content-type") == "image/png":
        img = png_read(r.content)
        err = int(np.abs(img.astype(int) - want_u8.astype(int)).max())
        check(img.shape == (64, 64, 3) and err <= 1, f"decode PNG: max diff {err} level(s)")
    else:
        check(False, f"decode PNG: status {r.status_code} {r.headers.get('content-type')}")
finally:
    proc.terminate()
    # Non-zero also when a sanitizer build found a leak or an error.
    check(proc.wait(timeout=60) == 0, "vae-server exits 0 on SIGTERM")

# ---- taef2: JPEG out and in ----
ref = read_safetensors(TAEF2_REF)
want_lat = ref["latent_scaled"]
want_u8 = ref["decoded_u8"]
proc, url = start(SERVER, TAEF2)
try:
    r = post(url + "/decode" + qs(want_lat.shape, "float32", output_type="pil",
                                  image_format="jpg", do_scaling="True"),
             want_lat.astype(np.float32).tobytes(), headers={**RAW, "Accept": "image/jpeg"})
    jpeg = r.content if r.status_code == 200 else b""
    check(r.status_code == 200 and r.headers.get("content-type") == "image/jpeg"
          and jpeg[:3] == b"\xff\xd8\xff",
          f"decode JPEG: status {r.status_code}, {r.headers.get('content-type')}")
    try:
        pixels = jpeg_baseline.decode(jpeg)
    except (ValueError, IndexError, KeyError) as e:
        pixels = None
        print(f"  jpeg_baseline: {e}")
    check(pixels is not None and pixels.shape == (64, 64, 3),
          "decode JPEG: a baseline decoder reads it as 64x64 RGB")
    if pixels is not None and pixels.shape == (64, 64, 3):
        p = psnr(pixels, want_u8)
        check(p >= JPEG_MIN_PSNR, f"decode JPEG: PSNR {p:.1f} dB against decoded_u8 "
                                  f"(bound {JPEG_MIN_PSNR} dB)")

        # Encode that JPEG: the latents of the pixels an independent decoder
        # reads from it (sent as a raw uint8 tensor, the path checked
        # above).  That decoder's float IDCT and libjpeg's integer one are up
        # to 4 levels apart (52 dB), which TAEF2's encoder turns into a
        # relative L2 of about 1.8e-2 on its latents; the bound, 5e-2, is
        # well under what a real fault gives: the picture before JPEG 0.11,
        # R and B swapped 0.58, shifted a column 0.41.
        r = post(url + "/encode", jpeg)
        r2 = post(url + "/encode" + qs([1, 3, 64, 64], "uint8"),
                  np.ascontiguousarray(pixels.transpose(2, 0, 1)).tobytes(), headers=RAW)
        if r.status_code == 200 and r2.status_code == 200:
            rel = rel_l2(tensor_of(r), tensor_of(r2))
            check(rel <= 5e-2, "encode JPEG: the latents of its pixels as a baseline decoder "
                               f"reads them (relative L2 {rel:.2e})")
        else:
            check(False, f"encode JPEG: status {r.status_code} / {r2.status_code}")

    # A JPEG that is cut short: a 400 with the protocol's JSON error.
    r = requests.post(url + "/encode", data=jpeg[:40], timeout=60)
    check(r.status_code == 400 and is_json_error(r), f"truncated JPEG body: {r.status_code}")
finally:
    proc.terminate()
    # Non-zero also when a sanitizer build found a leak or an error.
    check(proc.wait(timeout=60) == 0, "vae-server exits 0 on SIGTERM")

finish("protocol client")
