"""sizes.json and manifest.json, written after every shard is done, with the placement.

sizes.json is what open_clip's loader reads beside the tars. decisions/placement.parquet
records which shard and key each kept sample got, for the ledger.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from curate.io.atomic import write_json
from curate.rundir import RunDir
from curate.shards.final import kept_samples, plan_shards
from curate.tables import MANIFEST_VERSION, PLACEMENT_SCHEMA, Manifest, write_table

__all__ = ["manifest_task", "write_manifest", "write_placement"]


def write_placement(
    run: RunDir, samples_per_shard: int, shards: list[str], shuffle_seed: int | None = None
) -> None:
    """decisions/placement.parquet from the same plan the shard tasks wrote, checked
    against the shards they reported."""
    plans = plan_shards(kept_samples(run), samples_per_shard, shuffle_seed)
    if [f"{p.name}.tar" for p in plans] != shards:
        raise RuntimeError(f"shard plan {len(plans)} shards, shard tasks reported {len(shards)}")
    placement = pl.DataFrame(
        [(uid, f"{p.name}.tar", uid) for p in plans for _, uid in p.members],
        schema=PLACEMENT_SCHEMA,
        orient="row",
    )
    write_table(run.decision("placement"), placement)


def manifest_task(
    run_dir: str,
    summaries: list[dict[str, Any]],
    members: list[str],
    config_hash: str,
    samples_per_shard: int,
    labels: dict[str, Any] | None = None,
    shuffle_seed: int | None = None,
) -> dict[str, Any]:
    """The manifest stage's task: the placement, then sizes.json and manifest.json."""
    shards = [s["shard"] for s in summaries]
    write_placement(RunDir(run_dir), samples_per_shard, shards, shuffle_seed)
    return write_manifest(run_dir, summaries, members, config_hash, labels)


def write_manifest(
    run_dir: str,
    summaries: list[dict[str, Any]],
    members: list[str],
    config_hash: str,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Remove tars no shard task wrote (an earlier, larger plan's), write sizes.json, then
    manifest.json (last: its presence means the corpus is complete)."""
    run = RunDir(run_dir)
    planned = {s["shard"] for s in summaries}
    for stale in run.shard_files():
        if stale.name not in planned:
            stale.unlink()
    run.manifest.unlink(missing_ok=True)
    sizes = {s["shard"]: s["samples"] for s in summaries}
    write_json(run.sizes, sizes)
    manifest = Manifest.model_validate(
        {
            "version": MANIFEST_VERSION,
            "config_hash": config_hash,
            "members": members,
            "total_samples": sum(sizes.values()),
            "shards": summaries,
            "labels": labels,
        }
    ).model_dump(mode="json", exclude_none=True)
    write_json(run.manifest, manifest)
    return {"shards": len(summaries), "total_samples": manifest["total_samples"]}
