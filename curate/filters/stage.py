"""The filter stage: the configured keep rules over the deduplicated feature table.

Runs after dedup, on its survivors (a top fraction means a fraction of the deduplicated
corpus), and writes `decisions/filter.parquet`: dropped uid, first reason, all reasons. One
whole-corpus task; it reruns when features, CLIP scores, dedup's decisions or `filters`
change, e.g. a new `clip_min_score` after `curate calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import polars as pl

from curate.config import FilterConfig, PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest, stage_digest
from curate.filters.reasons import REASONS, apply_rules, dropped, first_reason
from curate.filters.rules import (
    caption_language,
    caption_length,
    clip_threshold,
    clip_top_fraction,
    max_aspect_ratio,
    min_side,
)
from curate.rundir import RunDir
from curate.tables import FILTER_SCHEMA, feature_table, read_dedup, write_table

__all__ = ["FILTER", "rules_from_config", "run_filters"]

# Bump when a rule changes its decisions.
FILTER_VERSION = "1"

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
    column = "clip_score" if cfg.clip_score_of == "mean" else "clip_score_max"
    if cfg.clip_min_score is not None:
        rules.append(partial(clip_threshold, min_score=cfg.clip_min_score, column=column))
    if cfg.clip_top_fraction is not None:
        rules.append(partial(clip_top_fraction, fraction=cfg.clip_top_fraction, column=column))
    return rules


def run_filters(run_dir: str, cfg: PipelineConfig) -> dict[str, Any]:
    """The task: apply the rules to dedup's survivors and write decisions/filter.parquet."""
    run = RunDir(run_dir)
    rules = rules_from_config(cfg.filters)
    result = pl.DataFrame(schema=FILTER_SCHEMA)
    table = feature_table(run)
    if rules and table.height:
        dups = read_dedup(run)
        survivors = table.filter(~pl.col("uid").is_in(dups["uid"].implode()))
        judged = dropped(apply_rules(survivors, rules))
        result = judged.select(
            "uid",
            first_reason().alias("filter_reason"),
            pl.col(REASONS).list.join(",").alias("filter_reasons"),
        )
    write_table(run.decision("filter"), result)
    counts = result.group_by("filter_reason").len().sort("filter_reason")
    return {"dropped": {r: int(n) for r, n in counts.iter_rows()}}


def _plan(p: Plan) -> list[Task]:
    run = p.run
    inputs = digest(
        FILTER_VERSION,
        stage_digest(run, "features"),
        stage_digest(run, "clip"),
        stage_digest(run, "dedup"),
        p.cfg.filters,
    )
    outputs = (run.decision("filter"),)
    return [Task("all", run_filters, (str(run.root), p.cfg), inputs, outputs)]


FILTER = Stage("filter", _plan)
