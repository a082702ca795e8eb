#!/usr/bin/python3
"""Self-check of the PyTorch benchmark peer (torch_vae.py) against the golden
files in ../shared/testdata/reference: encode(`input`) vs `latent_mean` (and
`latent_logvar` for KL), decode(`latent_mean`) vs `decoded`; and in
../shared/testdata/reference-flux2 (AutoencoderKLFlux2): the bare VAE as
above, plus the FLUX.2 pipeline's encode(`input`) vs `latent_normalized` and
decode(`latent_normalized`) vs `decoded`. Every max |diff|
must be <= 1e-3, which proves the peer runs the same model as the references.

Usage: /usr/bin/python3 tests/bench/check_peer.py [--testdata DIR] [--tol 1e-3]
Exit status: 0 pass, 1 fail, 77 (skip) when the test data is missing.
"""
import argparse
import glob
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_vae  # noqa: E402


def default_testdata():
    env = os.environ.get("VAE_TESTDATA")
    if env:
        return env
    return os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "testdata"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=default_testdata())
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--match", default="", help="only references whose file name contains this (e.g. flux2)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    refs = sorted(glob.glob(os.path.join(a.testdata, "reference", "*.safetensors")))
    if not refs:
        print(f"SKIP: no reference files under {a.testdata}/reference", file=sys.stderr)
        return 77
    refs = [r for r in refs if a.match in os.path.basename(r)]

    models = {}
    worst = 0.0
    failed = []
    if refs:
        print(f"{'reference':45s} {'latent_mean':>12s} {'latent_logvar':>13s} {'decoded':>12s} {'dec relL2':>10s}")
    for ref in refs:
        t, meta = torch_vae.load_safetensors(ref)
        name = meta.get("model") or os.path.basename(ref).split("__")[0]
        mpath = os.path.join(a.testdata, "models", name)
        if name not in models:
            models[name] = torch_vae.load_vae(mpath)
        m = models[name]
        x = t["input"].float()
        rng = meta.get("input_range")
        if m.kind == "taesd":
            assert rng == "0..1", f"{ref}: TAESD single-file model expects 0..1 input, metadata says {rng}"
        else:
            assert rng in (None, "-1..1"), f"{ref}: unexpected input_range {rng}"
        with torch.inference_mode():
            if m.kind == "kl":
                mean, logvar = m.encode_mean_logvar(x)
            else:
                mean, logvar = m.encode(x), None
            dec = m.decode(t["latent_mean"].float())
        d_mean = (mean - t["latent_mean"]).abs().max().item()
        d_lv = (logvar - t["latent_logvar"]).abs().max().item() if logvar is not None and "latent_logvar" in t else None
        d_dec = (dec - t["decoded"]).abs().max().item()
        rel = ((dec - t["decoded"]).norm() / t["decoded"].norm()).item()
        # decoding our own latent too (end-to-end), informational
        diffs = [d_mean, d_dec] + ([d_lv] if d_lv is not None else [])
        ok = all(d <= a.tol for d in diffs)
        worst = max([worst] + diffs)
        if not ok:
            failed.append(os.path.basename(ref))
        print(f"{os.path.basename(ref)[:-12]:45s} {d_mean:12.3e} "
              f"{(('%13.3e' % d_lv) if d_lv is not None else '%13s' % '-')} {d_dec:12.3e} {rel:10.2e}"
              f"{'' if ok else '  FAIL'}")
    # FLUX.2 (AutoencoderKLFlux2 + the pipeline's latent code): reference-flux2/
    frefs = sorted(glob.glob(os.path.join(a.testdata, "reference-flux2", "*.safetensors")))
    frefs = [r for r in frefs if a.match in os.path.basename(r)]
    if frefs:
        print(f"{'reference-flux2':45s} {'latent_mean':>12s} {'latent_norm':>13s} {'decoded':>12s} "
              f"{'dec(norm)':>10s}")
    for ref in frefs:
        t, meta = torch_vae.load_safetensors(ref)
        name = meta.get("model") or os.path.basename(ref).split("__")[0]
        mpath = os.path.join(a.testdata, "models", name)
        if name not in models:
            models[name] = torch_vae.load_vae(mpath)
        m = models[name]
        assert m.kind == "flux2", f"{mpath}: expected AutoencoderKLFlux2, loaded {m.kind}"
        x = t["input"].float()
        with torch.inference_mode():
            mean = m.encode_raw(x)
            norm = m.encode(x)                              # the pipeline's encode
            dec = m.decode_raw(t["latent_mean"].float())
            dec_n = m.decode(t["latent_normalized"].float())  # the pipeline's decode
        d_mean = (mean - t["latent_mean"]).abs().max().item()
        d_norm = (norm - t["latent_normalized"]).abs().max().item()
        d_dec = (dec - t["decoded"]).abs().max().item()
        # the pipeline's decode of latent_normalized equals decoded up to the
        # float32 round trip of the normalisation (metadata: ~1e-5)
        d_dec_n = (dec_n - t["decoded"]).abs().max().item()
        diffs = [d_mean, d_norm, d_dec, d_dec_n]
        ok = all(d <= a.tol for d in diffs)
        worst = max([worst] + diffs)
        if not ok:
            failed.append(os.path.basename(ref))
        print(f"{os.path.basename(ref)[:-12]:45s} {d_mean:12.3e} {d_norm:13.3e} {d_dec:12.3e} {d_dec_n:10.3e}"
              f"{'' if ok else '  FAIL'}")
    if not frefs:
        print(f"note: no FLUX.2 references under {a.testdata}/reference-flux2 (not checked)", file=sys.stderr)
    if not refs and not frefs:
        print(f"FAIL: no reference file matches {a.match!r}")
        return 1
    print(f"worst max|diff| = {worst:.3e} (tolerance {a.tol:g}) over {len(refs) + len(frefs)} references")
    if failed:
        print("FAIL: " + ", ".join(failed))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
