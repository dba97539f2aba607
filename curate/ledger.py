"""The ledger: one row per input sample saying what happened to it and where it ended up.

It answers "why was X dropped?" and "where is X?" for every input, whatever its fate.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from curate.io.atomic import write_bytes

__all__ = ["LEDGER_SCHEMA", "clip_scores", "funnel", "open_ledger", "raw_table", "write_ledger"]

LEDGER_SCHEMA: dict[str, pl.DataType] = {
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
    "clip_score": pl.Float32(),
    "dedup_method": pl.String(),
    "dup_of": pl.String(),
    "partition": pl.String(),
    "shard": pl.String(),
    "key": pl.String(),
}


def raw_table(run_dir: Path) -> pl.DataFrame:
    """Every raw partition's rows in input order, with the partition name."""
    files = sorted((run_dir / "raw").glob("*.parquet"))
    frames = [pl.read_parquet(f).with_columns(partition=pl.lit(f.stem)) for f in files]
    return pl.concat(frames) if frames else pl.DataFrame(schema=LEDGER_SCHEMA)


def _or_empty(frame: pl.DataFrame | None, schema: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    return frame if frame is not None else pl.DataFrame(schema=schema)


def write_ledger(
    run_dir: Path,
    table: pl.DataFrame,
    placement: pl.DataFrame,
    duplicates: pl.DataFrame | None = None,
    filtered: pl.DataFrame | None = None,
    scores: pl.DataFrame | None = None,
) -> None:
    """Join where each kept uid landed, why each duplicate or filtered sample was dropped and
    its CLIP score; write one ledger parquet per raw partition."""
    dups = _or_empty(duplicates, {"uid": pl.String, "dedup_method": pl.String, "dup_of": pl.String})
    filt = _or_empty(
        filtered, {"uid": pl.String, "filter_reason": pl.String, "filter_reasons": pl.String}
    )
    clip = _or_empty(scores, {"uid": pl.String, "clip_score": pl.Float32})
    is_dup = pl.col("dedup_method").is_not_null()
    is_filtered = pl.col("filter_reason").is_not_null()
    led = (
        table.join(placement, on="uid", how="left", maintain_order="left")
        .join(dups, on="uid", how="left", maintain_order="left")
        .join(filt, on="uid", how="left", maintain_order="left")
        .join(clip, on="uid", how="left", maintain_order="left")
        .with_columns(
            status=pl.when(pl.col("shard").is_not_null())
            .then(pl.lit("written"))
            .when(is_dup | is_filtered)
            .then(pl.lit("dropped"))
            .otherwise(pl.col("status")),
            reason=pl.when(is_dup)
            .then(pl.lit("duplicate"))
            .when(is_filtered)
            .then(pl.col("filter_reason"))
            .otherwise(pl.col("reason")),
            stage=pl.when(is_dup)
            .then(pl.lit("dedup"))
            .when(is_filtered)
            .then(pl.lit("filter"))
            .otherwise(pl.col("stage")),
            detail=pl.when(is_dup)
            .then(pl.format("{} of {}", pl.col("dedup_method"), pl.col("dup_of")))
            .when(is_filtered)
            .then(pl.col("filter_reasons"))
            .otherwise(pl.col("detail")),
        )
    )
    led = led.select([pl.col(n).cast(t) for n, t in LEDGER_SCHEMA.items()])
    for (part,), group in led.group_by(["partition"], maintain_order=True):
        buf = io.BytesIO()
        group.write_parquet(buf, compression="zstd", statistics=False)
        write_bytes(run_dir / "ledger" / f"{part}.parquet", buf.getvalue())


def clip_scores(run_dir: Path) -> pl.DataFrame:
    """uid and clip_score of every scored sample (empty when the CLIP stage did not run)."""
    files = sorted((run_dir / "features").glob("*.clip.parquet"))
    frames = [pl.read_parquet(f) for f in files]
    schema = {"uid": pl.String, "clip_score": pl.Float32}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def open_ledger(path: str | Path) -> pl.LazyFrame:
    """Lazily scan a run's ledger; `path` is the run directory or its ledger/ folder."""
    p = Path(path)
    folder = p / "ledger" if (p / "ledger").is_dir() else p
    if not any(folder.glob("*.parquet")):
        raise FileNotFoundError(f"{folder}: no ledger parquet files (has the run finished?)")
    return pl.scan_parquet(str(folder / "*.parquet"))


def funnel(ledger: pl.DataFrame | pl.LazyFrame) -> dict[str, object]:
    """Counts from inputs to written, failures and drops by reason."""
    lf = ledger.lazy()
    has_method = "dedup_method" in lf.collect_schema().names()
    cols = ["status", "reason", "stage"] + (["dedup_method"] if has_method else [])
    df = lf.select(cols).collect()
    fetch_failed = (df["status"] == "failed") & (df["stage"] == "fetch")
    by_reason = (
        df.filter(pl.col("status") != "written")
        .group_by("status", "reason")
        .len()
        .sort(["status", "len", "reason"], descending=[False, True, False])
    )
    out: dict[str, object] = {
        "inputs": df.height,
        "fetched": int(df.height - fetch_failed.sum()),
        "written": int((df["status"] == "written").sum()),
    }
    for status in ("failed", "dropped"):
        rows = by_reason.filter(pl.col("status") == status)
        out[status] = {r: int(n) for _, r, n in rows.iter_rows()}
    if has_method:
        methods = df["dedup_method"].drop_nulls().value_counts(sort=True, name="n")
        out["duplicates"] = {
            m: int(n)
            for m, n in methods.sort(["n", "dedup_method"], descending=[True, False]).iter_rows()
        }
    return out
