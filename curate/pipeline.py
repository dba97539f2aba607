"""Where stages are registered and composed.

A run is: ingest on the driver (so a bad input fails before any work), then each stage of
`STAGES` in order on the Dask cluster. A stage reads and writes files in the run directory and
marks each finished unit, so a rerun skips what is done. Later stages (dedup, CLIP filter,
labels) slot in between `fetch` and `shards` by adding an entry here.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import PipelineConfig, config_hash, load_config, parse_config
from curate.dedup.stage import read_dedup, run_dedup
from curate.engine.cluster import dask_client
from curate.engine.rundir import finish_run, start_run
from curate.engine.runner import StageTask, run_tasks
from curate.errors import IngestError
from curate.features.clip_stage import clip_partition, model_key
from curate.features.stage import features_partition, raw_digest
from curate.fetch.http import RETRY_FAILED_REASONS
from curate.fetch.partition import fetch_partition, partition_name, retryable_partitions
from curate.filters.stage import read_filtered, run_filters
from curate.io.atomic import write_bytes
from curate.io.sources import ingest
from curate.ledger import clip_scores, funnel, open_ledger, raw_table, write_ledger
from curate.shards.final import plan_shards, write_final_shard
from curate.shards.manifest import write_card, write_manifest

__all__ = ["STAGES", "RunContext", "RunResult", "Stage", "run"]


@dataclass
class RunContext:
    cfg: PipelineConfig
    out: Path
    client: Any
    progress: bool
    config_hash: str
    n_partitions: int
    retry_failed: bool = False
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], None]


@dataclass(frozen=True)
class RunResult:
    output: Path
    funnel: dict[str, Any]
    seconds: float


def _run(ctx: RunContext, stage: str, tasks: list[StageTask], **kw: Any) -> list[dict[str, Any]]:
    """run_tasks with the run's engine settings (retries, progress, stall reports)."""
    engine = ctx.cfg.engine
    return run_tasks(
        ctx.client,
        stage,
        tasks,
        retries=engine.task_retries,
        progress=ctx.progress,
        stall_s=engine.stall_report_s,
        **kw,
    )


def _fetch(ctx: RunContext) -> None:
    share = 1.0 / max(1, len(ctx.client.scheduler_info()["workers"]))
    raw = ctx.out / "raw"
    tasks = [
        StageTask(
            i,
            raw / f"{partition_name(i)}.done.json",
            fetch_partition,
            (ctx.cfg, str(ctx.out), i, share),
        )
        for i in range(ctx.n_partitions)
    ]
    _run(ctx, "fetch", tasks)
    if not ctx.retry_failed:
        return
    again = [
        StageTask(
            i,
            raw / f"{partition_name(i)}.done.json",
            fetch_partition,
            (ctx.cfg, str(ctx.out), i, share, RETRY_FAILED_REASONS),
            force=True,
        )
        for i in retryable_partitions(ctx.out, RETRY_FAILED_REASONS)
    ]
    _run(ctx, "retry", again)


def _features(ctx: RunContext) -> None:
    tasks = []
    for i in range(ctx.n_partitions):
        name = partition_name(i)
        marker = ctx.out / "features" / f"{name}.done.json"
        expect = {"raw": raw_digest(ctx.out, name)}
        tasks.append(StageTask(i, marker, features_partition, (str(ctx.out), name), expect))
    _run(ctx, "features", tasks)


def _clip(ctx: RunContext) -> None:
    cfg = ctx.cfg.clip
    if not cfg.enabled:
        return
    key = model_key(cfg)
    tasks = []
    for i in range(ctx.n_partitions):
        name = partition_name(i)
        feats = hashlib.sha256((ctx.out / "features" / f"{name}.done.json").read_bytes())
        marker = ctx.out / "features" / f"{name}.clip.done.json"
        expect = {"model": key, "features": feats.hexdigest()}
        args = (str(ctx.out), name, cfg, feats.hexdigest())
        tasks.append(StageTask(i, marker, clip_partition, args, expect))
    # On a mixed cluster a GPU stage goes to workers started with `--resources GPU=1`.
    resources = {"GPU": 1.0} if cfg.device.startswith("cuda") else None
    _run(ctx, "clip", tasks, resources=resources)


def _dedup(ctx: RunContext) -> None:
    if ctx.progress:
        print("   dedup: finding duplicates across all partitions", flush=True)
    ctx.results["dedup"] = run_dedup(ctx.out, ctx.cfg, ctx.client)


def _filter(ctx: RunContext) -> None:
    ctx.results["filter"] = run_filters(ctx.out, ctx.cfg)


def _shards(ctx: RunContext) -> None:
    table = raw_table(ctx.out)
    dups, filtered = read_dedup(ctx.out), read_filtered(ctx.out)
    gone = pl.concat([dups["uid"], filtered["uid"]]).implode()
    kept = table.filter((pl.col("status") == "ok") & ~pl.col("uid").is_in(gone))
    kept = kept.select("partition", "uid")
    plans = plan_shards(kept, ctx.cfg.shards.samples_per_shard)
    tasks = [
        StageTask(
            p.index,
            ctx.out / "state" / "shards" / f"{p.name}.done.json",
            write_final_shard,
            (str(ctx.out), p),
            expect={"plan": p.digest},
        )
        for p in plans
    ]
    summaries = _run(ctx, "shards", tasks)
    placement = pl.DataFrame(
        [(uid, f"{p.name}.tar", uid) for p in plans for _, uid in p.members],
        schema={"uid": pl.String, "shard": pl.String, "key": pl.String},
        orient="row",
    )
    planned = {f"{p.name}.tar" for p in plans}
    for stale in (ctx.out / "shards").glob("*.tar"):
        if stale.name not in planned:  # left by an earlier plan with more shards
            stale.unlink()
    write_ledger(ctx.out, table, placement, dups, filtered, clip_scores(ctx.out))
    ctx.results["funnel"] = funnel(open_ledger(ctx.out))
    members = sorted([ctx.cfg.image.encode_format, "json", "txt"])
    manifest = write_manifest(ctx.out / "shards", summaries, members, ctx.config_hash)
    write_card(ctx.out / "shards", ctx.cfg.name, manifest, ctx.results["funnel"])


STAGES: list[Stage] = [
    Stage("fetch", _fetch),
    Stage("features", _features),
    Stage("clip", _clip),
    Stage("dedup", _dedup),
    Stage("filter", _filter),
    Stage("shards", _shards),
]


def _fingerprint(table: pl.DataFrame) -> str:
    """What the inputs are: uids and carried columns, local files' size and mtime, and the
    bytes of in-source images (whose uids come from paths or row numbers alone)."""
    h = hashlib.sha256()
    for col in ("uid", "extra"):
        h.update("\n".join(v or "" for v in table[col].to_list()).encode())
    for path in table["path"].drop_nulls().to_list():
        try:
            st = Path(path).stat()
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}:missing\n".encode())
    for image in table["image"].drop_nulls().to_list():
        h.update(hashlib.sha256(image).digest())
    return h.hexdigest()


def _write_ingest(out: Path, table: pl.DataFrame, per_part: int) -> int:
    n = max(1, -(-table.height // per_part))
    for i in range(n):
        path = out / "ingest" / f"{partition_name(i)}.parquet"
        if path.exists():
            continue
        buf = io.BytesIO()
        table.slice(i * per_part, per_part).write_parquet(buf, compression="zstd", statistics=False)
        write_bytes(path, buf.getvalue())
    return n


def coerce_config(config: PipelineConfig | dict[str, Any] | str | Path) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def run(
    config: PipelineConfig | dict[str, Any] | str | Path,
    output: str | Path,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunResult:
    """Run a pipeline into `output`; resumes a finished-in-part run with the same config.

    `retry_failed` re-fetches rows of an earlier run that failed transiently (5xx, 429,
    timeouts, dropped connections) and merges them into the same output.
    """
    t0 = time.perf_counter()
    cfg = coerce_config(config)
    out = Path(output).resolve()
    table = ingest(cfg.sources)
    if table.height == 0:
        raise IngestError("the sources hold no input rows; nothing to do")
    chash = config_hash(cfg, _fingerprint(table))
    info = start_run(out, cfg, chash, overwrite)
    n_parts = _write_ingest(out, table, cfg.ingest.samples_per_partition)
    with dask_client(cfg.engine, scheduler, quiet=not progress) as client:
        if progress:
            print(f"dask dashboard: {client.dashboard_link}", flush=True)
        ctx = RunContext(cfg, out, client, progress, chash, n_parts, retry_failed)
        for stage in STAGES:
            stage.run(ctx)
    finish_run(out, info, ctx.results["funnel"])
    return RunResult(out, ctx.results["funnel"], time.perf_counter() - t0)
