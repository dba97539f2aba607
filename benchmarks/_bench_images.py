"""Deterministic web-like benchmark JPEGs from scikit-image's bundled photos (offline).

Sizes follow what an image-text crawl returns: megapixels log-normal around a 0.6 MP median
(most 0.25–1.5 MP, about 3 % are 2–4 MP photos), common aspect ratios, JPEG quality 78–93,
which lands the files around a 100 KB median. The bundled photos are small, so each image is
an aspect-correct random crop rescaled with LANCZOS, then flipped, colour-jittered and given
sensor-like grain so it compresses like a photo rather than a smooth upscale.

Image `i` depends only on `i` (its generator is `SeedSequence(0, spawn_key=(i,))`), so a
cache of N images extends to M > N without regenerating, and any worker count gives the same
bytes.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ensure_images", "size_summary"]

# Colour photos twice as likely as the grey ones (which are stored as RGB, as the web does).
SOURCES = [
    *["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"] * 2,
    *["immunohistochemistry", "retina", "colorwheel", "cat"] * 2,
    *["camera", "coins", "moon", "brick", "grass", "gravel", "clock", "cell", "page"],
]
_ASPECTS = (1.0, 4 / 3, 4 / 3, 3 / 2, 3 / 2, 16 / 9, 3 / 4, 2 / 3, 2 / 3, 9 / 16)
_STYLE = ("a photo of", "a close-up of", "a picture showing", "a snapshot of", "an image of")
_VERSION = 2
MEDIAN_MP = 0.6


@functools.cache
def _load(name: str) -> np.ndarray:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def _megapixels(rng: np.random.Generator) -> float:
    """Log-normal around MEDIAN_MP; a few large photos as crawls have them."""
    if rng.random() < 0.03:
        return float(rng.uniform(2.0, 4.0))
    return float(np.clip(MEDIAN_MP * np.exp(rng.normal(0.0, 0.5)), 0.12, 2.0))


def _make(i: int) -> tuple[str, str, bytes]:
    """One JPEG: aspect-correct random crop, LANCZOS rescale, flip, jitter, grain, q78–93."""
    rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(i,)))
    name = SOURCES[int(rng.integers(len(SOURCES)))]
    src = _load(name)
    ar = float(rng.choice(_ASPECTS))
    mp = _megapixels(rng) * 1e6
    w = max(16, round((mp * ar) ** 0.5))
    h = max(16, round(w / ar))
    sh, sw = src.shape[:2]
    f = float(rng.uniform(0.5, 1.0))
    cw, ch = sw * f, sw * f / ar
    if ch > sh * f:
        cw, ch = sh * f * ar, sh * f
    x0 = float(rng.uniform(0, sw - cw))
    y0 = float(rng.uniform(0, sh - ch))
    img = Image.fromarray(src).resize(
        (w, h), Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch)
    )
    a = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        a = a[:, ::-1]
    gain = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    a = a * gain + np.float32(rng.uniform(-10, 10))
    a = a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(rng.uniform(2.5, 6.0))
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    caption = f"{rng.choice(_STYLE)} {name.replace('_', ' ')} #{i}"
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(78, 94)))
    return f"img_{i:06d}.jpg", caption, buf.getvalue()


def _make_and_write(args: tuple[int, str]) -> tuple[str, str]:
    i, folder = args
    fname, caption, data = _make(i)
    (Path(folder) / fname).write_bytes(data)
    return fname, caption


def ensure_images(workdir: Path, n: int) -> tuple[list[tuple[str, str]], float]:
    """Make sure `workdir/files` holds images 0..n-1; return (name, caption) pairs and seconds."""
    files = workdir / "files"
    files.mkdir(parents=True, exist_ok=True)
    index_path = workdir / "images.json"
    index: dict[str, str] = {}
    if index_path.exists():
        saved = json.loads(index_path.read_text())
        if saved.get("version") == _VERSION:
            index = saved["captions"]
    names = [f"img_{i:06d}.jpg" for i in range(n)]
    todo = [i for i, f in enumerate(names) if f not in index or not (files / f).exists()]
    t0 = time.perf_counter()
    if todo:
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            for fname, caption in pool.map(
                _make_and_write, [(i, str(files)) for i in todo], chunksize=16
            ):
                index[fname] = caption
        index_path.write_text(json.dumps({"version": _VERSION, "captions": index}))
    return [(f, index[f]) for f in names], time.perf_counter() - t0


def size_summary(paths: list[Path]) -> str:
    """Median and spread of megapixels and file sizes, read from the JPEG headers."""
    mp, kb = [], []
    for p in paths:
        with Image.open(p) as im:
            mp.append(im.width * im.height / 1e6)
        kb.append(p.stat().st_size / 1e3)
    q = np.percentile
    return (
        f"MP median {np.median(mp):.2f} (p10 {q(mp, 10):.2f}, p90 {q(mp, 90):.2f}, "
        f"max {max(mp):.1f}); KB median {np.median(kb):.0f} (p10 {q(kb, 10):.0f}, "
        f"p90 {q(kb, 90):.0f}, max {max(kb):.0f})"
    )
