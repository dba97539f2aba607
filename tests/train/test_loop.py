"""The trainer's judgement: the bar a task must clear, how matching is scored, the control's
label shuffle and the vocabulary, on small arrays whose answers are known."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from curate.labels.mlm import EOT, IGNORE, MASK_ID, SOT
from curate.train.data import Example, held_out
from curate.train.loop import (
    _null_variance,
    _Prior,
    _random_own,
    _ranking,
    _score,
    _valid,
    _Vocab,
    chance_bar,
)


def test_the_bar_is_three_standard_errors_or_five_points_above_chance() -> None:
    assert chance_bar(0.5, 100) == pytest.approx(0.5 + 3 * math.sqrt(0.25 / 100))
    assert chance_bar(0.1, 1_000_000) == pytest.approx(0.15)  # the 5-point floor
    assert chance_bar(0.25, 0) == math.inf  # nothing held out proves nothing


def test_a_classification_is_judged_against_the_majority_label_when_it_beats_uniform() -> None:
    true = np.array([3, 3, 3, 1, 2, 3, 0, 3])
    owner = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # two regions per image
    out = {"pred": np.array([3, 3, 3, 1, 2, 0, 0, 3]), "true": true, "owner": owner}
    s = _score("mrc", out, Counter({3: 10, 1: 2}), classes=8)
    assert s["accuracy"] == pytest.approx(7 / 8)
    assert s["chance"] == pytest.approx(5 / 8) and s["chance_kind"] == "majority (3)"
    # n counts images, not regions: an image's regions are not independent draws
    assert s["n"] == 4 and s["predictions"] == 8
    fom = {"pred": np.array([0, 1, 3, 2]), "true": np.array([0, 1, 2, 3]), "owner": np.zeros(4)}
    uniform = _score("fom", fom, Counter(), 4)
    assert uniform["chance"] == pytest.approx(0.25) and uniform["chance_kind"].startswith("uni")
    assert uniform["n"] == 1


def test_matching_is_scored_by_ranking_each_sample_s_own_text_above_its_negatives() -> None:
    # sample 0: own text 2.0 above both negatives; sample 1: above one of two
    out = {
        "score": np.array([2.0, 1.0, -1.0, 0.5, 0.9, 0.1]),
        "true": np.array([1, 0, 0, 1, 0, 0]),
        "owner": np.array([0, 0, 0, 1, 1, 1]),
        "kind": np.array(["positive", "hard", "random", "positive", "hard", "random"]),
        "text": np.array([1, 2, 3, 4, 5, 5]),  # sample 1's two negatives are one caption
    }
    s = _ranking(out)
    assert s["null_variance"] == pytest.approx(((2 * 0.25) / 6 + 1 / 12 + 1 / 6 + 1 / 12) / 2)
    assert s["n"] == 2 and s["accuracy"] == pytest.approx(0.75)
    assert s["ranking_by_kind"] == {"hard": 0.5, "random": 1.0}
    # score > 0 reads "matches": positives 2/2, negatives 1/4 rejected
    assert s["balanced_accuracy"] == pytest.approx(0.5 * 1 + 0.5 * 0.25)


@pytest.mark.parametrize("texts", [[1], [1, 2, 3, 4], [1, 1, 1, 2], [1, 2, 2, 3, 3, 3, 4]])
def test_the_ranking_null_variance_is_what_a_blind_model_shows(texts: list[int]) -> None:
    # a model that cannot tell its own text (0) from the negatives scores each distinct
    # text at random; the share of negatives its own text beats has the stated variance
    rng = np.random.default_rng(0)
    negs = np.asarray(texts)
    distinct = np.unique(negs)
    draws = rng.random((200_000, len(distinct) + 1))  # column 0: the own text
    below = draws[:, 1:] < draws[:, :1]  # (draws, distinct)
    per_text = below[:, np.searchsorted(distinct, negs)]
    score = per_text.mean(1)
    assert score.mean() == pytest.approx(0.5, abs=0.005)
    assert score.var() == pytest.approx(_null_variance(negs), rel=0.02)


def test_the_control_draws_classes_from_the_training_prior_at_the_same_positions() -> None:
    labels = np.full((400, 6), IGNORE)
    labels[:, 2] = 10
    labels[::2, 4] = 11
    before = labels.copy()
    prior = _Prior.of(Counter({10: 3, 11: 1}))
    prior.draw(labels, labels != IGNORE, np.random.default_rng(0))
    assert ((labels == IGNORE) == (before == IGNORE)).all()  # same positions
    drawn = labels[labels != IGNORE]
    assert set(drawn.tolist()) == {10, 11}
    assert (drawn == 10).mean() == pytest.approx(0.75, abs=0.05)  # the prior's frequency
    # independent of the sample: column 2 (all 10 before) is no longer all 10
    assert (labels[:, 2] == 11).mean() == pytest.approx(0.25, abs=0.06)


def test_the_control_calls_a_random_text_of_each_sample_its_own() -> None:
    owner = np.repeat(np.arange(2000), 2)  # own text first, one negative second
    labels = _random_own(owner, np.random.default_rng(0))
    assert (np.bincount(owner, weights=labels) == 1).all()  # one "own" per sample
    # the real positive (index 0 of each pair) is picked no more often than chance
    assert labels[::2].mean() == pytest.approx(0.5, abs=0.04)


def _example(ids: list[int], negatives: list[list[int]] = ()) -> Example:  # type: ignore[assignment]
    text = np.zeros(12, np.int64)
    text[: len(ids)] = ids
    empty = np.zeros((0, 53), np.float32)
    return Example(
        "k", text, np.full(12, IGNORE), text, empty, np.zeros(0, bool), np.zeros(0, np.int64),
        np.zeros((0, 48), np.float32), np.zeros(0, np.int64),
        [np.pad(np.asarray(n), (0, 12 - len(n))) for n in negatives],
    )  # fmt: skip


def test_the_vocabulary_holds_the_training_texts_and_trims_the_padding() -> None:
    # CLIP's id 0 is "!" inside a text and padding after the end token
    vocab = _Vocab.build([_example([SOT, 320, 0, EOT]), _example([SOT, 7, EOT], [[SOT, 99, EOT]])])
    assert vocab.length == 4
    assert set(vocab.ids[2:].tolist()) == {SOT, EOT, 320, 0, 7, 99}
    assert vocab.ids[vocab.lookup[MASK_ID]] == MASK_ID
    ids = np.array([[SOT, 320, 5555, EOT, 0, 0]])
    assert vocab.ids[vocab.encode(ids)].tolist() == [[SOT, 320, -1, EOT]]  # unknown -> -1
    assert _valid(np.array([SOT, 0, EOT, 0, 0])).tolist() == [True, True, True, False, False]


def test_the_held_out_split_is_a_hash_of_the_key() -> None:
    keys = [f"{i:09d}" for i in range(4000)]
    picked = [k for k in keys if held_out(k, 0.2)]
    assert abs(len(picked) / len(keys) - 0.2) < 0.03
    assert picked == [k for k in keys if held_out(k, 0.2)]  # the same on every call
    assert set(picked) <= {k for k in keys if held_out(k, 0.5)}  # nested fractions
