#!/usr/bin/env python3
"""Write a 1280x720 RGB PNG close to the worker's built-in card (dark blue-violet diagonal
gradient, soft vignette, amber dot in the middle), for the ffmpeg comparison's still picture.

    still_png.py OUT.png [WIDTH HEIGHT]
"""
import struct
import sys
import zlib


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def main(argv):
    if len(argv) not in (2, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = argv[1]
    w, h = (int(argv[2]), int(argv[3])) if len(argv) == 4 else (1280, 720)
    top, bottom, accent = (12, 16, 34), (38, 24, 66), (255, 177, 61)
    cx, cy = w / 2, h / 2
    half_diag2 = cx * cx + cy * cy
    dot2 = (0.045 * min(w, h)) ** 2
    rows = bytearray()
    for y in range(h):
        fy = y + 0.5
        dy2 = (fy - cy) ** 2
        rows.append(0)  # filter type None
        for x in range(w):
            fx = x + 0.5
            r2 = (fx - cx) ** 2 + dy2
            if r2 <= dot2:
                rows += bytes(accent)
                continue
            t = min(1.0, max(0.0, 0.35 * fx / w + 0.65 * fy / h))
            v = 1 - 0.45 * (r2 / half_diag2)
            rows += bytes(int((a + (b - a) * t) * v) for a, b in zip(top, bottom))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(rows), 6))
    png += chunk(b"IEND", b"")
    with open(out, "wb") as f:
        f.write(png)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
