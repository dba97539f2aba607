"""Where stages are listed and a run is driven.

A run is: check the output, ingest on the driver (so a bad input fails before any work), then
each stage of `STAGES` in order: its plan lists tasks with the digest of what each reads, and
the engine runs those whose marker was written for other inputs (or none). Each package
declares its stage; a new one (clips, audio, labels) is an entry here.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.clips.stage import CLIPS
from curate.config import PipelineConfig, config_hash, fetch_hash, load_config, parse_config
from curate.dedup.stage import DEDUP
from curate.engine.cluster import dask_client
from curate.engine.runner import run_stage
from curate.engine.stage import Plan, Stage
from curate.errors import CurateError, IngestError
from curate.features.clip_stage import CLIP
from curate.features.stage import FEATURES
from curate.fetch.stage import FETCH
from curate.filters.stage import CUT, FILTER
from curate.io.ingest import stage_ingest
from curate.io.store import AnyPath, location
from curate.labels.stage import LABELS, LABELSET
from curate.ledger import CARD_STAGE, LEDGER
from curate.rundir import RunDir
from curate.shards.stage import MANIFEST, PLAN, SHARDS

__all__ = ["STAGES", "RunResult", "members", "public_config", "run", "unmasked"]

STAGES: list[Stage] = [
    FETCH,
    CLIPS,
    FEATURES,
    CLIP,
    DEDUP,
    CUT,
    FILTER,
    PLAN,
    LABELSET,
    LABELS,
    SHARDS,
    MANIFEST,
    LEDGER,
    CARD_STAGE,
]


@dataclass(frozen=True)
class RunResult:
    output: AnyPath
    funnel: dict[str, Any]
    seconds: float


def members(cfg: PipelineConfig) -> tuple[str, ...]:
    """Each sample's tar members, from the stages that add them."""
    return tuple(sorted({m for s in STAGES if s.members for m in s.members(cfg)}))


def coerce_config(config: PipelineConfig | dict[str, Any] | str | Path) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


_SECRET = ("key", "secret", "token", "password", "credential")


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "***" if any(w in k.lower() for w in _SECRET) else _masked(v)
            for k, v in value.items()
        }
    return value


def public_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The config as run.json records it: storage options' secrets masked, at any depth
    (`client_kwargs: {aws_secret_access_key: ...}` too)."""
    data = cfg.model_dump(mode="json")
    data["storage_options"] = _masked(data["storage_options"])
    return data


def unmasked(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options read back from run.json without the masked entries, so credentials
    come from the environment instead of being sent as "***"."""
    return {k: unmasked(v) if isinstance(v, dict) else v for k, v in options.items() if v != "***"}


def run(
    config: PipelineConfig | dict[str, Any] | str | Path,
    output: str | AnyPath,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunResult:
    """Run a pipeline into `output`, resuming what an earlier run with the same inputs did.

    A change to what is fetched (sources, ingest, fetch, image) is refused unless
    `overwrite`; any other change redoes only the stages whose inputs changed, without a
    network request. `retry_failed` re-fetches rows of an earlier run that failed
    transiently (5xx, 429, timeouts, dropped connections) and merges them into the same output.
    """
    t0 = time.perf_counter()
    cfg = coerce_config(config)
    rundir = RunDir(location(output, cfg.storage_options))
    if not rundir.local and cfg.media is not None:
        raise CurateError(
            f"{rundir.root}: video and audio pipelines cut media from files on a local disk; "
            "give a local run directory (image-text pipelines may write to a store)"
        )
    rundir.check_location()
    with tempfile.TemporaryDirectory(prefix="curate-ingest-") as folder:
        per_part = cfg.ingest.samples_per_partition
        staged = stage_ingest(cfg.sources, cfg.storage_options, per_part, Path(folder))
        if staged.rows == 0:
            raise IngestError("the sources hold no input rows; nothing to do")
        fp = staged.fingerprint()
        hashes = {"config": config_hash(cfg, fp), "fetch": fetch_hash(cfg, fp)}
        info = rundir.start(public_config(cfg), cfg.name, hashes, overwrite)
        staged.publish(rundir)
    engine = cfg.engine
    with dask_client(engine, scheduler, quiet=not progress) as client:
        if progress:
            print(f"dask dashboard: {client.dashboard_link}", flush=True)
        workers = len(client.scheduler_info()["workers"])
        plan = Plan(
            rundir, cfg, hashes["config"], hashes["fetch"], workers, members(cfg), retry_failed
        )
        summaries: dict[str, list[dict[str, Any]]] = {}
        for stage in STAGES:
            summaries[stage.name] = run_stage(
                client,
                rundir,
                stage.name,
                stage.plan(plan),
                retries=engine.task_retries,
                progress=progress,
                resources=stage.resources(cfg) if stage.resources else None,
                stall_s=engine.stall_report_s,
            )
    funnel: dict[str, Any] = summaries["card"][0]["funnel"]
    rundir.finish(info, funnel)
    return RunResult(rundir.root, funnel, time.perf_counter() - t0)
