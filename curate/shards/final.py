"""Final shards: kept samples from raw partitions, resharded to a fixed size, in input order.

The plan is a pure function of the raw parquets, so every final shard can be written by any
worker, alone, and rewritten byte-identically after a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.labels.seed import rng_for
from curate.rundir import RunDir
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.tables import raw_table, read_dedup, read_filtered

__all__ = ["ShardPlan", "kept_samples", "plan_shards", "sha256_file", "write_final_shard"]


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
    """`partition`, `uid` of every fetched sample no decision dropped, in input order."""
    table = raw_table(run)
    gone = pl.concat([read_dedup(run)["uid"], read_filtered(run)["uid"]]).implode()
    kept = table.filter((pl.col("status") == "ok") & ~pl.col("uid").is_in(gone))
    return kept.select("partition", "uid")


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_final_shard(run_dir: str, plan: ShardPlan) -> dict[str, Any]:
    """Copy the planned samples out of their raw tars (with their labels, when the labels
    stage wrote any) into shards/NNNNN.tar."""
    run = RunDir(run_dir)
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
        "plan": plan.digest,
    }
