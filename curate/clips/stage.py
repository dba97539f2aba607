"""The clips stage: for a video pipeline, one task per ingest partition turns its videos into
clip samples (the image pipeline's fetch stage plans nothing then, and this one nothing for
images)."""

from __future__ import annotations

from curate.clips.partition import clip_members, clips_partition
from curate.config import PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest

__all__ = ["CLIPS"]


def _plan(p: Plan) -> list[Task]:
    run, cfg = p.run, p.cfg
    if cfg.media is None:
        return []
    share = 1.0 / max(1, p.workers)
    return [
        Task(
            part,
            clips_partition,
            (cfg, run.root, part, share),
            digest(p.fetch_hash, part),
            (run.raw_tar(part), run.raw_table(part)),
        )
        for part in run.partitions()
    ]


def _members(cfg: PipelineConfig) -> tuple[str, ...]:
    return clip_members(cfg.media) if cfg.media is not None else ()


CLIPS = Stage("clips", _plan, members=_members)
