"""A small baseline JPEG decoder (ITU T.81 sequential Huffman, 8-bit, JFIF
YCbCr) in numpy, so that the tests can read vae-server's JPEG replies
without PIL and with a decoder that shares no code with the server's
libjpeg.  Float IDCT, chroma upsampled by repetition: within a level or two
of libjpeg, which is all the tests ask of it.  No progressive, arithmetic or
restart-interval files (vae-server writes none)."""
import struct

import numpy as np


def _zigzag():
    order = []
    for s in range(15):
        cells = [(r, s - r) for r in range(max(0, s - 7), min(s, 7) + 1)]
        if s % 2 == 0:
            cells.reverse()
        order += [r * 8 + c for r, c in cells]
    return order


ZIGZAG = _zigzag()
_C = np.array([np.sqrt(0.5)] + [1.0] * 7)
# IDCT as a matrix: block = M @ F @ M.T with M[x, u] = C(u)/2 cos((2x+1)u pi/16).
IDCT = np.array([[_C[u] / 2 * np.cos((2 * x + 1) * u * np.pi / 16) for u in range(8)]
                 for x in range(8)])


class _Bits:
    """The entropy-coded bytes (0xFF00 unstuffed) read a bit at a time."""

    def __init__(self, data):
        self.data, self.pos, self.acc, self.n = data, 0, 0, 0

    def bit(self):
        if self.n == 0:
            b = self.data[self.pos]
            self.pos += 1
            if b == 0xFF:
                if self.data[self.pos] != 0:
                    raise ValueError("marker inside the scan (restart intervals?)")
                self.pos += 1
            self.acc, self.n = b, 8
        self.n -= 1
        return (self.acc >> self.n) & 1

    def bits(self, count):
        v = 0
        for _ in range(count):
            v = (v << 1) | self.bit()
        return v

    def symbol(self, table):
        code = length = 0
        while length < 16:
            code = (code << 1) | self.bit()
            length += 1
            if (length, code) in table:
                return table[(length, code)]
        raise ValueError("bad Huffman code")


def _extend(v, s):
    return v - (1 << s) + 1 if s and v < (1 << (s - 1)) else v


def decode(data):
    """JPEG bytes to [H, W, 3] uint8 RGB (or [H, W, 1] for greyscale)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    pos, qt, huff, comps, scan = 2, {}, {}, [], None
    while scan is None:
        while data[pos] != 0xFF:
            pos += 1
        marker = data[pos + 1]
        pos += 2
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        length, = struct.unpack(">H", data[pos:pos + 2])
        seg = data[pos + 2:pos + length]
        pos += length
        if marker == 0xDB:                     # DQT
            i = 0
            while i < len(seg):
                if seg[i] >> 4:
                    raise ValueError("16-bit quantisation tables")
                qt[seg[i] & 15] = np.frombuffer(seg[i + 1:i + 65], np.uint8).astype(float)
                i += 65
        elif marker == 0xC4:                   # DHT
            i = 0
            while i < len(seg):
                cls_id, counts = seg[i], seg[i + 1:i + 17]
                syms, table, code, k = seg[i + 17:i + 17 + sum(counts)], {}, 0, 0
                for length in range(1, 17):
                    for _ in range(counts[length - 1]):
                        table[(length, code)] = syms[k]
                        code, k = code + 1, k + 1
                    code <<= 1
                huff[cls_id] = table
                i += 17 + sum(counts)
        elif marker == 0xC0:                   # SOF0, baseline
            _, height, width, n = struct.unpack(">BHHB", seg[:6])
            for c in range(n):
                cid, hv, tq = seg[6 + 3 * c:9 + 3 * c]
                comps.append({"id": cid, "h": hv >> 4, "v": hv & 15, "tq": tq})
        elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise ValueError("only baseline JPEG is read here")
        elif marker == 0xDD:
            raise ValueError("restart intervals are not read here")
        elif marker == 0xDA:                   # SOS
            for k in range(seg[0]):
                cid, tables = seg[1 + 2 * k], seg[2 + 2 * k]
                c = next(c for c in comps if c["id"] == cid)
                c["dc"], c["ac"] = huff[tables >> 4], huff[0x10 | (tables & 15)]
            scan = pos
    hmax, vmax = max(c["h"] for c in comps), max(c["v"] for c in comps)
    mcux, mcuy = -(-width // (8 * hmax)), -(-height // (8 * vmax))
    for c in comps:
        c["plane"] = np.zeros((mcuy * c["v"] * 8, mcux * c["h"] * 8))
        c["pred"] = 0
    bits = _Bits(data[scan:])
    for my in range(mcuy):
        for mx in range(mcux):
            for c in comps:
                q = qt[c["tq"]]
                for by in range(c["v"]):
                    for bx in range(c["h"]):
                        coef = np.zeros(64)
                        s = bits.symbol(c["dc"])
                        c["pred"] += _extend(bits.bits(s), s)
                        coef[0] = c["pred"] * q[0]
                        k = 1
                        while k < 64:
                            rs = bits.symbol(c["ac"])
                            r, s = rs >> 4, rs & 15
                            if s == 0:
                                if r != 15:
                                    break
                                k += 16
                                continue
                            k += r
                            coef[ZIGZAG[k]] = _extend(bits.bits(s), s) * q[k]
                            k += 1
                        block = IDCT @ coef.reshape(8, 8) @ IDCT.T + 128.0
                        y0, x0 = (my * c["v"] + by) * 8, (mx * c["h"] + bx) * 8
                        c["plane"][y0:y0 + 8, x0:x0 + 8] = block
    planes = [np.repeat(np.repeat(c["plane"], vmax // c["v"], 0), hmax // c["h"], 1)
              [:height, :width] for c in comps]
    if len(planes) == 1:
        return np.clip(np.rint(planes[0]), 0, 255).astype(np.uint8)[..., None]
    y, cb, cr = planes[0], planes[1] - 128.0, planes[2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
