"""The CLIP stage over one partition: embeddings and scores for the samples features saw.

Reads the stored (already resized) images of the raw tar, in the order of
features/NNNNN.parquet, and writes beside it NNNNN.emb.npy (image) and NNNNN.txt.npy (caption)
embeddings as float16 and NNNNN.clip.parquet (uid, clip_score), so semantic dedup and later
stages reuse them. The task's inputs name the model, so a change of model redoes them; with
CLIP turned off the task removes them, so no stale score reaches the filters.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.config import ClipConfig, PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest
from curate.features.clip import encode_images, encode_texts
from curate.features.clip_model import TINY_MODEL, load_clip, tiny_checkpoint
from curate.io.atomic import atomic_open
from curate.io.store import AnyPath, read_parquet
from curate.media.image import pictures
from curate.rundir import RunDir, RunRoot
from curate.shards.tar import iter_tar_samples
from curate.tables import CLIP_SCHEMA, write_table

__all__ = ["CLIP", "clip_partition", "frame_scores", "model_key"]


# Bump when the embedding or scoring code changes what it writes.
# 2: clips scored by all their frames (mean and best); clip_score_max.
CLIP_VERSION = "2"


def _weights_id(cfg: ClipConfig) -> str:
    """Which weights a local checkpoint holds: the bundled tiny one by content, a user's
    file by size and mtime (hashing gigabytes per plan would cost more than it saves)."""
    if cfg.pretrained is None and cfg.model == TINY_MODEL and tiny_checkpoint().is_file():
        return hashlib.sha256(tiny_checkpoint().read_bytes()).hexdigest()
    path = Path(cfg.pretrained) if cfg.pretrained else None
    if path is not None and path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    return ""  # an open_clip tag names fixed published weights


def model_key(cfg: ClipConfig) -> str:
    """What the scores depend on: model, weights and precision (not device or batch size)."""
    text = f"{cfg.model}|{cfg.pretrained}|{cfg.precision}|{_weights_id(cfg)}|{CLIP_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_npy(path: AnyPath, array: np.ndarray[Any, Any]) -> None:
    with atomic_open(path) as f:
        np.save(f, array)


def frame_scores(
    frame_emb: np.ndarray[Any, Any], owner: np.ndarray[Any, Any], text_emb: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Per sample, from the embeddings of its pictures (`owner[k]` is picture k's sample,
    non-decreasing: a sample's pictures are consecutive):
    the normalised mean picture embedding, and the mean and best cosine to its text. A
    single image's mean and best are its score."""
    n = len(text_emb)
    if owner.size and np.any(np.diff(owner) < 0):
        raise ValueError("frame_scores: pictures must be grouped by sample, in order")
    cos = np.einsum("ij,ij->i", frame_emb, text_emb[owner]).astype(np.float64)
    count = np.bincount(owner, minlength=n).astype(np.float64)
    mean = (np.bincount(owner, weights=cos, minlength=n) / np.maximum(count, 1)).astype(np.float32)
    best = np.full(n, -np.inf)
    np.maximum.at(best, owner, cos)
    pooled = np.zeros((n, frame_emb.shape[1]), np.float64)
    np.add.at(pooled, owner, frame_emb.astype(np.float64))
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    pooled = pooled.astype(np.float32)
    single = count == 1  # an image keeps its own embedding, bit for bit
    pooled[single] = frame_emb[np.flatnonzero(np.isin(owner, np.flatnonzero(single)))]
    return pooled, mean, best.astype(np.float32)


def clip_partition(run_dir: RunRoot, part: str, cfg: ClipConfig) -> dict[str, Any]:
    """Embed and score one partition's samples, in features order: an image by itself, a
    clip by its sampled frames (mean and best frame score; its stored embedding the mean)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir(run_dir)
    uids = read_parquet(run.features(part), columns=["uid"])["uid"].to_list()
    raw = read_parquet(run.raw_table(part), columns=["uid", "caption"])
    captions = dict(zip(raw["uid"], raw["caption"], strict=True))
    wanted = set(uids)
    found: dict[str, list[bytes]] = {}
    for key, members in iter_tar_samples(run.raw_tar(part)):
        if key in wanted:
            found[key] = pictures(members)
            if not found[key]:
                raise ValueError(f"sample {key} has no picture to score")
    images = [im for u in uids for im in found[u]]
    owner = np.repeat(np.arange(len(uids)), [len(found[u]) for u in uids])
    cm = load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision)
    txt = encode_texts(cm, [captions[u] for u in uids])
    img, mean, best = frame_scores(encode_images(cm, images, cfg.batch_size), owner, txt)
    _save_npy(run.image_embeddings(part), img.astype(np.float16))
    _save_npy(run.text_embeddings(part), txt.astype(np.float16))
    table = pl.DataFrame(
        {"uid": uids, "clip_score": mean, "clip_score_max": best}, schema=CLIP_SCHEMA
    )
    write_table(run.clip_scores(part), table)
    return {"partition": part, "samples": len(uids), "model": model_key(cfg)}


def clear_clip(run_dir: RunRoot) -> dict[str, Any]:
    """CLIP is off: remove what an earlier run with it on left, in one task for the run."""
    run = RunDir(run_dir)
    removed = 0
    for part in run.partitions():
        for path in (run.clip_scores(part), run.image_embeddings(part), run.text_embeddings(part)):
            removed += path.exists()
            path.unlink(missing_ok=True)
    return {"removed": removed}


def _plan(p: Plan) -> list[Task]:
    run, cfg = p.run, p.cfg.clip
    root = run.root
    if not cfg.enabled:
        return [Task("off", clear_clip, (root,), digest("off"))]
    key = model_key(cfg)
    return [
        Task(
            part,
            clip_partition,
            (root, part, cfg),
            digest(run.marker("features", part), key),
            (run.clip_scores(part), run.image_embeddings(part), run.text_embeddings(part)),
        )
        for part in run.partitions()
    ]


def _resources(cfg: PipelineConfig) -> dict[str, float] | None:
    """On a mixed cluster a GPU stage goes to workers started with `--resources GPU=1`."""
    return {"GPU": 1.0} if cfg.clip.enabled and cfg.clip.device.startswith("cuda") else None


CLIP = Stage("clip", _plan, resources=_resources)
