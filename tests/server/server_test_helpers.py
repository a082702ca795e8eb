"""What the Python tests of vae-server share: finding the test data (exit 77,
loudly, when it is missing), starting the server, speaking the Hybrid
Inference protocol (../shared/docs/hybrid-inference-protocol.md) with
requests + numpy, PNG without PIL (JPEG: jpeg_baseline.py), and the
pass/fail bookkeeping."""
import json
import os
import struct
import subprocess
import sys
import zlib

try:
    import numpy as np
    import requests  # the tests use it; checked here once
except ImportError as e:  # pragma: no cover
    print(f"SKIP: the vae-server tests need python3-numpy and python3-requests: {e}",
          file=sys.stderr)
    sys.exit(77)

REQUESTS_VERSION = requests.__version__
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def finish(name):
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed:", file=sys.stderr)
        for f in FAILURES:
            print("  " + f, file=sys.stderr)
        sys.exit(1)
    print(f"all {name} checks passed")


def testdata(test, *paths):
    """VAE_TESTDATA joined with PATHS; exits 77 (and notes the skip for CI)
    when one is missing."""
    root = os.environ.get("VAE_TESTDATA", "")
    full = [os.path.join(root, p) for p in paths]
    if not root or not all(os.path.exists(p) for p in full):
        print(f"SKIP: VAE_TESTDATA with {', '.join(paths)} is missing "
              f"(VAE_TESTDATA={root!r}); {test} did NOT run", file=sys.stderr)
        marker = os.environ.get("VAE_GOLDEN_SKIP_MARKER")
        if marker:
            with open(marker, "a") as f:
                f.write("server\n")
        sys.exit(77)
    return full


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "U8": np.uint8, "F16": np.float16}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def start(server, model, *extra, preexec_fn=None):
    """Starts vae-server on a free port (running PREEXEC_FN in the child
    first, when given); returns (process, base URL)."""
    p = subprocess.Popen([server, "--model", model, "--host", "127.0.0.1", "--port", "0",
                          "--backend", "cpu"] + list(extra),
                         stdout=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    line = p.stdout.readline()
    if not line.startswith("listening on http://127.0.0.1:"):
        p.kill()
        raise SystemExit(f"FAIL: vae-server did not start: {line!r}")
    return p, line.split()[-1].rstrip("/")


def kill_if_running(proc):
    """Kills PROC (and reaps it) unless it has exited already."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def recv_until(sk, marker, size=4096, ignore_errors=False):
    """What socket SK receives until MARKER is in it or the peer closes; with
    IGNORE_ERRORS, a socket error ends it too (keeping what came)."""
    got = b""
    try:
        while marker not in got:
            d = sk.recv(size)
            if not d:
                break
            got += d
    except OSError:
        if not ignore_errors:
            raise
    return got


def qs(shape, dtype, **kw):
    """The query of a raw tensor: repeated shape keys, then the rest."""
    parts = [f"shape={d}" for d in shape] + [f"dtype={dtype}"]
    parts += [f"{k}={v}" for k, v in kw.items()]
    return "?" + "&".join(parts)


def tensor_of(r):
    """A tensor reply: body shaped and typed by its shape/dtype headers."""
    shape = json.loads(r.headers["shape"])
    dt = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[r.headers["dtype"]]
    return np.frombuffer(r.content, dtype=dt).reshape(shape)


def is_json_error(r):
    try:
        return r.headers.get("content-type", "").startswith("application/json") \
            and isinstance(r.json().get("error"), str)
    except ValueError:
        return False


def png_write(rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_read(data):
    """8-bit RGB, non-interlaced PNG (what vae-server writes) to [H,W,3]."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        t = data[pos + 4:pos + 8]
        d = data[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", d)
            assert depth == 8 and ctype == 2 and interlace == 0, "expected 8-bit RGB"
        elif t == b"IDAT":
            idat += d
        pos += 12 + n
    raw = zlib.decompress(idat)
    bpp, stride = 3, w * 3
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = np.frombuffer(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], np.uint8).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.astype(np.uint8).reshape(h, w, 3)


def psnr(a, b):
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def rel_l2(got, want):
    got, want = got.astype(np.float64), want.astype(np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
