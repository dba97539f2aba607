"""The fetch stage over one partition: ingest rows in, a raw tar + parquet out.

A pure function of (config, ingest partition): rerunning it anywhere gives the same bytes.
One bad sample is a row with a reason, never an exception that fails the partition. Each
fetch thread also computes its sample's features from the stored bytes (the features
stage's own function) while they are in memory, and the task reports the features stage's
task for this partition as complete, so that stage need not read the tar again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from curate.config import PipelineConfig
from curate.engine.threads import bounded_map
from curate.errors import SampleFailure
from curate.features.rows import feature_row, features_inputs, write_features
from curate.fetch.http import Fetcher, get_fetcher
from curate.io.store import read_parquet
from curate.media.image import process_image
from curate.rundir import RunDir, RunRoot
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.tables import RAW_SCHEMA, sample_json, write_table

__all__ = ["fetch_partition", "read_local", "retryable_partitions", "row_budget"]


# Decoding and resizing one image is well under a second; this is slack for a loaded machine.
DECODE_ALLOWANCE_S = 60.0


def row_budget(cfg: PipelineConfig, share: float = 1.0) -> float:
    """The longest one row may take before it is given up.

    One row's own work is bounded by the client: every attempt at its full deadline, the
    longest backoff between attempts, one robots.txt fetch. It may first queue behind the
    partition's other threads for a per-domain slot, and each request waits its turn under
    the rate limit. Generous on purpose: this catches wedged threads, not slow servers.
    """
    f = cfg.fetch
    own = (f.retries + 1) * f.total_timeout_s + f.retries * f.max_retry_after_s + f.total_timeout_s
    slots = max(1, int(f.per_domain_concurrency * share))
    queue = -(-f.threads // slots)  # rows ahead of this one holding the domain's slots
    rate = f.per_domain_rate_per_s * share if f.per_domain_rate_per_s else 0.0
    turns = f.threads * (f.max_redirects + 1) * (f.retries + 1) / rate if rate else 0.0
    return (queue + 1) * own + turns + DECODE_ALLOWANCE_S


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A row's raw-table record before anything is known: ok until a failure says otherwise."""
    record = {k: row[k] for k in ("uid", "source", "url", "path", "caption")}
    record.update(status="ok", reason=None, detail=None, stage="fetch")
    return record


Members = dict[str, bytes]
# A row's raw record, its tar members when ok, and its features row when ok.
Result = tuple[dict[str, Any], Members | None, dict[str, Any] | None]


def _stuck(row: dict[str, Any], budget: float) -> Result:
    record = _record(row)
    detail = f"no result within {budget:g}s; the stuck fetch/decode thread was abandoned"
    record.update(status="failed", reason="timeout", detail=detail)
    return record, None, None


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


def _load(row: dict[str, Any], cfg: PipelineConfig, fetcher: Fetcher) -> bytes:
    if row["image"] is not None:
        return bytes(row["image"])
    if row["path"] is not None:
        return read_local(row["path"], cfg.fetch.max_bytes)
    if row["url"] is None or not row["url"].strip():
        raise SampleFailure("bad_url", "no URL")
    return fetcher.fetch(row["url"].strip())


def _process(
    row: dict[str, Any], cfg: PipelineConfig, fetcher: Fetcher
) -> tuple[dict[str, Any], Members | None]:
    """One row to its raw-table record and, when it succeeded, its tar members."""
    record = _record(row)
    try:
        img = process_image(_load(row, cfg, fetcher), cfg.image)
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
    members = {img.ext: img.data, "txt": (row["caption"] or "").encode()}
    members["json"] = sample_json(row, record)
    return record, members


def _previous(
    run: RunDir, part: str, retry: frozenset[str]
) -> dict[str, tuple[dict[str, Any], Members | None]]:
    """Results of an earlier attempt to keep: every row whose reason is not retried.

    The parquet is the truth; the tar only supplies members of rows it marks ok.
    """
    table = read_parquet(run.raw_table(part))
    keep = table.filter(pl.col("reason").is_null() | ~pl.col("reason").is_in(list(retry)))
    records = {r["uid"]: r for r in keep.to_dicts()}
    ok = {uid for uid, r in records.items() if r["status"] == "ok"}
    members = {k: m for k, m in iter_tar_samples(run.raw_tar(part)) if k in ok}
    return {uid: (r, members[uid] if uid in ok else None) for uid, r in records.items()}


def fetch_partition(
    cfg: PipelineConfig,
    run_dir: RunRoot,
    part: str,
    share: float = 1.0,
    retry: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Fetch, decode and resize one ingest partition into raw/NNNNN.{tar,parquet}.

    `share` is this worker's part of the per-domain limits (1 / number of workers). With
    `retry`, an already fetched partition is redone for rows failed with those reasons only;
    everything else is carried over, so the result merges into the same output.
    """
    run = RunDir(run_dir)
    rows = read_parquet(run.ingest(part)).to_dicts()
    previous = _previous(run, part, retry) if retry is not None else {}
    fetcher = get_fetcher(cfg.fetch, share)  # once per partition, shared by its threads

    def work(row: dict[str, Any]) -> Result:
        record, members = previous.get(row["uid"]) or _process(row, cfg, fetcher)
        return record, members, None if members is None else feature_row(record, members)

    records: list[dict[str, Any]] = []
    features: list[dict[str, Any]] = []
    budget = row_budget(cfg, share)
    results = bounded_map(work, rows, cfg.fetch.threads, budget)
    # Results come in input order while later rows are still fetching, so images stream
    # into the tar instead of the whole partition being held in memory.
    with TarShardWriter(run.raw_tar(part)) as tar:
        for row, result in zip(rows, results, strict=True):
            record, members, feats = result if result is not None else _stuck(row, budget)
            records.append(record)
            if members is not None and feats is not None:
                tar.write(record["uid"], members)
                features.append(feats)
    table = pl.DataFrame(records, schema=RAW_SCHEMA)
    raw_sha256 = write_table(run.raw_table(part), table)
    counts = table.group_by("reason").len().sort("reason", nulls_last=True)
    written = write_features(run, part, features)
    return {
        "partition": part,
        "inputs": table.height,
        "ok": int((table["status"] == "ok").sum()),
        "failed": {r: int(n) for r, n in counts.iter_rows() if r is not None},
        "retried": len(rows) - len(previous) if retry is not None else 0,
        "raw_sha256": raw_sha256,
        "completes": {"features": {"inputs": features_inputs(raw_sha256), "summary": written}},
    }


def retryable_partitions(run: RunDir, reasons: frozenset[str]) -> list[str]:
    """Fetched partitions holding rows that failed for one of `reasons`."""
    found = []
    for part in run.partitions():
        path = run.raw_table(part)
        if (
            path.exists()
            and read_parquet(path, columns=["reason"])["reason"].is_in(list(reasons)).any()
        ):
            found.append(part)
    return found
