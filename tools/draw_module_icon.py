"""Draw the module icon (Resources/Icons/MobileUViTSegment.png, 128 x 128) without any image library or download.

A dark rounded tile holds a grey MRI-like slice with the two hippocampus segments in the model card's colours
(anterior yellow, posterior blue), outlined as Slicer outlines segments. Shapes are rendered 4x larger and averaged
down (anti-aliasing) and written with a minimal PNG encoder (zlib + CRC32). Run from the repository root:

    python tools/draw_module_icon.py
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIZE = 128
SCALE = 4
OUTPUT = Path(__file__).resolve().parents[1] / "MobileUViTSegment" / "Resources" / "Icons" / "MobileUViTSegment.png"
ANTERIOR = (220, 216, 20)
POSTERIOR = (90, 200, 250)


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (height, width, 4) uint8 array as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, _ = rgba.shape
    rows = b"".join(b"\x00" + rgba[row].tobytes() for row in range(height))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0):
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2


def draw() -> np.ndarray:
    n = SIZE * SCALE
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / SCALE  # pixel coordinates of the 128 x 128 icon
    image = np.zeros((n, n, 4))

    def paint(mask: np.ndarray, color, alpha: float = 1.0) -> None:
        image[mask, :3] = image[mask, :3] * (1 - alpha) + np.asarray(color, float) * alpha
        image[mask, 3] = np.maximum(image[mask, 3], 255 * alpha)

    # Rounded tile with a vertical gradient.
    margin, radius = 4.0, 22.0
    qx = np.clip(x, margin + radius, SIZE - margin - radius)
    qy = np.clip(y, margin + radius, SIZE - margin - radius)
    tile = (x - qx) ** 2 + (y - qy) ** 2 <= radius ** 2
    shade = (y / SIZE)[..., None]
    image[tile, :3] = ((1 - shade) * np.array([30, 58, 95]) + shade * np.array([14, 26, 46]))[tile]
    image[tile, 3] = 255

    # A grey slice with a soft radial falloff.
    slice_shape = ellipse(x, y, 64, 66, 46, 40)
    inside = slice_shape <= 1
    grey = (170 - 70 * slice_shape)[..., None] * np.ones(3)
    image[inside, :3] = grey[inside]
    paint((slice_shape > 0.93) & inside, (235, 235, 235))

    # The two segments, outlined.
    for cx, cy, rx, ry, angle, color in ((50, 70, 19, 12, -25, ANTERIOR), (79, 58, 20, 10, -25, POSTERIOR)):
        blob = ellipse(x, y, cx, cy, rx, ry, angle)
        paint(blob <= 1, color, 0.85)
        paint((blob <= 1) & (blob > 0.8), tuple(min(255, c + 35) for c in color))

    # Average SCALE x SCALE blocks: anti-aliased edges.
    small = image.reshape(SIZE, SCALE, SIZE, SCALE, 4).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(png_bytes(draw()))
    print(f"wrote {OUTPUT}")
