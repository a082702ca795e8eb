#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 proxy for the remote engine's tests.

It sits between a client (vaeencode/vaedecode backend=remote) and a real
vae-server, forwards every request unchanged, and on the requests a test
picks it answers in one of the ways a real network or gateway can:

  503              503 with {"error": "503 Service Unavailable"} (as the
                   Hugging Face gateway does), no Retry-After
  503-retry-after  the same with "Retry-After: RETRY_AFTER" (seconds)
  drop             the upstream reply's status line, headers and half its
                   body, then the connection is closed
  hold             the reply is held HOLD_S seconds (past the client's
                   timeout), then the connection is closed unanswered
  bad-shape        the upstream reply with a wrong `shape` header (the
                   batch dimension plus one)
  400              400 with a JSON error, as a server that refuses a request

When the upstream server cannot be reached the proxy answers 502 (as a
gateway does); when it dies while a request is in flight the client's
connection is closed without a reply.

Requests are numbered from 0 in the order they arrive (POSTs only; GETs
pass through).  `plan` maps a number to a fault, or is a function of the
number.  Every request is logged with its arrival time, a hash of its
target and body (a retry of the same batch has the same hash) and what was
done, so that tests can check that each faulted batch was sent again.

Python 3 standard library only; used in-process by test-faults.py
(FaultProxy) or on its own:  fault_proxy.py UPSTREAM_URL [N=FAULT ...]
"""
import hashlib
import http.client
import http.server
import json
import socket
import sys
import threading
import time
import urllib.parse

FAULTS = ("503", "503-retry-after", "drop", "hold", "bad-shape", "400")


class FaultProxy:
    def __init__(self, upstream, plan=None, hold_s=3.0, retry_after=1):
        self.upstream = upstream          # "http://127.0.0.1:PORT"
        self.plan = plan or {}
        self.hold_s = hold_s
        self.retry_after = retry_after
        self.on_request = None            # callback(n) before a POST is handled
        self.log = []                     # dicts: n, t, key, fault, status
        self._lock = threading.Lock()
        self._count = 0
        self._httpd = None
        self._thread = None

    # ---- control ----

    def start(self):
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reset(self, plan=None):
        """A new plan and an empty log, numbering from 0 again."""
        with self._lock:
            self.plan = plan or {}
            self.log = []
            self._count = 0

    def fault_for(self, n):
        p = self.plan
        return p(n) if callable(p) else p.get(n)

    def _next(self, key):
        with self._lock:
            n = self._count
            self._count += 1
            entry = {"n": n, "t": time.monotonic(), "key": key, "fault": None, "status": None}
            self.log.append(entry)
        return n, entry


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that gave up (timeout, or its pipeline stopped after an
        # error) closes its end while the proxy still writes: expected here.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, as libcurl uses it
    owner = None
    upstream_conn = None              # one upstream connection per client connection

    def log_message(self, fmt, *args):  # quiet
        pass

    # ---- helpers ----

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json_error(self, status, message, extra=()):
        body = json.dumps({"error": message}).encode()
        self._send(status, body, [("Content-Type", "application/json")] + list(extra))

    def _abort(self):
        """Close the client connection at once, without a (further) reply."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _forward(self, method, body):
        """(status, headers list, body) from upstream; raises OSError or
        http.client.HTTPException when upstream is down or dies."""
        u = urllib.parse.urlsplit(self.owner.upstream)
        for attempt in (0, 1):
            if self.upstream_conn is None:
                self.upstream_conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection", "content-length")}
            try:
                self.upstream_conn.request(method, self.path, body=body, headers=headers)
                r = self.upstream_conn.getresponse()
                data = r.read()
                return r.status, r.getheaders(), data
            except (OSError, http.client.HTTPException):
                self.upstream_conn.close()
                self.upstream_conn = None
                # A kept-alive upstream connection may have been closed by a
                # restarted server: one fresh try, then it is a real failure.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _relay(self, status, headers, data, shape=None, cut=False):
        self.send_response(status)
        for k, v in headers:
            lk = k.lower()
            if lk in ("connection", "transfer-encoding", "content-length", "keep-alive", "date",
                      "server"):
                continue
            if lk == "shape" and shape is not None:
                v = shape
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self._abort()
            return
        self.wfile.write(data)
        self.wfile.flush()

    # ---- methods ----

    def do_GET(self):
        try:
            status, headers, data = self._forward("GET", None)
        except (OSError, http.client.HTTPException) as e:
            self._send_json_error(502, f"proxy: upstream unreachable: {e}")
            return
        self._relay(status, headers, data)

    def do_POST(self):
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = hashlib.sha1(self.path.encode() + b"\0" + body).hexdigest()[:16]
        n, entry = owner._next(key)
        if owner.on_request:
            owner.on_request(n)
        fault = owner.fault_for(n)
        entry["fault"] = fault

        # Faults that need no upstream.
        if fault == "503":
            entry["status"] = 503
            self._send_json_error(503, "503 Service Unavailable")
            return
        if fault == "503-retry-after":
            entry["status"] = 503
            self._send_json_error(503, "503 Service Unavailable",
                                  [("Retry-After", str(owner.retry_after))])
            return
        if fault == "400":
            entry["status"] = 400
            self._send_json_error(400, "proxy: request refused on purpose")
            return

        try:
            status, headers, data = self._forward("POST", body)
        except (ConnectionRefusedError, socket.timeout) as e:
            entry["status"] = 502
            self._send_json_error(502, f"proxy: upstream unreachable: {e}")
            return
        except (OSError, http.client.HTTPException):
            # Upstream died with the request in flight: so does this reply.
            entry["status"] = "aborted"
            self._abort()
            return

        if fault == "drop":
            entry["status"] = "dropped"
            self._relay(status, headers, data, cut=True)
        elif fault == "hold":
            entry["status"] = "held"
            time.sleep(owner.hold_s)
            self._abort()
        elif fault == "bad-shape":
            entry["status"] = status
            shape = dict((k.lower(), v) for k, v in headers).get("shape")
            bad = None
            if shape:
                dims = json.loads(shape)
                dims[0] += 1
                bad = json.dumps(dims, separators=(",", ":"))
            self._relay(status, headers, data, shape=bad)
        else:
            entry["status"] = status
            self._relay(status, headers, data)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    plan = {}
    for a in argv[2:]:
        n, _, f = a.partition("=")
        if f not in FAULTS:
            print(f"unknown fault {f!r} (one of {', '.join(FAULTS)})", file=sys.stderr)
            return 2
        plan[int(n)] = f
    p = FaultProxy(argv[1].rstrip("/"), plan)
    print(f"listening on {p.start()}/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
