"""Every table of a run: its schema, its reader, and the one way curate writes parquet.

Stages, the ledger, notebooks and reports read run tables through here, never through stage
code, so a stage package imports no other stage to learn a file's shape. The ledger schema is
composed from the tables it joins. The `json` member of each sample and the shards' manifest
are described once, as pydantic models, and both writers and `curate schema` use them.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from curate.io.atomic import write_bytes
from curate.io.store import AnyPath, as_path, is_local, read_parquet, scan_files
from curate.rundir import RunDir

__all__ = [
    "CLIP_SCHEMA",
    "DEDUP_SCHEMA",
    "FEATURES_SCHEMA",
    "FILTER_SCHEMA",
    "INGEST_SCHEMA",
    "LEDGER_SCHEMA",
    "MANIFEST_VERSION",
    "PLACEMENT_SCHEMA",
    "RAW_SCHEMA",
    "UID_PATTERN",
    "ClipMeta",
    "Manifest",
    "ManifestShard",
    "SampleMeta",
    "clip_scores",
    "derived_uid",
    "feature_table",
    "open_ledger",
    "parent_expr",
    "parent_uid",
    "raw_table",
    "read_dedup",
    "read_filtered",
    "read_placement",
    "read_table",
    "sample_json",
    "write_table",
]

Schema = dict[str, pl.DataType]

INGEST_SCHEMA: Schema = {
    "uid": pl.String(),
    "source": pl.String(),
    "url": pl.String(),
    "path": pl.String(),
    "image": pl.Binary(),
    "caption": pl.String(),
    "extra": pl.String(),
}

# raw/NNNNN.parquet: one record per input row, whatever happened to it.
RAW_SCHEMA: Schema = {
    "uid": pl.String(),
    "source": pl.String(),
    "url": pl.String(),
    "path": pl.String(),
    "caption": pl.String(),
    "status": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
    "stage": pl.String(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "original_width": pl.Int32(),
    "original_height": pl.Int32(),
    "bytes": pl.Int64(),
}

# features/NNNNN.parquet: one row per fetched sample, raw order.
FEATURES_SCHEMA: Schema = {
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
    "frame_phash": pl.List(pl.UInt64()),  # a clip's sampled frames, in time order; [] images
}

# features/NNNNN.clip.parquet: an image's CLIP score (both columns); a clip's mean and best
# over its sampled frames.
CLIP_SCHEMA: Schema = {
    "uid": pl.String(),
    "clip_score": pl.Float32(),
    "clip_score_max": pl.Float32(),
}

# decisions/dedup.parquet: dropped duplicates, how they were found and what they duplicate.
DEDUP_SCHEMA: Schema = {"uid": pl.String(), "dedup_method": pl.String(), "dup_of": pl.String()}

# decisions/placement/NNNNN.parquet: where each kept sample of a partition goes (the plan).
PLACEMENT_SCHEMA: Schema = {"uid": pl.String(), "shard": pl.String(), "key": pl.String()}

# decisions/filter/NNNNN.parquet: per partition, dropped samples, the first failed rule and every
# failed rule.
FILTER_SCHEMA: Schema = {
    "uid": pl.String(),
    "filter_reason": pl.String(),
    "filter_reasons": pl.String(),
}


def _without_uid(schema: Schema) -> Schema:
    return {k: v for k, v in schema.items() if k != "uid"}


# ledger/NNNNN.parquet: the raw record, updated by the decisions, plus where it landed.
LEDGER_SCHEMA: Schema = {
    **RAW_SCHEMA,
    **_without_uid(CLIP_SCHEMA),
    **_without_uid(DEDUP_SCHEMA),
    "partition": pl.String(),
    "shard": pl.String(),
    "key": pl.String(),
}


# -- samples derived from one input ------------------------------------------------------
# A stage may turn one input into many samples (clips of a video, segments of a recording).
# Each gets a derived uid: the input's uid, "_", a five-digit index. Dot-free, so it is still
# a WebDataset key; the ledger has one row per derived sample plus one per failed input, and
# `parent_uid` traces every row back to its input row.
UID_PATTERN = r"^[0-9a-f]{20}(_[0-9]{5})?$"


def derived_uid(parent: str, index: int) -> str:
    """The uid of sample `index` (0-based) cut from input `parent`."""
    if "_" in parent or not 0 <= index < 100_000:
        raise ValueError(f"cannot derive sample {index} from {parent!r}")
    return f"{parent}_{index:05d}"


def parent_uid(uid: str) -> str:
    """The input a sample came from: itself, or the parent of a derived uid."""
    return uid.split("_", 1)[0]


def parent_expr(column: str = "uid") -> pl.Expr:
    """`parent_uid` as a polars expression."""
    return pl.col(column).str.split("_").list.first()


class SampleMeta(BaseModel):
    """The `json` member of every sample; carried source columns sit beside these keys (a
    derived sample carries `parent`, the uid of the input it was cut from)."""

    model_config = ConfigDict(extra="allow")
    uid: str = Field(pattern=UID_PATTERN)
    source: str
    url: str | None
    caption: str | None
    width: int
    height: int
    original_width: int
    original_height: int


class ClipCue(BaseModel):
    start: float
    end: float
    text: str


class ClipMeta(SampleMeta):
    """The `json` member of a clip or audio segment: the sample's fields, then where it was
    cut from and the alignment checks it passed (start/end in source seconds)."""

    uid: str = Field(pattern=r"^[0-9a-f]{20}_[0-9]{5}$")
    parent: str = Field(pattern=r"^[0-9a-f]{20}$")
    clip: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float
    cues: list[ClipCue]
    frame_times: list[float]
    checks: dict[str, bool]
    planned: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="cut: copy only: the planned [start, end]; start/end are the copy's true "
        "bounds (from the keyframe at or before the planned start).",
    )


class ManifestShard(BaseModel):
    shard: str
    samples: int
    bytes: int
    sha256: str


MANIFEST_VERSION = 1


# shards/manifest.json, written last: its presence means the corpus is complete.
class Manifest(BaseModel):
    version: int
    config_hash: str
    members: list[str]
    total_samples: int
    shards: list[ManifestShard]
    labels: dict[str, Any] | None = Field(
        default=None,
        description="The label spec, when the corpus has labels: `version`, `spec` (every "
        "setting of curate.config.LabelsConfig, seed included) and `codebook`, the region "
        "classes' k-means centres (k lists of 11 floats, multiples of 2**-10, exact), from "
        "which `curate validate` recomputes every label. Absent otherwise.",
    )


# -- writing ------------------------------------------------------------------------------
def write_table(path: AnyPath, table: pl.DataFrame) -> str:
    """zstd, no statistics, atomic: equal tables give equal bytes, a kill leaves no half file.
    Returns the bytes' sha256, so a task can name its output without it being reread."""
    buf = io.BytesIO()
    table.write_parquet(buf, compression="zstd", statistics=False)
    data = buf.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


# -- reading ------------------------------------------------------------------------------
def read_table(path: AnyPath, schema: Schema) -> pl.DataFrame:
    """The table at `path`, or an empty one of `schema` when the stage wrote none."""
    return read_parquet(path) if path.exists() else pl.DataFrame(schema=schema)


def raw_table(run: RunDir) -> pl.DataFrame:
    """Every raw partition's records in input order, with the partition name."""
    frames = [
        read_parquet(run.raw_table(p)).with_columns(partition=pl.lit(p))
        for p in run.partitions()
        if run.raw_table(p).exists()
    ]
    empty = pl.DataFrame(schema={**RAW_SCHEMA, "partition": pl.String()})
    return pl.concat(frames) if frames else empty


def feature_table(run: RunDir) -> pl.DataFrame:
    """Features of every fetched sample, partition order, with its caption and, when the
    CLIP stage ran, its `clip_score`."""
    frames = []
    for part in run.partitions():
        if not run.features(part).exists():
            continue
        raw = read_parquet(run.raw_table(part), columns=["uid", "caption"])
        frame = read_parquet(run.features(part))
        frame = frame.join(raw, on="uid", how="left", maintain_order="left")
        if run.clip_scores(part).exists():
            scores = read_parquet(run.clip_scores(part))
            frame = frame.join(scores, on="uid", how="left", maintain_order="left")
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def clip_scores(run: RunDir) -> pl.DataFrame:
    """uid and clip_score of every scored sample (empty when the CLIP stage did not run)."""
    files = [run.clip_scores(p) for p in run.partitions()]
    frames = [read_parquet(f) for f in files if f.exists()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=CLIP_SCHEMA)


def read_dedup(run: RunDir) -> pl.DataFrame:
    return read_table(run.decision("dedup"), DEDUP_SCHEMA)


def read_filtered(run: RunDir, part: str | None = None) -> pl.DataFrame:
    """What the filter rules dropped, in one partition or (None) in all, partition order."""
    if part is not None:
        return read_table(run.filter_decisions(part), FILTER_SCHEMA)
    frames = [read_table(run.filter_decisions(p), FILTER_SCHEMA) for p in run.partitions()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=FILTER_SCHEMA)


def read_placement(run: RunDir, part: str | None = None) -> pl.DataFrame:
    """Where kept samples go (uid, shard, key): one partition's, or (None) all, in order."""
    if part is not None:
        return read_table(run.placement(part), PLACEMENT_SCHEMA)
    frames = [read_table(run.placement(p), PLACEMENT_SCHEMA) for p in run.partitions()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=PLACEMENT_SCHEMA)


def open_ledger(path: str | AnyPath) -> pl.LazyFrame:
    """Lazily scan a run's ledger; `path` is the run directory or its ledger/ folder (on a
    store, each partition's file is read as it is scanned)."""
    p = as_path(path)
    folder = RunDir(p).ledger_dir if RunDir(p).ledger_dir.is_dir() else p
    files: list[AnyPath] = sorted(folder.glob("*.parquet"), key=lambda f: f.name)
    if not files:
        raise FileNotFoundError(f"{folder}: no ledger parquet files (has the run finished?)")
    if is_local(folder):
        return pl.scan_parquet(str(folder / "*.parquet"))
    return scan_files(files)


def sample_json(row: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A sample's json member: carried extra columns, then SampleMeta's fields."""
    meta: dict[str, Any] = json.loads(row["extra"] or "{}")
    meta.update({k: record[k] for k in SampleMeta.model_fields})
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()
