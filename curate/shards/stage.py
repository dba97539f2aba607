"""The shards stages: `plan` decides which kept sample goes to which shard (one task, on a
worker, written to decisions/plan/ and decisions/placement/); `shards` writes each planned
tar from its plan file; `manifest` then writes sizes.json and manifest.json over all of
them. The driver reads only shard names and plan digests, never the samples."""

from __future__ import annotations

from typing import Any

from curate.engine.stage import Plan, Stage, Task, digest, read_marker, stage_digest
from curate.labels.members import LABELS_VERSION
from curate.shards.final import plan_task, write_final_shard
from curate.shards.manifest import manifest_task

__all__ = ["MANIFEST", "PLAN", "SHARDS"]

# Bump when shard, placement or manifest code changes what it writes.
SHARDS_VERSION = "1"


def _plan(p: Plan) -> list[Task]:
    run, shards = p.run, p.cfg.shards
    inputs = digest(
        SHARDS_VERSION,
        *(stage_digest(run, s) for s in ("fetch", "dedup", "filter")),
        str(shards.samples_per_shard),
        str(shards.shuffle_seed),
    )
    args = (run.root, shards.samples_per_shard, shards.shuffle_seed)
    return [Task("all", plan_task, args, inputs, (run.plan_index,))]


def _planned(p: Plan) -> list[list[Any]]:
    marker = read_marker(p.run, "plan", "all")
    assert marker is not None, "the plan stage runs before the shards stage"
    planned: list[list[Any]] = marker["summary"]["shards"]
    return planned


def _shards(p: Plan) -> list[Task]:
    run = p.run
    upstream = digest(SHARDS_VERSION, stage_digest(run, "labels"))  # fetch: in each plan digest
    return [
        Task(
            name,
            write_final_shard,
            (run.root, name, plan),
            digest(upstream, plan),
            (run.shard(name),),
        )
        for name, plan, _ in _planned(p)
    ]


def _manifest(p: Plan) -> list[Task]:
    run = p.run
    summaries, wrote = [], []
    for path in run.markers("shards"):
        marker = read_marker(run, "shards", path.stem)
        assert marker is not None
        summaries.append({k: marker["summary"][k] for k in ("shard", "samples", "bytes", "sha256")})
        wrote.append(marker["summary"]["plan"][:16])
    members = sorted(p.members)
    per_shard = p.cfg.shards.samples_per_shard
    shards = stage_digest(run, "shards")
    spec = p.cfg.labels
    labels = None if spec is None else {"version": LABELS_VERSION, "spec": spec.model_dump()}
    seed = p.cfg.shards.shuffle_seed
    inputs = digest(
        SHARDS_VERSION, shards, "\n".join(members), p.config_hash, str(per_shard), str(seed)
    )
    args = (run.root, summaries, members, p.config_hash, _planned(p), wrote, labels)
    outputs = (run.sizes, run.manifest)
    return [Task("all", manifest_task, args, inputs, outputs)]


PLAN = Stage("plan", _plan)
SHARDS = Stage("shards", _shards)
MANIFEST = Stage("manifest", _manifest)
