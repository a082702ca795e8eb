#!/usr/bin/python3
"""Prove the video peers are faithful: run torch_wan.py / torch_taehv.py on
every golden file in ../shared/testdata/reference-video and compare
latent_mean, latent_normalized and decoded (max |diff| <= 1e-3 and relative
L2 <= 1e-4, the float32 tolerances of the testdata README). wan21-mini runs
twice: from the diffusers folder and from wan21-mini-original.safetensors
(original Wan keys, mapped by torch_wan.map_original_keys; latents_mean/std
from the folder's config.json). Exit status 1 if anything is out of
tolerance, 2 if the test data is missing.

Usage: /usr/bin/python3 tests/bench/check_video_peers.py [--testdata DIR] [--threads 2]
"""
import argparse
import glob
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import torch_taehv  # noqa: E402
import torch_wan  # noqa: E402
from torch_vae import load_safetensors  # noqa: E402

MAX_ABS = 1e-3
REL_L2 = 1e-4


def default_testdata():
    """$VAE_TESTDATA, else the first shared/testdata found beside the checkout
    or above it (a worktree may sit one level deeper than the main checkout)."""
    if os.environ.get("VAE_TESTDATA"):
        return os.environ["VAE_TESTDATA"]
    d = ROOT
    while True:
        parent = os.path.dirname(d)
        cand = os.path.join(parent, "shared", "testdata")
        if os.path.isdir(cand) or parent == d:
            return cand if os.path.isdir(cand) else os.path.join(ROOT, "..", "shared", "testdata")
        d = parent


def compare(got, ref):
    got = got.double()
    ref = ref.double()
    if tuple(got.shape) != tuple(ref.shape):
        return float("inf"), float("inf"), f"shape {tuple(got.shape)} != {tuple(ref.shape)}"
    d = (got - ref)
    mx = d.abs().max().item()
    rel = (d.norm() / ref.norm().clamp_min(1e-30)).item()
    return mx, rel, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testdata", default=default_testdata())
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    refdir = os.path.join(a.testdata, "reference-video")
    mdir = os.path.join(a.testdata, "models")
    files = sorted(glob.glob(os.path.join(refdir, "*.safetensors")))
    if not files:
        print(f"SKIP: no reference-video files under {refdir}", file=sys.stderr)
        return 2

    models = {}

    def get(name):
        if name not in models:
            if name == "wan21-mini-original":
                models[name] = torch_wan.load_wan(os.path.join(mdir, "wan21-mini-original.safetensors"),
                                                  config_path=os.path.join(mdir, "wan21-mini", "config.json"))
            elif name.startswith("wan"):
                models[name] = torch_wan.load_wan(os.path.join(mdir, name))
            else:
                models[name] = torch_taehv.load_taehv(os.path.join(mdir, name + ".safetensors"))
        return models[name]

    ok = True
    worst = {}
    print(f"{'model':22s} {'clip':22s} {'tensor':18s} {'max|diff|':>10s} {'rel L2':>10s}")
    for path in files:
        base = os.path.basename(path)[:-len(".safetensors")]
        mname, clip = base.split("__", 1)
        ref, meta = load_safetensors(path)
        variants = [mname] + (["wan21-mini-original"] if mname == "wan21-mini" else [])
        for v in variants:
            model = get(v)
            with torch.inference_mode():
                if mname.startswith("wan"):
                    mean, logvar = model.encode(ref["input"])
                    norm = model.normalize(mean)
                    dec = model.decode(ref["latent_mean"], clamp=False)
                    got = {"latent_mean": mean, "latent_logvar": logvar, "latent_normalized": norm, "decoded": dec}
                else:
                    mean = model.encode(ref["input"])
                    dec = model.decode(ref["latent_mean"], clamp=False)
                    got = {"latent_mean": mean, "latent_normalized": mean, "decoded": dec}
            for t in ("latent_mean", "latent_logvar", "latent_normalized", "decoded"):
                if t not in ref:
                    continue
                mx, rel, err = compare(got[t], ref[t])
                bad = err or mx > MAX_ABS or rel > REL_L2
                ok &= not bad
                w = worst.setdefault(t, [0.0, 0.0])
                w[0], w[1] = max(w[0], mx), max(w[1], rel)
                print(f"{v:22s} {clip:22s} {t:18s} {mx:10.3e} {rel:10.3e}{'  FAIL ' + err if bad else ''}")
    print()
    for t, (mx, rel) in worst.items():
        print(f"worst {t:18s} max|diff| {mx:.3e}  rel L2 {rel:.3e}")
    print(f"tolerance: max|diff| <= {MAX_ABS:g}, rel L2 <= {REL_L2:g}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
