"""Deterministic, realistic benchmark JPEGs from scikit-image's bundled photos (offline).

Image `i` depends only on `i` (its generator is `SeedSequence(0).spawn(...)[i]`), so a cache
of N images extends to M > N without regenerating, and any worker count gives the same bytes.
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
import skimage.data
from PIL import Image

__all__ = ["ensure_images"]

SOURCES = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "text",
    "clock",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "cell",
]
_ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 3 / 4, 2 / 3, 9 / 16)
_STYLE = ("a photo of", "a close-up of", "a picture showing", "a snapshot of", "an image of")
_VERSION = 1


@functools.cache
def _load(name: str) -> np.ndarray:
    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def _make(i: int) -> tuple[str, str, bytes]:
    """One JPEG of 0.3–2 MP: aspect-correct random crop, LANCZOS rescale, flip, jitter, noise."""
    rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(i,)))
    name = SOURCES[int(rng.integers(len(SOURCES)))]
    src = _load(name)
    ar = float(rng.choice(_ASPECTS))
    mp = float(rng.uniform(0.3, 2.0)) * 1e6
    w = round((mp * ar) ** 0.5)
    h = round(w / ar)
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
    a = a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 3.0))
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    caption = f"{rng.choice(_STYLE)} {name.replace('_', ' ')} #{i}"
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(85, 93)))
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
