"""Small JPEG images whose hidden class a small CNN can learn (the world's "free label").

Each class has its own layout and palette (a sun over a horizon, sand under sea, a plate on a
table, an animal on grass, lit windows in a skyline, a face on a plain background), drawn with
random positions, sizes and colour jitter, plus Gaussian noise that falls as the hidden
quality rises. Images are rendered in vectorized batches per class; only the JPEG encoding is
per image (Pillow has no batch encoder).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from my_data_platform.synth.population import CLASSES, IMAGE_SIZE

Canvas = np.ndarray  # float32 (k, S, S, 3) in [0, 1]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1)
    return y[None], x[None]


def _u(rng: np.random.Generator, k: int, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, (k, 1, 1)).astype(np.float32)


def _jitter(
    rng: np.random.Generator, k: int, rgb: tuple[float, float, float], sd: float = 0.06
) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, sd, (k, 3)), 0, 1).astype(np.float32)


def _paint(img: Canvas, mask: np.ndarray, color: np.ndarray) -> None:
    img[mask] = np.broadcast_to(color[:, None, None, :], img.shape)[mask]


def _fill(k: int, size: int, color: np.ndarray) -> Canvas:
    return np.broadcast_to(color[:, None, None, :], (k, size, size, 3)).copy()


def _pick(
    rng: np.random.Generator, k: int, palette: list[tuple[float, float, float]]
) -> np.ndarray:
    base = np.asarray(palette, np.float32)[rng.integers(0, len(palette), k)]
    return np.clip(base + rng.normal(0, 0.04, (k, 3)), 0, 1).astype(np.float32)


def _sunset(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    h = _u(rng, k, 0.55, 0.75)
    t = np.clip(y / h, 0, 1)[..., None]
    top, hor = _jitter(rng, k, (0.35, 0.15, 0.45)), _jitter(rng, k, (1.0, 0.5, 0.15))
    img = top[:, None, None] * (1 - t) + hor[:, None, None] * t
    _paint(img, np.broadcast_to(y >= h, (k, size, size)), _jitter(rng, k, (0.2, 0.12, 0.25)))
    cx, r = _u(rng, k, 0.2, 0.8), _u(rng, k, 0.08, 0.15)
    cy = h - r * 0.3
    _paint(img, ((x - cx) ** 2 + (y - cy) ** 2 < r**2) & (y < h), _jitter(rng, k, (1, 0.85, 0.35)))
    streak = (np.abs(x - cx) < r * 0.6) & (y > h) & (np.sin(y * 60) > 0)
    _paint(img, streak, _jitter(rng, k, (0.9, 0.55, 0.2)))
    return img.astype(np.float32)


def _beach(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    img = _fill(k, size, _jitter(rng, k, (0.55, 0.78, 0.95)))
    s1 = _u(rng, k, 0.3, 0.45)
    s2 = _u(rng, k, 0.55, 0.7) + 0.03 * np.sin(x * _u(rng, k, 6, 14) + _u(rng, k, 0, 6.3))
    _paint(img, np.broadcast_to(y >= s1, (k, size, size)), _jitter(rng, k, (0.05, 0.45, 0.65)))
    _paint(img, y >= s2, _jitter(rng, k, (0.92, 0.82, 0.58)))
    return img


def _food(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    img = _fill(k, size, _jitter(rng, k, (0.35, 0.22, 0.12)))
    cx, cy, r = _u(rng, k, 0.4, 0.6), _u(rng, k, 0.4, 0.6), _u(rng, k, 0.33, 0.42)
    _paint(img, (x - cx) ** 2 + (y - cy) ** 2 < r**2, _jitter(rng, k, (0.95, 0.95, 0.92), 0.02))
    fx, fy = cx + _u(rng, k, -0.05, 0.05), cy + _u(rng, k, -0.05, 0.05)
    fr = _u(rng, k, 0.15, 0.22)
    blob = (x - fx) ** 2 + ((y - fy) * 1.3) ** 2 < fr**2
    _paint(img, blob, _pick(rng, k, [(0.8, 0.2, 0.1), (0.3, 0.6, 0.2), (0.6, 0.35, 0.15)]))
    return img


def _pet(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    img = _fill(k, size, _jitter(rng, k, (0.3, 0.6, 0.25)))
    fur = _pick(rng, k, [(0.55, 0.35, 0.2), (0.5, 0.5, 0.5), (0.85, 0.55, 0.2), (0.15, 0.12, 0.1)])
    cx, cy = _u(rng, k, 0.35, 0.65), _u(rng, k, 0.55, 0.7)
    side = np.where(rng.random((k, 1, 1)) < 0.5, -1.0, 1.0).astype(np.float32)
    _paint(img, ((x - cx) / 0.3) ** 2 + ((y - cy) / 0.18) ** 2 < 1, fur)
    hx, hy = cx + side * 0.2, cy - 0.18
    _paint(img, (x - hx) ** 2 + (y - hy) ** 2 < 0.13**2, fur)
    for dx in (-0.08, 0.08):
        _paint(img, (x - hx - dx) ** 2 + (y - hy + 0.12) ** 2 < 0.05**2, fur * 0.8)
    dark = np.zeros((k, 3), np.float32)
    for dx in (-0.045, 0.045):
        _paint(img, (x - hx - dx) ** 2 + (y - hy + 0.02) ** 2 < 0.02**2, dark)
    return img


def _city(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    img = _fill(k, size, _jitter(rng, k, (0.06, 0.08, 0.18), 0.03))
    n_cols = 8
    heights = rng.uniform(0.3, 0.85, (k, n_cols)).astype(np.float32)
    col = np.clip((x[0] * n_cols).astype(np.int64), 0, n_cols - 1)
    building = y > 1 - heights[:, col]
    _paint(img, building, _jitter(rng, k, (0.28, 0.28, 0.33), 0.03))
    px = np.arange(size)
    windows = ((px[None, :] % 4) < 2) & ((px[:, None] % 5) < 2)
    lit = building & windows[None] & (rng.random((k, size, size)) < 0.5)
    _paint(img, lit, _jitter(rng, k, (0.95, 0.85, 0.4), 0.03))
    return img


def _portrait(rng: np.random.Generator, k: int, size: int) -> Canvas:
    y, x = _grid(size)
    img = _fill(k, size, rng.uniform(0.4, 0.8, (k, 3)).astype(np.float32))
    cx, cy = _u(rng, k, 0.4, 0.6), _u(rng, k, 0.5, 0.6)
    hair = _pick(rng, k, [(0.1, 0.07, 0.05), (0.45, 0.3, 0.15), (0.85, 0.7, 0.4)])
    _paint(img, ((x - cx) / 0.26) ** 2 + ((y - cy + 0.1) / 0.28) ** 2 < 1, hair)
    skin = _pick(
        rng, k, [(0.95, 0.78, 0.65), (0.8, 0.6, 0.45), (0.55, 0.38, 0.26), (0.35, 0.24, 0.16)]
    )
    _paint(img, ((x - cx) / 0.2) ** 2 + ((y - cy) / 0.27) ** 2 < 1, skin)
    dark = np.zeros((k, 3), np.float32) + 0.05
    for dx in (-0.08, 0.08):
        _paint(img, (x - cx - dx) ** 2 + (y - cy + 0.05) ** 2 < 0.03**2, dark)
    mouth = (np.abs(x - cx) < 0.07) & (np.abs(y - cy - 0.13) < 0.015)
    _paint(img, mouth, _jitter(rng, k, (0.7, 0.25, 0.25), 0.03))
    return img


_RENDERERS: dict[str, Callable[[np.random.Generator, int, int], Canvas]] = {
    "sunset": _sunset,
    "beach": _beach,
    "food": _food,
    "pet": _pet,
    "city": _city,
    "portrait": _portrait,
}
assert tuple(_RENDERERS) == CLASSES


def render_images(
    rng: np.random.Generator, image_class: np.ndarray, quality: np.ndarray, size: int = IMAGE_SIZE
) -> np.ndarray:
    """uint8 ``(n, size, size, 3)`` pixels for a batch of photos (order of the inputs)."""
    n = len(image_class)
    out = np.empty((n, size, size, 3), np.uint8)
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(image_class == c)
        if len(idx) == 0:
            continue
        img = _RENDERERS[name](rng, len(idx), size)
        img *= rng.uniform(0.85, 1.15, (len(idx), 1, 1, 1)).astype(np.float32)
        sd = (0.10 - 0.04 * np.tanh(quality[idx])).astype(np.float32)[:, None, None, None]
        img += rng.standard_normal(img.shape, dtype=np.float32) * sd
        out[idx] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def encode_jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def broken_payload(jpeg: bytes, status: str, photo_id: int) -> bytes:
    """What lands instead of a good JPEG: its first 40% of bytes, or a text file."""
    if status == "truncated":
        return jpeg[: int(len(jpeg) * 0.4)]
    if status == "not_an_image":
        return (f"photo {photo_id}: upload failed, this is a placeholder text file\n" * 4).encode()
    return jpeg
