#!/usr/bin/python3
"""vae-server's connection lifetime on 127.0.0.1: keep-alive connections
that the client closes are closed by the server too (libsoup 3.2 alone
leaves each in CLOSE-WAIT, one descriptor lost per client), idle ones after
--idle-timeout, those reset by the client too, and requests that stall
(nothing sent, half a header, half a body) are cut with a 408 after
--read-timeout, while a slow body that keeps coming is not.

600 sequential keep-alive clients must all be answered by a server limited
to 256 descriptors, and the server's descriptor count (/proc/PID/fd) must
come back to what it was.

Usage: test-connections.py PATH-TO-vae-server
Needs VAE_TESTDATA (models/taef2); exits 77 loudly when it is missing."""
import os
import resource
import socket
import struct
import sys
import threading
import time

import requests

from server_test_helpers import check, finish, kill_if_running, recv_until, start, testdata

SERVER = sys.argv[1]
MODEL, = testdata("the vae-server connection test", "models/taef2")

FD_LIMIT = 256
CLIENTS = 600
READ_TIMEOUT = 2     # seconds, --read-timeout
IDLE_TIMEOUT = 2     # seconds, --idle-timeout
# How late a cut may come: the machine may be loaded (or an ASan build).
SLACK = 3.0


def start_limited(*extra):
    """vae-server with at most FD_LIMIT descriptors; (process, host, port)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    p, url = start(SERVER, MODEL, *extra, preexec_fn=limit)
    port = int(url.rsplit(":", 1)[1])
    return p, "127.0.0.1", port


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle_fds(pid, want, seconds=3.0):
    """The descriptor count once it is WANT or SECONDS have passed."""
    deadline = time.monotonic() + seconds
    n = fd_count(pid)
    while n > want and time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count(pid)
    return n


def keepalive_clients(url, n):
    """N clients one after the other, each with two requests on one
    keep-alive connection, then closing it; how many were answered."""
    for i in range(n):
        s = requests.Session()
        try:
            a = s.get(url + "/health", timeout=5)
            b = s.get(url + "/health", timeout=5)
            if a.status_code != 200 or b.status_code != 200:
                return i
        except requests.RequestException as e:
            print(f"     client {i + 1} got no answer: {e!r}")
            return i
        finally:
            s.close()
    return n


def resetting_clients(host, port, n):
    """N clients of each kind that, after one reply on a keep-alive
    connection, reset it (SO_LINGER 0): idle, after half a request, after a
    whole one, after a whole one and their FIN.  How many were answered."""
    req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    tails = [b"", b"GET /he", req]
    answered = 0
    for kind in range(len(tails) + 1):
        for _ in range(n):
            sk = socket.create_connection((host, port), timeout=5)
            try:
                sk.sendall(req)
                got = recv_until(sk, b"Ok")
                answered += got.startswith(b"HTTP/1.1 200")
                if kind < len(tails):
                    sk.sendall(tails[kind])
                else:
                    sk.sendall(req)
                    sk.shutdown(socket.SHUT_WR)
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError as e:
                print(f"     resetting client: {e!r}")
            finally:
                sk.close()
    return answered


def until_closed(sk, seconds):
    """What the server sends until it closes SK; (bytes, seconds taken),
    seconds None when it did not close within SECONDS."""
    sk.settimeout(0.2)
    t0 = time.monotonic()
    got = b""
    while time.monotonic() - t0 < seconds:
        try:
            d = sk.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return got, time.monotonic() - t0
        if not d:
            return got, time.monotonic() - t0
        got += d
    return got, None


def stalled(host, port, sent, results, name):
    """A client that sends SENT and stalls: the server must cut it with a
    408 after the read timeout."""
    sk = socket.create_connection((host, port), timeout=10)
    if sent:
        sk.sendall(sent)
    got, took = until_closed(sk, READ_TIMEOUT + SLACK + 2)
    sk.close()
    results[name] = (got, took)


def slow_body(host, port, results):
    """A body sent in pieces, each gap under the read timeout and all of it
    longer than it: read to the end and answered, not cut.  (Its shape is
    not a multiple of 8, so that the answer, a 400, needs no engine run.)"""
    body = bytes(3 * 60 * 64)
    head = (b"POST /encode?shape=1&shape=3&shape=60&shape=64&dtype=uint8 HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    sk = socket.create_connection((host, port), timeout=10)
    sk.sendall(head)
    pieces = 5
    step = len(body) // pieces
    t0 = time.monotonic()
    for i in range(pieces):
        time.sleep(READ_TIMEOUT * 0.35)
        sk.sendall(body[i * step:] if i == pieces - 1 else body[i * step:(i + 1) * step])
    sk.settimeout(30)
    got = recv_until(sk, b"\r\n\r\n", 65536, ignore_errors=True)
    sk.close()
    results["slow body"] = (got, time.monotonic() - t0)


proc, HOST, PORT = start_limited("--read-timeout", str(READ_TIMEOUT),
                                 "--idle-timeout", str(IDLE_TIMEOUT))
URL = f"http://{HOST}:{PORT}"
try:
    before = fd_count(proc.pid)

    # Keep-alive clients that close their connection.
    t0 = time.monotonic()
    answered = keepalive_clients(URL, CLIENTS)
    took = time.monotonic() - t0
    check(answered == CLIENTS,
          f"{answered}/{CLIENTS} keep-alive clients answered under a limit of {FD_LIMIT} "
          f"descriptors ({took:.1f} s)")
    after = settle_fds(proc.pid, before)
    check(after <= before,
          f"descriptors after {answered} clients: {after} (before: {before})")

    # Clients that reset their connections, idle or in the middle of a request.
    answered = resetting_clients(HOST, PORT, 50)
    check(answered == 200, f"resetting clients: {answered}/200 answered before the reset")
    after = settle_fds(proc.pid, before)
    check(after <= before, f"descriptors after 200 resets: {after} (before: {before})")

    # Stalled requests, at once: each cut after the read timeout, with a 408.
    results = {}
    stalls = {
        "nothing sent": b"",
        "half a header": b"GET /health HTTP/1.1\r\nHost: x\r\n",
        "half a body": (b"POST /encode?shape=1&shape=3&shape=64&shape=64&dtype=uint8 "
                        b"HTTP/1.1\r\nHost: x\r\nContent-Length: 12288\r\n\r\n" + bytes(1000)),
    }
    threads = [threading.Thread(target=stalled, args=(HOST, PORT, sent, results, name))
               for name, sent in stalls.items()]
    threads.append(threading.Thread(target=slow_body, args=(HOST, PORT, results)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in stalls:
        got, took = results[name]
        check(took is not None and READ_TIMEOUT - 0.5 <= took <= READ_TIMEOUT + SLACK
              and got.startswith(b"HTTP/1.1 408"),
              f"stalled request ({name}): closed after "
              f"{'never' if took is None else f'{took:.2f} s'} "
              f"(--read-timeout {READ_TIMEOUT}), reply {got[:40]!r}")
    got, took = results["slow body"]
    check(got.startswith(b"HTTP/1.1 400"),
          f"slow body that keeps coming ({took:.2f} s, more than the read timeout): "
          f"answered {got[:40]!r}")

    # An idle keep-alive connection: closed by the server after the idle timeout.
    sk = socket.create_connection((HOST, PORT), timeout=10)
    sk.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    reply, took = b"", None
    try:
        reply = recv_until(sk, b"Ok")
        _, took = until_closed(sk, IDLE_TIMEOUT + SLACK + 2)
    except OSError as e:
        print(f"     no reply on the idle connection: {e!r}")
    sk.close()
    check(reply.startswith(b"HTTP/1.1 200") and took is not None
          and IDLE_TIMEOUT - 0.5 <= took <= IDLE_TIMEOUT + SLACK,
          f"idle keep-alive connection closed after "
          f"{'never' if took is None else f'{took:.2f} s'} (--idle-timeout {IDLE_TIMEOUT})")

    after = settle_fds(proc.pid, before)
    check(after <= before, f"descriptors after the stalls and the idle one: {after} "
                           f"(before: {before})")
    m = requests.get(URL + "/metrics", timeout=10).text
    check('status="408"' in m, "metrics count the 408s")
    check(requests.get(URL + "/health", timeout=10).status_code == 200, "still serving")
    proc.terminate()
    check(proc.wait(timeout=60) == 0, "SIGTERM: exit status 0")
finally:
    kill_if_running(proc)

finish("vae-server connection")
