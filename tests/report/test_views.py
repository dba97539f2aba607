"""The audit views on small hand-made ledgers: each count and pick can be checked by eye."""

from __future__ import annotations

import polars as pl
import pytest

from curate.report import views

COLUMNS = [
    "uid",
    "url",
    "caption",
    "status",
    "stage",
    "reason",
    "detail",
    "dedup_method",
    "dup_of",
    "clip_score",
    "original_width",
    "original_height",
]
ROWS = [
    ("a", "u/a", "one two", "written", "fetch", None, None, None, None, 0.9, 400, 200),
    ("b", "u/b", "x", "failed", "fetch", "http_404", "404", None, None, None, None, None),
    (
        "c",
        "u/c",
        "three words here",
        "dropped",
        "dedup",
        "duplicate",
        "exact_bytes of a",
        "exact_bytes",
        "a",
        0.9,
        400,
        200,
    ),
    (
        "d",
        "u/d",
        "",
        "dropped",
        "dedup",
        "duplicate",
        "perceptual of a",
        "perceptual",
        "a",
        0.8,
        400,
        200,
    ),
    (
        "e",
        "u/e",
        None,
        "dropped",
        "filter",
        "caption_too_short",
        "caption_too_short,clip_score_low",
        None,
        None,
        0.1,
        100,
        100,
    ),
    ("f", "u/f", " a\nb ", "written", "fetch", None, None, None, None, 0.35, 300, 300),
    (
        "g",
        "u/g",
        "c",
        "dropped",
        "filter",
        "clip_score_low",
        "clip_score_low",
        None,
        None,
        0.29,
        800,
        200,
    ),
    ("h", "u/h", "y", "failed", "features", "decode_error", "bad", None, None, None, 10, None),
    ("v_00000", "u/v", "s0", "written", "clips", None, None, None, None, 0.5, 160, 120),
    (
        "v_00001",
        "u/v",
        "s1",
        "dropped",
        "dedup",
        "duplicate",
        "near_clip of v_00000",
        "near_clip",
        "v_00000",
        0.5,
        160,
        120,
    ),
]
LEDGER = pl.DataFrame(ROWS, schema=COLUMNS, orient="row").with_columns(
    clip_score_max=pl.col("clip_score")
)
CONFIG = {"filters": {"clip_min_score": 0.3, "caption_min_words": 1, "caption_max_words": 2}}


def test_the_flow_counts_inputs_by_source_row_and_later_steps_by_sample() -> None:
    flow = dict(views.stage_flow(LEDGER).iter_rows())
    # 9 source rows (the video's two clips are one input), 1 failed at fetch
    assert flow["inputs"] == 9 and flow["fetched"] == 8 and flow["samples"] == 9
    assert flow["after processing"] == 8  # h failed after its fetch
    assert flow["after dedup"] == 8 - 3 and flow["after filters"] == 5 - 2
    assert flow["written"] == 3


def test_histogram_bins_every_finite_value_once_and_keeps_empty_bins() -> None:
    h = views.histogram(pl.Series([0.0, 0.1, 0.5, 1.0, None, float("nan")]), bins=4)
    assert h["n"].to_list() == [2, 0, 1, 1]  # 1.0, the maximum, falls in the last bin
    assert h["left"][0] == 0.0 and h["right"][-1] == pytest.approx(1.0)
    assert views.histogram(pl.Series([], dtype=pl.Float64)).height == 0
    # integers: whole-unit bins from an integer edge, so no bin holds more integers
    words = views.histogram(pl.Series(list(range(101))), bins=40)
    assert (words["right"] - words["left"]).unique().to_list() == [3.0]
    assert (
        words["left"][0] == 0
        and words["n"].sum() == 101
        and words["n"][:-1].unique().to_list() == [3]
    )
    one = views.histogram(pl.Series([0.7, 0.7]))
    assert one["n"].to_list() == [2] and one["left"][0] == pytest.approx(0.2)


def test_duplicate_clusters_name_the_kept_sample_and_every_copy_biggest_first() -> None:
    c = views.duplicate_clusters(LEDGER)
    assert c["dup_of"].to_list() == ["a", "v_00000"] and c["copies"].to_list() == [2, 1]
    first = c.row(0, named=True)
    assert first["uids"] == ["c", "d"] and first["methods"] == ["exact_bytes", "perceptual"]
    assert first["kept_url"] == "u/a" and first["kept_status"] == "written"


def test_cuts_follow_the_config_and_the_gallery_sits_on_both_sides_of_the_cut() -> None:
    names = [c.name for c in views.cuts(CONFIG, LEDGER)]
    assert names == ["CLIP score", "caption words", "caption words"]  # min and max words
    cuts = {c.name: c for c in views.cuts(CONFIG, LEDGER)}
    clip = cuts["CLIP score"]
    assert clip.threshold == 0.3 and clip.keep == "above"
    g = views.filter_gallery(LEDGER, clip, buckets=2, per_bucket=3)
    removed = g.filter(pl.col("side") == "removed")
    kept = g.filter(pl.col("side") == "kept")
    # e broke two rules; its first reason is the caption's, yet the CLIP rule removed it too
    assert sorted(removed["uid"]) == ["e", "g"] and (removed["score"] < 0.3).all()
    assert (kept["score"] >= 0.3).all() and kept["uid"][0] == "f"  # nearest the cut first
    # clip_score_of: max reads the best frame's score
    assert views.clip_score_column({"filters": {"clip_score_of": "max"}}) == "clip_score_max"


def test_rules_sharing_a_reason_count_only_their_own_side_of_the_cut() -> None:
    short, long = [c for c in views.cuts(CONFIG, LEDGER) if c.unit == "words"]
    assert (short.keep, short.threshold, long.keep, long.threshold) == ("above", 1, "below", 2)
    removed = {c.keep: LEDGER.filter(views.removed_by(c))["uid"].to_list() for c in (short, long)}
    assert removed == {"above": ["e"], "below": []}  # e has no words: too short, not too long
    # words are counted as the rule counts them: " a\nb " is two words, three characters
    counted = LEDGER.filter(pl.col("uid") == "f").select(w=short.score)
    assert counted.item() == 2


def test_pick_is_a_fixed_choice_whatever_the_input_order() -> None:
    uids = pl.Series([f"u{i}" for i in range(100)])
    a = views.pick(uids, 5, salt="x")
    assert a == views.pick(uids.reverse(), 5, salt="x") and len(set(a)) == 5
    assert a != views.pick(uids, 5, salt="y") and views.pick(uids, 0) == []


def test_sizes_and_caption_lengths() -> None:
    s = views.sizes(LEDGER)
    assert s.height == 8 and s["aspect"].max() == pytest.approx(4.0)  # h's height is unknown
    caps = views.caption_lengths(LEDGER)
    assert caps.height == 9  # the fetch failure has no caption worth counting
    assert caps["words"].to_list()[:5] == [2, 3, 0, 0, 2] and caps["chars"][4] == 3
