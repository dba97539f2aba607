"""The shards stages: `shards` writes each planned tar; `manifest` then writes sizes.json and
manifest.json over all of them. The plan (which kept sample goes to which shard) is a pure
function of the raw records and the decisions, so any worker can write any shard alone."""

from __future__ import annotations

from curate.engine.stage import Plan, Stage, Task, digest, read_marker, stage_digest
from curate.labels.members import LABELS_VERSION
from curate.shards.final import kept_samples, plan_shards, write_final_shard
from curate.shards.manifest import manifest_task

__all__ = ["MANIFEST", "SHARDS"]

# Bump when shard, placement or manifest code changes what it writes.
SHARDS_VERSION = "1"


def _shards(p: Plan) -> list[Task]:
    run = p.run
    plans = plan_shards(
        kept_samples(run), p.cfg.shards.samples_per_shard, p.cfg.shards.shuffle_seed
    )
    root = str(run.root)
    tasks = []
    for plan in plans:
        parts = sorted({part for part, _ in plan.members})
        upstream = [run.marker(stage, part) for part in parts for stage in ("fetch", "labels")]
        inputs = digest(SHARDS_VERSION, plan.digest, *upstream)
        outputs = (run.shard(plan.name),)
        tasks.append(Task(plan.name, write_final_shard, (root, plan), inputs, outputs))
    return tasks


def _manifest(p: Plan) -> list[Task]:
    run = p.run
    summaries = []
    for path in run.markers("shards"):
        marker = read_marker(run, "shards", path.stem)
        assert marker is not None
        summaries.append({k: marker["summary"][k] for k in ("shard", "samples", "bytes", "sha256")})
    members = sorted(p.members)
    per_shard = p.cfg.shards.samples_per_shard
    shards = stage_digest(run, "shards")
    spec = p.cfg.labels
    labels = None if spec is None else {"version": LABELS_VERSION, "spec": spec.model_dump()}
    seed = p.cfg.shards.shuffle_seed
    inputs = digest(
        SHARDS_VERSION, shards, "\n".join(members), p.config_hash, str(per_shard), str(seed)
    )
    args = (str(run.root), summaries, members, p.config_hash, per_shard, labels, seed)
    outputs = (run.sizes, run.manifest, run.decision("placement"))
    return [Task("all", manifest_task, args, inputs, outputs)]


SHARDS = Stage("shards", _shards)
MANIFEST = Stage("manifest", _manifest)
