"""The fetch stage over one partition: ingest rows in, a raw tar + parquet + marker out.

A pure function of (config, ingest partition): rerunning it anywhere gives the same bytes.
One bad sample is a row with a reason, never an exception that fails the partition.
"""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import PipelineConfig
from curate.errors import SampleFailure
from curate.fetch.http import fetch_url, make_session
from curate.io.atomic import write_bytes, write_json
from curate.media.image import ProcessedImage, process_image
from curate.shards.tar import TarShardWriter

__all__ = ["RAW_SCHEMA", "fetch_partition", "partition_name", "read_local"]

RAW_SCHEMA: dict[str, pl.DataType] = {
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


def partition_name(index: int) -> str:
    return f"{index:05d}"


def read_local(path: str, max_bytes: int) -> bytes:
    """Read a local image file under the same byte cap as HTTP bodies."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise SampleFailure("too_large", f"{size} bytes > max_bytes={max_bytes}")
        return p.read_bytes()
    except OSError as err:
        raise SampleFailure("read_error", f"{path}: {err.strerror or err}") from None


def _load(row: dict[str, Any], cfg: PipelineConfig, local: threading.local) -> bytes:
    if row["image"] is not None:
        return bytes(row["image"])
    if row["path"] is not None:
        return read_local(row["path"], cfg.fetch.max_bytes)
    if row["url"] is None or not row["url"].strip():
        raise SampleFailure("bad_url", "no URL")
    if not hasattr(local, "session"):
        local.session = make_session(cfg.fetch)
    return fetch_url(row["url"].strip(), cfg.fetch, local.session)


def _process(
    row: dict[str, Any], cfg: PipelineConfig, local: threading.local
) -> tuple[dict[str, Any], ProcessedImage | None]:
    record: dict[str, Any] = {k: row[k] for k in ("uid", "source", "url", "path", "caption")}
    record.update(status="ok", reason=None, detail=None, stage="fetch")
    try:
        img = process_image(_load(row, cfg, local), cfg.image)
    except SampleFailure as failure:
        record.update(status="failed", reason=failure.reason, detail=failure.detail[:500])
        return record, None
    except Exception as err:  # a decoder bug must not kill the partition either
        record.update(status="failed", reason="decode_error", detail=repr(err)[:500])
        return record, None
    record.update(
        width=img.width,
        height=img.height,
        original_width=img.original_width,
        original_height=img.original_height,
        bytes=len(img.data),
    )
    return record, img


def sample_json(row: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The sample's json member: carried extra columns, then curate's own fields."""
    meta: dict[str, Any] = json.loads(row["extra"] or "{}")
    meta.update(
        uid=record["uid"],
        source=record["source"],
        url=record["url"],
        caption=record["caption"],
        width=record["width"],
        height=record["height"],
        original_width=record["original_width"],
        original_height=record["original_height"],
    )
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()


def fetch_partition(cfg: PipelineConfig, run_dir: str, index: int) -> dict[str, Any]:
    """Fetch, decode and resize one ingest partition into raw/NNNNN.{tar,parquet,done.json}."""
    root = Path(run_dir)
    name = partition_name(index)
    rows = pl.read_parquet(root / "ingest" / f"{name}.parquet").to_dicts()
    local = threading.local()
    records: list[dict[str, Any]] = []
    # map() yields in input order while later rows are still fetching, so images stream
    # into the tar instead of the whole partition being held in memory.
    with (
        ThreadPoolExecutor(max_workers=cfg.fetch.threads) as pool,
        TarShardWriter(root / "raw" / f"{name}.tar") as tar,
    ):
        for row, (record, img) in zip(
            rows, pool.map(lambda r: _process(r, cfg, local), rows), strict=True
        ):
            records.append(record)
            if img is not None:
                members = {img.ext: img.data, "txt": (row["caption"] or "").encode()}
                members["json"] = sample_json(row, record)
                tar.write(record["uid"], members)
    table = pl.DataFrame(records, schema=RAW_SCHEMA)
    buf = io.BytesIO()
    table.write_parquet(buf, compression="zstd", statistics=False)
    write_bytes(root / "raw" / f"{name}.parquet", buf.getvalue())
    counts = table.group_by("reason").len().sort("reason", nulls_last=True)
    summary = {
        "partition": index,
        "inputs": table.height,
        "ok": int((table["status"] == "ok").sum()),
        "failed": {r: int(n) for r, n in counts.iter_rows() if r is not None},
    }
    write_json(root / "raw" / f"{name}.done.json", summary)
    return summary
