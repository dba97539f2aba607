"""The audit views of a run, as small polars tables: what the HTML report draws, the
notebooks show and `curate inspect` prints, computed in one place so the three agree.

Every view reads the ledger lazily and selects only its columns, and histograms are binned
here rather than handed to the browser as points, so a million-row ledger stays a
few-kilobyte page section and a few seconds of polars.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from curate.filters.rules import aspect_of, caption_chars, caption_words, short_side
from curate.tables import parent_expr

__all__ = [
    "Cut",
    "caption_lengths",
    "clip_score_column",
    "cuts",
    "duplicate_clusters",
    "filter_gallery",
    "funnel_by_stage",
    "histogram",
    "pick",
    "removed_by",
    "sizes",
    "stage_flow",
]

STATUS_ORDER = ("written", "dropped", "failed")


def _lazy(ledger: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return ledger.lazy()


def funnel_by_stage(ledger: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per (status, stage, reason) with its count: where every input ended up."""
    return (
        _lazy(ledger)
        .group_by("status", "stage", "reason")
        .agg(n=pl.len())
        .sort(["status", "n", "stage", "reason"], descending=[False, True, False, False])
        .collect()
    )


def stage_flow(ledger: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Samples left after each step (inputs, fetched, deduplicated, filtered, written), for
    the funnel chart. Inputs count source rows; later steps count samples (a video's clips)."""
    df = (
        _lazy(ledger)
        .select(
            parent=parent_expr(),
            status="status",
            stage="stage",
            reason="reason",
        )
        .collect()
    )
    fetched = df.filter(~((pl.col("status") == "failed") & (pl.col("stage") == "fetch")))
    failed_later = fetched.filter(pl.col("status") == "failed").height
    dup = df.filter(pl.col("reason") == "duplicate").height
    filtered = df.filter((pl.col("status") == "dropped") & (pl.col("reason") != "duplicate"))
    steps = [
        ("inputs", df["parent"].n_unique()),
        ("fetched", fetched["parent"].n_unique()),
        ("samples", fetched.height),
        ("after processing", fetched.height - failed_later),
        ("after dedup", fetched.height - failed_later - dup),
        ("after filters", fetched.height - failed_later - dup - filtered.height),
        ("written", df.filter(pl.col("status") == "written").height),
    ]
    return pl.DataFrame(steps, schema=["step", "n"], orient="row")


def histogram(
    values: pl.Series, bins: int = 40, lo: float | None = None, hi: float | None = None
) -> pl.DataFrame:
    """Counts of finite values in `bins` equal bins over [lo, hi] (their range by default):
    columns `left`, `right`, `n`. Integer values get bins of a whole number of units, each
    starting on an integer (fractional bins would hold alternately more and fewer integers);
    a single value gets one unit-wide bin. Empty input gives an empty frame."""
    integer = values.dtype.is_integer()
    v = values.cast(pl.Float64).drop_nulls()
    v = v.filter(v.is_finite())
    if v.len() == 0:
        return pl.DataFrame(schema={"left": pl.Float64, "right": pl.Float64, "n": pl.UInt32})
    lo = float(v.min()) if lo is None else lo  # type: ignore[arg-type]
    hi = float(v.max()) if hi is None else hi  # type: ignore[arg-type]
    if integer:
        lo, hi = math.floor(lo), math.floor(hi) + 1  # [lo, hi): every integer in its own unit
        width = float(max(1, math.ceil((hi - lo) / bins)))
        bins = max(1, math.ceil((hi - lo) / width))
    elif hi > lo:
        width = (hi - lo) / bins
    else:
        lo, width, bins = lo - 0.5, 1.0, 1
    idx = ((v - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64)
    counts = idx.value_counts().rename({idx.name: "i", "count": "n"})
    full = pl.DataFrame({"i": range(bins)}, schema={"i": pl.Int64})
    out = full.join(counts, on="i", how="left").with_columns(pl.col("n").fill_null(0))
    return out.select(
        left=lo + pl.col("i") * width,
        right=lo + (pl.col("i") + 1) * width,
        n=pl.col("n").cast(pl.UInt32),
    )


def sizes(ledger: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Source width, height, megapixels and aspect (long side / short side, as the aspect
    rule reads it) of every fetched sample with known dimensions, with its status."""
    return (
        _lazy(ledger)
        .filter(pl.col("original_width") > 0, pl.col("original_height") > 0)
        .select(
            "status",
            width="original_width",
            height="original_height",
            megapixels=pl.col("original_width").cast(pl.Float64) * pl.col("original_height") / 1e6,
            aspect=aspect_of(),
        )
        .collect()
    )


def caption_lengths(ledger: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Characters and words of each fetched sample's caption, counted as the caption rule
    counts them (stripped; whitespace-separated tokens), with its status."""
    return (
        _lazy(ledger)
        .filter(~((pl.col("status") == "failed") & (pl.col("stage") == "fetch")))
        .select("status", chars=caption_chars(), words=caption_words())
        .collect()
    )


def pick(uids: pl.Series, n: int, salt: str = "") -> list[str]:
    """n uids chosen by a hash of each (same choice on every run and machine), in that
    hash order: a sample that stands for its group without a random generator."""
    if n <= 0 or uids.len() == 0:
        return []

    def key(u: str) -> bytes:
        return hashlib.blake2b(f"{salt}:{u}".encode(), digest_size=8).digest()

    return heapq.nsmallest(n, uids.drop_nulls().unique().to_list(), key=key)


def duplicate_clusters(
    ledger: pl.DataFrame | pl.LazyFrame, limit: int = 12, per_cluster: int = 6
) -> pl.DataFrame:
    """The largest duplicate clusters: the kept sample (`dup_of`, its url and status) and up
    to `per_cluster` dropped copies (`uids`, `methods`, `urls`), biggest first, ties by uid."""
    lf = _lazy(ledger)
    dups = lf.filter(pl.col("dup_of").is_not_null())
    clusters = (
        dups.sort("uid")
        .group_by("dup_of")
        .agg(
            copies=pl.len(),
            uids=pl.col("uid").head(per_cluster),
            methods=pl.col("dedup_method").head(per_cluster),
            urls=pl.col("url").head(per_cluster),
        )
        .sort(["copies", "dup_of"], descending=[True, False])
        .head(limit)
    )
    kept = lf.select(dup_of="uid", kept_url="url", kept_status="status", kept_caption="caption")
    joined = clusters.join(kept, on="dup_of", how="left", maintain_order="left")
    return joined.sort(["copies", "dup_of"], descending=[True, False]).collect()


@dataclass(frozen=True)
class Cut:
    """One filter rule as a score and a threshold: the samples it removed are those with
    `reasons` on the wrong side of `threshold` (`keep` "above" or "below" it)."""

    name: str
    reasons: tuple[str, ...]
    score: pl.Expr
    threshold: float | None
    keep: str  # "above" (keep score >= threshold) or "below"
    unit: str


def clip_score_column(config: dict[str, Any]) -> str:
    """The ledger column the CLIP rules read, from the run's filters config."""
    of = (config.get("filters") or {}).get("clip_score_of", "mean")
    return "clip_score_max" if of == "max" else "clip_score"


def cuts(config: dict[str, Any], ledger: pl.DataFrame | pl.LazyFrame) -> list[Cut]:
    """The filter rules a run's config switched on, each as a Cut; `clip_top_fraction`'s
    threshold is the lowest kept score (the cut it made)."""
    f = config.get("filters") or {}
    clip = pl.col(clip_score_column(config)).cast(pl.Float64).fill_nan(None)
    words, chars = caption_words().cast(pl.Float64), caption_chars().cast(pl.Float64)
    side, aspect = short_side(), aspect_of()
    out: list[Cut] = []
    if f.get("clip_min_score") is not None:
        out.append(
            Cut(
                "CLIP score",
                ("clip_score_low", "clip_score_missing"),
                clip,
                float(f["clip_min_score"]),
                "above",
                "cosine",
            )
        )
    if f.get("clip_top_fraction") is not None:
        lowest = (
            _lazy(ledger).filter(pl.col("status") == "written").select(clip.min()).collect().item()
        )
        out.append(
            Cut(
                "CLIP top fraction",
                ("clip_score_not_top", "clip_score_missing"),
                clip,
                None if lowest is None else float(lowest),
                "above",
                "cosine",
            )
        )
    if f.get("min_side") is not None:
        out.append(Cut("shorter side", ("too_small",), side, float(f["min_side"]), "above", "px"))
    if f.get("max_aspect_ratio") is not None:
        out.append(
            Cut(
                "aspect ratio",
                ("bad_aspect_ratio",),
                aspect,
                float(f["max_aspect_ratio"]),
                "below",
                "long/short",
            )
        )
    for key, reason, expr, keep, unit in (
        ("caption_min_words", "caption_too_short", words, "above", "words"),
        ("caption_max_words", "caption_too_long", words, "below", "words"),
        ("caption_min_chars", "caption_too_short", chars, "above", "chars"),
        ("caption_max_chars", "caption_too_long", chars, "below", "chars"),
    ):
        if f.get(key) is not None:
            out.append(Cut(f"caption {unit}", (reason,), expr, float(f[key]), keep, unit))
    if f.get("languages"):
        out.append(
            Cut(
                "caption language",
                ("caption_language", "caption_empty"),
                pl.lit(None, pl.Float64),
                None,
                "above",
                "",
            )
        )
    return out


def removed_by(cut: Cut) -> pl.Expr:
    """True for the samples this rule removed: the filter stage dropped them with one of
    its reasons among all they broke (the ledger's `detail`, not only the first `reason`),
    and, where two rules share a reason (min and max words, say), on this rule's wrong side."""
    broke = (
        pl.col("detail")
        .fill_null("")
        .str.split(",")
        .list.eval(pl.element().is_in(list(cut.reasons)))
        .list.any()
    )
    mine = (pl.col("stage") == "filter") & (pl.col("status") == "dropped") & broke
    if cut.threshold is None:
        return mine
    score = cut.score
    wrong = score < cut.threshold if cut.keep == "above" else score > cut.threshold
    return mine & (wrong.fill_null(True))


def filter_gallery(
    ledger: pl.DataFrame | pl.LazyFrame, cut: Cut, buckets: int = 4, per_bucket: int = 6
) -> pl.DataFrame:
    """Samples to look at for one rule: removed ones in `buckets` score buckets (from the
    worst score to the cut) and kept ones nearest the cut on the other side. Columns uid,
    url, caption, score, side ("removed" / "kept") and bucket (a label of its score range)."""
    lf = _lazy(ledger).with_columns(score=cut.score)
    cols = ["uid", "url", "caption", "score", "status", "reason"]
    removed = lf.filter(removed_by(cut)).select(cols).collect()
    near = pl.DataFrame(schema={**removed.schema, "bucket": pl.String})
    if cut.threshold is not None:
        t = cut.threshold
        kept = lf.filter(pl.col("status") == "written", pl.col("score").is_not_null())
        nearest = (
            kept.with_columns(gap=(pl.col("score") - t).abs())
            .sort(["gap", "uid"])
            .head(per_bucket)
            .select(cols)
            .collect()
        )
        near = nearest.with_columns(bucket=pl.lit("kept, nearest the cut"))
    parts = []
    scored = removed.filter(pl.col("score").is_not_null() & pl.col("score").is_finite())
    unscored = removed.filter(~(pl.col("score").is_not_null() & pl.col("score").is_finite()))
    if scored.height:
        lo, hi = float(scored["score"].min()), float(scored["score"].max())  # type: ignore[arg-type]
        width = (hi - lo) / buckets if hi > lo else 1.0
        scored = scored.with_columns(
            b=((pl.col("score") - lo) / width).floor().clip(0, buckets - 1).cast(pl.Int64)
        )
        for b in range(buckets):
            rows = scored.filter(pl.col("b") == b)
            chosen = pick(rows["uid"], per_bucket, salt=f"{cut.name}:{b}")
            if not chosen:
                continue
            label = f"{lo + b * width:.3g} to {lo + (b + 1) * width:.3g}"
            part = rows.filter(pl.col("uid").is_in(chosen)).sort("score").drop("b")
            parts.append(part.with_columns(bucket=pl.lit(f"removed, {label}")))
    if unscored.height:
        chosen = pick(unscored["uid"], per_bucket, salt=f"{cut.name}:none")
        part = unscored.filter(pl.col("uid").is_in(chosen))
        parts.append(part.with_columns(bucket=pl.lit("removed, no score")))
    out = pl.concat([*parts, near], how="vertical_relaxed") if parts or near.height else near
    return out.with_columns(
        side=pl.when(pl.col("status") == "written")
        .then(pl.lit("kept"))
        .otherwise(pl.lit("removed"))
    )
