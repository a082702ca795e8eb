#!/usr/bin/python3
"""Speed benchmark: our `vae-tool bench` vs the PyTorch peer (torch_vae.py),
same weights, same input size, same thread count, in the same run.

For each model x op x size (batch 1) it runs
  OMP_NUM_THREADS=T build/tools/vae-tool bench --model PATH --op OP --width W
      --height H --batch 1 --runs R --backend cpu [--precision P]
and
  OMP_NUM_THREADS=T /usr/bin/python3 tests/bench/torch_vae.py bench ... --threads T
(one warm-up, then the median of R runs; both print `median_s=<s>` last),
then prints a markdown table with seconds per batch, the ratio torch/ours and
GFLOP/s (2 x multiply-accumulates of all convolutions, linears and attention
matmuls, counted from the architecture; see macs()).

Models: `sd` = SD-size AutoencoderKL with random weights (written once by
make_weights.py to tests/bench/weights/sd-vae-random), `flux2` = FLUX.2-size
AutoencoderKLFlux2 with random weights and BatchNorm statistics
(tests/bench/weights/flux2-vae-random; both sides time the FLUX.2 latents:
encode = pixels -> normalised 128-channel latents at 16x, decode = those ->
pixels, the patchify and normalisation included), `taef2` =
../shared/testdata/models/taef2; any other value is taken as a model path
(diffusers folder or TAESD single-file folder).

Examples:
  tests/bench/run.sh --only-torch --sizes 256x256
  tests/bench/run.sh                           # everything, runs=3
  tests/bench/run.sh --models taef2 --runs 1 --precision bf16
"""
import argparse
import datetime
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from bench_cli import command_env, cpu_name, fmt_s, loadavg, print_load  # noqa: E402
import torch_vae  # noqa: E402
import make_weights  # noqa: E402


def default_testdata():
    return os.environ.get("VAE_TESTDATA") or os.path.normpath(os.path.join(ROOT, "..", "shared", "testdata"))


# --------------------------------------------------------------------------
# Multiply-accumulate count from the architecture (batch 1)
# --------------------------------------------------------------------------

def _conv(cin, cout, k, h, w):
    return cin * cout * k * k * h * w


def _kl_resnet(cin, cout, h, w):
    m = _conv(cin, cout, 3, h, w) + _conv(cout, cout, 3, h, w)
    if cin != cout:
        m += _conv(cin, cout, 1, h, w)
    return m


def _kl_attention(c, h, w):
    n = h * w
    return 4 * n * c * c + 2 * n * n * c  # q,k,v,out linears + QK^T + PV


def _kl_mid(c, h, w, attn=True):
    return 2 * _kl_resnet(c, c, h, w) + (_kl_attention(c, h, w) if attn else 0)


def kl_macs(cfg, op, width, height):
    boc = cfg["block_out_channels"]
    lpb = cfg["layers_per_block"]
    lat = cfg["latent_channels"]
    attn = cfg.get("mid_block_add_attention", True)
    dboc = cfg.get("decoder_block_out_channels") or boc  # AutoencoderKLFlux2
    f = 2 ** (len(boc) - 1)
    m = 0
    if op == "encode":
        h, w = height, width
        m += _conv(cfg.get("in_channels", 3), boc[0], 3, h, w)
        cprev = boc[0]
        for i, c in enumerate(boc):
            for j in range(lpb):
                m += _kl_resnet(cprev if j == 0 else c, c, h, w)
            cprev = c
            if i != len(boc) - 1:  # F.pad(0,1,0,1) + 3x3 stride 2, no padding
                h, w = (h + 1 - 3) // 2 + 1, (w + 1 - 3) // 2 + 1
                m += _conv(c, c, 3, h, w)
        m += _kl_mid(boc[-1], h, w, attn)
        m += _conv(boc[-1], 2 * lat, 3, h, w)
        if cfg.get("use_quant_conv", True):
            m += _conv(2 * lat, 2 * lat, 1, h, w)
    else:
        h, w = height // f, width // f
        if cfg.get("use_post_quant_conv", True):
            m += _conv(lat, lat, 1, h, w)
        rev = list(reversed(dboc))
        m += _conv(lat, rev[0], 3, h, w)
        m += _kl_mid(rev[0], h, w, attn)
        cprev = rev[0]
        for i, c in enumerate(rev):
            for j in range(lpb + 1):
                m += _kl_resnet(cprev if j == 0 else c, c, h, w)
            cprev = c
            if i != len(rev) - 1:
                h, w = 2 * h, 2 * w
                m += _conv(c, c, 3, h, w)
        m += _conv(dboc[0], cfg.get("out_channels", 3), 3, h, w)
    return m


def _tiny_block(c, h, w, pool):
    m = 3 * _conv(c, c, 3, h, w)
    if pool:
        m += _conv(c, 4 * c, 1, h, w) + _conv(4 * c, c, 1, h, w)
    return m


def taesd_macs(lat, pool, op, width, height, in_ch=3, out_ch=3):
    """taesd.py Encoder/Decoder (== diffusers AutoencoderTiny defaults)."""
    m = 0
    if op == "encode":
        h, w = height, width
        m += _conv(in_ch, 64, 3, h, w) + _tiny_block(64, h, w, False)
        for level in range(3):
            h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
            m += _conv(64, 64, 3, h, w)
            m += 3 * _tiny_block(64, h, w, pool and level == 2)
        m += _conv(64, lat, 3, h, w)
    else:
        h, w = height // 8, width // 8
        m += _conv(lat, 64, 3, h, w)
        for level in range(3):
            m += 3 * _tiny_block(64, h, w, pool and level == 0)
            h, w = 2 * h, 2 * w
            m += _conv(64, 64, 3, h, w)
        m += _tiny_block(64, h, w, False) + _conv(64, out_ch, 3, h, w)
    return m


def macs(model_path, op, width, height):
    cfg = torch_vae.load_config(model_path)
    if cfg["_kind"] in ("kl", "flux2"):  # FLUX.2's patchify/normalisation: no MACs
        return kl_macs(cfg, op, width, height)
    if cfg["_kind"] == "tiny":
        return taesd_macs(cfg.get("latent_channels", 4), False, op, width, height)
    return taesd_macs(cfg["latent_channels"], cfg["use_midblock_gn"], op, width, height)


def macs_by_hooks(model_path, op, width, height):
    """Cross-check of macs(): count Conv2d/Linear/baddbmm/bmm work while
    actually running the peer (use small sizes)."""
    import torch
    import torch.nn as nn
    model = torch_vae.load_vae(model_path)
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += out.numel() * mod.in_features
        elif isinstance(mod, torch_vae.Attention):
            b, c, h, w = out.shape
            total[0] += 2 * b * (h * w) ** 2 * c

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear, torch_vae.Attention)):
            mod.register_forward_hook(hook)
    with torch.inference_mode():
        if op == "encode":
            model.encode(torch.zeros(1, 3, height, width))
        else:
            model.decode(torch.zeros(torch_vae.latent_shape(model, 1, width, height)))
    return total[0]


# --------------------------------------------------------------------------
# Running the two sides
# --------------------------------------------------------------------------

def parse_median(stdout):
    lines = [l.strip() for l in stdout.strip().splitlines() if l.strip()]
    if not lines or not lines[-1].startswith("median_s="):
        raise RuntimeError("last stdout line is not median_s=<seconds>: %r" % (lines[-1] if lines else ""))
    return float(lines[-1].split("=", 1)[1])


def run_cmd(cmd, threads, timeout, verbose):
    env = command_env(cmd, threads, verbose)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError("exit status %d from %s\n%s%s" % (p.returncode, cmd[0], p.stdout[-2000:], p.stderr[-2000:]))
    if verbose and p.stdout.strip():
        for l in p.stdout.strip().splitlines()[-3:]:
            print("    " + l, file=sys.stderr)
    return parse_median(p.stdout), p.stdout


def parse_size(s):
    s = s.strip().lower()
    if "x" in s:
        w, h = s.split("x", 1)
        return int(w), int(h)
    return int(s), int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="sd,taef2",
                    help="comma list: sd, flux2, taef2, or model paths (default sd,taef2)")
    ap.add_argument("--ops", default="encode,decode")
    ap.add_argument("--sizes", default="256x256,512x512", help="comma list of WxH (or N for NxN)")
    ap.add_argument("--runs", type=int, default=None,
                    help="timed runs per case, after one warm-up (default 3 for KL, 5 for tiny models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae-tool", default=os.path.join(ROOT, "build", "tools", "vae-tool"))
    ap.add_argument("--only-torch", action="store_true", help="skip vae-tool (e.g. before it exists)")
    ap.add_argument("--precision", default=None,
                    help="passed to vae-tool as --precision (e.g. bf16); torch stays fp32")
    ap.add_argument("--python", default=sys.executable, help="python running the torch peer")
    ap.add_argument("--testdata", default=default_testdata())
    ap.add_argument("--timeout", type=float, default=None, help="seconds per command")
    ap.add_argument("--check-macs", action="store_true",
                    help="cross-check the MAC formula against hooks on the peer at 64x64 and 96x64, then exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    verbose = not a.quiet

    models = []
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        if name == "sd":
            models.append(("sd-vae-random (KL, SD-size)", make_weights.DEFAULT_OUT, "sd-vae-random"))
        elif name == "flux2":
            models.append(("flux2-vae-random (KL FLUX.2, full-size)", make_weights.FLUX2_OUT, "flux2-vae-random"))
        elif name == "taef2":
            models.append(("taef2 (tiny)", os.path.join(a.testdata, "models", "taef2"), None))
        else:
            models.append((os.path.basename(os.path.normpath(name)), name, None))
    for label, path, generated in models:
        if generated:
            make_weights.ensure_weights(path, quiet=not verbose, model=generated)
        elif not os.path.exists(path):
            print(f"error: model {path} not found (test data at {a.testdata}?)", file=sys.stderr)
            return 2

    if a.check_macs:
        ok = True
        for label, path, _ in models:
            for op in ("encode", "decode"):
                for (w, h) in ((64, 64), (96, 64)):
                    x, y = macs(path, op, w, h), macs_by_hooks(path, op, w, h)
                    print(f"{label} {op} {w}x{h}: formula {x} hooks {y} {'ok' if x == y else 'MISMATCH'}")
                    ok &= x == y
        return 0 if ok else 1

    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    sizes = [parse_size(s) for s in a.sizes.split(",") if s.strip()]
    if not a.only_torch and not os.access(a.vae_tool, os.X_OK):
        print(f"error: {a.vae_tool} not found or not executable; build it or use --only-torch", file=sys.stderr)
        return 2
    peer = os.path.join(HERE, "torch_vae.py")

    rows = []
    t_start = time.perf_counter()
    load_start = loadavg()
    for label, path, _ in models:
        kind = torch_vae.model_kind(path)
        runs = a.runs if a.runs is not None else (3 if kind in ("kl", "flux2") else 5)
        for op in ops:
            for (w, h) in sizes:
                gmac = macs(path, op, w, h) / 1e9
                ours = torch_s = None
                if verbose:
                    print(f"== {label} {op} {w}x{h} runs={runs}", file=sys.stderr)
                if not a.only_torch:
                    cmd = [a.vae_tool, "bench", "--model", path, "--op", op, "--width", str(w), "--height", str(h),
                           "--batch", "1", "--runs", str(runs), "--backend", "cpu", "--threads", str(a.threads)]
                    if a.precision:
                        cmd += ["--precision", a.precision]
                    ours, out = run_cmd(cmd, a.threads, a.timeout, verbose)
                    m = re.search(r"gflop_per_batch=([0-9.]+)", out)
                    if m and abs(float(m.group(1)) - 2 * gmac) > 0.01 * 2 * gmac:
                        print(f"note: vae-tool counts {float(m.group(1)):.2f} GFLOP per batch, this script "
                              f"{2 * gmac:.2f} (GFLOP/s columns use the latter)", file=sys.stderr)
                cmd = [a.python, peer, "bench", "--model", path, "--op", op, "--width", str(w), "--height", str(h),
                       "--batch", "1", "--runs", str(runs), "--warmup", "1", "--threads", str(a.threads)]
                torch_s, _ = run_cmd(cmd, a.threads, a.timeout, verbose)
                rows.append((label, op, w, h, ours, torch_s, gmac))

    import torch
    prec = a.precision or "fp32"
    print()
    print(f"Benchmark {datetime.datetime.now().isoformat(timespec='seconds')}: {cpu_name()}, "
          f"{a.threads} threads (OMP_NUM_THREADS), batch 1; ours: vae-tool --backend cpu, {prec}"
          f"{' (not run)' if a.only_torch else ''}; torch {torch.__version__} fp32 peer (tests/bench/torch_vae.py; "
          f"convs via oneDNN, Linear/bmm via {torch_vae.torch_blas()}). "
          f"Seconds per batch (median of R after 1 warm-up); GFLOP/s = 2 x MACs / s.")
    print()
    print("| model | op | size | ours (s) | torch (s) | torch/ours | ours GFLOP/s | torch GFLOP/s | GMAC |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for label, op, w, h, ours, ts, gmac in rows:
        ratio = "%.2f" % (ts / ours) if ours else "n/a"
        og = "%.1f" % (2 * gmac / ours) if ours else "n/a"
        tg = "%.1f" % (2 * gmac / ts) if ts else "n/a"
        print(f"| {label} | {op} | {w}x{h} | {fmt_s(ours)} | {fmt_s(ts)} | {ratio} | {og} | {tg} | {gmac:.1f} |")
    print()
    print_load(t_start, load_start, ", rerun on an idle machine before drawing conclusions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
