"""Frame order modelling (HERO) and masked spans in time (audio).

A clip's K frames are shown in a drawn order and the model predicts each one's place; the
permutation is uniform over all K! orders. Audio gets spans of `span_s` seconds masked until
`ratio` of the duration is covered.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["frame_order", "mask_spans"]


def frame_order(k: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """A permutation of range(k), uniform over all k! orders: `order[i]` is the frame shown
    at position i."""
    if k < 1:
        raise ValueError(f"a clip needs at least one frame, got {k}")
    return rng.permutation(k).astype(np.int64)


def mask_spans(
    duration: float, ratio: float, span_s: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Disjoint [start, end) spans inside [0, duration), in time order: round(ratio *
    duration / span_s) slots of `span_s` (at least one when ratio > 0; a slot past the end
    is clipped to it)."""
    if duration <= 0 or span_s <= 0 or not 0 <= ratio <= 1:
        raise ValueError("mask_spans needs duration > 0, span_s > 0 and ratio in [0, 1]")
    slots = max(1, int(duration // span_s))
    n = min(slots, max(1 if ratio > 0 else 0, round(ratio * duration / span_s)))
    picked = np.sort(rng.choice(slots, size=n, replace=False)) if n else np.zeros(0, int)
    return [(round(i * span_s, 6), round(min((i + 1) * span_s, duration), 6)) for i in picked]
