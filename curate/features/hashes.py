"""Perceptual hashes and verification thumbnails, from one reduced decode of a stored image.

pHash (DCT of a 32×32 grey image, 8×8 low frequencies against their median) finds candidate
near-duplicates cheaply, but it sees only luminance layout: two flat-background images with
different small objects can hash alike. So each sample also keeps a 24×24 colour thumbnail,
and candidates are verified with a shift-tolerant colour distance before they are joined.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "DCT_LOW",
    "THUMB_SIZE",
    "VERIFY_THRESHOLD",
    "dct_low",
    "phash",
    "phash_gray",
    "sha256_hex",
    "signature",
    "thumb_distance",
]

THUMB_SIZE = 24
# Measured on the synthetic web (seed 11, 3 resize modes): verified planted copies ≤ 0.21,
# lookalikes within pHash distance 8 ≥ 0.33 (tests/dedup/test_quality.py prints both).
VERIFY_THRESHOLD = 0.28
_HASH_SIDE = 32
_SHIFT = 1
# The distance is the 99.5th percentile of a thumbnail's per-pixel differences, linearly
# interpolated as numpy's default quantile does, but in integers: rank (n - 1) · 995 / 1000.
_QUANTILE_PER_MILLE = 995
_BITS = np.arange(64, dtype=np.uint64)
# Fixed-point scale of the DCT matrix and of the brightness gain; products stay far inside
# int64 (32 · 255 · 2¹⁶ · 32 · 2¹⁶ < 2⁶³).
_DCT_BITS = 16
_GAIN_BITS = 12
_GAIN_MIN, _GAIN_MAX = 0.8, 1.25


def _dct_matrix(n: int, rows: int) -> NDArray[np.int64]:
    """The first `rows` rows of the orthonormal DCT-II, rounded to integers at 2^-16.

    Integer matrices make the hash exact: a float matmul goes through a BLAS kernel that the
    CPU picks at run time (SkylakeX, Haswell, Zen…), whose rounding differs in the last bits,
    enough to flip a coefficient that sits on the median. `tests/features/test_golden.py`
    pins the matrix's digest, so a `cos` that rounded differently would fail loudly.
    """
    k = np.arange(rows)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return np.rint(m * (1 << _DCT_BITS)).astype(np.int64)


DCT_LOW = _dct_matrix(_HASH_SIDE, 8)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dct_low(gray: NDArray[Any]) -> NDArray[np.int64]:
    """8×8 low-frequency DCT coefficients of 32×32 grey images (n, 32, 32) → (n, 8, 8).

    Exact integer arithmetic (no BLAS, no float), so every CPU gives the same numbers.
    """
    g = np.asarray(gray)
    if g.ndim == 2:
        g = g[None]
    if g.shape[1:] != (_HASH_SIDE, _HASH_SIDE):
        raise ValueError(f"phash wants 32×32 grey images, got shape {g.shape}")
    if g.dtype.kind == "f":
        g = np.rint(g)  # exact for integral values; rounds the rest
    g = np.clip(g, 0, 255).astype(np.int64)
    rows = np.einsum("kx,nxy->nky", DCT_LOW, g)
    return np.einsum("nky,ly->nkl", rows, DCT_LOW)


def phash_gray(gray: NDArray[Any]) -> NDArray[np.uint64]:
    """pHash of 32×32 grey images (values 0–255), shape (n, 32, 32) or (32, 32).

    Bit i is set when low-frequency coefficient i lies above the median of the 64; the
    comparison is done as 2·c > s[31] + s[32] so it stays in integers.
    """
    coeffs = dct_low(gray).reshape(-1, 64)
    mid = np.partition(coeffs, (31, 32), axis=1)
    bits = 2 * coeffs > (mid[:, 31] + mid[:, 32])[:, None]
    return (bits.astype(np.uint64) << _BITS).sum(axis=1, dtype=np.uint64)


def _load(image: Image.Image | bytes | str | Path | NDArray[Any]) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.asarray(image, dtype=np.uint8))
    if isinstance(image, (str, Path)):
        image = Path(image).read_bytes()
    im = Image.open(io.BytesIO(image))
    # JPEGs decode straight to about 64 px in the DCT domain: no second full decode.
    im.draft("RGB", (2 * _HASH_SIDE, 2 * _HASH_SIDE))
    return im


def signature(
    image: Image.Image | bytes | str | Path | NDArray[Any],
) -> tuple[int, NDArray[np.uint8]]:
    """(pHash, 24×24×3 uint8 thumbnail) of one image given as PIL, bytes, path or array."""
    rgb = _load(image).convert("RGB")
    small = rgb.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    gray = np.asarray(small.convert("L"), dtype=np.uint8)
    thumb = np.asarray(rgb.resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX), np.uint8)
    return int(phash_gray(gray)[0]), thumb


def phash(images: Iterable[Image.Image | bytes | str | Path | NDArray[Any]]) -> NDArray[np.uint64]:
    """64-bit pHash per image (PIL images, encoded bytes, file paths or HxWx3 arrays)."""
    hashes = [signature(im)[0] for im in images]
    return np.array(hashes, dtype=np.uint64)


def thumb_distance(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Colour distance of thumbnail pairs (n, 24, 24, 3): 0 same, ~0.2 edited copy, >0.35 not.

    Brightness is matched by a clipped global gain; each pixel may match any pixel within one
    step (crops shift content); the 99.5th percentile of the worst channel difference, taken
    both ways, ignores a couple of stray pixels but not a changed object. All in integers
    until one final division, so the distance is the same on every CPU.
    """
    x = np.asarray(a, dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE, 3).astype(np.int32)
    y = np.asarray(b, dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE, 3).astype(np.int32)
    worst = np.maximum(_one_way(x, y), _one_way(y, x))
    return (worst / (1000 * 255)).astype(np.float32)


def _gain_q(x: NDArray[np.int32], y: NDArray[np.int32]) -> NDArray[np.int64]:
    """Brightness gain mean(x) / mean(y) in fixed point (2^12), rounded, clipped to 0.8–1.25."""
    sx = x.sum(axis=(1, 2, 3), dtype=np.int64)
    sy = np.maximum(y.sum(axis=(1, 2, 3), dtype=np.int64), 1)
    q = (sx * (1 << _GAIN_BITS) + sy // 2) // sy
    one = 1 << _GAIN_BITS
    return np.clip(q, round(_GAIN_MIN * one), round(_GAIN_MAX * one))


def _one_way(x: NDArray[np.int32], y: NDArray[np.int32]) -> NDArray[np.int64]:
    """99.5th percentile of x's per-pixel distance to y, ×1000 (in 1/255 steps)."""
    gain = _gain_q(x, y).astype(np.int32)
    half = np.int32(1 << (_GAIN_BITS - 1))
    y = (y * gain[:, None, None, None] + half) >> _GAIN_BITS
    s, r = THUMB_SIZE, _SHIFT
    padded = np.pad(y, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    best = np.full(x.shape[:3], np.iinfo(np.int32).max, dtype=np.int32)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            diff = np.abs(x - padded[:, dy : dy + s, dx : dx + s]).max(axis=3)
            np.minimum(best, diff, out=best)
    flat = best.reshape(len(x), -1)
    pos = (flat.shape[1] - 1) * _QUANTILE_PER_MILLE
    lo, frac = divmod(pos, 1000)
    part = np.partition(flat, (lo, lo + 1), axis=1)
    return part[:, lo].astype(np.int64) * (1000 - frac) + part[:, lo + 1].astype(np.int64) * frac
