"""`curate why OUT UID|URL`: one sample's fate, gathered from every table that recorded a
step of it: the source row, fetch, features, CLIP score, dedup (and the copy that was
kept instead), filter rules, final shard and key, label members, and the wall time of each
stage task that handled its partition. Pure reads; nothing here writes."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import polars as pl

from curate.engine.stage import read_marker, read_timings
from curate.io.store import AnyPath, scan_files
from curate.report import media
from curate.rundir import RunDir
from curate.tables import open_ledger, parent_expr, parent_uid

__all__ = ["find", "lineage"]

# stages in pipeline order (tasks per partition, per final shard, or one for the corpus)
ORDER: tuple[str, ...] = (
    "fetch",
    "clips",
    "features",
    "clip",
    "dedup",
    "filter",
    "labelset",
    "labels",
    "shards",
    "manifest",
    "ledger",
)


def find(run: RunDir, ident: str) -> pl.DataFrame:
    """Ledger rows for a uid, a url, a source video's uid (all its clips) or a prefix of at
    least 6 characters naming one sample or one source video."""
    lf = open_ledger(run.root)
    exact = lf.filter(
        (pl.col("uid") == ident) | (pl.col("url") == ident) | (parent_expr() == ident)
    ).collect()
    if exact.height or len(ident) < 6:
        return exact
    pre = lf.filter(pl.col("uid").str.starts_with(ident)).collect()
    one = pre["uid"].n_unique() == 1 or pre.select(parent_expr().n_unique()).item() == 1
    return pre if one else pre.head(0)


def _one(frame: pl.DataFrame) -> dict[str, Any] | None:
    return frame.row(0, named=True) if frame.height else None


def _labels(run: RunDir, shard: str | None, key: str | None) -> dict[str, Any]:
    """What the final shard holds for the key, with a short reading of each label."""
    if not shard or not key:
        return {}
    shards: dict[AnyPath, list[str]] = {run.shards_dir / shard: [key]}
    got = media.read_members(shards, lambda s: True).get(key, {})
    out: dict[str, Any] = {"members": sorted(got)}
    if "mlm.npz" in got:
        z = np.load(io.BytesIO(got["mlm.npz"]))
        out["mlm"] = {"masked_tokens": int((z["labels"] >= 0).sum())}
    if "patchmask.npy" in got:
        grid = np.load(io.BytesIO(got["patchmask.npy"]))
        out["patchmask"] = {"grid": list(grid.shape), "masked": int(grid.sum())}
    if "regions.json" in got:
        reg = json.loads(got["regions.json"])
        out["regions"] = {
            "method": reg.get("method"),
            "regions": len(reg.get("regions", [])),
            "masked": reg.get("masked", []),
        }
    for member, name in (("itm.json", "itm"), ("vsm.json", "vsm")):
        if member in got:
            out[name] = [
                {k: n.get(k) for k in ("kind", "similarity", "key")}
                for n in json.loads(got[member]).get("negatives", [])
            ]
    if "fom.json" in got:
        out["fom"] = json.loads(got["fom.json"]).get("order")
    if "audiomask.json" in got:
        out["audiomask"] = json.loads(got["audiomask.json"]).get("spans")
    return out


def _stages(run: RunDir, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage that handled the sample, in order: its task, the task's summary and wall
    seconds. A sample that was not written stops at the stage that decided it (the ledger
    still records it)."""
    part, shard = row.get("partition"), row.get("shard")
    stages = ORDER
    if row.get("status") != "written" and row.get("stage") in ORDER:
        stages = (*ORDER[: ORDER.index(row["stage"]) + 1], "ledger")
    timings = read_timings(run)
    out = []
    for stage in stages:
        keys = [p.stem for p in run.markers(stage)]
        if not keys:
            continue
        mine = shard.removesuffix(".tar") if stage == "shards" and shard else part
        key = mine if mine in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:  # e.g. shards: many tasks, none of them per partition
            secs = [timings[(stage, k)]["seconds"] for k in keys if (stage, k) in timings]
            out.append(
                {
                    "stage": stage,
                    "task": f"{len(keys)} tasks",
                    "seconds": round(sum(secs), 3) if secs else None,
                    "summary": None,
                }
            )
            continue
        marker = read_marker(run, stage, key) or {}
        t = timings.get((stage, key))
        out.append(
            {
                "stage": stage,
                "task": key,
                "seconds": t["seconds"] if t else None,
                "worker": t["worker"] if t else None,
                "summary": marker.get("summary"),
            }
        )
    return out


def _row(path: AnyPath, uid: str, drop: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The row of `uid` in one parquet table (predicate pushed down: a video's many clips
    each read one row, not the table), or None when the table or row is absent."""
    if not path.exists():
        return None
    lf = scan_files([path]).filter(pl.col("uid") == uid)
    keep = [c for c in lf.collect_schema().names() if c not in drop]
    return _one(lf.select(keep).collect())


def lineage(run: RunDir, row: dict[str, Any]) -> dict[str, Any]:
    """Everything recorded about one ledger row, as plain JSON-able data."""
    uid, part = row["uid"], row.get("partition")
    source = raw = features = None
    if part is not None:
        source = _row(run.ingest(part), parent_uid(uid), drop=("image",))
        raw = _row(run.raw_table(part), uid)
        features = _row(run.features(part), uid, drop=("thumb",))
    filt = _row(run.filter_decisions(part), uid) if part is not None else None
    kept = None
    if row.get("dup_of"):
        kept = _one(
            open_ledger(run.root)
            .filter(pl.col("uid") == row["dup_of"])
            .select("uid", "url", "status", "shard", "key")
            .collect()
        )
    meta = None
    if part is not None:
        tars: dict[AnyPath, list[str]] = {run.raw_tar(part): [uid]}
        got = media.read_members(tars, lambda s: s == "json")
        meta = media.sample_meta(got.get(uid, {})) or None
    return {
        "uid": uid,
        "status": row.get("status"),
        "reason": row.get("reason"),
        "detail": row.get("detail"),
        "decided_by": row.get("stage"),
        "source": source,
        "fetch": raw,
        "features": features,
        "sample_json": meta,
        "scores": {k: row.get(k) for k in ("clip_score", "clip_score_max")},
        "dedup": {
            "method": row.get("dedup_method"),
            "dup_of": row.get("dup_of"),
            "kept_copy": kept,
        },
        "filter": filt,
        "placement": {"shard": row.get("shard"), "key": row.get("key")},
        "labels": _labels(run, row.get("shard"), row.get("key")),
        "stages": _stages(run, row),
    }
