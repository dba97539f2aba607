"""The dedup stage: read every partition's features, find duplicates, write one decision file.

Duplicates cross partitions, so this stage sees the whole feature table on the driver, the
1.7 kB thumbnails included (1.7 GB per million samples); the Hamming searches run as tasks
on the Dask cluster. Its output `features/dedup.parquet` and marker carry a digest of their
inputs, so a rerun skips it unless the features or eval sets changed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.config import PipelineConfig
from curate.dedup.evalset import eval_digest, load_eval
from curate.dedup.find import DEDUP_SCHEMA, find_duplicates
from curate.errors import CurateError
from curate.features.stage import feature_table, partition_files
from curate.io.atomic import current_summary, write_bytes, write_json

__all__ = ["dedup_inputs_digest", "read_dedup", "run_dedup"]


def dedup_inputs_digest(run_dir: Path, cfg: PipelineConfig) -> str:
    h = hashlib.sha256()
    for suffix in (".done.json", ".clip.done.json"):
        for marker in partition_files(run_dir / "features", suffix):
            h.update(marker.read_bytes())
    h.update(eval_digest(cfg.dedup.eval_sets).encode())
    h.update(cfg.dedup.model_dump_json().encode())
    return h.hexdigest()


def _embeddings(feats: list[Path], n: int) -> np.ndarray[Any, Any]:
    arrays = []
    for f in feats:
        emb = f.with_name(f.name.replace(".parquet", ".emb.npy"))
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


def run_dedup(run_dir: Path, cfg: PipelineConfig, client: Any = None) -> dict[str, Any]:
    """Write features/dedup.parquet (dropped uids, method, dup_of) unless already current."""
    out = run_dir / "features" / "dedup.parquet"
    marker = run_dir / "features" / "dedup.done.json"
    digest = dedup_inputs_digest(run_dir, cfg)
    summary = current_summary(marker, digest, out)
    if summary is not None:
        return summary
    table = feature_table(run_dir)
    feats = partition_files(run_dir / "features", ".parquet")
    if cfg.dedup.enabled and table.height:
        evals = tuple(load_eval(ev, cfg.image) for ev in cfg.dedup.eval_sets)
        emb = _embeddings(feats, table.height) if cfg.dedup.semantic.enabled else None
        dropped = find_duplicates(table, cfg.dedup, emb, evals, client)
    else:
        dropped = pl.DataFrame(schema=DEDUP_SCHEMA)
    buf = io.BytesIO()
    dropped.write_parquet(buf, compression="zstd", statistics=False)
    write_bytes(out, buf.getvalue())
    counts = dropped.group_by("dedup_method").len().sort("dedup_method")
    summary = {
        "inputs": digest,
        "samples": table.height,
        "dropped": {m: int(n) for m, n in counts.iter_rows()},
    }
    write_json(marker, summary)
    return summary


def read_dedup(run_dir: Path) -> pl.DataFrame:
    path = run_dir / "features" / "dedup.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=DEDUP_SCHEMA)
