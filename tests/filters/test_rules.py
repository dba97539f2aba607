"""Filter rules: reasons per row, accumulation, eager/lazy parity, calibration, parquet scans."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.filters import (
    MissingColumnError,
    apply_rules,
    calibrate,
    caption_language,
    caption_length,
    clip_threshold,
    clip_top_fraction,
    dropped,
    first_reason,
    keep,
    max_aspect_ratio,
    min_side,
)

Rule = Callable[[pl.DataFrame], pl.DataFrame]


def reasons(frame: pl.DataFrame) -> list[list[str]]:
    return frame["reasons"].to_list()


def test_clip_threshold_boundary_null_and_nan() -> None:
    df = pl.DataFrame({"clip_score": [0.28, 0.2799, None, float("nan"), 0.9]})
    out = clip_threshold(df, 0.28)
    assert reasons(out) == [
        [],
        ["clip_score_low"],
        ["clip_score_missing"],
        ["clip_score_missing"],
        [],
    ]
    assert out.columns == ["clip_score", "reasons"] and out.height == 5
    assert out.schema["reasons"] == pl.List(pl.String)


def test_clip_top_fraction_exact_count_and_ties() -> None:
    scores = [0.5, 0.9, 0.7, 0.7, 0.7, 0.1, 0.2, 0.3, 0.4, 0.6]
    df = pl.DataFrame({"uid": list("jihgfedcba"), "clip_score": scores})
    out = clip_top_fraction(df, 0.3)
    kept = keep(out)["uid"].to_list()
    assert kept == ["i", "g", "f"]  # 0.9, then of the three 0.7s the smallest uids (f, g)
    assert all(r == ["clip_score_not_top"] for r in reasons(dropped(out)))
    # without uid, ties go by row order: the first two 0.7s
    no_uid = keep(clip_top_fraction(df.drop("uid"), 0.3).with_row_index())["index"].to_list()
    assert no_uid == [1, 2, 3]
    # reordering rows does not change which uids win
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=3)
    assert sorted(keep(clip_top_fraction(shuffled, 0.3))["uid"]) == sorted(kept)


def test_clip_top_fraction_nulls_and_bounds() -> None:
    df = pl.DataFrame({"clip_score": [None, 0.1, 0.2, 0.3, 0.4]})
    assert reasons(clip_top_fraction(df, 0.5)) == [
        ["clip_score_missing"],
        ["clip_score_not_top"],
        ["clip_score_not_top"],
        [],
        [],
    ]
    assert keep(clip_top_fraction(df, 1.0)).height == 4
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            clip_top_fraction(df, bad)


def test_calibrate_round_trip() -> None:
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.linspace(0.1, 0.4, 200))
    df = pl.DataFrame({"clip_score": [*scores.tolist(), None]})
    fractions = [0.01, 0.1, 0.3, 0.5, 1.0]
    thresholds = calibrate(df, fractions)
    assert thresholds == calibrate(df.lazy(), fractions) == calibrate(scores, fractions)
    assert thresholds == calibrate(scores.tolist(), fractions)
    for f, t in thresholds.items():
        assert keep(clip_threshold(df, t)).height == round(f * 200)
        assert keep(clip_top_fraction(df, f)).height == round(f * 200)
    assert calibrate([0.1, 0.2], [0.3]) == {0.3: float("inf")}  # floor(0.6) = 0 rows
    with pytest.raises(ValueError):
        calibrate([float("nan")], [0.5])


def test_size_rules() -> None:
    df = pl.DataFrame(
        {
            "original_width": [64, 63, 640, 100, None, 0, 300],
            "original_height": [64, 1000, 64, 300, 100, 0, 100],
        }
    )
    assert reasons(min_side(df, 64)) == [
        [],
        ["too_small"],
        [],
        [],
        ["too_small"],
        ["too_small"],
        [],
    ]
    assert reasons(max_aspect_ratio(df, 3.0)) == [
        [],
        ["bad_aspect_ratio"],
        ["bad_aspect_ratio"],
        [],
        ["bad_aspect_ratio"],
        ["bad_aspect_ratio"],
        [],
    ]  # 300x100 and 100x300 are exactly 3: kept


def test_caption_length() -> None:
    df = pl.DataFrame({"caption": ["a dog", "one", None, "  a\tlong\n caption here ", "x" * 30]})
    assert reasons(caption_length(df, min_words=2, max_words=3)) == [
        [],
        ["caption_too_short"],
        ["caption_too_short"],
        ["caption_too_long"],
        ["caption_too_short"],
    ]
    assert reasons(caption_length(df, min_chars=3, max_chars=20)) == [
        [],
        [],
        ["caption_too_short"],
        [],
        ["caption_too_long"],
    ]
    both = caption_length(df, min_words=2, max_chars=20)
    assert reasons(both)[4] == ["caption_too_short", "caption_too_long"]
    assert reasons(caption_length(df)) == [[]] * 5


def test_caption_language() -> None:
    df = pl.DataFrame(
        {
            "caption": [
                "A small brown dog is running across the green field in the park.",
                "Ein kleiner brauner Hund läuft über die grüne Wiese im Park.",
                "Un petit chien brun court à travers le champ vert dans le parc.",
                "公園の緑の野原を小さな茶色の犬が走っています。",
                None,
                "   ",
            ]
        }
    )
    out = caption_language(df, ["en", "DE"])
    lang = ["caption_language"]
    assert reasons(out) == [[], [], lang, lang, ["caption_empty"], ["caption_empty"]]
    assert reasons(caption_language(df, ["fr", "ja"]))[:4] == [lang, lang, [], []]
    assert reasons(caption_language(df.head(1), ["en"], min_confidence=1.01)) == [lang]


def test_reasons_accumulate_and_partition() -> None:
    df = pl.DataFrame(
        {
            "uid": ["a", "b", "c", "d"],
            "clip_score": [0.35, 0.1, None, 0.3],
            "original_width": [256, 16, 256, 256],
            "original_height": [256, 256, 256, 256],
            "caption": ["a red car", "a blue car", "", "a green car"],
        }
    )
    rules: list[Rule] = [
        partial(clip_threshold, min_score=0.28),
        partial(clip_top_fraction, fraction=0.5),  # missing score recorded once, not twice
        partial(min_side, pixels=32),
        partial(max_aspect_ratio, ratio=4.0),
        partial(caption_length, min_words=1),
    ]
    out = apply_rules(df, rules)
    assert reasons(out) == [
        [],
        ["clip_score_low", "clip_score_not_top", "too_small", "bad_aspect_ratio"],
        ["clip_score_missing", "caption_too_short"],
        ["clip_score_not_top"],
    ]
    ledger = out.select("uid", reason=first_reason())
    assert ledger["reason"].to_list() == [
        None,
        "clip_score_low",
        "clip_score_missing",
        "clip_score_not_top",
    ]
    kept, gone = keep(out), dropped(out)
    assert kept["uid"].to_list() == ["a"] and gone["uid"].to_list() == ["b", "c", "d"]
    assert keep(df).height == 4 and dropped(df).height == 0  # no rule run: nothing dropped


def test_lazy_matches_eager() -> None:
    df = pl.DataFrame(
        {
            "uid": [f"u{i}" for i in range(8)],
            "clip_score": [0.3, 0.2, None, 0.3, 0.5, 0.1, 0.3, float("nan")],
            "original_width": [10, 200, 300, None, 400, 500, 600, 90],
            "original_height": [100, 200, 30, 50, 400, 500, 60, 90],
            "caption": ["Das ist ein Hund.", "This is a dog.", None, "a", "dog", "b c", "", "hi"],
        }
    )
    rules: list[Rule] = [
        partial(clip_threshold, min_score=0.2),
        partial(clip_top_fraction, fraction=0.4),
        partial(min_side, pixels=64),
        partial(max_aspect_ratio, ratio=2.0),
        partial(caption_length, min_words=2, max_chars=15),
        partial(caption_language, languages=["en"]),
    ]
    eager = apply_rules(df, rules)
    lazy = apply_rules(df.lazy(), rules)  # type: ignore[arg-type]
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(eager)
    assert keep(lazy).collect().equals(keep(eager))


def test_scan_parquet(tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    pl.DataFrame(
        {"uid": ["a", "b", "c", "d"], "clip_score": [0.9, 0.1, 0.5, 0.4], "caption": ["x"] * 4}
    ).write_parquet(path)
    lf = clip_top_fraction(clip_threshold(pl.scan_parquet(path), 0.3), 0.5)
    assert isinstance(lf, pl.LazyFrame)
    out = lf.collect()
    assert reasons(out) == [
        [],
        ["clip_score_low", "clip_score_not_top"],
        [],
        ["clip_score_not_top"],
    ]
    assert keep(lf).collect()["uid"].to_list() == ["a", "c"]


@pytest.mark.parametrize(
    ("rule", "column"),
    [
        (partial(clip_threshold, min_score=0.2), "clip_score"),
        (partial(clip_top_fraction, fraction=0.2), "clip_score"),
        (partial(min_side, pixels=1), "original_width"),
        (partial(max_aspect_ratio, ratio=2.0, height="h"), "original_width"),
        (partial(caption_length, min_words=1), "caption"),
        (partial(caption_language, languages=["en"]), "caption"),
    ],
)
def test_missing_column_names_column_and_rule(rule: Rule, column: str) -> None:
    lf = pl.LazyFrame({"uid": ["a"]})
    with pytest.raises(MissingColumnError) as info:
        rule(lf)  # type: ignore[arg-type]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    name = rule.func.__name__  # type: ignore[attr-defined]
    assert str(info.value) == f"{name}: missing required column {column!r}"
    with pytest.raises(MissingColumnError, match="calibrate"):
        calibrate(lf, [0.5])


def test_a_top_fraction_cut_applied_by_partition_equals_the_global_rule() -> None:
    """`clip_above_cut` with the cut `top_fraction_cut` finds keeps, partition by partition,
    exactly the rows `clip_top_fraction` keeps over the whole frame: ties, NaN, null and
    empty budgets included."""
    from curate.filters.reasons import REASONS
    from curate.filters.rules import clip_above_cut, clip_top_fraction, top_fraction_cut

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(0, 40))
        if trial % 2:
            values = rng.choice(np.array([0.1, 0.2, 0.25, 0.3, np.nan, -1.0]), n).tolist()
            scores = [None if v == -1.0 else float(v) for v in values]
        else:
            scores = rng.random(n).round(2).tolist()
        uids = [f"u{int(x)}" for x in rng.permutation(1000)[:n]]
        frame = pl.DataFrame(
            {"uid": uids, "clip_score": scores}, schema={"uid": pl.String, "clip_score": pl.Float64}
        )
        fraction = float(rng.choice([0.1, 0.3, 0.5, 0.77, 1.0]))
        expected = clip_top_fraction(frame, fraction)[REASONS].to_list()
        cut = top_fraction_cut(frame, fraction)
        size = n // int(rng.integers(1, 4)) + 1
        parts = [frame.slice(lo, size) for lo in range(0, max(n, 1), size)]
        got = [r for p in parts for r in clip_above_cut(p, cut)[REASONS].to_list()]
        assert got == expected, (trial, cut)
