#!/usr/bin/python3
"""Load on vae-server: 8 clients at once, 100 good requests each, with bad
requests interleaved, over real HTTP on 127.0.0.1.

Good requests (raw tensors, the Hybrid Inference protocol): uint8 encodes of
one or two 64x64 frames, and every fourth request a decode of latents to
uint8 frames (output_type=pt, partial_postprocess=True).  Every reply must
equal the reference reply that the same server gave to the same request
alone before the load (latents within 1e-4, pixels within 1 level: the
server merges concurrent requests into other batches), and none may fail.

Bad requests, one after every tenth good one, from the same clients: garbage
body, shape/body size mismatch, unknown dtype, a huge Content-Length, a wrong
token and no token (the server runs with --token): each must get its status
(400, 400, 400, 413, 401, 401) with a JSON error, and the server must keep
serving.

Memory: the server's VmRSS (/proc/PID/status) is read at quiet points: after
a warm-up (the same mix, 8 x 15 requests: it allocates the engine's buffers
and oneDNN primitives for the batch sizes that occur), and after each
quarter of the load.  While requests run, the RSS swings by tens of MiB with
the size of the engine batches in flight, and the engine keeps plans (with
their buffers) for the three batch sizes it saw last (plan-cache.h), so
before each reading encodes and decodes of 1, 2 and then 8 frames are sent
alone, one after the other (the same three plans every time) and the server
is left idle; glibc's
mmap threshold is pinned for the server (MALLOC_MMAP_THRESHOLD_) so that
freed multi-MiB buffers go back to the system instead of fragmenting the
heap.  Read this way, the RSS still grows by 1.4 to 2.0 MiB from the warm-up
to the first quarter (six runs), then repeats to within 0.3 MiB.  The bound,
RSS_BOUND_MIB = 4 MiB over the 8 x 110 requests after the warm-up, so
leaves about 2 MiB for a leak: losing more than about 2.5 KiB per request
fails (a request body is 8 to 24 KiB, a reply 8 to 16 KiB).  In an ASan
build the RSS is not judged (ASan's allocator keeps freed memory in
quarantine); LeakSanitizer judges the server at exit instead (the exit
status is checked).

Usage: test-load.py PATH-TO-vae-server
Needs VAE_TESTDATA (models/taef2); exits 77 loudly when it is missing."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server_test_helpers import (check, finish, is_json_error, qs, recv_until,  # noqa: E402
                                 start, tensor_of, testdata)
import numpy as np  # noqa: E402
import requests  # noqa: E402

SERVER = sys.argv[1]
MODEL, = testdata("the vae-server load test", "models/taef2")

CLIENTS = 8
REQUESTS = 100          # good requests per client
WARMUP = 15             # good requests per client before the RSS baseline
BAD_EVERY = 10          # a bad request after every tenth good one
RSS_BOUND_MIB = 4
ROUNDS = 4              # RSS read after each quarter of the load
TOKEN = "load-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
W = H = 64

# Four different frames, [3,64,64] uint8 each.
y, x = np.mgrid[0:H, 0:W]
FRAMES = [np.stack([(x * 4 + 37 * k) % 256, (y * 4 + 11 * k) % 256, ((x ^ y) + 53 * k) % 256])
          .astype(np.uint8) for k in range(4)]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def good_request(k, i):
    """The i-th good request of client k: (kind, path, body)."""
    if i % 4 == 3:
        return "decode", None, k % 4
    n = 1 + (k + i) % 2
    frames = np.stack([FRAMES[(k + i + j) % 4] for j in range(n)])
    return "encode", "/encode" + qs([n, 3, H, W], "uint8"), frames.tobytes()


def decode_path():
    return "/decode" + qs([1, 32, H // 8, W // 8], "float32", output_type="pt",
                          partial_postprocess="True", do_scaling="True")


def is_asan(binary):
    try:
        dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
    except OSError:
        return False
    return re.search(r"Shared library: \[libasan", dyn) is not None


ASAN = is_asan(SERVER)
# One engine thread: the load test is about HTTP, batching and memory, not
# speed, and a single thread does not stall in OpenMP barriers when the
# shared machine's cores are busy with other work.
os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)   # inherited by the server
proc, URL = start(SERVER, MODEL, "--max-batch", "8", "--token", TOKEN, "--threads", "1",
                  "--max-body-bytes", str(4 << 20))
del os.environ["MALLOC_MMAP_THRESHOLD_"]
HOST, PORT = URL[len("http://"):].split(":")
failures = []           # (client, request, what)
flock = threading.Lock()


def fail(k, i, what):
    with flock:
        failures.append((k, i, what))


try:
    # ---- reference replies: each request alone ----
    ref_enc = {}        # frame index -> latents [32,8,8]
    for f in range(4):
        r = requests.post(URL + "/encode" + qs([1, 3, H, W], "uint8"), data=FRAMES[f].tobytes(),
                          headers=AUTH, timeout=60)
        check(r.status_code == 200, f"reference encode of frame {f}: {r.status_code}")
        if r.status_code != 200:
            raise SystemExit(1)
        ref_enc[f] = tensor_of(r)[0].copy()
    ref_dec = {}        # frame index -> uint8 [64,64,3] decoded from its latents
    for f in range(4):
        r = requests.post(URL + decode_path(), data=ref_enc[f].astype(np.float32).tobytes(),
                          headers=dict(AUTH, **{"Content-Type": "tensor/binary"}), timeout=60)
        check(r.status_code == 200 and r.headers.get("dtype") == "uint8",
              f"reference decode of frame {f}: {r.status_code} {r.headers.get('dtype')}")
        if r.status_code != 200:
            raise SystemExit(1)
        ref_dec[f] = tensor_of(r)[0].copy()

    # ---- bad requests: (name, status, sender) ----
    def post(path, body, headers=AUTH):
        return requests.post(URL + path, data=body, headers=headers, timeout=60)

    def huge_content_length():
        with socket.create_connection((HOST, int(PORT)), timeout=30) as sk:
            sk.sendall(f"POST /encode?shape=1&shape=3&shape=64&shape=64&dtype=uint8 HTTP/1.1\r\n"
                       f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                       "Content-Length: 1000000000000\r\n\r\nabc".encode())
            got = recv_until(sk, b"\r\n\r\n")
        return int(got[9:12]) if got.startswith(b"HTTP/1.1 ") else repr(got[:40])

    bad_kinds = [
        ("garbage body", 400, lambda: post("/encode", b"\x00garbage" * 10)),
        ("shape/body mismatch", 400,
         lambda: post("/encode" + qs([1, 3, H, W], "uint8"), b"\0" * 100)),
        ("unknown dtype", 400,
         lambda: post("/encode" + qs([1, 3, H, W], "float64"), b"\0" * (3 * H * W * 8))),
        ("huge Content-Length", 413, huge_content_length),
        ("wrong token", 401, lambda: post("/encode" + qs([1, 3, H, W], "uint8"),
                                          FRAMES[0].tobytes(), {"Authorization": "Bearer nope"})),
        ("no token", 401, lambda: post("/encode" + qs([1, 3, H, W], "uint8"),
                                       FRAMES[0].tobytes(), {})),
    ]
    bad_seen = {name: 0 for name, _, _ in bad_kinds}
    max_diff = {"encode": 0.0, "decode": 0}

    def client(k, first, n_requests, counts):
        s = requests.Session()
        s.headers.update(AUTH)
        for i in range(first, first + n_requests):
            kind, path, body = good_request(k, i)
            try:
                if kind == "encode":
                    r = s.post(URL + path, data=body,
                               headers={"Content-Type": "tensor/binary"}, timeout=120)
                else:
                    r = s.post(URL + decode_path(), data=ref_enc[body].astype(np.float32).tobytes(),
                               headers={"Content-Type": "tensor/binary"}, timeout=120)
            except requests.RequestException as e:
                fail(k, i, f"{kind}: {e!r}")
                continue
            if r.status_code != 200:
                fail(k, i, f"{kind}: HTTP {r.status_code} {r.text[:120]!r}")
                continue
            t = tensor_of(r)
            if kind == "encode":
                want = np.stack([ref_enc[(k + i + j) % 4] for j in range(t.shape[0])])
                if t.shape != want.shape:
                    fail(k, i, f"encode: shape {t.shape}")
                    continue
                d = float(np.abs(t - want).max())
                ok = d <= 1e-4
            else:
                want = ref_dec[body][None]
                if t.shape != want.shape:
                    fail(k, i, f"decode: shape {t.shape}")
                    continue
                d = int(np.abs(t.astype(int) - want.astype(int)).max())
                ok = d <= 1
            with flock:
                max_diff[kind] = max(max_diff[kind], d)
            if not ok:
                fail(k, i, f"{kind}: reply differs from the reference by {d}")
            counts["good"] += 1
            if i % BAD_EVERY == BAD_EVERY - 1:
                name, status, send = bad_kinds[(k + i // BAD_EVERY) % len(bad_kinds)]
                try:
                    rr = send()
                    got = rr if isinstance(rr, (int, str)) else rr.status_code
                    json_ok = isinstance(rr, (int, str)) or is_json_error(rr)
                except (requests.RequestException, OSError) as e:
                    got, json_ok = repr(e), False
                with flock:
                    bad_seen[name] += 1
                if got != status or not json_ok:
                    fail(k, i, f"bad request '{name}': got {got} (want {status} with a JSON error)")
                counts["bad"] += 1

    def load(first, n_requests):
        """Every client sends its good requests FIRST .. FIRST+N-1 (and the
        bad ones among them) at once."""
        counts = [{"good": 0, "bad": 0} for _ in range(CLIENTS)]
        threads = [threading.Thread(target=client, args=(k, first, n_requests, counts[k]))
                   for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(c["good"] for c in counts), sum(c["bad"] for c in counts)

    # ---- warm-up, then the load in ROUNDS parts, RSS read at quiet points ----
    big_frames = np.stack([FRAMES[j % 4] for j in range(8)]).tobytes()
    big_latents = np.stack([ref_enc[j % 4] for j in range(8)]).astype(np.float32).tobytes()

    def quiet_rss():
        """VmRSS (KiB), idle, with the engine's plans for 1, 2 and 8 frames."""
        codes = []
        for n in (1, 2, 8):
            frames = big_frames[:len(big_frames) // 8 * n]
            latents = big_latents[:len(big_latents) // 8 * n]
            codes.append(requests.post(URL + "/encode" + qs([n, 3, H, W], "uint8"),
                                       data=frames, headers=AUTH, timeout=120).status_code)
            codes.append(requests.post(URL + "/decode" + qs([n, 32, H // 8, W // 8], "float32",
                                                            output_type="pt",
                                                            partial_postprocess="True"),
                                       data=latents, headers=AUTH, timeout=120).status_code)
        check(all(c == 200 for c in codes),
              f"1-, 2- and 8-frame encodes and decodes before an RSS reading: {codes}")
        time.sleep(0.3)
        return rss_kib(proc.pid)

    t0 = time.monotonic()
    load(0, WARMUP)
    # Every batch size the load can merge (1 to 8 frames), alone: each
    # engine plan and oneDNN primitive the load needs exists before rss0.
    for n in range(1, 9):
        for path, body, shape, dtype, extra in (
                ("/encode", big_frames, [n, 3, H, W], "uint8", {}),
                ("/decode", big_latents, [n, 32, H // 8, W // 8], "float32",
                 {"output_type": "pt", "partial_postprocess": "True"})):
            r = requests.post(URL + path + qs(shape, dtype, **extra),
                              data=body[:len(body) // 8 * n], headers=AUTH, timeout=120)
            if r.status_code != 200:
                check(False, f"warm-up {path} of {n} frames alone: {r.status_code}")
    failures_warmup = len(failures)
    rss0 = quiet_rss()
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append(rss_kib(proc.pid))
            time.sleep(0.05)

    st = threading.Thread(target=sampler)
    st.start()
    t1 = time.monotonic()
    good = bad = 0
    readings = []
    per_round = REQUESTS // ROUNDS
    load_s = 0.0
    for k in range(ROUNDS):
        ta = time.monotonic()
        g, b = load(WARMUP + k * per_round, per_round)
        load_s += time.monotonic() - ta
        print(f"     round {k}: {time.monotonic() - ta:.1f} s", flush=True)
        good, bad = good + g, bad + b
        readings.append(quiet_rss())
    stop.set()
    st.join()
    print(f"     warm-up {t1 - t0:.1f} s; load {load_s:.1f} s, {good / load_s:.0f} good requests/s")

    check(not failures, f"load: no failed or wrong reply ({len(failures)} failures, "
          f"{failures_warmup} in the warm-up; first: {failures[:5]})")
    check(good == CLIENTS * REQUESTS, f"load: {good} good requests answered right "
          f"(want {CLIENTS * REQUESTS})")
    check(bad == CLIENTS * (REQUESTS // BAD_EVERY) and all(bad_seen.values()),
          f"load: {bad} bad requests interleaved, every kind sent ({bad_seen})")
    print(f"     max diff from the reference replies: latents {max_diff['encode']:.3g}, "
          f"pixels {max_diff['decode']}")
    grow = (max(readings) - rss0) / 1024.0
    print(f"     VmRSS at quiet points: after warm-up {rss0 / 1024:.1f} MiB, after each quarter "
          + ", ".join(f"{r / 1024:.1f}" for r in readings)
          + f" MiB; while loaded {min(samples) / 1024:.0f}..{max(samples) / 1024:.0f} MiB")
    if ASAN:
        print("     (ASan build of vae-server: RSS not judged; LeakSanitizer checks it at exit)")
    else:
        check(grow <= RSS_BOUND_MIB, f"load: resident memory flat after warm-up "
              f"(+{grow:.2f} MiB, bound {RSS_BOUND_MIB} MiB)")

    # The server still serves, and counted what it saw.
    r = requests.get(URL + "/health", timeout=30)
    check(r.status_code == 200 and r.text == "Ok",
          "after the load: GET /health answers Ok (without a token)")
    r = requests.post(URL + "/encode" + qs([1, 3, H, W], "uint8"), data=FRAMES[2].tobytes(),
                      headers=AUTH, timeout=60)
    check(r.status_code == 200 and float(np.abs(tensor_of(r)[0] - ref_enc[2]).max()) <= 1e-4,
          "after the load: an encode is answered right")
    metrics = {}
    for line in requests.get(URL + "/metrics", headers=AUTH, timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            key, v = line.rsplit(" ", 1)
            metrics[key] = float(v)
    n_bad = CLIENTS * (WARMUP // BAD_EVERY + REQUESTS // BAD_EVERY)
    got_bad = sum(v for key, v in metrics.items()
                  if key.startswith("vae_requests_total") and 'status="4' in key)
    check(got_bad == n_bad, f"metrics: {got_bad:.0f} 4xx answers counted (want {n_bad})")
    bigger = metrics.get("vae_batch_size_count", 0) - metrics.get('vae_batch_size_bucket{le="1"}', 0)
    check(bigger >= 1, f"metrics: {bigger:.0f} engine batches merged more than one frame")
finally:
    if proc.poll() is None:
        proc.terminate()
        try:
            rc = proc.wait(timeout=60)
            check(rc == 0, f"SIGTERM after the load: exit status {rc}")
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()
            check(False, "SIGTERM after the load: the server did not exit within 60 s")

finish("vae-server load")
