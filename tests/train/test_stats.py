"""The trainer's judgement on small arrays whose answers are known: the bars, per-sample
scoring, ranking with ties, the paired comparison with the blind baseline and the control
checked on both sides."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from curate.train.stats import (
    chance_bar,
    classification,
    judge,
    null_variance,
    paired_margin,
    per_sample,
    ranking,
)


def test_the_bar_is_three_standard_errors_or_five_points_above_chance() -> None:
    assert chance_bar(0.5, 100) == pytest.approx(0.5 + 3 * math.sqrt(0.25 / 100))
    assert chance_bar(0.1, 1_000_000) == pytest.approx(0.15)  # the 5-point floor
    assert chance_bar(0.25, 0) == math.inf  # nothing held out proves nothing


def test_a_classification_is_the_mean_of_per_sample_accuracies_against_the_majority() -> None:
    true = np.array([3, 3, 3, 1, 2, 3, 0, 3, 3, 3])
    owner = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 3])  # sample 3 has four predictions
    pred = np.array([3, 3, 3, 1, 2, 0, 0, 3, 0, 0])
    s = classification({"pred": pred, "true": true, "owner": owner}, Counter({3: 10, 1: 2}), 8)
    assert s["per_sample"].tolist() == [1.0, 1.0, 0.5, 0.5]
    assert s["accuracy"] == pytest.approx(0.75)
    # majority: the training prior's most frequent label, scored per sample as well
    assert s["chance"] == pytest.approx((1 + 0.5 + 0.5 + 0.75) / 4)
    assert s["chance_kind"] == "majority (3)"
    assert s["n"] == 4 and s["predictions"] == 10
    fom = {"pred": np.array([0, 1, 3, 2]), "true": np.array([0, 1, 2, 3]), "owner": np.zeros(4)}
    uniform = classification(fom, Counter(), 4)
    assert uniform["chance"] == pytest.approx(0.25) and uniform["chance_kind"].startswith("uni")


def test_per_sample_means_follow_sorted_sample_ids() -> None:
    got = per_sample(np.array([1.0, 0.0, 1.0, 1.0]), np.array([7, 7, 2, 9]))
    assert got.tolist() == [1.0, 0.5, 1.0]


def _pairs(scores: list[float], owner: list[int], texts: list[int]) -> dict[str, np.ndarray]:
    first = [i == 0 or owner[i - 1] != o for i, o in enumerate(owner)]
    return {
        "score": np.asarray(scores, np.float64),
        "true": np.asarray(first, np.int64),
        "owner": np.asarray(owner),
        "text": np.asarray(texts),
    }


def test_matching_ranks_each_own_text_above_its_negatives_and_a_tie_counts_half() -> None:
    out = _pairs([2.0, 1.0, -1.0, 0.5, 0.9, 0.1], [0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 5])
    out["kind"] = np.array(["positive", "hard", "random", "positive", "hard", "random"])
    out["unseen"] = np.array([False, True, False, False, False, True])
    s = ranking(out)
    assert s["n"] == 2 and s["accuracy"] == pytest.approx(0.75)
    assert s["ranking_by_kind"] == {"hard": 0.5, "random": 1.0}
    assert s["unseen_negatives"] == {"pairs": 2, "accuracy": 1.0}
    assert s["null_variance"] == pytest.approx(((2 * 0.25) / 6 + 1 / 12 + 1 / 6 + 1 / 12) / 2)
    # a model that scores every text the same is at chance, not below it
    flat = ranking(_pairs([0.0] * 6, [0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6]))
    assert flat["accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("texts", [[1], [1, 2, 3, 4], [1, 1, 1, 2], [1, 2, 2, 3, 3, 3, 4]])
def test_the_ranking_null_variance_is_what_a_blind_model_shows(texts: list[int]) -> None:
    rng = np.random.default_rng(0)
    negs = np.asarray(texts)
    distinct = np.unique(negs)
    draws = rng.random((200_000, len(distinct) + 1))  # column 0: the own text
    below = draws[:, 1:] < draws[:, :1]
    score = below[:, np.searchsorted(distinct, negs)].mean(1)
    assert score.mean() == pytest.approx(0.5, abs=0.005)
    assert score.var() == pytest.approx(null_variance(negs), rel=0.02)


def test_the_paired_margin_is_three_standard_errors_of_the_difference_or_two_points() -> None:
    real = np.array([1.0, 1.0, 0.0, 1.0])
    blind = np.array([0.0, 1.0, 0.0, 0.0])
    d = real - blind
    assert paired_margin(real, blind) == pytest.approx(3 * d.std(ddof=1) / 2)
    same = np.ones(50)
    assert paired_margin(same, same) == pytest.approx(0.02)  # the floor
    assert paired_margin(np.ones(1), np.zeros(1)) == math.inf


def _scores(per: list[float], chance: float = 0.5) -> dict[str, object]:
    arr = np.asarray(per)
    return {"n": arr.size, "accuracy": float(arr.mean()), "per_sample": arr, "chance": chance}


def test_a_task_must_beat_the_blind_baseline_when_it_is_above_chance() -> None:
    rng = np.random.default_rng(1)
    real = (rng.random(400) < 0.8).astype(float)
    # the blind model does as well as the real one on most samples: the text suffices
    blind = np.where(rng.random(400) < 0.97, real, 1 - real)
    e = judge(_scores(real.tolist()), _scores(blind.tolist()), None)
    assert e["beats_chance"] and not e["beats_blind"] and not e["passed"]
    assert e["bar_from"] == "blind" and e["bar"] > e["blind"]["accuracy"]
    # a blind model at chance: the real one passes, judged against chance
    at_chance = (rng.random(400) < 0.5).astype(float)
    e = judge(_scores(real.tolist()), _scores(at_chance.tolist()), None)
    assert e["passed"] and e["beats_blind"]


@pytest.mark.parametrize(("control", "at_chance"), [(0.5, True), (0.62, False), (0.38, False)])
def test_the_control_must_sit_within_chance_s_margin_on_both_sides(
    control: float, at_chance: bool
) -> None:
    real = _scores([1.0] * 400)  # margin 3 * sqrt(0.25 / 400) = 0.075
    ctrl = {"n": 400, "accuracy": control, "per_sample": np.full(400, control), "chance": 0.5}
    e = judge(real, None, ctrl)
    assert e["control"]["at_chance"] is at_chance
    low, high = e["control"]["range"]
    assert high == pytest.approx(e["chance_bar"]) and low == pytest.approx(1 - high)
    assert e["beats_blind"] is None and "blind" not in e


def test_only_the_judged_kind_of_negative_counts_and_every_kind_is_reported() -> None:
    # sample 0: own text above its held-out negative, below its stored (seen) one
    out = _pairs([1.0, 2.0, 0.0, 1.0, 0.5], [0, 0, 0, 1, 1], [1, 2, 3, 4, 5])
    out["kind"] = np.array(["positive", "hard", "held_out", "positive", "held_out"])
    s = ranking(out, judged="held_out")
    assert s["accuracy"] == 1.0 and s["n"] == 2 and s["predictions"] == 2
    assert s["ranking_by_kind"] == {"hard": 0.0, "held_out": 1.0}
    assert ranking(out)["accuracy"] == pytest.approx(0.75)  # every negative
