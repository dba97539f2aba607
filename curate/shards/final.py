"""Final shards: kept samples from raw partitions, resharded to a fixed size, in input order.

The plan is a pure function of the raw parquets and the decisions. One task (`plan` stage)
computes it on a worker and writes it down: `decisions/plan/NNNNN.parquet`, the members of
each shard, and `decisions/placement/PPPPP.parquet`, where each partition's kept samples go.
The driver then reads only the shard names and digests, every final shard can be written by
any worker alone from its own plan file, and rewritten byte-identically after a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import polars as pl

from curate.io.atomic import write_json
from curate.io.store import AnyPath, read_many, read_parquet
from curate.labels.seed import rng_for
from curate.rundir import RunDir, RunRoot
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.tables import PLACEMENT_SCHEMA, read_dedup, read_filtered, write_table

__all__ = [
    "ShardPlan",
    "kept_samples",
    "plan_shards",
    "plan_task",
    "read_plan",
    "sha256_file",
    "write_final_shard",
]


@dataclass(frozen=True)
class ShardPlan:
    index: int
    name: str
    # (raw partition name, uid) in output order
    members: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        """Identifies the plan, so a marker written for another plan is not trusted."""
        text = "\n".join(f"{p}/{u}" for p, u in self.members)
        return hashlib.sha256(text.encode()).hexdigest()


def kept_samples(run: RunDir) -> pl.DataFrame:
    """`partition`, `uid` of every fetched sample no decision dropped, in input order (read
    partition by partition, two columns each)."""
    gone = read_dedup(run)["uid"].implode()
    frames = []
    for part in run.partitions():
        if not run.raw_table(part).exists():
            continue
        raw = read_parquet(run.raw_table(part), columns=["uid", "status"])
        dropped = read_filtered(run, part)["uid"].implode()
        ok = (pl.col("status") == "ok") & ~pl.col("uid").is_in(gone) & ~pl.col("uid").is_in(dropped)
        frames.append(raw.filter(ok).select(partition=pl.lit(part), uid="uid"))
    empty = pl.DataFrame(schema={"partition": pl.String(), "uid": pl.String()})
    return pl.concat(frames) if frames else empty


def plan_shards(
    kept: pl.DataFrame, samples_per_shard: int, shuffle_seed: int | None = None
) -> list[ShardPlan]:
    """Assign kept rows (columns `partition`, `uid`, in order) to consecutive final shards,
    after a seeded shuffle when `shuffle_seed` is set (PCG64: the same order anywhere)."""
    if shuffle_seed is not None and kept.height:
        order = rng_for(shuffle_seed, "shuffle", "corpus").permutation(kept.height)
        kept = kept[order.tolist()]
    plans = []
    parts = kept["partition"].to_list()
    uids = kept["uid"].to_list()
    for start in range(0, len(uids), samples_per_shard):
        i = start // samples_per_shard
        stop = start + samples_per_shard
        members = tuple(zip(parts[start:stop], uids[start:stop], strict=True))
        plans.append(ShardPlan(index=i, name=f"{i:05d}", members=members))
    return plans


def plan_task(run_dir: RunRoot, samples_per_shard: int, shuffle_seed: int | None) -> dict[str, Any]:
    """The plan stage's task: each shard's members and each partition's placement, written
    down; returns the shard names with their plan digests (all the driver reads)."""
    run = RunDir(run_dir)
    # Until the index is rewritten, no plan may look complete: a kill halfway through
    # rewriting the plan files must not leave an old index that still matches them.
    if run.local or run.plan_index.exists():
        run.plan_index.unlink(missing_ok=True)
    plans = plan_shards(kept_samples(run), samples_per_shard, shuffle_seed)
    placed: dict[str, list[tuple[str, str, str]]] = {p: [] for p in run.partitions()}
    for plan in plans:
        write_table(
            run.shard_plan(plan.name),
            pl.DataFrame(list(plan.members), schema=["partition", "uid"], orient="row"),
        )
        for part, uid in plan.members:
            placed[part].append((uid, f"{plan.name}.tar", uid))
    names = {plan.name for plan in plans}
    for stale in run.shard_plans():
        if stale.stem not in names:
            stale.unlink()
    for part, rows in placed.items():
        frame = pl.DataFrame(rows, schema=PLACEMENT_SCHEMA, orient="row")
        write_table(run.placement(part), frame.sort("uid"))
    # A shard's digest also names the fetch of the partitions it copies from, so a refetch
    # (e.g. --retry-failed) rewrites only the shards holding its partitions' samples.
    parts = run.partitions()
    fetched = dict(zip(parts, read_many([run.marker("fetch", p) for p in parts]), strict=True))
    shards = []
    for plan in plans:
        h = hashlib.sha256(plan.digest.encode())
        for part in sorted({p for p, _ in plan.members}):
            h.update(part.encode() + hashlib.sha256(fetched.get(part) or b"").digest())
        shards.append([plan.name, h.hexdigest()[:16], len(plan.members)])
    write_json(run.plan_index, {"shards": shards})
    return {"shards": shards}


def read_plan(run: RunDir, name: str) -> ShardPlan:
    """A shard's plan as the plan task wrote it."""
    frame = read_parquet(run.shard_plan(name))
    members = tuple(zip(frame["partition"].to_list(), frame["uid"].to_list(), strict=True))
    return ShardPlan(index=int(name), name=name, members=members)


def sha256_file(path: AnyPath) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_final_shard(run_dir: RunRoot, name: str, planned: str = "") -> dict[str, Any]:
    """Copy the planned samples out of their raw tars (with their labels, when the labels
    stage wrote any) into shards/NNNNN.tar. `planned` is the plan index's digest for the
    shard, reported back so the manifest can check the shard against the plan."""
    run = RunDir(run_dir)
    plan = read_plan(run, name)
    wanted: dict[str, set[str]] = {}
    for part, uid in plan.members:
        wanted.setdefault(part, set()).add(uid)
    found: dict[str, dict[str, bytes]] = {}
    for part, uids in wanted.items():
        for key, members in iter_tar_samples(run.raw_tar(part)):
            if key in uids:
                found[key] = members
    for part in wanted:  # the labels stage's members, when it ran
        labels = run.labels_tar(part)
        if labels.exists():
            for key, members in iter_tar_samples(labels):
                if key in found:
                    found[key] = {**found[key], **members}
    missing = [uid for _, uid in plan.members if uid not in found]
    if missing:
        raise RuntimeError(f"shard {plan.name}: {len(missing)} planned samples missing from raw")
    path = run.shard(plan.name)
    # The corpus is about to change: until the manifest task runs again, no manifest may
    # claim it complete (its presence is that claim).
    run.manifest.unlink(missing_ok=True)
    with TarShardWriter(path) as tar:
        for _, uid in plan.members:
            tar.write(uid, found[uid])
    return {
        "shard": f"{plan.name}.tar",
        "samples": len(plan.members),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "plan": planned or plan.digest[:16],
    }
