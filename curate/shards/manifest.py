"""sizes.json and manifest.json, written after every shard is done.

sizes.json is what open_clip's loader reads beside the tars. Which shard and key each kept
sample got is the plan's placement (`decisions/placement/`), read by the ledger.
"""

from __future__ import annotations

from typing import Any

from curate.io.atomic import write_json
from curate.io.store import load_npy
from curate.rundir import RunDir, RunRoot
from curate.tables import MANIFEST_VERSION, Manifest

__all__ = ["manifest_task", "write_manifest"]


def manifest_task(
    run_dir: RunRoot,
    summaries: list[dict[str, Any]],
    members: list[str],
    config_hash: str,
    planned: list[list[Any]],
    plans: list[str],
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest stage's task: check the shards written against the plan (names, sizes,
    and the plan digest each was written from), then sizes.json and manifest.json."""
    wrote = [(s["shard"], s["samples"], d) for s, d in zip(summaries, plans, strict=True)]
    want = [(f"{name}.tar", n, digest) for name, digest, n in planned]
    if wrote != want:
        raise RuntimeError(
            f"shard plan has {len(want)} shards, the shard tasks reported {len(wrote)} "
            "or other members"
        )
    run = RunDir(run_dir)
    if labels is not None and run.codebook.exists():  # validate recomputes classes from it
        labels = {**labels, "codebook": load_npy(run.codebook).tolist()}
    return write_manifest(run_dir, summaries, members, config_hash, labels)


def write_manifest(
    run_dir: RunRoot,
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
