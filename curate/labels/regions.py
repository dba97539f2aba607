"""Regions without a detector: a grid (default) or SLIC superpixels, each with its box, area,
mean colour and a small colour histogram, the targets of masked region modelling.

The class target is a codebook entry: k-means over the region features of the corpus
(`fit_codebook`), saved with the run, then `assign`. Features are quantised to multiples of
1/1024 and centroids re-quantised after every update, so every sum and distance is exact in
float64: the codebook and the classes are the same on every CPU, whatever the SIMD path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FEATURES",
    "Region",
    "assign",
    "fit_codebook",
    "grid_regions",
    "lloyd_step",
    "pick_masked",
    "region_features",
    "superpixel_regions",
]

_Q = 1024.0  # feature quantum: 2**-10
FEATURES = 11  # mean RGB (3) and a 2x2x2 joint colour histogram (8), all in [0, 1]


@dataclass(frozen=True)
class Region:
    """A region: box (x0, y0, x1, y1) in pixels, x1/y1 exclusive; area in pixels; mean RGB
    in 0..255; a joint 2x2x2 colour histogram summing to 1."""

    box: tuple[int, int, int, int]
    area: int
    mean_rgb: tuple[float, float, float]
    hist: tuple[float, ...]

    def features(self) -> NDArray[np.float64]:
        return region_features([self])[0]


def _describe(pixels: NDArray[np.uint8], box: tuple[int, int, int, int]) -> Region:
    """A region from its (n, 3) pixels."""
    mean = pixels.mean(axis=0, dtype=np.float64)
    bins = (pixels >= 128).astype(np.int64)
    code = bins[:, 0] * 4 + bins[:, 1] * 2 + bins[:, 2]
    hist = np.bincount(code, minlength=8) / max(1, len(pixels))
    return Region(
        box=box,
        area=len(pixels),
        mean_rgb=(round(float(mean[0]), 3), round(float(mean[1]), 3), round(float(mean[2]), 3)),
        hist=tuple(round(float(h), 6) for h in hist),
    )


def grid_regions(image: NDArray[np.uint8], rows: int = 4, cols: int = 4) -> list[Region]:
    """The image (H, W, 3) cut into rows x cols cells, row by row."""
    h, w = image.shape[:2]
    ys = [round(i * h / rows) for i in range(rows + 1)]
    xs = [round(j * w / cols) for j in range(cols + 1)]
    out = []
    for i in range(rows):
        for j in range(cols):
            y0, y1, x0, x1 = ys[i], ys[i + 1], xs[j], xs[j + 1]
            if y1 > y0 and x1 > x0:
                cell = image[y0:y1, x0:x1].reshape(-1, 3)
                out.append(_describe(cell, (x0, y0, x1, y1)))
    return out


def superpixel_regions(image: NDArray[np.uint8], n: int = 16) -> list[Region]:
    """SLIC superpixels (scikit-image), largest first. Their boundaries come from float
    arithmetic and can differ across CPUs at ties; use the grid where bytes must match."""
    from skimage.segmentation import slic

    labels = slic(image, n_segments=n, compactness=10, start_label=0, channel_axis=-1)
    out = []
    for lab in np.unique(labels):
        ys, xs = np.nonzero(labels == lab)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        out.append(_describe(image[ys, xs], box))
    return sorted(out, key=lambda r: (-r.area, r.box))


def region_features(regions: list[Region]) -> NDArray[np.float64]:
    """(n, 11) features: mean RGB / 255 and the histogram, quantised to 1/1024."""
    if not regions:
        return np.zeros((0, FEATURES))
    raw = np.array([[*(c / 255 for c in r.mean_rgb), *r.hist] for r in regions], np.float64)
    return np.round(raw * _Q) / _Q


def pick_masked(n: int, ratio: float, rng: np.random.Generator) -> list[int]:
    """Which of n regions are masked: round(ratio * n) of them (at least one), sorted."""
    if n == 0:
        return []
    k = min(n, max(1, round(ratio * n)))
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False))


def _sq_dist(x: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
    """Exact squared distances between quantised points (every term a multiple of 2**-20)."""
    diff = x[:, None, :] - c[None, :, :]
    return (diff * diff).sum(axis=2)


_CHUNK = 16384  # rows per distance block: chunk x k x 11 float64 at a time


def assign(features: NDArray[np.float64], codebook: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each feature row's nearest codebook entry (lowest index on a tie), in blocks."""
    out = np.zeros(len(features), np.int64)
    for lo in range(0, len(features), _CHUNK):
        block = _sq_dist(features[lo : lo + _CHUNK], codebook)
        out[lo : lo + _CHUNK] = np.argmin(block, axis=1)
    return out


def _nearest_sq(x: NDArray[np.float64], centre: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared distance of every row to one centre, in blocks."""
    return np.concatenate(
        [_sq_dist(x[lo : lo + _CHUNK], centre[None, :])[:, 0] for lo in range(0, len(x), _CHUNK)]
    )


def lloyd_step(features: NDArray[np.float64], centres: NDArray[np.float64]) -> NDArray[np.float64]:
    """One Lloyd step over quantised features: each centre becomes the quantised mean of the
    rows nearest to it (an empty cluster keeps its centre). Rounding each coordinate of the
    mean is the nearest point of the quantum grid, so no step raises the within-cluster sum
    of squares: the steps settle on a fixed point, which `curate validate` checks."""
    k = len(centres)
    lab = assign(features, centres)
    counts = np.bincount(lab, minlength=k)
    sums = np.stack(
        [np.bincount(lab, weights=features[:, j], minlength=k) for j in range(features.shape[1])],
        1,
    )
    new = centres.copy()
    full = counts > 0  # exact sums of multiples of 2**-10
    new[full] = np.round(sums[full] / counts[full, None] * _Q) / _Q
    return new


def fit_codebook(
    features: NDArray[np.float64], k: int, rng: np.random.Generator, iters: int = 200
) -> NDArray[np.float64]:
    """k-means (k-means++ start, Lloyd steps until a fixed point, at most `iters`) over
    quantised features; (k', 11) with k' = min(k, distinct rows)."""
    x = np.round(np.asarray(features, np.float64) * _Q) / _Q
    distinct = np.unique(x, axis=0)
    k = min(k, len(distinct))
    if k == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else FEATURES))
    centres = [distinct[int(rng.integers(len(distinct)))]]
    d = _nearest_sq(distinct, centres[0])  # running minimum: exact, so as if recomputed
    for _ in range(1, k):
        total = d.sum()
        p: Any = d / total if total > 0 else None
        centres.append(distinct[int(rng.choice(len(distinct), p=p))])
        d = np.minimum(d, _nearest_sq(distinct, centres[-1]))
    c = np.array(centres)
    for _ in range(iters):
        new = lloyd_step(x, c)
        if np.array_equal(new, c):
            break
        c = new
    return c
