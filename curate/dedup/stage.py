"""The dedup stage: one whole-corpus task reading every partition's features and writing
decisions/dedup.parquet (dropped uid, method, dup_of).

Duplicates cross partitions, so the task sees the whole feature table, the 1.7 kB thumbnails
included (1.7 GB per million samples); its Hamming searches fan out over the cluster through
the engine's runner. It reruns when features, CLIP scores, eval sets or `dedup` change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curate.config import PipelineConfig
from curate.dedup.evalset import eval_digest, load_eval
from curate.dedup.find import find_duplicates
from curate.engine.stage import Plan, Stage, Task, cluster_client, digest, stage_digest
from curate.errors import CurateError
from curate.rundir import RunDir
from curate.tables import DEDUP_SCHEMA, feature_table, write_table

__all__ = ["DEDUP", "run_dedup"]

# Bump when the dedup code changes its decisions.
DEDUP_VERSION = "1"


def _embeddings(run: RunDir, n: int) -> np.ndarray[Any, Any]:
    arrays = []
    for part in run.partitions():
        emb = run.image_embeddings(part)
        if not run.features(part).exists():
            continue
        if not emb.exists():
            raise CurateError(
                f"{emb}: missing; semantic dedup uses stored CLIP image embeddings, so run a "
                "pipeline with the CLIP stage or set dedup.semantic.enabled: false"
            )
        arrays.append(np.load(emb))
    out = np.concatenate(arrays) if arrays else np.zeros((0, 1), np.float32)
    if len(out) != n:
        raise CurateError(f"features/: {len(out)} embeddings for {n} samples")
    return out


def run_dedup(run_dir: str, cfg: PipelineConfig) -> dict[str, Any]:
    """The task: find duplicates across the corpus and write the decision table."""
    run = RunDir(run_dir)
    table = feature_table(run)
    if cfg.dedup.enabled and table.height:
        evals = tuple(load_eval(ev, cfg.image) for ev in cfg.dedup.eval_sets)
        emb = _embeddings(run, table.height) if cfg.dedup.semantic.enabled else None
        with cluster_client() as client:
            dropped = find_duplicates(table, cfg.dedup, emb, evals, client)
    else:
        dropped = pl.DataFrame(schema=DEDUP_SCHEMA)
    write_table(run.decision("dedup"), dropped)
    counts = dropped.group_by("dedup_method").len().sort("dedup_method")
    return {"samples": table.height, "dropped": {m: int(n) for m, n in counts.iter_rows()}}


def _plan(p: Plan) -> list[Task]:
    run, cfg = p.run, p.cfg
    inputs = digest(
        DEDUP_VERSION,
        stage_digest(run, "features"),
        stage_digest(run, "clip"),
        eval_digest(cfg.dedup.eval_sets),
        cfg.dedup,
        cfg.image,
    )
    return [Task("all", run_dedup, (str(run.root), cfg), inputs, (run.decision("dedup"),))]


DEDUP = Stage("dedup", _plan)
