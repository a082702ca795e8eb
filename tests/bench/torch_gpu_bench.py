#!/usr/bin/env python3
"""GPU benchmark helper for tests/device/run.sh: the PyTorch peer on the GPU,
and the markdown table that sets it beside `vae-tool bench --backend cuda`.

Cases come from a tab-separated file (written by run.sh), one per line:
  id  label  model_path  op  width  height  batch  runs
('#' lines are comments).

  torch_gpu_bench.py torch --cases FILE --out TSV [--meta JSON]
        [--device cuda] [--dtype float16] [--channels-last]
        [--modes default,benchmark] [--deadline-s S]
    Runs every case in one process with the torch.nn peer of torch_vae.py
    (modules as diffusers builds them; fp16, channels_last, attention
    through F.scaled_dot_product_attention as AttnProcessor2_0 does), each
    after warm-up, timed with CUDA events, peak memory from
    torch.cuda.max_memory_allocated (reset before each case). Mode
    `default` leaves torch.backends.cudnn.benchmark at PyTorch's default
    (False); mode `benchmark` sets it True (cuDNN autotuning; its warm-up
    includes the tuning). A failing case (e.g. out of memory) is recorded
    and the rest go on. Cases not started by the deadline are recorded as
    skipped.

  torch_gpu_bench.py table --cases FILE --ours-dir DIR --torch TSV
        [--meta JSON] [--ours-desc TEXT]
    Parses DIR/<id>.out (the output of `vae-tool bench`, last line
    median_s=; GPU engines also print device_ms= and device_peak_mib=) and
    DIR/<id>.rc, and prints the markdown table. Exit status 1 when any case
    of ours or of torch's default mode did not produce a number.

  torch_gpu_bench.py selftest
    Checks the vae-tool output parser on canned output.
"""
import argparse
import copy
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TORCH_FIELDS = ["id", "mode", "status", "median_ms", "min_ms", "peak_mib", "reserved_mib", "finite", "runs_ms"]


def read_cases(path):
    cases = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            p = line.split("\t")
            if len(p) != 8:
                raise ValueError(f"{path}: bad case line {line!r} (want 8 tab-separated fields)")
            cases.append({"id": p[0], "label": p[1], "model": p[2], "op": p[3], "width": int(p[4]),
                          "height": int(p[5]), "batch": int(p[6]), "runs": int(p[7])})
    return cases


# --------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------

def cmd_torch(a):
    import torch
    import torch_vae

    cases = read_cases(a.cases)
    device = a.device
    dtype = torch_vae.parse_dtype(a.dtype)
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: torch sees no CUDA device", file=sys.stderr)
        return 2
    sdpa = torch_vae.has_sdpa()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    deadline = time.monotonic() + a.deadline_s if a.deadline_s > 0 else None
    default_benchmark = torch.backends.cudnn.benchmark

    meta = {"torch": torch.__version__, "device": device, "dtype": str(dtype).replace("torch.", ""),
            "channels_last": a.channels_last, "sdpa": sdpa, "cudnn_benchmark_default": default_benchmark}
    if cuda:
        p = torch.cuda.get_device_properties(0)
        meta.update({"gpu": torch.cuda.get_device_name(0), "gpu_mem_mib": p.total_memory // 2 ** 20,
                     "sms": p.multi_processor_count, "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version()})
    else:
        meta["gpu"] = "none (CPU fallback: %s)" % device
    if not sdpa:
        print("note: this torch has no F.scaled_dot_product_attention; attention runs the 1.x "
              "AttnProcessor path", file=sys.stderr)
    if a.meta:
        with open(a.meta, "w") as f:
            json.dump(meta, f, indent=1)
    print("torch peer: " + ", ".join("%s=%s" % kv for kv in meta.items()), file=sys.stderr)

    rows = []

    def emit(row):
        rows.append(row)
        with open(a.out, "w") as f:  # rewritten after every case: a kill leaves what was done
            f.write("\t".join(TORCH_FIELDS) + "\n")
            for r in rows:
                f.write("\t".join(str(r.get(k, "")) for k in TORCH_FIELDS) + "\n")

    # modes outside, cases inside: every default-mode number (the table's
    # main torch column) comes before any cudnn.benchmark=True one
    cpu_models = {}  # path -> the float32 CPU module, loaded once
    model, model_path = None, None
    for mode in modes:
        for c in cases:
            row = {"id": c["id"], "mode": mode}
            if deadline is not None and time.monotonic() > deadline:
                row["status"] = "skipped(time budget)"
                emit(row)
                print(f"[torch] {c['id']} {mode}: skipped (time budget)", file=sys.stderr)
                continue
            t0 = time.monotonic()
            try:
                if model_path != c["model"]:
                    # one model on the device at a time: its weights count in the peak
                    model, model_path = None, None
                    if cuda:
                        torch.cuda.empty_cache()
                    if c["model"] not in cpu_models:
                        cpu_models[c["model"]] = torch_vae.load_vae(c["model"])
                    model = torch_vae.to_device(copy.deepcopy(cpu_models[c["model"]]), device, dtype,
                                                a.channels_last, sdpa)
                    model_path = c["model"]
                torch.backends.cudnn.benchmark = (mode == "benchmark") or (mode == "default" and default_benchmark)
                big = c["width"] * c["height"] * c["batch"] > 512 * 512 * 8
                r = torch_vae.bench_device(model, c["op"], c["width"], c["height"], c["batch"], c["runs"],
                                           1 if big else 2, device, dtype, a.channels_last)
                t = r["times_ms"]
                row.update({"status": "ok", "median_ms": "%.4f" % statistics.median(t), "min_ms": "%.4f" % min(t),
                            "peak_mib": "" if r["peak_mib"] is None else "%.1f" % r["peak_mib"],
                            "reserved_mib": "" if r["reserved_mib"] is None else "%.1f" % r["reserved_mib"],
                            "finite": int(r["finite"]), "runs_ms": ",".join("%.3f" % x for x in t)})
            except Exception as e:  # out of memory or anything else: record, go on
                msg = re.sub(r"\s+", " ", "%s: %s" % (type(e).__name__, e))[:300]
                row["status"] = "error(%s)" % msg
                if cuda:
                    torch.cuda.empty_cache()
            finally:
                torch.backends.cudnn.benchmark = default_benchmark
            emit(row)
            print(f"[torch] {c['id']} {mode}: {row['status']} median_ms={row.get('median_ms', '-')} "
                  f"peak_mib={row.get('peak_mib', '-')} runs_ms={row.get('runs_ms', '-')} "
                  f"({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    if not rows:
        emit({"id": "-", "mode": "-", "status": "no cases"})
    return 0


# --------------------------------------------------------------------------
# ours: parse `vae-tool bench` output
# --------------------------------------------------------------------------

def parse_ours(text, rc):
    """{'status', 'median_s', 'device_ms', 'peak_mib', 'gflop'} from vae-tool bench output."""
    r = {"status": "ok", "median_s": None, "device_ms": None, "peak_mib": None, "gflop": None}
    m = re.search(r"gflop_per_batch=([0-9.]+)", text)
    if m:
        r["gflop"] = float(m.group(1))
    m = re.search(r"^device_ms=([0-9.]+)", text, re.M)
    if m:
        r["device_ms"] = float(m.group(1))
    m = re.search(r"^device_peak_mib=([0-9.]+)", text, re.M)
    if m:
        r["peak_mib"] = float(m.group(1))
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    if lines and lines[-1].startswith("median_s="):
        r["median_s"] = float(lines[-1].split("=", 1)[1])
    if rc != 0 or r["median_s"] is None:
        why = "exit %s" % rc
        if rc in (124, 137):
            why = "timed out"
        last = lines[-1] if lines else ""
        if "out of memory" in text.lower():
            why += ", out of memory"
        r["status"] = "FAILED(%s: %s)" % (why, last[:160].replace("|", "/"))
    return r


def cmd_selftest(a):
    sample = ("bench: model=sd op=encode size=512x512 (run at 512x512) batch=8 backend=cuda threads=0 "
              "precision=f16 gflop_per_batch=8963.200\nwarm-up: 0.2 s\nrun 1/3: 0.0400 s (1.0 GFLOP/s)\n"
              "gflop_per_s=224080.0 (median; 8963.200 GFLOP per batch, 0.005 s per frame)\n"
              "device_ms=31.250 (median per batch, 3.906 ms per frame)\ndevice_peak_mib=2048.5\nmedian_s=0.040000\n")
    r = parse_ours(sample, 0)
    ok = (r["status"] == "ok" and r["gflop"] == 8963.2 and r["device_ms"] == 31.25 and r["peak_mib"] == 2048.5
          and r["median_s"] == 0.04)
    f = parse_ours("error: cuda: out of memory allocating 9 GiB\n", 1)
    ok &= f["status"].startswith("FAILED(exit 1, out of memory") and f["median_s"] is None
    t = parse_ours("bench: ...\nrun 1/3: 1 s\n", 124)
    ok &= t["status"].startswith("FAILED(timed out")
    print("parse_ours selftest:", "ok" if ok else "FAILED", r, f, t)
    return 0 if ok else 1


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------

def read_torch(path):
    out = {}
    if not path or not os.path.isfile(path):
        return out
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            p = line.rstrip("\n").split("\t")
            row = dict(zip(header, p))
            out[(row.get("id"), row.get("mode"))] = row
    return out


def flops_per_batch(c):
    """2 x MACs from tests/bench/bench.py's architecture count (fallback when
    vae-tool printed no gflop_per_batch)."""
    try:
        import bench
        return 2.0 * bench.macs(c["model"], c["op"], c["width"], c["height"]) * c["batch"] / 1e9
    except Exception as e:  # noqa: BLE001 - the table must still print
        print(f"note: MAC count for {c['id']} failed: {e}", file=sys.stderr)
        return None


def f1(x, fmt="%.2f"):
    return "n/a" if x is None else fmt % x


def cmd_table(a):
    cases = read_cases(a.cases)
    torch_rows = read_torch(a.torch)
    meta = {}
    if a.meta and os.path.isfile(a.meta):
        with open(a.meta) as f:
            meta = json.load(f)
    bad = []
    lines = []
    lines.append("GPU: %s (%s MiB, %s SMs); torch %s, CUDA %s, cuDNN %s; torch peer %s, channels_last=%s, "
                 "attention %s." % (meta.get("gpu", "?"), meta.get("gpu_mem_mib", "?"), meta.get("sms", "?"),
                                    meta.get("torch", "?"), meta.get("cuda", "?"), meta.get("cudnn", "?"),
                                    meta.get("dtype", "?"), meta.get("channels_last", "?"),
                                    "F.scaled_dot_product_attention" if meta.get("sdpa") else "baddbmm/softmax/bmm"))
    lines.append("Ours: %s. ms/frame = median per batch / batch. ours device = CUDA-event time inside the engine "
                 "(no host<->device copies); ours wall = vae-tool's median_s (host copies and conversion "
                 "included). torch = CUDA events around encode/decode after warm-up; 'torch' is "
                 "cudnn.benchmark=False (PyTorch's default), 'torch bm' is cudnn.benchmark=True. torch/ours = "
                 "torch ms / ours device ms. Peaks: ours = engine's device_peak_mib, torch = "
                 "max_memory_allocated (cudnn.benchmark=False; weights of the whole model included). "
                 "TFLOP/frame = 2 x MACs of one frame (vae-tool's gflop_per_batch / batch); TFLOP/s = that / ms per frame." % (a.ours_desc or "vae-tool bench"))
    lines.append("")
    lines.append("| model | op | size | batch | ours ms/frame (device) | ours ms/frame (wall) | torch ms/frame | "
                 "torch bm ms/frame | torch/ours | torch bm/ours | ours peak MiB | torch peak MiB | "
                 "TFLOP/frame | ours TFLOP/s | torch TFLOP/s | notes |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in cases:
        out_path = os.path.join(a.ours_dir, c["id"] + ".out")
        rc_path = os.path.join(a.ours_dir, c["id"] + ".rc")
        notes = []
        if os.path.isfile(out_path):
            with open(out_path, errors="replace") as f:
                text = f.read()
            rc = 1
            if os.path.isfile(rc_path):
                with open(rc_path) as f:
                    s = f.read().strip()
                rc = int(s) if s.lstrip("-").isdigit() else 1
            o = parse_ours(text, rc)
        else:
            o = parse_ours("", "not run")
            o["status"] = "not run"
        if o["status"] != "ok":
            notes.append("ours: " + o["status"])
            bad.append(c["id"] + " ours")
        b = c["batch"]
        ours_dev = o["device_ms"] / b if o["device_ms"] is not None else None
        ours_wall = o["median_s"] * 1e3 / b if o["median_s"] is not None else None
        if o["status"] == "ok" and o["device_ms"] is None:
            notes.append("ours printed no device_ms (not a GPU engine?)")
        gflop = o["gflop"] if o["gflop"] is not None else flops_per_batch(c)

        def torch_ms(mode):
            r = torch_rows.get((c["id"], mode))
            if r is None:
                return None, None, "not run"
            if r.get("status") != "ok":
                return None, None, r.get("status")
            if r.get("finite") == "0":
                notes.append("torch %s: non-finite output" % mode)
            pk = float(r["peak_mib"]) if r.get("peak_mib") else None
            return float(r["median_ms"]) / b, pk, "ok"

        t_ms, t_peak, t_st = torch_ms("default")
        tb_ms, _, tb_st = torch_ms("benchmark")
        if t_st != "ok":
            notes.append("torch: " + str(t_st))
            bad.append(c["id"] + " torch")
        if tb_st not in ("ok", "not run"):
            notes.append("torch bm: " + str(tb_st))
        ref_ours = ours_dev if ours_dev is not None else ours_wall
        ratio = t_ms / ref_ours if (t_ms and ref_ours) else None
        ratio_b = tb_ms / ref_ours if (tb_ms and ref_ours) else None
        ours_tf = gflop / b / ref_ours if (gflop and ref_ours) else None  # GFLOP/ms == TFLOP/s
        torch_tf = gflop / b / t_ms if (gflop and t_ms) else None
        if ours_dev is None and ours_wall is not None:
            notes.append("ours ratio/TFLOP/s from wall time")
        lines.append("| %s | %s | %dx%d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c["label"], c["op"], c["width"], c["height"], b, f1(ours_dev, "%.3f"), f1(ours_wall, "%.3f"),
            f1(t_ms, "%.3f"), f1(tb_ms, "%.3f"), "**%s**" % f1(ratio) if ratio else "n/a", f1(ratio_b),
            f1(o["peak_mib"], "%.0f"), f1(t_peak, "%.0f"), f1(gflop / b / 1e3 if gflop else None, "%.3f"),
            f1(ours_tf, "%.1f"), f1(torch_tf, "%.1f"),
            "; ".join(notes).replace("|", "/")))
    print("\n".join(lines))
    if bad:
        print("\nmissing numbers: " + ", ".join(bad))
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torch")
    t.add_argument("--cases", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--meta", default=None)
    t.add_argument("--device", default="cuda")
    t.add_argument("--dtype", default="float16")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--modes", default="default,benchmark")
    t.add_argument("--deadline-s", type=float, default=0, help="skip cases not started within S seconds (0: none)")
    tb = sub.add_parser("table")
    tb.add_argument("--cases", required=True)
    tb.add_argument("--ours-dir", required=True)
    tb.add_argument("--torch", default=None)
    tb.add_argument("--meta", default=None)
    tb.add_argument("--ours-desc", default=None)
    sub.add_parser("selftest")
    a = ap.parse_args(argv)
    return {"torch": cmd_torch, "table": cmd_table, "selftest": cmd_selftest}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
