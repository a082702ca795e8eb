#!/usr/bin/python3
"""vae-server's limits on frame size and memory: a frame over --max-pixels
is refused with a 413 from the PNG/JPEG header or the tensor's shape, before
anything of its size is allocated (a 195 KB PNG of zeros claims 8192 x 8192;
it used to take a server limited to 8 GB of address space down with
"GLib-ERROR ... failed to allocate"), and when memory runs out for a frame
within the limit the reply is a 503 with a JSON error and the server keeps
serving.  Shapes too large for the protocol are called too large.

Usage: test-limits.py PATH-TO-vae-server
Needs VAE_TESTDATA (models/taef2); exits 77 loudly when it is missing.  In
an ASan build the address-space limits are not set (ASan reserves terabytes
of shadow memory up front), so the memory sub-cases are skipped there, with
a note."""
import re
import resource
import struct
import subprocess
import sys
import zlib

import requests

from server_test_helpers import (check, finish, is_json_error, kill_if_running, qs,
                                 start as start_server, testdata)

SERVER = sys.argv[1]
MODEL, = testdata("the vae-server limits test", "models/taef2")

GIB = 1 << 30
MIB = 1 << 20
SIDE = 8192
DEFAULT_MAX_PIXELS = 4096 * 4096


def is_asan(binary):
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
    return re.search(r"Shared library: \[libasan", dyn) is not None


ASAN = is_asan(SERVER)


def start(address_space=None, *extra):
    """vae-server, limited to ADDRESS_SPACE bytes when given; (process, URL)."""
    def limit():
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return start_server(SERVER, MODEL, *extra, preexec_fn=limit)


def zero_png(width, height):
    """An 8-bit RGB PNG of zeros, compressed row by row (8192 x 8192 comes to
    about 195 KB without ever holding its 201 MB of pixels)."""
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_header(width, height):
    """The markers of a baseline 3-component JPEG of WIDTH x HEIGHT up to its
    scan, with no tables and no data: enough for the frame header to be read,
    not to decode a pixel."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    sos = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
            + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\xff\xd9")


def vm_size(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("FAIL: no VmSize in /proc/PID/status")


def expect(url, what, status, path, body, text=None):
    """POST BODY: STATUS with a JSON error (containing TEXT), and the server
    still answers /health after it."""
    try:
        r = requests.post(url + path, data=body, timeout=120)
    except requests.RequestException as e:
        check(False, f"{what}: no answer (want {status}): {e!r}")
        return
    ok = r.status_code == status and is_json_error(r)
    if ok and text:
        ok = text in r.json()["error"]
    check(ok, f"{what}: {r.status_code} (want {status}) {r.text[:160]!r}")
    try:
        h = requests.get(url + "/health", timeout=30)
        alive = h.status_code == 200 and h.text == "Ok"
    except requests.RequestException:
        alive = False
    check(alive, f"still serving after {what}")


png = zero_png(SIDE, SIDE)
print(f"     a {SIDE}x{SIDE} PNG of zeros: {len(png)} bytes")

# Default --max-pixels, under the 8 GB address-space limit of the report.
if ASAN:
    print("     (ASan build of vae-server: no address-space limit set; ASan reserves "
          "terabytes of shadow memory, which RLIMIT_AS would refuse)")
proc, URL = start(None if ASAN else 8 * GIB)
try:
    expect(URL, f"{SIDE}x{SIDE} PNG over the default --max-pixels", 413, "/encode", png,
           f"limit of {DEFAULT_MAX_PIXELS} pixels")
    expect(URL, f"{SIDE}x{SIDE} JPEG header over --max-pixels", 413, "/encode",
           jpeg_header(SIDE, SIDE), "pixels")
    expect(URL, "raw uint8 tensor of 8192x8192 (shape checked before the body)", 413,
           "/encode" + qs([1, 3, SIDE, SIDE], "uint8"), bytes(16), "pixels")
    expect(URL, "latents that decode to 8192x8192", 413,
           "/decode" + qs([1, 32, SIDE // 8, SIDE // 8], "float16"), bytes(16), "pixels")
    expect(URL, "4097x4096 in a 4096x4096 limit", 413,
           "/encode" + qs([1, 3, 4104, 4096], "uint8"), bytes(16), "pixels")
    expect(URL, "shape=99999999,3,99999,99999", 400,
           "/encode?shape=99999999,3,99999,99999&dtype=uint8", bytes(16), "too large")
    expect(URL, "a dimension past 64 bits", 400,
           "/decode?shape=1,32,99999999999999999999999,8&dtype=float32", bytes(16),
           "too large")
    expect(URL, "a dimension of 0", 400, "/encode?shape=1,3,0,8&dtype=uint8", bytes(16),
           "positive integers")
    proc.terminate()
    check(proc.wait(timeout=60) == 0, "default limits: SIGTERM exits 0")
finally:
    kill_if_running(proc)

# --max-pixels raised to 8192x8192, and memory short: the server's own
# buffers for the frame cannot be allocated.  The address space of the
# running server is limited before each request to what it maps then plus
# ROOM: for the PNG, room for its 201 MB of pixels, not for the 805 MB of
# engine input they become; for 64 MiB of latents, room for the request's
# copies of them (about 400 MB), not for the 805 MB the engine would write
# its pixels to, which the worker allocates.  Neither gets to the engine.
def limit_memory(pid, room):
    cap = vm_size(pid) + room
    # The soft limit only, which counts: the hard one could not be raised
    # again for the next request.
    resource.prlimit(pid, resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))
    print(f"     address space limited to {cap // MIB} MiB ({room // MIB} MiB free)")


if ASAN:
    print("SKIP (ASan build): the out-of-memory replies under an address-space limit; "
          "ASan's shadow memory makes RLIMIT_AS unusable")
else:
    proc, URL = start(None, "--max-pixels", str(SIDE * SIDE))
    try:
        limit_memory(proc.pid, 512 * MIB)
        expect(URL, f"{SIDE}x{SIDE} PNG with memory short (the engine's input)", 503,
               "/encode", png, "engine's input")
        limit_memory(proc.pid, 600 * MIB)
        lat = bytes(32 * (SIDE // 8) * (SIDE // 8) * 2)
        expect(URL, "latents to 8192x8192 with memory short (the worker's output batch)", 503,
               "/decode" + qs([1, 32, SIDE // 8, SIDE // 8], "float16"), lat, "output batch")
        m = requests.get(URL + "/metrics", timeout=30).text
        check('vae_requests_total{route="/encode",status="503"} 1' in m
              and 'vae_requests_total{route="/decode",status="503"} 1' in m,
              "metrics count the 503s")
        proc.terminate()
        check(proc.wait(timeout=60) == 0, "memory short: SIGTERM exits 0")
    finally:
        kill_if_running(proc)

finish("vae-server limits")
