"""The features stage over one raw partition: hashes and thumbnails, written beside it.

A pure function of the raw partition, so it reruns anywhere with the same bytes. The image
is the stored (already resized) one, decoded at reduced size: never a second full decode of
the original. The fetch stage computes the same rows while the partition's bytes are still
in memory and writes them with `write_features`; this stage then finds them done, and only
recomputes a partition whose marker is missing or names another raw partition.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import polars as pl

from curate.dedup.captions import caption_hash
from curate.features.hashes import sha256_hex, signature
from curate.io.atomic import write_bytes, write_json
from curate.shards.tar import iter_tar_samples

__all__ = [
    "FEATURES_SCHEMA",
    "feature_row",
    "feature_table",
    "features_partition",
    "partition_files",
    "raw_digest",
    "write_features",
]

FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "sha256": pl.String(),
    "phash": pl.UInt64(),
    "thumb": pl.Binary(),
    "caption_hash": pl.String(),
    "url_caption_hash": pl.String(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "original_width": pl.Int32(),
    "original_height": pl.Int32(),
}
_IMAGE_EXTS = ("jpg", "png", "webp")


def partition_files(folder: Path, suffix: str) -> list[Path]:
    """Per-partition files `NNNNN<suffix>` in partition order (not e.g. NNNNN.clip<suffix>)."""
    return sorted(p for p in folder.glob(f"*{suffix}") if p.name[: -len(suffix)].isdigit())


def feature_table(run_dir: Path) -> pl.DataFrame:
    """Features of every fetched sample, partition order, with its caption and, when the
    CLIP stage ran, its `clip_score`."""
    frames = []
    for f in partition_files(run_dir / "features", ".parquet"):
        raw = pl.read_parquet(run_dir / "raw" / f.name, columns=["uid", "caption"])
        frame = pl.read_parquet(f).join(raw, on="uid", how="left", maintain_order="left")
        scored = f.with_name(f"{f.stem}.clip.parquet")
        if scored.exists():
            scores = pl.read_parquet(scored)
            frame = frame.join(scores, on="uid", how="left", maintain_order="left")
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def raw_digest(run_dir: Path, name: str) -> str:
    """Identifies a raw partition's content, so features of an older fetch are redone."""
    return hashlib.sha256((run_dir / "raw" / f"{name}.parquet").read_bytes()).hexdigest()


def _url_caption(url: str | None, path: str | None, caption: str | None) -> str:
    key = f"{url or path or ''}\x00{caption or ''}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def feature_row(record: dict[str, Any], members: dict[str, bytes]) -> dict[str, Any]:
    """One ok sample's features from its raw-table record and its stored members."""
    ext = next((e for e in _IMAGE_EXTS if e in members), None)
    if ext is None:
        raise ValueError(f"raw sample {record['uid']} has no image member ({sorted(members)})")
    data = members[ext]
    ph, thumb = signature(data)
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
    }


def features_partition(run_dir: str, name: str) -> dict[str, Any]:
    """features/NNNNN.parquet (one row per ok sample, raw order), then its marker."""
    root = Path(run_dir)
    raw = pl.read_parquet(root / "raw" / f"{name}.parquet").filter(pl.col("status") == "ok")
    records = {r["uid"]: r for r in raw.to_dicts()}
    rows = [
        feature_row(records[key], members)
        for key, members in iter_tar_samples(root / "raw" / f"{name}.tar")
        if key in records
    ]
    if len(rows) != len(records):
        raise RuntimeError(f"raw/{name}.tar holds {len(rows)} of {len(records)} ok samples")
    return write_features(root, name, rows)


def write_features(root: Path, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """features/NNNNN.parquet from rows in raw order, then the marker naming the raw digest."""
    table = pl.DataFrame(rows, schema=FEATURES_SCHEMA)
    buf = io.BytesIO()
    table.write_parquet(buf, compression="zstd", statistics=False)
    write_bytes(root / "features" / f"{name}.parquet", buf.getvalue())
    summary = {"partition": name, "samples": table.height, "raw": raw_digest(root, name)}
    write_json(root / "features" / f"{name}.done.json", summary)
    return summary
