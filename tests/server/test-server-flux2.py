#!/usr/bin/python3
"""vae-server serving a FLUX.2 VAE (AutoencoderKLFlux2, flux2-mini): encode
answers the normalised latents the FLUX.2 pipelines feed the transformer
(2x2 patches, per-channel BatchNorm statistics: 128 channels at 16x) by
default and the network's own with latent_format=raw (32 at 8x); decode
takes either (by latent_format, else by the channel count, and packed
[B, h*w, 128]) and inverts the normalisation; the shape headers say so.
Against the references in reference-flux2 (diffusers' AutoencoderKLFlux2 and
the FLUX.2 pipeline's latent code).

Usage: test-server-flux2.py PATH-TO-vae-server
Needs VAE_TESTDATA (models/flux2-mini, reference-flux2); exits 77 loudly
when it is missing."""
import json
import sys

import numpy as np
import requests

from server_test_helpers import (check, finish, is_json_error, png_write, qs, read_safetensors,
                                 start, tensor_of, testdata)

SERVER = sys.argv[1]
MODEL, REF = testdata("the vae-server FLUX.2 test", "models/flux2-mini",
                      "reference-flux2/flux2-mini__astronaut_128x128.safetensors")

ref = read_safetensors(REF)
image = ref["image"]                          # [128,128,3] u8
want_norm = ref["latent_normalized"]          # [1,128,8,8]
want_raw = ref["latent_mean"]                 # [1,32,16,16]
chw = np.ascontiguousarray(image.transpose(2, 0, 1))


def maxdiff(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def u8diff(a, b):
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def shape_of(r):
    return json.loads(r.headers.get("shape", "null"))


proc, URL = start(SERVER, MODEL, "--max-batch", "4")
try:
    # Encode: normalised by default, 128 channels at H/16.
    r = requests.post(URL + "/encode" + qs([1, 3, 128, 128], "uint8"), data=chw.tobytes(),
                      timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 128, 8, 8],
          f"encode: normalised latents [1,128,8,8] (got {r.status_code} {shape_of(r)})")
    if r.status_code == 200:
        got = tensor_of(r)
        check(maxdiff(got, want_norm) <= 1e-3,
              f"encode: latent_normalized within 1e-3 ({maxdiff(got, want_norm):.2e})")
    r = requests.post(URL + "/encode" + qs([1, 3, 128, 128], "uint8",
                                           latent_format="normalized"),
                      data=chw.tobytes(), timeout=300)
    check(r.status_code == 200 and maxdiff(tensor_of(r), want_norm) <= 1e-3,
          "encode latent_format=normalized: the same")
    # A PNG body: the same latents.
    r = requests.post(URL + "/encode", data=png_write(image), timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 128, 8, 8]
          and maxdiff(tensor_of(r), want_norm) <= 1e-3, "encode PNG: normalised latents")
    # Raw: the network's 32 channels at H/8, unnormalised.
    r = requests.post(URL + "/encode" + qs([1, 3, 128, 128], "uint8", latent_format="raw"),
                      data=chw.tobytes(), timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 32, 16, 16],
          f"encode latent_format=raw: [1,32,16,16] (got {shape_of(r)})")
    if r.status_code == 200:
        check(maxdiff(tensor_of(r), want_raw) <= 1e-3,
              f"encode raw: latent_mean within 1e-3 ({maxdiff(tensor_of(r), want_raw):.2e})")
    # Normalised frames are multiples of 16; raw ones of 8.
    z24 = np.zeros((1, 3, 24, 24), np.uint8).tobytes()
    r = requests.post(URL + "/encode" + qs([1, 3, 24, 24], "uint8"), data=z24, timeout=60)
    check(r.status_code == 400 and is_json_error(r) and "16" in r.json()["error"],
          "encode 24x24 normalised: 400, multiples of 16")
    r = requests.post(URL + "/encode" + qs([1, 3, 24, 24], "uint8", latent_format="raw"),
                      data=z24, timeout=60)
    check(r.status_code == 200 and shape_of(r) == [1, 32, 3, 3], "encode 24x24 raw: [1,32,3,3]")
    r = requests.post(URL + "/encode" + qs([1, 3, 128, 128], "uint8", latent_format="pixel"),
                      data=chw.tobytes(), timeout=60)
    check(r.status_code == 400 and is_json_error(r) and "latent_format" in r.json()["error"],
          "encode latent_format=pixel: 400")

    # Decode the normalised latents: by the channel count, and by name.
    norm = want_norm.astype(np.float32).tobytes()
    for extra in ({}, {"latent_format": "normalized"}):
        r = requests.post(URL + "/decode" + qs([1, 128, 8, 8], "float32", output_type="pt",
                                               partial_postprocess="True", **extra),
                          data=norm, timeout=300)
        check(r.status_code == 200 and shape_of(r) == [1, 128, 128, 3]
              and u8diff(tensor_of(r)[0], ref["decoded_from_normalized_u8"]) <= 1,
              f"decode normalised {extra}: decoded_from_normalized_u8 within 1 level")
    r = requests.post(URL + "/decode" + qs([1, 128, 8, 8], "float32", output_type="pt"),
                      data=norm, timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 3, 128, 128],
          f"decode normalised pt: [1,3,128,128] (got {shape_of(r)})")
    if r.status_code == 200:
        d = maxdiff(tensor_of(r), ref["decoded"])
        check(d <= 1e-3, f"decode normalised pt: decoded within 1e-3 ({d:.2e})")
    # Packed [B, h*w, 128] (the FLUX.2 pipeline's sequence) with height/width.
    packed = np.ascontiguousarray(want_norm.reshape(1, 128, 64).transpose(0, 2, 1))
    r = requests.post(URL + "/decode" + qs([1, 64, 128], "float32", output_type="pt",
                                           partial_postprocess="True", height=128, width=128),
                      data=packed.astype(np.float32).tobytes(), timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 128, 128, 3]
          and u8diff(tensor_of(r)[0], ref["decoded_from_normalized_u8"]) <= 1,
          f"decode packed [1,64,128]: the same frame (got {r.status_code} {shape_of(r)})")
    # Raw latents: 32 channels at 8x.
    r = requests.post(URL + "/decode" + qs([1, 32, 16, 16], "float32", output_type="pt",
                                           partial_postprocess="True"),
                      data=want_raw.astype(np.float32).tobytes(), timeout=300)
    check(r.status_code == 200 and shape_of(r) == [1, 128, 128, 3]
          and u8diff(tensor_of(r)[0], ref["decoded_u8"]) <= 1,
          "decode raw [1,32,16,16]: decoded_u8 within 1 level")
    # Channel counts that match no format, or not the one named.
    r = requests.post(URL + "/decode" + qs([1, 64, 8, 8], "float32"),
                      data=np.zeros(64 * 64, np.float32).tobytes(), timeout=60)
    check(r.status_code == 400 and is_json_error(r) and "128" in r.json()["error"]
          and "32" in r.json()["error"], "decode 64 channels: 400 naming 128 and 32")
    r = requests.post(URL + "/decode" + qs([1, 128, 8, 8], "float32", latent_format="raw"),
                      data=norm, timeout=60)
    check(r.status_code == 400 and is_json_error(r), "decode 128 channels as raw: 400")
finally:
    proc.terminate()
    proc.wait(timeout=60)

finish("vae-server FLUX.2")
