#!/usr/bin/python3
"""Video speed benchmark: our C engine vs the PyTorch peers (torch_wan.py,
torch_taehv.py), same weights, same clip, same thread count.

For each model x op x clip (W x H x T, batch 1) it runs, each in its own
process, the peer's whole-clip encode (T frames) or decode (the latents of a
T-frame clip: Wan 1 + (T-1)//4, TAEHV ceil(T/4)) in float32 with
torch.set_num_threads(threads), one warm-up then the median of R runs, and
the C command (`--ours`, a template; default
  build/tools/vae-tool bench --model {model} --frames {frames} --width {width}
      --height {height} --op {op} --runs {runs} --threads {threads}
whose last stdout line must be median_s=<s>). A missing or failing C command
gives "n/a" in its columns, not an error. Peak RSS of each process is taken
from the kernel (wait4 ru_maxrss, via a small
launcher process, so it has a floor of about 12 MiB). GFLOP/s = 2 x MACs / s with MACs counted
analytically (wan_macs / taehv_macs: convs Cin*Cout*kt*kh*kw*Tout*Hout*Wout,
taps over zero or cached frames included; attention 4C^2N + 2N^2C per frame;
docs section 9 of ../shared/docs/video-architectures.md).

Models: wan2.1, wan2.2, taew2_1, taew2_2 = the real architectures with seeded
random weights (written once to tests/bench/weights/<name>-random[.safetensors],
gitignored, when the C side runs, so both load the same tensors), or a path
(Wan diffusers folder, original Wan .safetensors, TAEHV .safetensors).

Examples (2 threads; full-size Wan 2.1 at 256x256x9 takes ~15 s per encode):
  tests/bench/video_bench.py --models taew2_1 --clips 256x256x17
  tests/bench/video_bench.py --models wan2.1 --clips 256x256x9 --runs 1 --only-torch
  tests/bench/video_bench.py --models ../shared/testdata/models/wan21-mini --clips 64x64x9
  tests/bench/video_bench.py --check-macs     # MAC counter vs the doc's table and hooks
"""
import argparse
import datetime
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from bench_cli import command_env, cpu_name, fmt_s, loadavg, print_load  # noqa: E402
WEIGHTS = os.path.join(HERE, "weights")

WAN_NAMES = ("wan2.1", "wan2.2")
TAEHV_NAMES = ("taew2_1", "taew2_2")
DEFAULT_OURS = ("{root}/build/tools/vae-tool bench --model {model} --frames {frames} --width {width} "
                "--height {height} --op {op} --runs {runs} --threads {threads}")


# --------------------------------------------------------------------------
# Analytic MAC counts (batch 1)
# --------------------------------------------------------------------------

def wan_cfg(name_or_cfg):
    sys.path.insert(0, HERE)
    import torch_wan
    if isinstance(name_or_cfg, dict):
        cfg = dict(torch_wan.DEFAULTS)
        cfg.update({k: v for k, v in name_or_cfg.items() if v is not None or k in ("decoder_base_dim", "patch_size")})
        return cfg
    return dict(torch_wan.REAL_CONFIGS[name_or_cfg])


def _c3(cin, cout, t, h, w):
    return cin * cout * 27 * t * h * w


def _wan_res(cin, cout, t, h, w):
    m = _c3(cin, cout, t, h, w) + _c3(cout, cout, t, h, w)
    if cin != cout:
        m += cin * cout * t * h * w
    return m


def _wan_attn(c, t, h, w):
    n = h * w
    return t * (4 * c * c * n + 2 * n * n * c)


def _wan_mid(c, t, h, w):
    return 2 * _wan_res(c, c, t, h, w) + _wan_attn(c, t, h, w)


def wan_encoder_call(cfg, frames, first, width, height):
    """MACs of one encoder call on `frames` frames (first call: the stream
    start, where the stride-2 time convs are skipped), quant_conv included."""
    p = cfg.get("patch_size") or 1
    h, w, t = height // p, width // p, frames
    b, mult, nres = cfg["base_dim"], cfg["dim_mult"], cfg["num_res_blocks"]
    dims = [b * u for u in [1] + list(mult)]
    z2 = 2 * cfg["z_dim"]
    m = _c3(cfg["in_channels"], dims[0], t, h, w)
    for i in range(len(mult)):
        cin, cout = dims[i], dims[i + 1]
        for j in range(nres):
            m += _wan_res(cin if j == 0 else cout, cout, t, h, w)
        if i != len(mult) - 1:
            h, w = (h + 1 - 3) // 2 + 1, (w + 1 - 3) // 2 + 1  # ZeroPad2d(0,1,0,1) + 3x3 s2
            m += cout * cout * 9 * t * h * w
            if cfg["temperal_downsample"][i] and not first:
                t = (1 + t - 3) // 2 + 1  # [cached frame | t frames], kernel 3, stride 2
                m += cout * cout * 3 * t * h * w
    m += _wan_mid(dims[-1], t, h, w)
    m += _c3(dims[-1], z2, t, h, w)
    m += z2 * z2 * t * h * w
    return m


def wan_decoder_call(cfg, latents, first, width, height):
    """MACs of one decoder call on `latents` latent frames, post_quant_conv included."""
    f = cfg["scale_factor_spatial"]
    p = cfg.get("patch_size") or 1
    h, w, t = height // f, width // f, latents
    mult, nres, res = list(cfg["dim_mult"]), cfg["num_res_blocks"], cfg["is_residual"]
    bd = cfg.get("decoder_base_dim") or cfg["base_dim"]
    dims = [bd * u for u in [mult[-1]] + mult[::-1]]
    z = cfg["z_dim"]
    up_t = list(cfg["temperal_downsample"])[::-1]
    m = z * z * t * h * w
    m += _c3(z, dims[0], t, h, w)
    m += _wan_mid(dims[0], t, h, w)
    for i in range(len(mult)):
        cin, cout = dims[i], dims[i + 1]
        if i > 0 and not res:
            cin //= 2
        for j in range(nres + 1):
            m += _wan_res(cin if j == 0 else cout, cout, t, h, w)
        if i != len(mult) - 1:
            if up_t[i] and not first:
                m += cout * 2 * cout * 3 * t * h * w  # time conv C->2C (zero or cached history)
                t *= 2
            h, w = 2 * h, 2 * w
            m += cout * (cout if res else cout // 2) * 9 * t * h * w
    m += _c3(dims[-1], cfg["out_channels"], t, h, w)
    return m


def wan_macs(cfg, op, width, height, frames):
    """Whole clip as diffusers runs it: encode = frame 0, then chunks of 4
    (the last (T-1) % 4 frames unused); decode = one latent per call."""
    n = 1 + (frames - 1) // 4
    if op == "encode":
        return wan_encoder_call(cfg, 1, True, width, height) + \
            (n - 1) * wan_encoder_call(cfg, 4, False, width, height)
    return wan_decoder_call(cfg, 1, True, width, height) + (n - 1) * wan_decoder_call(cfg, 1, False, width, height)


def wan_macs_per_frame(cfg, op, width, height):
    """Steady state (doc section 9): encoder 4-frame call / 4, decoder 1-latent call / 4."""
    if op == "encode":
        return wan_encoder_call(cfg, 4, False, width, height) / 4
    return wan_decoder_call(cfg, 1, False, width, height) / 4


def taehv_cfg(name_or_cfg):
    sys.path.insert(0, HERE)
    import torch_taehv
    if isinstance(name_or_cfg, dict):
        return name_or_cfg
    return dict(torch_taehv.REAL_CONFIGS[name_or_cfg])


def _mem(c, t, h, w):
    return (2 * c * c * 9 + 2 * c * c * 9) * t * h * w


def taehv_encoder(cfg, frames, width, height):
    p = cfg["patch_size"]
    h, w = height // p, width // p
    tf = 1
    for s in cfg["pool_strides"]:
        tf *= s
    t = -(-frames // tf) * tf  # padded with the last frame
    m = 3 * p * p * 64 * 9 * t * h * w
    for s in cfg["pool_strides"]:
        t //= s
        m += 64 * s * 64 * t * h * w  # TPool 1x1
        h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
        m += 64 * 64 * 9 * t * h * w  # conv stride 2
        m += 3 * _mem(64, t, h, w)
    m += 64 * cfg["latent_channels"] * 9 * t * h * w
    return m


def taehv_decoder(cfg, latents, width, height):
    p = cfg["patch_size"]
    h, w, t = height // (8 * p), width // (8 * p), latents
    n_f = [256, 128, 64, 64]
    m = cfg["latent_channels"] * n_f[0] * 9 * t * h * w
    for i, g in enumerate(cfg["grow_strides"]):
        c = n_f[i]
        m += 3 * _mem(c, t, h, w)
        h, w = 2 * h, 2 * w
        m += c * c * g * t * h * w  # TGrow 1x1 C -> g*C
        t *= g
        m += c * n_f[i + 1] * 9 * t * h * w
    m += 64 * 3 * p * p * 9 * t * h * w
    return m


def taehv_macs(cfg, op, width, height, frames):
    tf = 1
    for s in cfg["pool_strides"]:
        tf *= s
    if op == "encode":
        return taehv_encoder(cfg, frames, width, height)
    return taehv_decoder(cfg, -(-frames // tf), width, height)


def taehv_macs_per_frame(cfg, op, width, height):
    if op == "encode":
        return taehv_encoder(cfg, 4, width, height) / 4
    return taehv_decoder(cfg, 1, width, height) / 4


def macs_by_hooks(kind, model, op, width, height, frames):
    """Count Conv2d/Conv3d work and attention matmuls while running the peer."""
    import torch
    import torch.nn as nn
    import torch_wan
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, (nn.Conv2d, nn.Conv3d)):
            k = 1
            for s in mod.kernel_size:
                k *= s
            total[0] += out.numel() * mod.in_channels // mod.groups * k
        elif isinstance(mod, torch_wan.WanAttentionBlock):
            b, c, t, h, w = out.shape
            total[0] += b * t * 2 * (h * w) ** 2 * c

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Conv3d, torch_wan.WanAttentionBlock))]
    with torch.no_grad():
        if kind == "wan":
            if op == "encode":
                model.encode(torch.zeros(1, 3, frames, height, width))
            else:
                model.decode(torch.zeros(model.latent_shape(1, frames, width, height)))
        else:
            if op == "encode":
                model.encode(torch.zeros(1, frames, 3, height, width))
            else:
                model.decode(torch.zeros(model.latent_shape(1, frames, width, height)))
    for h in hs:
        h.remove()
    return total[0]


# table of doc section 9: GMAC per frame, steady state
DOC_TABLE = [
    ("wan2.1", 832, 480, 1006, 1694), ("wan2.1", 1280, 720, 2345, 3931),
    ("wan2.2", 832, 480, 698, 3674), ("wan2.2", 1280, 720, 1613, 8483), ("wan2.2", 1280, 704, 1577, 8294),
    ("taew2_1", 832, 480, 30.2, 68.0), ("taew2_1", 1280, 720, 69.8, 157.0),
    ("taew2_2", 832, 480, 8.1, 17.6), ("taew2_2", 1280, 720, 18.7, 40.5),
]


def check_macs(testdata, threads):
    ok = True
    print("MAC counter vs docs/video-architectures.md section 9 (GMAC per frame, steady state):")
    for name, w, h, enc, dec in DOC_TABLE:
        if name in WAN_NAMES:
            c = wan_cfg(name)
            e, d = wan_macs_per_frame(c, "encode", w, h) / 1e9, wan_macs_per_frame(c, "decode", w, h) / 1e9
        else:
            c = taehv_cfg(name)
            e, d = taehv_macs_per_frame(c, "encode", w, h) / 1e9, taehv_macs_per_frame(c, "decode", w, h) / 1e9
        # the table rounds to 4 significant digits (3 for the tiny models)
        good = abs(e - enc) <= 0.0006 * enc + 0.051 and abs(d - dec) <= 0.0006 * dec + 0.051
        ok &= good
        print(f"  {name:8s} {w}x{h}: enc {e:8.2f} (doc {enc}) dec {d:8.2f} (doc {dec})  {'ok' if good else 'MISMATCH'}")
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, HERE)
    import torch_taehv
    import torch_wan
    print("MAC counter vs forward hooks on the peers (whole clip, as run):")
    mdir = os.path.join(testdata, "models")
    cases = []
    for nm in ("wan21-mini", "wan22-mini"):
        p = os.path.join(mdir, nm)
        if os.path.isdir(p):
            cases.append(("wan", nm, torch_wan.load_wan(p)))
    for nm in ("taew2_1-random", "taew2_2-random"):
        p = os.path.join(mdir, nm + ".safetensors")
        if os.path.isfile(p):
            cases.append(("taehv", nm, torch_taehv.load_taehv(p)))
    if not cases:
        print(f"  SKIP: no mini models under {mdir}")
    for kind, nm, model in cases:
        for op in ("encode", "decode"):
            for (w, h, t) in ((64, 64, 1), (64, 32, 9), (96, 64, 7)):
                if kind == "wan":
                    x = wan_macs(model.config, op, w, h, t)
                else:
                    x = taehv_macs(dict(patch_size=model.patch_size, latent_channels=model.latent_channels,
                                        pool_strides=model.pool_strides, grow_strides=model.grow_strides),
                                   op, w, h, t)
                y = macs_by_hooks(kind, model, op, w, h, t)
                ok &= x == y
                print(f"  {nm:15s} {op} {w}x{h}x{t}: formula {x} hooks {y} {'ok' if x == y else 'MISMATCH'}")
    return ok


# --------------------------------------------------------------------------
# Running the two sides
# --------------------------------------------------------------------------

def model_kind(model):
    if model in WAN_NAMES:
        return "wan"
    if model in TAEHV_NAMES:
        return "taehv"
    if os.path.isdir(model):
        return "wan"
    sys.path.insert(0, HERE)
    from torch_vae import read_safetensors_header
    _, hdr = read_safetensors_header(model)
    if "encoder.0.weight" in hdr:
        return "taehv"
    return "wan"


def model_macs(model, kind, op, w, h, t):
    sys.path.insert(0, HERE)
    if kind == "wan":
        if model in WAN_NAMES:
            cfg = wan_cfg(model)
        else:
            import torch_wan
            cfg = torch_wan.load_wan(model).config
        return wan_macs(cfg, op, w, h, t)
    if model in TAEHV_NAMES:
        cfg = taehv_cfg(model)
    else:
        import torch_taehv
        from torch_vae import load_safetensors
        cfg = torch_taehv.config_from_state(load_safetensors(model)[0])
    return taehv_macs(cfg, op, w, h, t)


def ensure_weights(name, seed, verbose):
    """Write a real config with random weights once (for the C side)."""
    os.makedirs(WEIGHTS, exist_ok=True)
    if name in WAN_NAMES:
        out = os.path.join(WEIGHTS, f"{name}-random")
        if not os.path.isfile(os.path.join(out, "diffusion_pytorch_model.safetensors")):
            if verbose:
                print(f"writing {out} (seed {seed})", file=sys.stderr)
            subprocess.run([sys.executable, os.path.join(HERE, "torch_wan.py"), "write", "--config", name,
                            "--out", out, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
        return out
    out = os.path.join(WEIGHTS, f"{name}-random.safetensors")
    if not os.path.isfile(out):
        if verbose:
            print(f"writing {out} (seed {seed})", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(HERE, "torch_taehv.py"), "write", "--config", name,
                        "--out", out, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    return out


def _measure_main(argv):
    """`video_bench.py --_measure RSSFILE -- CMD...`: run CMD as a child of
    this small process, write its peak RSS (KiB, wait4) to RSSFILE and exit
    with its status. The hop matters: a child forked straight from the driver
    (which has torch loaded) inherits the driver's RSS into ru_maxrss."""
    rssfile, cmd = argv[0], argv[2:]
    try:
        p = subprocess.Popen(cmd)
    except OSError as e:
        print(f"{cmd[0]}: {e}", file=sys.stderr)
        return 127
    _, status, ru = os.wait4(p.pid, 0)
    with open(rssfile, "w") as f:
        f.write(str(ru.ru_maxrss))
    return os.waitstatus_to_exitcode(status)


def run_with_rusage(cmd, threads, timeout, verbose):
    """Run cmd; return (median_s or None, peak RSS MiB of cmd (wait4), stdout, error or None)."""
    import tempfile
    env = command_env(cmd, threads, verbose)
    fd, rssfile = tempfile.mkstemp(prefix="video_bench_rss_")
    os.close(fd)
    wrapped = [sys.executable, "-S", os.path.abspath(__file__), "--_measure", rssfile, "--"] + list(cmd)
    try:
        p = subprocess.run(wrapped, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=timeout)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired:
        os.unlink(rssfile)
        return None, None, "", "timeout"
    try:
        with open(rssfile) as f:
            txt = f.read().strip()
        rss = int(txt) / 1024.0 if txt else None
    finally:
        os.unlink(rssfile)
    if rc != 0:
        return None, rss, out, f"exit status {rc}: {(out[-500:] + err[-1500:]).strip()}"
    lines = [l.strip() for l in out.strip().splitlines() if l.strip()]
    if not lines or not lines[-1].startswith("median_s="):
        return None, rss, out, "last stdout line is not median_s=<s>"
    if verbose:
        for l in lines[-3:]:
            print("    " + l, file=sys.stderr)
    return float(lines[-1].split("=", 1)[1]), rss, out, None


def parse_clip(s):
    parts = [int(v) for v in s.lower().split("x")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"clip {s!r}: want WxHxT")
    return tuple(parts)


def fmt_mib(x):
    return "n/a" if x is None else "%.0f" % x


def default_testdata():
    if os.environ.get("VAE_TESTDATA"):
        return os.environ["VAE_TESTDATA"]
    d = ROOT
    while os.path.dirname(d) != d:
        d = os.path.dirname(d)
        if os.path.isdir(os.path.join(d, "shared", "testdata")):
            return os.path.join(d, "shared", "testdata")
    return os.path.normpath(os.path.join(ROOT, "..", "shared", "testdata"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="taew2_1", help="comma list: wan2.1, wan2.2, taew2_1, taew2_2 or paths")
    ap.add_argument("--config", default=None, help="one of wan2.1|wan2.2|taew2_1|taew2_2 (same as --models NAME)")
    ap.add_argument("--model", default=None, help="one model path (same as --models PATH)")
    ap.add_argument("--ops", default="encode,decode")
    ap.add_argument("--clips", default="256x256x9", help="comma list of WxHxT (pixel frames)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each row N times, ours and the peer alternating (each round one process of "
                         "each); times are the medians over rounds and torch/ours the median of the rounds' "
                         "paired ratios, with their range")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights of named configs")
    ap.add_argument("--ours", default=DEFAULT_OURS,
                    help="C command template; {model} {frames} {width} {height} {op} {direction} {runs} "
                         "{threads} {root} are substituted (default: %(default)s)")
    ap.add_argument("--only-torch", action="store_true", help="do not run the C command")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per command")
    ap.add_argument("--testdata", default=default_testdata())
    ap.add_argument("--check-macs", action="store_true",
                    help="check the MAC counter against the doc's table and hooks on the peers, then exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    verbose = not a.quiet
    if a.check_macs:
        return 0 if check_macs(a.testdata, a.threads) else 1

    names = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.config or a.model:
        names = [n for n in (a.config, a.model) if n]
    if a.width or a.height or a.frames:
        if not (a.width and a.height and a.frames):
            ap.error("--width, --height and --frames go together")
        clips = [(a.width, a.height, a.frames)]
    else:
        clips = [parse_clip(s) for s in a.clips.split(",") if s.strip()]
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]

    rows = []
    t_start = time.perf_counter()
    load0 = loadavg()
    for name in names:
        kind = model_kind(name)
        peer = os.path.join(HERE, "torch_wan.py" if kind == "wan" else "torch_taehv.py")
        c_model = name
        peer_model = name
        if name in WAN_NAMES + TAEHV_NAMES and not a.only_torch:
            c_model = ensure_weights(name, a.seed, verbose)
            peer_model = c_model  # both sides load the very same tensors
        label = f"{name} (random)" if name in WAN_NAMES + TAEHV_NAMES else os.path.basename(os.path.normpath(name))
        for op in ops:
            for (w, h, t) in clips:
                gmac = model_macs(name, kind, op, w, h, t) / 1e9
                if verbose:
                    print(f"== {label} {op} {w}x{h}x{t} runs={a.runs} ({gmac:.1f} GMAC)", file=sys.stderr)
                # Rounds alternate the two sides, so that both see the same
                # drift of this shared host's speed (up to 1.5x from one
                # minute to the next): each round's ratio compares
                # neighbours in time.
                fields = dict(model=shlex.quote(c_model), frames=t, width=w, height=h, op=op, direction=op,
                              runs=a.runs, threads=a.threads, root=shlex.quote(ROOT))
                ours_cmd = shlex.split(a.ours.format(**fields))
                peer_cmd = [a.python, peer, "bench", "--model", peer_model, "--op", op, "--width", str(w),
                            "--height", str(h), "--frames", str(t), "--runs", str(a.runs), "--warmup", str(a.warmup),
                            "--threads", str(a.threads), "--seed", str(a.seed)]
                ours_l, ts_l, ours_rss, ts_rss, c_ok = [], [], None, None, not a.only_torch
                for rnd in range(a.rounds):
                    ours = None
                    if c_ok:
                        ours, rss, _, err = run_with_rusage(ours_cmd, a.threads, a.timeout, verbose)
                        if err:
                            print(f"note: C side n/a for {label} {op} {w}x{h}x{t}: {err.splitlines()[0]}",
                                  file=sys.stderr)
                            ours, c_ok = None, False
                        else:
                            ours_rss = max(ours_rss or 0, rss or 0) or None
                    ts, rss, _, err = run_with_rusage(peer_cmd, a.threads, a.timeout, verbose)
                    if err:
                        print(f"error: torch peer failed for {label} {op} {w}x{h}x{t}: {err}", file=sys.stderr)
                        ts_l = None
                        break
                    ts_rss = max(ts_rss or 0, rss or 0) or None
                    ts_l.append(ts)
                    if ours is not None:
                        ours_l.append(ours)
                    if verbose and a.rounds > 1:
                        print(f"   round {rnd + 1}: ours {fmt_s(ours)} s, torch {fmt_s(ts)} s", file=sys.stderr)
                if not c_ok:
                    ours_l, ours_rss = [], None
                rows.append((label, op, w, h, t, ours_l, ts_l, gmac, ours_rss, ts_rss))

    import torch
    print()
    print(f"Video benchmark {datetime.datetime.now().isoformat(timespec='seconds')}: {cpu_name()}, "
          f"{a.threads} threads, batch 1, whole clip; ours: {'not run' if a.only_torch else os.path.basename(a.ours.split()[0])}; "
          f"torch {torch.__version__} fp32 peers (tests/bench/torch_wan.py: diffusers-style chunked encode, "
          f"per-latent decode; torch_taehv.py: parallel mode). Seconds per clip (median of {a.runs} after "
          f"{a.warmup} warm-up" + (f"; median of {a.rounds} rounds alternating ours and torch, torch/ours the "
          f"median of the paired ratios (range)" if a.rounds > 1 else "") +
          "); GFLOP/s = 2 x MACs / s; peak RSS of each process (MiB).")
    print()
    print("| model | op | clip WxHxT | ours (s) | torch (s) | torch/ours | ours GFLOP/s | torch GFLOP/s | GMAC "
          "| ours RSS | torch RSS |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, op, w, h, t, ours_l, ts_l, gmac, ors, trs in rows:
        ours = statistics.median(ours_l) if ours_l else None
        ts = statistics.median(ts_l) if ts_l else None
        ratio = "n/a"
        if ours_l and ts_l:
            pairs = [b / o for o, b in zip(ours_l, ts_l)]
            ratio = "%.2f" % statistics.median(pairs)
            if len(pairs) > 1:
                ratio += " (%.2f-%.2f)" % (min(pairs), max(pairs))
        og = "%.1f" % (2 * gmac / ours) if ours else "n/a"
        tg = "%.1f" % (2 * gmac / ts) if ts else "n/a"
        print(f"| {label} | {op} | {w}x{h}x{t} | {fmt_s(ours)} | {fmt_s(ts)} | {ratio} | {og} | {tg} | {gmac:.1f} "
              f"| {fmt_mib(ors)} | {fmt_mib(trs)} |")
    print()
    print_load(t_start, load0)
    return 0 if all(r[6] for r in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--_measure":
        sys.exit(_measure_main(sys.argv[2:]))
    sys.exit(main())
