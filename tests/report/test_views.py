"""The audit views on small hand-made ledgers: each count and pick can be checked by eye."""

from __future__ import annotations

import polars as pl
import pytest

from curate.report import views

LEDGER = pl.DataFrame(
    {
        "uid": ["a", "b", "c", "d", "e", "f", "g", "v_00000", "v_00001"],
        "url": ["u/a", "u/b", "u/c", "u/d", "u/e", "u/f", "u/g", "u/v", "u/v"],
        "caption": ["one two", "x", "three words here", "", None, "a b", "c", "s0", "s1"],
        "status": [
            "written",
            "failed",
            "dropped",
            "dropped",
            "dropped",
            "written",
            "dropped",
            "written",
            "dropped",
        ],
        "stage": [
            "fetch",
            "fetch",
            "dedup",
            "dedup",
            "filter",
            "fetch",
            "filter",
            "clips",
            "dedup",
        ],
        "reason": [
            None,
            "http_404",
            "duplicate",
            "duplicate",
            "clip_score_low",
            None,
            "clip_score_low",
            None,
            "duplicate",
        ],
        "dedup_method": [
            None,
            None,
            "exact_bytes",
            "perceptual",
            None,
            None,
            None,
            None,
            "near_clip",
        ],
        "dup_of": [None, None, "a", "a", None, None, None, None, "v_00000"],
        "clip_score": [0.9, None, 0.9, 0.8, 0.1, 0.35, 0.29, 0.5, 0.5],
        "clip_score_max": [0.9, None, 0.9, 0.8, 0.1, 0.35, 0.29, 0.6, 0.6],
        "original_width": [400, None, 400, 400, 100, 300, 800, 160, 160],
        "original_height": [200, None, 200, 200, 100, 300, 200, 120, 120],
    }
)
CONFIG = {"filters": {"clip_min_score": 0.3, "caption_min_words": 1}}


def test_the_flow_counts_inputs_by_source_row_and_later_steps_by_sample() -> None:
    flow = dict(views.stage_flow(LEDGER).iter_rows())
    # 8 source rows (the video's two clips are one input), 1 failed at fetch
    assert flow["inputs"] == 8 and flow["fetched"] == 7 and flow["samples"] == 8
    assert flow["after dedup"] == 8 - 3 and flow["after filters"] == 5 - 2
    assert flow["written"] == 3


def test_histogram_bins_every_finite_value_once_and_keeps_empty_bins() -> None:
    h = views.histogram(pl.Series([0.0, 0.1, 0.5, 1.0, None, float("nan")]), bins=4)
    assert h["n"].to_list() == [2, 0, 1, 1]  # 1.0, the maximum, falls in the last bin
    assert h["left"][0] == 0.0 and h["right"][-1] == pytest.approx(1.0)
    assert views.histogram(pl.Series([], dtype=pl.Float64)).height == 0


def test_duplicate_clusters_name_the_kept_sample_and_every_copy_biggest_first() -> None:
    c = views.duplicate_clusters(LEDGER)
    assert c["dup_of"].to_list() == ["a", "v_00000"] and c["copies"].to_list() == [2, 1]
    first = c.row(0, named=True)
    assert first["uids"] == ["c", "d"] and first["methods"] == ["exact_bytes", "perceptual"]
    assert first["kept_url"] == "u/a" and first["kept_status"] == "written"


def test_cuts_follow_the_config_and_the_gallery_sits_on_both_sides_of_the_cut() -> None:
    cuts = {c.name: c for c in views.cuts(CONFIG, LEDGER)}
    assert set(cuts) == {"CLIP score", "caption words"}
    clip = cuts["CLIP score"]
    assert clip.threshold == 0.3 and clip.keep == "above"
    g = views.filter_gallery(LEDGER, clip, buckets=2, per_bucket=3)
    removed = g.filter(pl.col("side") == "removed")
    kept = g.filter(pl.col("side") == "kept")
    assert sorted(removed["uid"]) == ["e", "g"] and (removed["score"] < 0.3).all()
    assert (kept["score"] >= 0.3).all() and kept["uid"][0] == "f"  # nearest the cut first
    # clip_score_of: max reads the best frame's score
    assert views.clip_score_column({"filters": {"clip_score_of": "max"}}) == "clip_score_max"


def test_pick_is_a_fixed_choice_whatever_the_input_order() -> None:
    uids = pl.Series([f"u{i}" for i in range(100)])
    a = views.pick(uids, 5, salt="x")
    assert a == views.pick(uids.reverse(), 5, salt="x") and len(set(a)) == 5
    assert a != views.pick(uids, 5, salt="y") and views.pick(uids, 0) == []


def test_sizes_and_caption_lengths() -> None:
    s = views.sizes(LEDGER)
    assert s.height == 8 and s["aspect"].max() == pytest.approx(4.0)
    caps = views.caption_lengths(LEDGER)
    assert caps.height == 8  # the fetch failure has no caption worth counting
    assert caps["words"].to_list()[:4] == [2, 3, 0, 0]
