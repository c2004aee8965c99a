"""BlurHash encoding (https://blurha.sh, the reference C and TypeScript encoders' algorithm) in plain Python.

Meant for a small image (``media_inspect`` hands it at most 32x32 pixels): a DC and ``x*y - 1`` AC cosine
components in linear light, quantised to base-83. Cosine tables are computed once per size, so a 32x32 image with
4x3 components costs ~12k multiply-adds per channel (a few milliseconds).
"""

from __future__ import annotations

import math

from PIL import Image

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_TO_LINEAR = [(v / 255 / 12.92) if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in range(256)]


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - 1 - i)) % 83] for i in range(length))


def _to_srgb(value: float) -> int:
    v = max(0.0, min(1.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _sign_pow(value: float, exp: float) -> float:
    return math.copysign(abs(value) ** exp, value)


def encode(image: Image.Image, x_components: int = 4, y_components: int = 3) -> str:
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("components must be 1-9")
    rgb = image.convert("RGB")
    width, height = rgb.size
    raw = rgb.tobytes()
    linear = [_TO_LINEAR[b] for b in raw]
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(x_components)]
    cos_y = [[math.cos(math.pi * j * y / height) for y in range(height)] for j in range(y_components)]
    factors: list[tuple[float, float, float]] = []
    for j in range(y_components):
        for i in range(x_components):
            norm = (1.0 if i == 0 and j == 0 else 2.0) / (width * height)
            r = g = b = 0.0
            cx = cos_x[i]
            for y in range(height):
                cy = cos_y[j][y]
                row = y * width * 3
                for x in range(width):
                    basis = cx[x] * cy
                    p = row + 3 * x
                    r += basis * linear[p]
                    g += basis * linear[p + 1]
                    b += basis * linear[p + 2]
            factors.append((r * norm, g * norm, b * norm))
    dc, ac = factors[0], factors[1:]
    out = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    if ac:
        actual_max = max(abs(v) for f in ac for v in f)
        quantised_max = int(max(0, min(82, math.floor(actual_max * 166 - 0.5))))
        maximum = (quantised_max + 1) / 166
        out += _base83(quantised_max, 1)
    else:
        maximum = 1.0
        out += _base83(0, 1)
    out += _base83((_to_srgb(dc[0]) << 16) + (_to_srgb(dc[1]) << 8) + _to_srgb(dc[2]), 4)
    for f in ac:
        q = [int(max(0, min(18, math.floor(_sign_pow(v / maximum, 0.5) * 9 + 9.5)))) for v in f]
        out += _base83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2)
    return out
