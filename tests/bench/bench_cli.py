"""Command-line scaffolding the benchmark scripts share, written once here
rather than in each of them:

- the video peers (torch_wan.py, torch_taehv.py): their `bench` and `write`
  commands, i.e. the arguments, the thread count, the timed runs and the
  result lines (the last one median_s=<s>, as `vae-tool bench` prints);
- the drivers (bench.py, video_bench.py): a timed command's environment,
  the CPU's name, seconds in the tables and the closing wall time / load
  average lines.

Only the standard library at import time: video_bench.py's --_measure hop
runs `python -S` and must stay small; torch is imported where it is used.
"""
import argparse
import os
import platform
import resource
import shlex
import statistics
import sys
import time


# --------------------------------------------------------------------------
# The video peers
# --------------------------------------------------------------------------

def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_runs(fn, x, runs, warmup):
    """fn(x) `warmup` times, then `runs` timed times; returns (seconds of each
    timed run, the last output). The last output is dropped before each call,
    so that two are never held at once."""
    import torch
    times = []
    y = None
    with torch.inference_mode():
        for _ in range(warmup):
            y = None
            y = fn(x)
        for _ in range(runs):
            y = None
            t0 = time.perf_counter()
            y = fn(x)
            times.append(time.perf_counter() - t0)
    if not torch.isfinite(y).all():
        print("warning: non-finite output", file=sys.stderr)
    return times, y


def bench_clip(model, op, width, height, frames, runs, warmup, clip_input, seed=0):
    """Times OP on a seeded random clip of batch 1: clip_input(model, op,
    width, height, frames, generator) gives the input (pixels to encode,
    latents to decode) and the call to time. Returns (seconds of each run,
    output shape)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    x, fn = clip_input(model, op, width, height, frames, g)
    times, y = time_runs(fn, x, runs, warmup)
    return times, tuple(y.shape)


def peer_main(argv, doc, configs, load, write, clip_input, model_help, write_help, bench_help=None,
              frames_help=None):
    """The command line of a video peer:
      bench --model M --op encode|decode --width W --height H --frames T
            [--runs 3] [--warmup 1] [--threads 2] [--seed 0]
        load(M, seed=...) with torch.set_num_threads(threads), then
        bench_clip(model, ..., clip_input); prints torch=... threads=...
        out_shape=... runs_s=..., peak_rss_mib=... and median_s=... last;
      write --config one of CONFIGS --out PATH [--seed 0]
        write(config, seed, out), then prints PATH."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    # A sub-command given help=None is still listed in --help: leave it out.
    b = sub.add_parser("bench", **({"help": bench_help} if bench_help else {}))
    b.add_argument("--model", required=True, help=model_help)
    b.add_argument("--op", choices=["encode", "decode"], required=True)
    b.add_argument("--width", type=int, required=True)
    b.add_argument("--height", type=int, required=True)
    b.add_argument("--frames", type=int, required=True, help=frames_help)
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--seed", type=int, default=0)
    w = sub.add_parser("write", help=write_help)
    w.add_argument("--config", choices=sorted(configs), required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "write":
        write(a.config, a.seed, a.out)
        print(a.out)
        return 0
    import torch
    torch.set_num_threads(a.threads)
    model = load(a.model, seed=a.seed)
    times, shape = bench_clip(model, a.op, a.width, a.height, a.frames, a.runs, a.warmup, clip_input)
    print("torch=%s threads=%d out_shape=%s runs_s=%s" % (torch.__version__, torch.get_num_threads(),
                                                          "x".join(map(str, shape)),
                                                          ",".join("%.4f" % t for t in times)))
    print("peak_rss_mib=%.1f" % peak_rss_mib())
    print("median_s=%.6f" % statistics.median(times))
    return 0


# --------------------------------------------------------------------------
# The drivers
# --------------------------------------------------------------------------

def command_env(cmd, threads, verbose):
    """The environment to time CMD in: ours with OMP_NUM_THREADS=threads.
    Says the command on stderr when VERBOSE."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    if verbose:
        print("+ OMP_NUM_THREADS=%d %s" % (threads, " ".join(shlex.quote(c) for c in cmd)), file=sys.stderr)
    return env


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def fmt_s(x):
    if x is None:
        return "n/a"
    return "%.3f" % x if x < 10 else "%.2f" % x


def print_load(t_start, load_start, busy_advice=""):
    """The closing lines: the wall time since T_START (time.perf_counter),
    the 1-min load average then (LOAD_START) and now, and a warning (plus
    BUSY_ADVICE) when other work was running: timings are not to be trusted
    then."""
    load_end = loadavg()
    ncpu = os.cpu_count() or 1
    print(f"total wall time {time.perf_counter() - t_start:.0f} s; 1-min load average {load_start:.2f} at start, "
          f"{load_end:.2f} at end ({ncpu} CPUs)")
    if max(load_start, load_end) > ncpu + 0.5:
        print(f"WARNING: the machine was busy with other work (load > {ncpu}); timings are inflated and noisy"
              f"{busy_advice}")
