"""The filter stage in a real run: rules from the config, reasons in the ledger, resume."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import pipeline_yaml

import curate
from curate.config import parse_config
from curate.errors import ConfigError
from curate.rundir import RunDir


def test_filters_drop_with_reasons_and_shards_follow(urls: Path, tmp_path: Path) -> None:
    filters = {"caption_min_words": 8, "min_side": 340}
    res = curate.run(
        pipeline_yaml(tmp_path, urls, filters=filters), tmp_path / "out", progress=False
    )
    led = curate.open_ledger(res.output).collect()
    by_filter = led.filter(pl.col("stage") == "filter")
    assert by_filter.height > 0 and (by_filter["status"] == "dropped").all()
    words = by_filter["caption"].fill_null("").str.count_matches(r"\S+")
    short = pl.min_horizontal("original_width", "original_height")
    side = by_filter.select(short).to_series()
    for reason, w, s, detail in zip(
        by_filter["reason"], words, side, by_filter["detail"], strict=True
    ):
        assert reason in ("caption_too_short", "too_small")
        assert (reason == "too_small" and s < 340) or (reason == "caption_too_short" and w < 8)
        assert reason in detail.split(",")
    written = led.filter(pl.col("status") == "written")
    assert (written["caption"].str.count_matches(r"\S+") >= 8).all()
    assert (written.select(short).to_series() >= 340).all()
    assert (
        res.funnel["dropped"].get("caption_too_short", 0)
        + res.funnel["dropped"].get("too_small", 0)
        == by_filter.height
    )
    # duplicates are judged first: a dropped duplicate is never also a filter row
    assert (
        led.filter(pl.col("dedup_method").is_not_null() & (pl.col("stage") == "filter")).height == 0
    )
    marker = RunDir(res.output).marker("filter", "00000")
    before = marker.stat().st_mtime_ns
    again = curate.run(pipeline_yaml(tmp_path, urls, filters=filters), res.output, progress=False)
    assert marker.stat().st_mtime_ns == before and again.funnel == res.funnel


def test_clip_rules_without_the_clip_stage_are_refused() -> None:
    base = {"sources": [{"path": "x.csv"}]}
    with pytest.raises(ConfigError, match=r"clip\.enabled"):
        parse_config({**base, "filters": {"clip_min_score": 0.2}})
    with pytest.raises(ConfigError, match=r"clip\.enabled"):
        parse_config({**base, "dedup": {"semantic": {"enabled": True}}})


def test_clip_rules_read_the_mean_or_the_best_frame_score() -> None:
    from curate.config import FilterConfig
    from curate.filters.reasons import apply_rules, dropped
    from curate.filters.stage import rules_from_config

    frame = pl.DataFrame(
        {"uid": ["a", "b"], "clip_score": [0.20, 0.40], "clip_score_max": [0.35, 0.45]}
    )
    for score_of, kept in (("mean", ["b"]), ("max", ["a", "b"])):
        cfg = FilterConfig(clip_min_score=0.3, clip_score_of=score_of)
        out = dropped(apply_rules(frame, rules_from_config(cfg)))
        assert sorted(set(frame["uid"]) - set(out["uid"])) == kept, score_of
