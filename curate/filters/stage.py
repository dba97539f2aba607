"""The filter stages: the configured keep rules over the deduplicated samples, by partition.

Runs after dedup, on its survivors (a top fraction means a fraction of the deduplicated
corpus). Every rule but the top fraction is a function of one row, so each partition is
judged by its own task, which writes `decisions/filter/NNNNN.parquet`: dropped uid, first
reason, all reasons. The top fraction needs one corpus-wide fact, the (score, uid) of the
last row it keeps: the `cut` stage finds it from the survivors' scores alone and writes
`decisions/clip_cut.json` (it plans nothing when the rule is off). Tasks rerun when
features, CLIP scores, dedup's decisions or `filters` change, e.g. a new `clip_min_score`
after `curate calibrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import polars as pl

from curate.config import FilterConfig, PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest, stage_digest
from curate.filters.reasons import REASONS, apply_rules, dropped, first_reason
from curate.filters.rules import (
    caption_language,
    caption_length,
    clip_above_cut,
    clip_threshold,
    clip_top_fraction,
    max_aspect_ratio,
    min_side,
    top_fraction_cut,
)
from curate.io.atomic import read_json, write_json
from curate.io.store import read_parquet
from curate.rundir import RunDir, RunRoot
from curate.tables import FILTER_SCHEMA, read_dedup, write_table

__all__ = ["CUT", "FILTER", "cut_task", "filter_partition", "rules_from_config"]

# Bump when a rule changes its decisions.
FILTER_VERSION = "1"

Rule = Callable[[pl.DataFrame], pl.DataFrame]


def rules_from_config(
    cfg: FilterConfig, cut: tuple[float, str] | Literal["global"] | None = "global"
) -> list[Rule]:
    """The configured rules in a fixed order: cheap metadata checks first, CLIP last. The
    top fraction is ranked over the frame given (`"global"`), or applied as a known `cut`
    (a partition of a corpus whose cut `top_fraction_cut` found)."""
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
        if cut == "global":
            rules.append(partial(clip_top_fraction, fraction=cfg.clip_top_fraction, column=column))
        else:
            rules.append(partial(clip_above_cut, cut=cut, column=column))
    return rules


def score_column(cfg: FilterConfig) -> str:
    return "clip_score" if cfg.clip_score_of == "mean" else "clip_score_max"


def _survivors(
    run: RunDir, part: str, gone: pl.Series, columns: list[str] | None = None
) -> pl.DataFrame:
    """A partition's features with caption and CLIP scores, less the uids dedup dropped."""
    frame = read_parquet(run.features(part), columns=columns)
    if columns is None:
        frame = frame.drop("thumb")
        raw = read_parquet(run.raw_table(part), columns=["uid", "caption"])
        frame = frame.join(raw, on="uid", how="left", maintain_order="left")
    if run.clip_scores(part).exists():
        scores = read_parquet(run.clip_scores(part))
        frame = frame.join(scores, on="uid", how="left", maintain_order="left")
    return frame.filter(~pl.col("uid").is_in(gone.implode()))


def cut_task(run_dir: RunRoot, cfg: PipelineConfig) -> dict[str, Any]:
    """The top fraction's cut over every partition's dedup survivors, from uid and score
    alone (the one column-wide read of the filter stages)."""
    run = RunDir(run_dir)
    fraction = cfg.filters.clip_top_fraction
    assert fraction is not None
    column = score_column(cfg.filters)
    frames = []
    gone = read_dedup(run)["uid"]
    for part in run.partitions():
        if run.features(part).exists():
            frame = _survivors(run, part, gone, ["uid"])
            frames.append(frame.select("uid", column) if column in frame.columns else None)
    present = [f for f in frames if f is not None]
    scores = pl.concat(present) if present else pl.DataFrame({"uid": [], column: []})
    cut = top_fraction_cut(scores, fraction, column)
    write_json(run.clip_cut, {"column": column, "fraction": fraction, "cut": cut})
    return {"scored": int(scores[column].count()), "cut": cut}


def filter_partition(run_dir: RunRoot, cfg: PipelineConfig, part: str) -> dict[str, Any]:
    """The task: apply the rules to a partition's dedup survivors and write its decisions."""
    run = RunDir(run_dir)
    cut: tuple[float, str] | Literal["global"] | None = "global"
    if cfg.filters.clip_top_fraction is not None:
        found = read_json(run.clip_cut)["cut"]
        cut = None if found is None else (float(found[0]), str(found[1]))
    rules = rules_from_config(cfg.filters, cut)
    result = pl.DataFrame(schema=FILTER_SCHEMA)
    if rules and run.features(part).exists():
        survivors = _survivors(run, part, read_dedup(run)["uid"])
        judged = dropped(apply_rules(survivors, rules))
        result = judged.select(
            "uid",
            first_reason().alias("filter_reason"),
            pl.col(REASONS).list.join(",").alias("filter_reasons"),
        )
    write_table(run.filter_decisions(part), result)
    counts = result.group_by("filter_reason").len().sort("filter_reason")
    return {"dropped": {r: int(n) for r, n in counts.iter_rows()}}


def _shared(p: Plan) -> str:
    run = p.run
    return digest(
        FILTER_VERSION,
        stage_digest(run, "clip"),
        stage_digest(run, "dedup"),
        p.cfg.filters,
    )


def _cut_plan(p: Plan) -> list[Task]:
    if p.cfg.filters.clip_top_fraction is None:
        return []
    inputs = digest(_shared(p), stage_digest(p.run, "features"))
    return [Task("all", cut_task, (p.run.root, p.cfg), inputs, (p.run.clip_cut,))]


def _plan(p: Plan) -> list[Task]:
    run = p.run
    shared = digest(_shared(p), stage_digest(run, "cut"))
    return [
        Task(
            part,
            filter_partition,
            (run.root, p.cfg, part),
            digest(shared, run.marker("features", part)),
            (run.filter_decisions(part),),
        )
        for part in run.partitions()
    ]


CUT = Stage("cut", _cut_plan)
FILTER = Stage("filter", _plan)
