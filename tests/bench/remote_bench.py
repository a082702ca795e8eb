#!/usr/bin/python3
"""Remote engine benchmark: frames per second of encode through

  remote   vaeencode backend=remote batch-size=8 max-inflight=4 (appsrc ->
           vaeencode -> fakesink) against vae-server on 127.0.0.1
  1-frame  a client that sends one frame per request and waits for each
           reply (what diffusers' remote_encode does), Python requests with
           keep-alive, raw uint8 [1,3,H,W] bodies (cheaper for it than the
           PNG bodies remote_encode sends)
  engine   the server's engine alone: `vae-tool bench --batch 8` with the same
           model, size, backend and threads

against the same vae-server process and the same frames, in the same run,
interleaved round by round (median over the rounds) so that a busy machine
slows all three alike; each timed run follows a short untimed one of the
same kind (steady state: the CPU engine re-creates its primitives when the
batch size changes).  The server's own engine rate during the remote run
(its /metrics: frames / engine seconds) is printed too.

Targets (issue 4): remote >= 0.9 x engine, remote >= 2 x 1-frame.

Usage:
  tests/bench/remote_bench.py [--cases taef2@64x64,taef2@256x256,sd@256x256]
      [--rounds 3] [--threads 2] [--build build] [--frames-scale 1.0]
`sd` is the SD-size AutoencoderKL with random weights (written once by
make_weights.py to tests/bench/weights/sd-vae-random, needs python3-torch),
`taef2` is ../shared/testdata/models/taef2; any other name is a model path.
Needs /usr/bin/python3 with python3-gi (GStreamer), numpy and requests."""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import requests
import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

# Frames per timed run: enough for several seconds of engine time each.
FRAMES = {("taef2", 64): 256, ("taef2", 256): 64, ("sd", 256): 16}


def model_path(name):
    if name == "taef2":
        td = os.environ.get("VAE_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")
        p = os.path.normpath(os.path.join(td, "models", "taef2"))
        if not os.path.isdir(p):
            sys.exit(f"remote_bench: {p} is missing (set VAE_TESTDATA)")
        return p
    if name == "sd":
        sys.path.insert(0, HERE)
        import make_weights  # needs torch; only when the weights are missing
        make_weights.ensure_weights(make_weights.DEFAULT_OUT, quiet=False)
        return make_weights.DEFAULT_OUT
    return name


class Server:
    def __init__(self, binary, model, threads):
        self.proc = subprocess.Popen(
            [binary, "--model", model, "--host", "127.0.0.1", "--port", "0", "--backend", "cpu",
             "--threads", str(threads), "--max-batch", "8"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            sys.exit(f"remote_bench: vae-server did not start: {line!r}")
        self.url = line.split()[-1].rstrip("/")

    def metrics(self):
        out = {}
        for line in requests.get(self.url + "/metrics", timeout=60).text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def run_element(model, url, frames, w, h):
    """Seconds from PLAYING to EOS for FRAMES through vaeencode backend=remote."""
    pipe = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=RGB,width={w},height={h},"
        f"framerate=25/1 ! vaeencode backend=remote model={model} endpoint={url}/encode "
        f"batch-size=8 max-inflight=4 ! fakesink sync=false")
    src = pipe.get_by_name("src")
    src.set_property("max-bytes", 1 << 31)
    bufs = []
    for i, f in enumerate(frames):
        b = Gst.Buffer.new_wrapped(f)
        b.pts = i * (Gst.SECOND // 25)
        b.duration = Gst.SECOND // 25
        bufs.append(b)
    # READY -> PAUSED starts the elements (the model's config is read) before
    # set_state returns; the sink's preroll (ASYNC) waits for data, so the
    # clock starts here.
    pipe.set_state(Gst.State.PAUSED)
    t0 = time.perf_counter()
    pipe.set_state(Gst.State.PLAYING)
    for b in bufs:
        src.emit("push-buffer", b)
    src.emit("end-of-stream")
    msg = pipe.get_bus().timed_pop_filtered(600 * Gst.SECOND,
                                            Gst.MessageType.ERROR | Gst.MessageType.EOS)
    dt = time.perf_counter() - t0
    pipe.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        err = msg.parse_error() if msg else "timeout"
        sys.exit(f"remote_bench: the remote pipeline failed: {err}")
    return dt


def run_one_frame_client(url, frames, w, h):
    """Seconds for one request per frame, each waited for."""
    s = requests.Session()
    path = f"{url}/encode?shape=1&shape=3&shape={h}&shape={w}&dtype=uint8"
    t0 = time.perf_counter()
    for f in frames:
        r = s.post(path, data=f, headers={"Content-Type": "tensor/binary"}, timeout=600)
        if r.status_code != 200:
            sys.exit(f"remote_bench: 1-frame client got HTTP {r.status_code}: {r.text[:200]}")
    return time.perf_counter() - t0


def run_engine(vae_tool, model, w, h, threads, runs):
    """Frames per second of `vae-tool bench --batch 8` (median of RUNS)."""
    cmd = [vae_tool, "bench", "--model", model, "--op", "encode", "--width", str(w),
           "--height", str(h), "--batch", "8", "--runs", str(runs), "--backend", "cpu",
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"median_s=([0-9.eE+-]+)", out)
    if not m:
        sys.exit(f"remote_bench: no median_s in vae-tool output: {out!r}")
    return 8.0 / float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="taef2@64x64,taef2@256x256,sd@256x256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--frames-scale", type=float, default=1.0,
                    help="multiply the frames per run (e.g. 0.25 for a quick look)")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    os.environ.setdefault("GST_PLUGIN_PATH", os.path.join(a.build, "gst", "vae"))
    os.environ["VAE_REMOTE_MAX_INFLIGHT"] = "4"
    server_bin = os.path.join(a.build, "tools", "vae-server")
    vae_tool = os.path.join(a.build, "tools", "vae-tool")
    Gst.init(None)
    if Gst.ElementFactory.find("vaeencode") is None:
        sys.exit(f"remote_bench: no vaeencode (GST_PLUGIN_PATH={os.environ['GST_PLUGIN_PATH']})")

    print(f"# remote engine benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()}, {os.cpu_count()} CPUs, load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for case in a.cases.split(","):
        name, _, size = case.partition("@")
        w, h = (int(x) for x in (size or "256x256").split("x"))
        model = model_path(name)
        n = max(8, int(FRAMES.get((name, w), 32) * a.frames_scale) // 8 * 8)
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (h, w, 3), np.uint8).tobytes() for _ in range(n)]
        chw = [np.frombuffer(f, np.uint8).reshape(h, w, 3).transpose(2, 0, 1).tobytes()
               for f in frames]
        srv = Server(server_bin, model, a.threads)
        try:
            run_one_frame_client(srv.url, chw[:2], w, h)   # first use of the model
            remote, single, engine, server_engine = [], [], [], []
            for r in range(a.rounds):
                engine.append(run_engine(vae_tool, model, w, h, a.threads, 3))
                # Each timed run follows a short one of its own kind: the CPU
                # engine re-creates its primitives when the batch size changes
                # (1 -> 8 costs about 4 batch-1 frames on SD-size), and a
                # server in steady state does not pay that on every request.
                run_element(model, srv.url, frames[:8], w, h)
                m0 = srv.metrics()
                dt = run_element(model, srv.url, frames, w, h)
                m1 = srv.metrics()
                remote.append(n / dt)
                ef = m1['vae_frames_total{direction="encode"}'] - m0['vae_frames_total{direction="encode"}']
                es = m1["vae_engine_seconds_total"] - m0["vae_engine_seconds_total"]
                server_engine.append(ef / es if es > 0 else float("nan"))
                run_one_frame_client(srv.url, chw[:2], w, h)
                single.append(n / run_one_frame_client(srv.url, chw, w, h))
                print(f"  {case} round {r + 1}: engine {engine[-1]:.2f} fps, remote "
                      f"{remote[-1]:.2f} fps (server engine {server_engine[-1]:.2f}), 1-frame "
                      f"{single[-1]:.2f} fps; load {os.getloadavg()[0]:.2f}", flush=True)
        finally:
            srv.stop()
        med = statistics.median
        rows.append((name, f"{w}x{h}", n, med(engine), med(remote), med(server_engine),
                     med(single)))

    print()
    print("| model | size | frames/run | engine fps (vae-tool, batch 8) | remote fps "
          "(batch 8, 4 in flight) | server engine fps during remote | 1-frame client fps "
          "| remote / engine | remote / 1-frame |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, n, e, r, se, s in rows:
        print(f"| {name} | {size} | {n} | {e:.2f} | {r:.2f} | {se:.2f} | {s:.2f} | "
              f"**{r / e:.2f}** | **{r / s:.2f}** |")
    print("\ntargets: remote / engine >= 0.90, remote / 1-frame >= 2.00")
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
