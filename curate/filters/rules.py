"""Filter rules over the feature table: each scores rows and records a reason, never drops.

Every rule takes a polars DataFrame or LazyFrame and returns the same kind, so the same code
runs eagerly in tests and lazily over ``pl.scan_parquet`` of a whole run. Reason strings:

- ``clip_score_low`` / ``clip_score_missing``: `clip_threshold` (NaN counts as missing)
- ``clip_score_not_top``: `clip_top_fraction` (rows without a score get ``clip_score_missing``)
- ``too_small``: `min_side`; ``bad_aspect_ratio``: `max_aspect_ratio` (null or zero sizes fail)
- ``caption_too_short`` / ``caption_too_long``: `caption_length`
- ``caption_language`` / ``caption_empty``: `caption_language`
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curate.filters.reasons import Frame, add_reason, require

__all__ = [
    "aspect_of",
    "calibrate",
    "caption_chars",
    "caption_language",
    "caption_length",
    "caption_words",
    "clip_above_cut",
    "clip_threshold",
    "clip_top_fraction",
    "max_aspect_ratio",
    "min_side",
    "short_side",
    "top_fraction_cut",
]

_EPS = 1e-9  # so fraction * n like 0.3 * 10 = 3.0000000000000004 or 2.9999999999999996 is 3


def _score(column: str) -> pl.Expr:
    """Scores as floats with NaN folded into null: a NaN score is no score."""
    return pl.col(column).cast(pl.Float64).fill_nan(None)


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def clip_threshold(frame: Frame, min_score: float, column: str = "clip_score") -> Frame:
    """Reject image/caption pairs whose CLIP similarity is below `min_score` (equal passes)."""
    require(frame, "clip_threshold", column)
    s = _score(column)
    reason = (
        pl.when(s.is_null())
        .then(pl.lit("clip_score_missing"))
        .when(s < min_score)
        .then(pl.lit("clip_score_low"))
    )
    return add_reason(frame, reason)


def clip_top_fraction(frame: Frame, fraction: float, column: str = "clip_score") -> Frame:
    """Keep exactly floor(fraction * scored rows) best-scoring rows: a budget, not a threshold.

    Ties break by `uid` ascending when there is one, else by row order, so reruns agree.
    """
    _check_fraction(fraction)
    require(frame, "clip_top_fraction", column)
    s = _score(column)
    index = pl.int_range(pl.len())
    keys = [s, *([pl.col("uid")] if "uid" in frame.collect_schema().names() else []), index]
    desc = [True] + [False] * (len(keys) - 1)
    position = index.sort_by(keys, descending=desc, nulls_last=True).arg_sort()
    budget = (s.count() * fraction + _EPS).floor()
    reason = (
        pl.when(s.is_null())
        .then(pl.lit("clip_score_missing"))
        .when(position >= budget)
        .then(pl.lit("clip_score_not_top"))
    )
    return add_reason(frame, reason)


def top_fraction_cut(
    frame: pl.DataFrame, fraction: float, column: str = "clip_score"
) -> tuple[float, str] | None:
    """(score, uid) of the last row `clip_top_fraction` keeps in `frame` (columns uid and
    `column`), or None when it keeps none: the one global fact its partition-wise form,
    `clip_above_cut`, needs."""
    _check_fraction(fraction)
    scored = frame.select("uid", _score(column).alias("s")).drop_nulls("s")
    budget = int(np.floor(scored.height * fraction + _EPS))
    if budget == 0:
        return None
    last = scored.sort(["s", "uid"], descending=[True, False]).row(budget - 1)
    return float(last[1]), str(last[0])


def clip_above_cut(
    frame: Frame, cut: tuple[float, str] | None, column: str = "clip_score"
) -> Frame:
    """`clip_top_fraction` given its cut from `top_fraction_cut` over the whole corpus: a row
    is kept when its (score, uid) comes no later than the cut in (score desc, uid asc)."""
    require(frame, "clip_top_fraction", column, "uid")
    s = _score(column)
    if cut is None:
        kept = pl.lit(False)
    else:
        score, uid = cut
        kept = (s > score) | ((s == score) & (pl.col("uid") <= uid))
    reason = (
        pl.when(s.is_null())
        .then(pl.lit("clip_score_missing"))
        .when(~kept)
        .then(pl.lit("clip_score_not_top"))
    )
    return add_reason(frame, reason)


def calibrate(
    frame_or_scores: pl.DataFrame
    | pl.LazyFrame
    | pl.Series
    | np.ndarray[Any, Any]
    | Sequence[float],
    keep_fractions: Sequence[float],
    column: str = "clip_score",
) -> dict[float, float]:
    """Map each keep fraction f to the threshold t whose ``score >= t`` keeps floor(f * n) of the
    n non-null scores (exactly, when scores are distinct); t is +inf when that is zero rows.

    Lets a config say "keep 30%" on a sample and get a `clip_threshold` for the full run.
    """
    if isinstance(frame_or_scores, pl.DataFrame | pl.LazyFrame):
        require(frame_or_scores, "calibrate", column)
        frame_or_scores = frame_or_scores.lazy().select(column).collect().to_series()
    if isinstance(frame_or_scores, pl.Series):
        frame_or_scores = frame_or_scores.cast(pl.Float64).to_numpy()
    scores = np.asarray(frame_or_scores, dtype=np.float64)
    scores = np.sort(scores[~np.isnan(scores)])[::-1]
    if scores.size == 0:
        raise ValueError("calibrate: no non-null scores")
    out: dict[float, float] = {}
    for f in keep_fractions:
        _check_fraction(f)
        k = int(np.floor(f * scores.size + _EPS))
        out[f] = float(scores[k - 1]) if k > 0 else float("inf")
    return out


def _sides(width: str, height: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    w, h = pl.col(width), pl.col(height)
    return w.is_null() | h.is_null(), pl.min_horizontal(w, h), pl.max_horizontal(w, h)


def short_side(width: str = "original_width", height: str = "original_height") -> pl.Expr:
    """The shorter side as `min_side` judges it (null when either side is unknown)."""
    unknown, short, _ = _sides(width, height)
    return pl.when(~unknown).then(short.cast(pl.Float64))


def aspect_of(width: str = "original_width", height: str = "original_height") -> pl.Expr:
    """Long side / short side as `max_aspect_ratio` judges it (null when unknown or zero)."""
    unknown, short, long = _sides(width, height)
    return pl.when(~unknown & (short > 0)).then(long.cast(pl.Float64) / short)


def caption_words(column: str = "caption") -> pl.Expr:
    """Whitespace-separated tokens of the stripped caption, as `caption_length` counts them."""
    return pl.col(column).fill_null("").str.strip_chars().str.count_matches(r"\S+")


def caption_chars(column: str = "caption") -> pl.Expr:
    """Characters of the stripped caption (null is empty), as `caption_length` counts them."""
    return pl.col(column).fill_null("").str.strip_chars().str.len_chars()


def min_side(
    frame: Frame, pixels: int, width: str = "original_width", height: str = "original_height"
) -> Frame:
    """Reject images whose shorter side is under `pixels`: too little detail to learn from."""
    require(frame, "min_side", width, height)
    unknown, short, _ = _sides(width, height)
    return add_reason(frame, pl.when(unknown | (short < pixels)).then(pl.lit("too_small")))


def max_aspect_ratio(
    frame: Frame, ratio: float, width: str = "original_width", height: str = "original_height"
) -> Frame:
    """Reject banners and slivers (long side / short side > `ratio`): crops lose the content."""
    require(frame, "max_aspect_ratio", width, height)
    unknown, short, long = _sides(width, height)
    bad = unknown | (short <= 0) | (long > short * ratio)
    return add_reason(frame, pl.when(bad).then(pl.lit("bad_aspect_ratio")))


def caption_length(
    frame: Frame,
    min_words: int | None = None,
    max_words: int | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
    column: str = "caption",
) -> Frame:
    """Reject captions too short to describe or too long to be a caption (boilerplate, SEO).

    Words are whitespace-separated tokens; chars count the stripped caption; null is empty.
    A caption can get both reasons (e.g. one long word under `min_words` but over `max_chars`).
    """
    require(frame, "caption_length", column)
    words, chars = caption_words(column), caption_chars(column)
    short, long = pl.lit(False), pl.lit(False)
    for n, lo, hi in ((words, min_words, max_words), (chars, min_chars, max_chars)):
        short = short | (n < lo) if lo is not None else short
        long = long | (n > hi) if hi is not None else long
    frame = add_reason(frame, pl.when(short).then(pl.lit("caption_too_short")))
    return add_reason(frame, pl.when(long).then(pl.lit("caption_too_long")))


@functools.cache
def _identifier() -> Any:
    """py3langid's bundled model with probabilities normalised to [0, 1]; loaded once."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    try:
        load = LanguageIdentifier.from_model_file
    except AttributeError:  # py3langid < 0.4
        load = LanguageIdentifier.from_pickled_model
    return load(MODEL_FILE, norm_probs=True)


def caption_language(
    frame: Frame, languages: Sequence[str], min_confidence: float = 0.0, column: str = "caption"
) -> Frame:
    """Reject captions not in `languages` (ISO 639-1, e.g. ``["en", "de"]``) or detected with
    probability under `min_confidence`; empty or null captions get ``caption_empty`` instead."""
    require(frame, "caption_language", column)
    wanted = {lang.lower() for lang in languages}

    def judge(captions: pl.Series) -> pl.Series:
        ident = _identifier()
        out: list[str | None] = []
        for text in captions:
            if text is None or not text.strip():
                out.append("caption_empty")
                continue
            lang, conf = ident.classify(text)
            out.append(None if lang in wanted and conf >= min_confidence else "caption_language")
        return pl.Series(out, dtype=pl.String)

    reason = pl.col(column).map_batches(judge, return_dtype=pl.String, is_elementwise=True)
    return add_reason(frame, reason)
