"""Per-sample features of one raw partition: hashes, thumbnail, caption keys.

A pure function of the raw partition, so it reruns anywhere with the same bytes. The image
is the stored (already resized) one, decoded at reduced size: never a second full decode of
the original. The fetch computes the same rows while a partition's bytes are still in memory
and writes them with `write_features`, reporting the features stage's task as complete.
"""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

from curate.engine.stage import digest
from curate.features.hashes import sha256_hex, signature
from curate.features.text import caption_hash
from curate.io.store import read_parquet
from curate.media.image import IMAGE_EXTS, pictures
from curate.rundir import RunDir, RunRoot
from curate.shards.tar import iter_tar_samples
from curate.tables import FEATURES_SCHEMA, write_table

__all__ = [
    "FEATURES_VERSION",
    "feature_row",
    "features_inputs",
    "features_partition",
    "write_features",
]

# Bump when feature_row computes something else: every partition's features are redone.
# 2: in-source images have no url_caption_hash. 3: frame_phash of clips.
FEATURES_VERSION = "3"


def features_inputs(raw_sha256: str) -> str:
    """What a partition's features are a function of: its raw records (whose digest the
    fetch reports; they change with every change of the raw tar) and the code's version."""
    return digest(raw_sha256, FEATURES_VERSION)


def _url_caption(url: str | None, path: str | None, caption: str | None) -> str:
    """Key for "the same URL (or file) with the same caption"; "" (never a duplicate) for
    in-source images, which have no locator: two different images captioned alike are not
    the same sample."""
    locator = url or path
    if not locator:
        return ""
    key = f"{locator}\x00{caption or ''}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def _is_image(members: dict[str, bytes]) -> bool:
    return any(e in members for e in IMAGE_EXTS)


def feature_row(record: dict[str, Any], members: dict[str, bytes]) -> dict[str, Any] | None:
    """One ok sample's features from its raw-table record and its stored members; None for
    a sample with no picture (audio), which the picture-based dedup and filters skip."""
    shown = pictures(members)
    if not shown:
        return None
    sigs = [signature(p) for p in shown]  # each picture decoded once
    mid = len(shown) // 2  # the image, or a clip's middle frame, stands for the sample
    data, (ph, thumb) = shown[mid], sigs[mid]
    return {
        "uid": record["uid"],
        "sha256": sha256_hex(data),
        "phash": ph,
        "thumb": thumb.tobytes(),
        "caption_hash": caption_hash(record["caption"]),
        "url_caption_hash": _url_caption(record["url"], record["path"], record["caption"]),
        "width": record["width"],
        "height": record["height"],
        "original_width": record["original_width"],
        "original_height": record["original_height"],
        "frame_phash": [] if _is_image(members) else [h for h, _ in sigs],
    }


def write_features(run: RunDir, part: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """features/NNNNN.parquet from rows in raw order; returns the task summary."""
    table = pl.DataFrame(rows, schema=FEATURES_SCHEMA)
    write_table(run.features(part), table)
    return {"partition": part, "samples": table.height}


def features_partition(run_dir: RunRoot, part: str) -> dict[str, Any]:
    """The features stage's task: features of the ok samples of raw/NNNNN.tar."""
    run = RunDir(run_dir)
    raw = read_parquet(run.raw_table(part)).filter(pl.col("status") == "ok")
    records = {r["uid"]: r for r in raw.to_dicts()}
    found = [
        feature_row(records[key], members)
        for key, members in iter_tar_samples(run.raw_tar(part))
        if key in records
    ]
    if len(found) != len(records):
        raise RuntimeError(f"{run.raw_tar(part)} holds {len(found)} of {len(records)} ok samples")
    return write_features(run, part, [row for row in found if row is not None])
