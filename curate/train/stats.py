"""How the trainer judges a task: per-sample scores, the chances they are held to, and the
margins that make a difference clear. Pure functions over arrays, so every rule is tested on
inputs whose answer is known.

A held-out sample is the unit of evidence: a caption's masked tokens, an image's regions and a
clip's frame slots are not independent draws, so every statistic is over per-sample scores.
A task passes when the real model beats both references by a clear margin:

- chance: the best a model that ignores the input can do (uniform guessing or the most frequent
  training label, whichever scores more on the held-out set; 0.5 for ranking, ties counted
  half), with margin max(0.05, 3 standard errors of a model at chance);
- the blind baseline: the same model trained the same way with the pictures removed, compared
  sample by sample (paired), with margin max(0.02, 3 standard errors of the paired
  difference): what the labels teach beyond the text.

The control (labels drawn independently of each sample) must land within chance's margin on
both sides: above it the evaluation leaks; below it the scoring is biased.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BLIND_FLOOR",
    "CHANCE_FLOOR",
    "chance_bar",
    "classification",
    "judge",
    "null_variance",
    "paired_margin",
    "per_sample",
    "ranking",
]

CHANCE_FLOOR = 0.05  # the least margin above chance, however many samples are held out
BLIND_FLOOR = 0.02  # the least margin above the blind baseline (a paired comparison)


def chance_bar(chance: float, n: int, variance: float | None = None) -> float:
    """The accuracy a task must reach on n held-out samples to beat `chance` clearly: three
    standard errors of the mean of n per-sample scores whose variance, for a model that
    cannot do the task, is `variance` (a Bernoulli's at chance by default), or 5 points."""
    if n <= 0:
        return math.inf
    var = chance * (1 - chance) if variance is None else variance
    return chance + max(CHANCE_FLOOR, 3 * math.sqrt(var / n))


def paired_margin(real: NDArray[np.floating], blind: NDArray[np.floating]) -> float:
    """How far the real model's mean per-sample score must exceed the blind baseline's on the
    same samples: three standard errors of the mean paired difference, or 2 points."""
    d = np.asarray(real, np.float64) - np.asarray(blind, np.float64)
    if d.size < 2:
        return math.inf
    return max(BLIND_FLOOR, 3 * float(d.std(ddof=1)) / math.sqrt(d.size))


def per_sample(values: NDArray[np.floating], owner: NDArray[np.integer]) -> NDArray[np.float64]:
    """The mean of `values` per sample (`owner`), in the order of the sorted sample ids."""
    owner = np.asarray(owner)
    ids, inverse = np.unique(owner, return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(values, np.float64), minlength=len(ids))
    return sums / np.bincount(inverse, minlength=len(ids))


def classification(out: dict[str, np.ndarray], prior: Counter[int], classes: int) -> dict[str, Any]:
    """Held-out accuracy of a classification (`pred`, `true`, `owner` per prediction) as the
    mean of per-sample accuracies, and the chance it is judged against."""
    pred, true = out["pred"], out["true"]
    scores = per_sample(pred == true, out["owner"]) if true.size else np.zeros(0)
    uniform = 1.0 / max(classes, 1)
    common = prior.most_common(1)[0][0] if prior else 0
    majority = float(per_sample(true == common, out["owner"]).mean()) if true.size else 0.0
    base: dict[str, Any] = {
        "n": int(scores.size),
        "predictions": int(true.size),
        "accuracy": float(scores.mean()) if scores.size else 0.0,
        "per_sample": scores,
    }
    if majority > uniform:
        return {**base, "chance": majority, "chance_kind": f"majority ({common})"}
    return {**base, "chance": uniform, "chance_kind": f"uniform (1/{classes})"}


def null_variance(texts: np.ndarray) -> float:
    """The variance of one sample's ranking score (the share of its m negatives its own
    text beats) for a model that cannot tell its own text from them: the own text's rank
    among the distinct texts is then uniform. With w_g the share of negatives that are the
    g-th distinct text, each indicator has variance 1/4 and two distinct ones covariance
    1/12 (the own text is above both with probability 1/3), so Var = Σw²/6 + 1/12: 1/4
    for one negative (a coin), 1/8 for four distinct ones, more when negatives repeat."""
    _, counts = np.unique(texts, return_counts=True)
    w = counts / counts.sum()
    return float((w**2).sum() / 6 + 1 / 12)


def ranking(out: dict[str, np.ndarray], judged: str | None = None) -> dict[str, Any]:
    """Matching (ITM, VSM) judged by ranking: per sample, the share of its negatives its own
    text scores above (a tie counts half), chance 0.5. `out` has per pair `score`, `true`
    (1 for the own text), `owner`, `text` (an id of the text's tokens) and optionally
    `kind` and `unseen` (the negative's text was never a training caption). With `judged`,
    only negatives of that kind count towards the accuracy; every kind is reported."""
    score, true, owner = out["score"], out["true"], out["owner"]
    pos = dict(zip(owner[true == 1].tolist(), score[true == 1].tolist(), strict=True))
    every = true == 0
    ranked = {
        k: float(
            np.mean(_won(pos, owner[every & (out["kind"] == k)], score[every & (out["kind"] == k)]))
        )
        for k in (np.unique(out["kind"][every]) if "kind" in out else [])
    }
    neg = every & (out["kind"] == judged) if judged is not None else every
    won = _won(pos, owner[neg], score[neg])
    scores = per_sample(won, owner[neg]) if won.size else np.zeros(0)
    samples = np.unique(owner[neg])
    null = [null_variance(out["text"][neg][owner[neg] == o]) for o in samples]
    res: dict[str, Any] = {
        "n": int(scores.size),
        "predictions": int(won.size),
        "accuracy": float(scores.mean()) if scores.size else 0.0,
        "per_sample": scores,
        "chance": 0.5,
        "chance_kind": "ranking (own text above a negative; ties half)",
        "null_variance": float(np.mean(null)) if null else 0.25,
    }
    if ranked:
        res["ranking_by_kind"] = {str(k): round(v, 4) for k, v in ranked.items()}
    if "unseen" in out:  # negatives whose text no training sample has: no memory helps
        unseen = every & out["unseen"].astype(bool)
        won_unseen = _won(pos, owner[unseen], score[unseen])
        res["unseen_negatives"] = {
            "pairs": int(unseen.sum()),
            "accuracy": round(float(won_unseen.mean()), 4) if unseen.any() else None,
        }
    return res


def _won(pos: dict[int, float], owner: np.ndarray, score: np.ndarray) -> NDArray[np.float64]:
    """Per negative: 1 when its sample's own text scores above it, 0.5 on a tie, else 0."""
    own = np.asarray([pos[o] for o in owner.tolist()], np.float64)
    return (own > score) + 0.5 * (own == score)


def judge(
    real: dict[str, Any], blind: dict[str, Any] | None, control: dict[str, Any] | None
) -> dict[str, Any]:
    """A task's verdict from the scores of the real model, its blind baseline and its
    control on the same held-out samples (each from `classification` or `ranking`)."""
    n, chance = real["n"], real["chance"]
    c_bar = chance_bar(chance, n, real.get("null_variance"))
    margin = c_bar - chance
    bar, reference = c_bar, "chance"
    entry: dict[str, Any] = {
        k: v for k, v in real.items() if k not in ("per_sample", "null_variance")
    }
    entry["chance_bar"] = round(c_bar, 4)
    if blind is not None:
        b_margin = paired_margin(real["per_sample"], blind["per_sample"])
        b_bar = blind["accuracy"] + b_margin
        entry["blind"] = {"accuracy": blind["accuracy"], "margin": round(b_margin, 4)}
        entry["blind"].update(
            {k: blind[k] for k in ("ranking_by_kind", "unseen_negatives") if k in blind}
        )
        if b_bar > bar:
            bar, reference = b_bar, "blind"
    entry["bar"] = round(bar, 4)
    entry["bar_from"] = reference
    entry["beats_chance"] = bool(real["accuracy"] >= c_bar)
    entry["beats_blind"] = None if blind is None else bool(real["accuracy"] >= b_bar)
    entry["passed"] = bool(real["accuracy"] >= bar)
    if control is not None:
        low, high = chance - margin, chance + margin
        entry["control"] = {
            "accuracy": control["accuracy"],
            "range": [round(low, 4), round(high, 4)],
            "at_chance": bool(low < control["accuracy"] < high),
        }
    return entry
