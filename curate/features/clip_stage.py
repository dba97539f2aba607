"""The CLIP stage over one partition: embeddings and scores for the samples features saw.

Reads the stored (already resized) images of the raw tar, in the order of
features/NNNNN.parquet, and writes beside it NNNNN.emb.npy (image) and NNNNN.txt.npy (caption)
embeddings as float16, NNNNN.clip.parquet (uid, clip_score) and a marker naming the model, so
semantic dedup and later stages reuse them and a change of model redoes them.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.config import ClipConfig
from curate.features.clip import encode_images, encode_texts, scores
from curate.features.clip_model import load_clip
from curate.io.atomic import atomic_open, write_bytes, write_json
from curate.shards.tar import iter_tar_samples

__all__ = ["CLIP_SCHEMA", "clip_partition", "model_key"]

CLIP_SCHEMA: dict[str, pl.DataType] = {"uid": pl.String(), "clip_score": pl.Float32()}
_IMAGE_EXTS = ("jpg", "png", "webp")


def model_key(cfg: ClipConfig) -> str:
    """What the scores depend on: model, weights and precision (not device or batch size)."""
    text = f"{cfg.model}|{cfg.pretrained}|{cfg.precision}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray[Any, Any]) -> None:
    with atomic_open(path) as f:
        np.save(f, array)


def clip_partition(run_dir: str, name: str, cfg: ClipConfig, features: str) -> dict[str, Any]:
    """Embed and score one partition; `features` is its features marker digest (for resume)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root = Path(run_dir)
    feats = root / "features"
    uids = pl.read_parquet(feats / f"{name}.parquet", columns=["uid"])["uid"].to_list()
    raw = pl.read_parquet(root / "raw" / f"{name}.parquet", columns=["uid", "caption"])
    captions = dict(zip(raw["uid"], raw["caption"], strict=True))
    wanted = set(uids)
    images: dict[str, bytes] = {}
    for key, members in iter_tar_samples(root / "raw" / f"{name}.tar"):
        if key in wanted:
            images[key] = next(members[e] for e in _IMAGE_EXTS if e in members)
    cm = load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision)
    img = encode_images(cm, (images[u] for u in uids), cfg.batch_size)
    txt = encode_texts(cm, [captions[u] for u in uids])
    _save_npy(feats / f"{name}.emb.npy", img.astype(np.float16))
    _save_npy(feats / f"{name}.txt.npy", txt.astype(np.float16))
    table = pl.DataFrame({"uid": uids, "clip_score": scores(img, txt)}, schema=CLIP_SCHEMA)
    buf = io.BytesIO()
    table.write_parquet(buf, compression="zstd", statistics=False)
    write_bytes(feats / f"{name}.clip.parquet", buf.getvalue())
    summary = {
        "partition": name,
        "samples": len(uids),
        "model": model_key(cfg),
        "features": features,
    }
    write_json(feats / f"{name}.clip.done.json", summary)
    return summary
