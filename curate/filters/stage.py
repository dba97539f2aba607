"""The filter stage: the configured keep rules over the deduplicated feature table.

Runs after dedup, on its survivors (a top fraction means a fraction of the deduplicated
corpus), and writes `features/filter.parquet` — dropped uid, first reason, all reasons — with
a marker holding a digest of its inputs, so a rerun skips it unless something changed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import FilterConfig, PipelineConfig
from curate.features.stage import feature_table, partition_files
from curate.filters.reasons import REASONS, apply_rules, dropped, first_reason
from curate.filters.rules import (
    caption_language,
    caption_length,
    clip_threshold,
    clip_top_fraction,
    max_aspect_ratio,
    min_side,
)
from curate.io.atomic import current_summary, write_bytes, write_json

__all__ = ["FILTER_SCHEMA", "read_filtered", "rules_from_config", "run_filters"]

FILTER_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "filter_reason": pl.String(),
    "filter_reasons": pl.String(),
}
Rule = Callable[[pl.DataFrame], pl.DataFrame]


def rules_from_config(cfg: FilterConfig) -> list[Rule]:
    """The configured rules in a fixed order: cheap metadata checks first, CLIP last."""
    rules: list[Rule] = []
    if cfg.min_side is not None:
        rules.append(partial(min_side, pixels=cfg.min_side))
    if cfg.max_aspect_ratio is not None:
        rules.append(partial(max_aspect_ratio, ratio=cfg.max_aspect_ratio))
    bounds = (cfg.caption_min_words, cfg.caption_max_words)
    chars = (cfg.caption_min_chars, cfg.caption_max_chars)
    if any(b is not None for b in (*bounds, *chars)):
        rules.append(
            partial(
                caption_length,
                min_words=bounds[0],
                max_words=bounds[1],
                min_chars=chars[0],
                max_chars=chars[1],
            )
        )
    if cfg.languages:
        rules.append(
            partial(
                caption_language,
                languages=cfg.languages,
                min_confidence=cfg.language_min_confidence,
            )
        )
    if cfg.clip_min_score is not None:
        rules.append(partial(clip_threshold, min_score=cfg.clip_min_score))
    if cfg.clip_top_fraction is not None:
        rules.append(partial(clip_top_fraction, fraction=cfg.clip_top_fraction))
    return rules


def _digest(run_dir: Path, cfg: PipelineConfig) -> str:
    h = hashlib.sha256(cfg.filters.model_dump_json().encode())
    feats = run_dir / "features"
    for marker in [feats / "dedup.done.json", *partition_files(feats, ".clip.done.json")]:
        if marker.exists():
            h.update(marker.read_bytes())
    return h.hexdigest()


def run_filters(run_dir: Path, cfg: PipelineConfig) -> dict[str, Any]:
    """Write features/filter.parquet (dropped uids and reasons) unless already current."""
    out = run_dir / "features" / "filter.parquet"
    marker = run_dir / "features" / "filter.done.json"
    digest = _digest(run_dir, cfg)
    summary = current_summary(marker, digest, out)
    if summary is not None:
        return summary
    rules = rules_from_config(cfg.filters)
    result = pl.DataFrame(schema=FILTER_SCHEMA)
    table = feature_table(run_dir)
    if rules and table.height:
        dups = pl.read_parquet(run_dir / "features" / "dedup.parquet", columns=["uid"])
        survivors = table.filter(~pl.col("uid").is_in(dups["uid"].implode()))
        judged = dropped(apply_rules(survivors, rules))
        result = judged.select(
            "uid",
            first_reason().alias("filter_reason"),
            pl.col(REASONS).list.join(",").alias("filter_reasons"),
        )
    buf = io.BytesIO()
    result.write_parquet(buf, compression="zstd", statistics=False)
    write_bytes(out, buf.getvalue())
    counts = result.group_by("filter_reason").len().sort("filter_reason")
    summary = {"inputs": digest, "dropped": {r: int(n) for r, n in counts.iter_rows()}}
    write_json(marker, summary)
    return summary


def read_filtered(run_dir: Path) -> pl.DataFrame:
    path = run_dir / "features" / "filter.parquet"
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=FILTER_SCHEMA)
