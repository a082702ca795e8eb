#!/usr/bin/env python3
"""A tiny model-free Hybrid Inference VAE server for the remote engine's tests.

Speaks the wire protocol (../shared/docs/hybrid-inference-protocol.md) with a
fake transformation instead of a model:
  encode: uint8 [B,3,H,W] (or float16 in [-1,1], read as (v+1)*127.5) ->
          float32 [B,C,H/f,W/f]: each f x f block averaged, mapped to [-1,1]
          (v/127.5 - 1), latent channel c = pixel channel c % 3, then
          (v - shift_factor) * scaling_factor.
  decode: float32 [B,C,h,w] with output_type=pt, partial_postprocess=True
          and both factors -> uint8 [B,h*f,w*f,3] (NHWC): nearest upsampling,
          pixel channel c = latent channel c % C, of v = latent/scaling + shift
          as round(clamp((v+1)/2, 0, 1) * 255) (half to even).
A request with `output_type` in its query is a decode, else an encode.

The path picks a behaviour (fault injection):
  /, /predict   normal
  /delay        normal, after a random 0-80 ms sleep (replies arrive out of order)
  /flaky        the first 2 requests get 503 (Retry-After: 0), then normal
  /badshape     a 200 reply whose `shape` header is wrong
  /boom         400 {"error": "boom"}
  /auth         401 unless "Authorization: Bearer sekrit"
  /slow         normal, after a 3 s sleep (for timeouts)
  /held         normal, after sleeping the hold time (a slow engine whose
                processing time the test sets; 0 until set)
GET /connections answers the number of TCP connections accepted so far.
Pure Python (no numpy), so it runs with any python3.
Exits when its stdin closes (the test that started it ended).  A line
"hold MS" on stdin sets the hold time of /held; the server answers
"hold MS" on stdout once it applies.
Prints "listening on http://127.0.0.1:PORT/" once ready.
"""
import argparse
import array
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ARGS = None
LOCK = threading.Lock()
COUNTS = {}
HOLD_S = 0.0


def encode(data, shape, scale, shift):
    b, c3, h, w = shape
    f, C = ARGS.factor, ARGS.latent_channels
    lh, lw = h // f, w // f
    out = array.array('f', bytes(4 * b * C * lh * lw))
    for n in range(b):
        pooled = []
        for c in range(c3):
            base = (n * c3 + c) * h * w
            plane = []
            for y in range(lh):
                for x in range(lw):
                    s = 0
                    for dy in range(f):
                        row = base + (y * f + dy) * w + x * f
                        s += sum(data[row:row + f])
                    plane.append(s / (f * f))
            pooled.append(plane)
        for c in range(C):
            src = pooled[c % c3]
            o = (n * C + c) * lh * lw
            for i, v in enumerate(src):
                out[o + i] = ((v / 127.5 - 1.0) - shift) * scale
    return out, [b, C, lh, lw]


def decode(lat, shape, scale, shift):
    b, C, h, w = shape
    f = ARGS.factor
    H, W = h * f, w * f
    out = bytearray(b * H * W * 3)
    for n in range(b):
        for c in range(3):
            src = (n * C + (c % C)) * h * w
            for y in range(H):
                row = src + (y // f) * w
                for x in range(W):
                    v = lat[row + x // f] / scale + shift
                    out[((n * H + y) * W + x) * 3 + c] = round(min(max((v + 1) / 2, 0.0), 1.0) * 255)
    return out, [b, H, W, 3]


CONNECTIONS = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def setup(self):
        global CONNECTIONS
        with LOCK:
            CONNECTIONS += 1
        super().setup()
        # A reply is two writes (headers, body): without this the body waits
        # for the client's delayed ACK of the headers, 40 ms a request on a
        # kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if ARGS.verbose:
            sys.stderr.write('fake_server: ' + fmt % args + '\n')

    def reply(self, status, body, headers=None, ctype='application/json'):
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, msg, headers=None):
        self.reply(status, json.dumps({'error': msg}).encode(), headers)

    def do_GET(self):
        if self.path == '/connections':
            with LOCK:
                n = CONNECTIONS
            return self.reply(200, str(n).encode(), ctype='text/plain')
        self.reply(200, b'Ok', ctype='text/plain')

    def do_POST(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        n = int(self.headers.get('Content-Length', '0'))
        body = self.rfile.read(n)
        if ARGS.verbose or os.environ.get('FAKE_SERVER_DUMP'):
            sys.stderr.write('%s\n%s' % (self.requestline, self.headers))
        path = url.path.rstrip('/') or '/'
        with LOCK:
            COUNTS[path] = COUNTS.get(path, 0) + 1
            count = COUNTS[path]
        if self.headers.get('Expect'):
            return self.error(400, 'unexpected Expect header')
        if path == '/boom':
            return self.error(400, 'boom')
        if path == '/auth' and self.headers.get('Authorization') != 'Bearer sekrit':
            return self.error(401, 'bad token')
        if path == '/slow':
            time.sleep(3)
        if path == '/flaky' and count <= 2:
            return self.error(503, '503 Service Unavailable', {'Retry-After': '0'})
        if path == '/delay':
            time.sleep(random.uniform(0.0, 0.08))
        if path == '/held':
            with LOCK:
                hold = HOLD_S
            time.sleep(hold)
        if 'shape' not in q:
            return self.error(400, 'Expected `shape` in query params.')
        if 'dtype' not in q:
            return self.error(400, 'Expected `dtype` in query params.')
        shape = [int(v) for v in q['shape']]
        dtype = q['dtype'][0]
        scale = float(q.get('scaling_factor', ['1'])[0])
        shift = float(q.get('shift_factor', ['0'])[0])
        odtype = 'float32'
        if 'output_type' in q:
            if dtype != 'float32':
                return self.error(400, 'fake server: decode takes float32 only')
            if q['output_type'][0] != 'pt' or q.get('partial_postprocess', ['False'])[0].lower() != 'true':
                return self.error(400, 'fake server: only output_type=pt, partial_postprocess=True')
            if 'scaling_factor' not in q or 'shift_factor' not in q:
                return self.error(400, 'fake server: decode wants both factors')
            odtype = 'uint8'
            lat = array.array('f')
            lat.frombytes(body)
            if len(shape) != 4 or len(lat) != shape[0] * shape[1] * shape[2] * shape[3]:
                return self.error(400, 'cannot reshape body to %s' % shape)
            out, oshape = decode(lat, shape, scale, shift)
        else:
            if dtype not in ('uint8', 'float16'):
                return self.error(400, 'fake server: encode takes uint8 or float16 only')
            size = 1 if dtype == 'uint8' else 2
            if len(shape) != 4 or shape[1] != 3 or len(body) != size * shape[0] * 3 * shape[2] * shape[3]:
                return self.error(400, 'cannot reshape body to %s' % shape)
            if dtype == 'float16':
                body = [(v + 1.0) * 127.5 for v in struct.unpack('<%de' % (len(body) // 2), body)]
            out, oshape = encode(body, shape, scale, shift)
        if path == '/badshape':
            oshape = [oshape[0], oshape[1] + 1, oshape[2], oshape[3]]
        self.reply(200, bytes(out),
                   {'shape': json.dumps(oshape, separators=(',', ':')), 'dtype': odtype},
                   ctype='tensor/binary')


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, default=0)
    p.add_argument('--latent-channels', type=int, default=4)
    p.add_argument('--factor', type=int, default=8)
    p.add_argument('--verbose', action='store_true')
    ARGS = p.parse_args()
    srv = ThreadingHTTPServer(('127.0.0.1', ARGS.port), Handler)
    srv.daemon_threads = True

    def watchdog():
        # Exit when the test that started us goes away (its pipe closes);
        # until then take its commands.
        global HOLD_S
        for line in sys.stdin:
            words = line.split()
            if len(words) == 2 and words[0] == 'hold':
                with LOCK:
                    HOLD_S = int(words[1]) / 1000.0
                print('hold %s' % words[1], flush=True)
        os._exit(0)
    threading.Thread(target=watchdog, daemon=True).start()
    print('listening on http://127.0.0.1:%d/' % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
