"""Frame order permutations are uniform; audio spans cover their ratio."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from curate.labels import rng_for
from curate.labels.fom import frame_order, mask_spans


def test_frame_orders_are_uniform_over_all_permutations() -> None:
    k, n = 4, 24_000
    counts = Counter(tuple(frame_order(k, rng_for(0, "fom", str(i))).tolist()) for i in range(n))
    assert set(counts) == set(itertools.permutations(range(k)))
    expected = n / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 49.7  # 23 degrees of freedom, p = 0.001


def test_frame_order_is_pinned_and_checks_k() -> None:
    assert frame_order(8, rng_for(0, "fom", "pinned")).tolist() == PINNED
    with pytest.raises(ValueError):
        frame_order(0, rng_for(0, "fom", "x"))


def test_audio_spans_are_disjoint_inside_and_cover_the_ratio() -> None:
    spans = mask_spans(10.0, 0.3, 0.5, rng_for(0, "audiomask", "x"))
    assert len(spans) == 6
    assert all(0 <= s < e <= 10.0 for s, e in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert sum(e - s for s, e in spans) == pytest.approx(3.0)
    assert mask_spans(0.7, 0.3, 0.5, rng_for(0, "audiomask", "y")) == [(0.0, 0.5)]


PINNED = [7, 0, 6, 3, 1, 2, 5, 4]
