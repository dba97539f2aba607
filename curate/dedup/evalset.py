"""Load an evaluation set as features, processed exactly like training images.

Eval images go through the same decode and resize as the corpus (a border or centre crop
changes a pHash), so a training copy of an eval image hashes like it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import polars as pl

from curate.config import EvalSet, ImageConfig
from curate.dedup.find import EvalData
from curate.errors import ConfigError, SampleFailure
from curate.features.hashes import THUMB_SIZE, signature
from curate.io.sources import IMAGE_SUFFIXES, _read_one_table, _table_format
from curate.io.store import StorageOptions, is_url, location, read_parquet, version
from curate.media.image import process_image

__all__ = ["eval_digest", "load_eval"]


def _image_bytes(spec: str, options: StorageOptions | None) -> list[tuple[str, bytes]]:
    p = location(spec, options)
    if p.is_dir():
        found = (f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        files = sorted(found, key=lambda f: tuple(f.parts))
        return [(f.path[len(p.path) :].lstrip("/"), f.read_bytes()) for f in files if f.is_file()]
    if p.suffix.lower() in (".parquet", ".pq"):
        df = read_parquet(p)
        if "image" in df.columns:
            col = df["image"]
            if col.dtype == pl.Struct:  # Hugging Face Image feature: {bytes, path}
                col = col.struct.field("bytes")
            return [(str(i), bytes(b)) for i, b in enumerate(col.to_list()) if b is not None]
        if "path" in df.columns:
            base = p.parent
            return [(x, (base / x).read_bytes()) for x in df["path"].drop_nulls().to_list()]
        raise ConfigError(f"{p}: an eval image table needs an `image` or `path` column")
    raise ConfigError(f"{p}: eval images must be a folder or a parquet file")


def _captions(spec: str, options: StorageOptions | None) -> list[str]:
    p = location(spec, options)
    if p.suffix.lower() == ".txt":
        lines = p.read_bytes().decode("utf-8", errors="replace").splitlines()
        return [x.strip() for x in lines if x.strip()]
    fmt, gz = _table_format(spec, "auto")
    df = _read_one_table(spec if is_url(spec) else str(p), fmt, gz, options)
    if "caption" not in df.columns:
        raise ConfigError(f"{p}: an eval caption table needs a `caption` column")
    return [str(c) for c in df["caption"].drop_nulls().to_list()]


def load_eval(
    ev: EvalSet, image_cfg: ImageConfig, options: StorageOptions | None = None
) -> EvalData:
    """pHashes and thumbnails of the eval images (undecodable ones are skipped) and captions;
    paths may be store URLs, read with `options` for their protocol."""
    for spec in (ev.images, ev.captions):
        if spec is not None and not location(spec, options).exists():
            raise ConfigError(f"eval set {ev.name!r}: {spec} does not exist")
    hashes: list[int] = []
    thumbs: list[Any] = []
    for _, data in _image_bytes(ev.images, options) if ev.images else []:
        try:
            stored = process_image(data, image_cfg).data
        except SampleFailure:
            continue
        h, t = signature(stored)
        hashes.append(h)
        thumbs.append(t)
    return EvalData(
        name=ev.name,
        phash=np.array(hashes, dtype=np.uint64),
        thumbs=np.stack(thumbs) if thumbs else np.zeros((0, THUMB_SIZE, THUMB_SIZE, 3), np.uint8),
        captions=_captions(ev.captions, options) if ev.captions else [],
    )


def eval_digest(evals: list[EvalSet], options: StorageOptions | None = None) -> str:
    """Changes when an eval set's files change, so the dedup stage is redone."""
    h = hashlib.sha256()
    for ev in evals:
        for spec in (ev.images, ev.captions):
            if spec is None:
                continue
            p = location(spec, options)
            files = (
                sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: tuple(f.parts))
                if p.is_dir()
                else [p]
            )
            for f in files:
                h.update(f"{ev.name}:{f}:{version(f)}\n".encode())
    return h.hexdigest()
