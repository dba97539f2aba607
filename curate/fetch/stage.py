"""The fetch stage: one task per ingest partition; with `retry_failed`, partitions already
fetched that hold transient failures are redone for those rows only."""

from __future__ import annotations

from curate.config import PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest
from curate.fetch.http import RETRY_FAILED_REASONS
from curate.fetch.partition import fetch_partition, retryable_partitions

__all__ = ["FETCH"]


def _plan(p: Plan) -> list[Task]:
    run, cfg = p.run, p.cfg
    if cfg.media is not None:
        return []  # a video pipeline's inputs become clips in the clips stage
    share = 1.0 / max(1, p.workers)
    root = run.root
    retry = set(retryable_partitions(run, RETRY_FAILED_REASONS)) if p.retry_failed else set()
    tasks = []
    for part in run.partitions():
        # The fetch hash covers the inputs, ingest, fetch and image config: with the partition
        # name it determines the ingest file, which need not be reread to know it.
        inputs = digest(p.fetch_hash, part)
        outputs = (run.raw_tar(part), run.raw_table(part))
        again = part in retry
        args: tuple[object, ...] = (cfg, root, part, share)
        if again:
            args = (*args, RETRY_FAILED_REASONS)
        tasks.append(Task(part, fetch_partition, args, inputs, outputs, force=again))
    return tasks


def _members(cfg: PipelineConfig) -> tuple[str, ...]:
    """Every image sample's tar members: the image, its caption and its json."""
    return (cfg.image.encode_format, "json", "txt") if cfg.media is None else ()


FETCH = Stage("fetch", _plan, members=_members)
