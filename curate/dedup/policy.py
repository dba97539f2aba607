"""Which member of a duplicate cluster survives: deterministic, and the same for every method."""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import NDArray

__all__ = ["keepers", "rank"]


def rank(table: pl.DataFrame) -> NDArray[np.int64]:
    """Position of each row in survival order: most pixels, then higher CLIP score, then uid.

    Pixels are the source image's (`original_width` × `original_height`) when known, since
    stored copies are often all resized alike; else the stored `width` × `height`.
    `clip_score` is used when present (null last).
    """
    stored = pl.col("width").cast(pl.Int64) * pl.col("height")
    px = stored
    if {"original_width", "original_height"} <= set(table.columns):
        px = (pl.col("original_width").cast(pl.Int64) * pl.col("original_height")).fill_null(px)
    keys = [px.fill_null(0).alias("_px")]
    descending = [True]
    if "clip_score" in table.columns:
        keys.append(pl.col("clip_score").fill_nan(None).alias("_clip"))
        descending.append(True)
    keys.append(pl.col("uid").alias("_uid"))
    descending.append(False)
    order = (
        table.with_row_index("_row")
        .with_columns(keys)
        .sort(
            [k.meta.output_name() for k in keys],
            descending=descending,
            nulls_last=True,
        )["_row"]
        .to_numpy()
    )
    out = np.empty(table.height, dtype=np.int64)
    out[order] = np.arange(table.height, dtype=np.int64)
    return out


def keepers(labels: NDArray[np.int64], ranks: NDArray[np.int64]) -> NDArray[np.int64]:
    """For each item, the index of its cluster's survivor (itself if it survives)."""
    n = labels.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((ranks, labels))  # by cluster, best rank first
    first = np.ones(n, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    best_of_label = np.empty(int(labels.max()) + 1, dtype=np.int64)
    best_of_label[labels[order][first]] = order[first]
    return best_of_label[labels]
