"""The ledger: one row per input sample saying what happened to it and where it ended up.

It answers "why was X dropped?" and "where is X?" for every input, whatever its fate. Each
partition's rows are written by their own task (`ledger` stage), which returns that
partition's funnel counts; the `card` stage adds them up (funnels are sums: a derived sample
lives in its parent's partition) and writes the dataset card. No process holds the whole
ledger.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from curate.engine.stage import Plan, Stage, Task, digest, read_marker, stage_digest
from curate.io.atomic import read_json, write_bytes
from curate.io.store import read_parquet
from curate.rundir import RunDir, RunRoot
from curate.tables import (
    CLIP_SCHEMA,
    DEDUP_SCHEMA,
    FILTER_SCHEMA,
    INGEST_SCHEMA,
    LEDGER_SCHEMA,
    RAW_SCHEMA,
    parent_expr,
    read_dedup,
    read_filtered,
    read_placement,
    read_table,
    write_table,
)

__all__ = [
    "CARD_STAGE",
    "LEDGER",
    "funnel",
    "funnel_rows",
    "merge_funnels",
    "untraceable",
    "write_card",
    "write_ledger",
]


def _or_empty(frame: pl.DataFrame | None, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return frame if frame is not None else pl.DataFrame(schema=schema)


def write_ledger(
    run: RunDir,
    table: pl.DataFrame,
    placement: pl.DataFrame,
    duplicates: pl.DataFrame | None = None,
    filtered: pl.DataFrame | None = None,
    scores: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Join where each kept uid landed, why each duplicate or filtered sample was dropped and
    its CLIP score; write one ledger parquet per raw partition and return the rows."""
    dups = _or_empty(duplicates, DEDUP_SCHEMA)
    filt = _or_empty(filtered, FILTER_SCHEMA)
    clip = _or_empty(scores, CLIP_SCHEMA)
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
        write_table(run.ledger(str(part)), group)
    return led


def funnel(ledger: pl.DataFrame | pl.LazyFrame) -> dict[str, object]:
    """Counts from inputs to written, failures and drops by reason. `inputs` counts input
    rows (a video cut into clips is one input, however many sample rows it has)."""
    lf = ledger.lazy()
    has_method = "dedup_method" in lf.collect_schema().names()
    cols = ["status", "reason", "stage"] + (["dedup_method"] if has_method else [])
    df = lf.select(*cols, parent_expr().alias("_parent")).collect()
    inputs = df["_parent"].n_unique()
    fetch_failed = (df["status"] == "failed") & (df["stage"] == "fetch")
    by_reason = (
        df.filter(pl.col("status") != "written")
        .group_by("status", "reason")
        .len()
        .sort(["status", "len", "reason"], descending=[False, True, False])
    )
    out: dict[str, object] = {
        "inputs": inputs,
        "fetched": int(inputs - fetch_failed.sum()),
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


# Bump when the ledger, funnel or card code changes what it writes.
LEDGER_VERSION = "1"


def untraceable(inputs: pl.Series, uids: pl.Series) -> list[str]:
    """Sample rows that break the ledger's rule: every row is an input (uid == parent) or a
    sample derived from one, each uid once, and no input is both a row and a parent."""
    frame = pl.DataFrame({"uid": uids}).with_columns(parent=parent_expr())
    orphan = frame.filter(~pl.col("parent").is_in(inputs.implode()))
    twice = frame.filter(pl.col("uid").is_duplicated()).unique("uid", maintain_order=True)
    parents = frame.filter(pl.col("uid") != pl.col("parent"))["parent"].unique()
    both = frame.filter(pl.col("uid").is_in(parents.implode()))
    return [
        *(f"{u}: no input row {p}" for u, p in orphan.head(5).iter_rows()),
        *(f"{u}: listed twice" for u in twice["uid"].head(5)),
        *(f"{u}: both a row and the parent of derived samples" for u in both["uid"].head(5)),
    ]


def merge_funnels(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The funnel of a whole ledger from its partitions' funnels, in `funnel`'s order."""
    out: dict[str, Any] = {k: sum(int(p.get(k, 0)) for p in parts) for k in _TOTALS}
    for key in ("failed", "dropped", "duplicates"):
        if key == "duplicates" and not any(key in p for p in parts):
            continue
        counts: dict[str, int] = {}
        for p in parts:
            for reason, n in (p.get(key) or {}).items():
                counts[reason] = counts.get(reason, 0) + int(n)
        out[key] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


_TOTALS = ("inputs", "fetched", "written")


def ledger_task(run_dir: RunRoot, part: str) -> dict[str, Any]:
    """The task for one partition: its ledger rows with their fate and place, its funnel."""
    run = RunDir(run_dir)
    table = read_table(run.raw_table(part), RAW_SCHEMA).with_columns(partition=pl.lit(part))
    inputs = read_table(run.ingest(part), INGEST_SCHEMA).select("uid")
    problems = untraceable(inputs["uid"], table["uid"])
    if problems:
        raise RuntimeError(f"raw/{part}: breaks the one-row-per-sample rule: {problems[:5]}")
    uids = table["uid"].implode()
    mine = pl.col("uid").is_in(uids)
    scores = read_parquet(run.clip_scores(part)) if run.clip_scores(part).exists() else None
    led = write_ledger(
        run,
        table,
        read_placement(run, part),
        read_dedup(run).filter(mine),
        read_filtered(run, part),
        scores,
    )
    return {"funnel": funnel(led)}


def card_task(run_dir: RunRoot, name: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole run's funnel from the partitions' ledger summaries, and the dataset card."""
    run = RunDir(run_dir)
    counts = merge_funnels(parts)
    write_card(run, name, read_json(run.manifest), counts)
    return {"funnel": counts}


def write_card(run: RunDir, name: str, manifest: dict[str, Any], funnel: dict[str, Any]) -> None:
    """A Hugging Face dataset card whose YAML points data_files at the tars."""
    failed = funnel.get("failed") or {}
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "*.tar"',
        "tags:",
        "- webdataset",
        "- curate",
        "---",
        "",
        f"# {name}",
        "",
        "WebDataset shards built by curate. Each sample has the members "
        + ", ".join(f"`{m}`" for m in manifest["members"])
        + "; `sizes.json` gives each shard's sample count and `manifest.json` its checksum.",
        "",
        "| inputs | written | shards |",
        "|---:|---:|---:|",
        f"| {funnel.get('inputs', 0)} | {manifest['total_samples']} | {len(manifest['shards'])} |",
        "",
    ]
    if isinstance(failed, dict) and failed:
        lines += ["Failed inputs by reason:", ""]
        lines += [f"- `{reason}`: {n}" for reason, n in failed.items()]
        lines.append("")
    write_bytes(run.card, "\n".join(lines).encode())


def _plan(p: Plan) -> list[Task]:
    run = p.run
    shared = digest(
        LEDGER_VERSION, *(stage_digest(run, s) for s in ("clip", "dedup", "filter", "manifest"))
    )
    return [
        Task(
            part,
            ledger_task,
            (run.root, part),
            digest(shared, run.marker("fetch", part)),
            (run.ledger(part),),
        )
        for part in run.partitions()
    ]


def _card(p: Plan) -> list[Task]:
    run = p.run
    parts = []
    for path in run.markers("ledger"):
        marker = read_marker(run, "ledger", path.stem)
        assert marker is not None
        parts.append(marker["summary"]["funnel"])
    inputs = digest(LEDGER_VERSION, stage_digest(run, "ledger"), p.cfg.name)
    return [Task("all", card_task, (run.root, p.cfg.name, parts), inputs, (run.card,))]


LEDGER = Stage("ledger", _plan)
CARD_STAGE = Stage("card", _card)


def funnel_rows(f: dict[str, Any]) -> list[tuple[int, str, int]]:
    """The funnel as (depth, label, count) rows in reading order: inputs, fetched, failed
    and dropped with their reasons (duplicates with their methods), written. One order for
    every place that prints it (the run's summary, `curate inspect`)."""
    rows = [(0, "inputs", int(f["inputs"])), (0, "fetched", int(f["fetched"]))]
    for status in ("failed", "dropped"):
        by = f.get(status) or {}
        rows.append((0, status, sum(by.values())))
        for reason, n in by.items():
            rows.append((1, reason, n))
            if status == "dropped" and reason == "duplicate":
                rows += [(2, m, k) for m, k in (f.get("duplicates") or {}).items()]
    rows.append((0, "written", int(f["written"])))
    return rows
