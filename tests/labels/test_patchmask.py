"""Block-wise patch masks: exact count, in blocks, pinned."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from curate.labels import rng_for
from curate.labels.patchmask import block_mask, grid_for


def test_grid_counts_partial_patches() -> None:
    assert grid_for(224, 224, 16) == (14, 14)
    assert grid_for(230, 100, 16) == (7, 15)


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.4, 0.75, 1.0])
def test_the_mask_has_exactly_the_ratio(ratio: float) -> None:
    for k in range(20):
        mask = block_mask(14, 14, ratio, rng_for(3, "patch", str(k)))
        assert mask.shape == (14, 14) and mask.sum() == round(ratio * 196)


def test_masked_patches_come_in_blocks() -> None:
    """BEiT's point: most masked patches sit in rectangles, not alone."""
    sizes = []
    for k in range(50):
        mask = block_mask(14, 14, 0.4, rng_for(3, "patch", str(k)))
        labels, _ = ndimage.label(mask)
        sizes += np.bincount(labels.ravel())[1:].tolist()
    assert np.mean(sizes) > 10
    assert block_mask(14, 14, 0.4, rng_for(3, "patch", "a")).tolist() == (
        block_mask(14, 14, 0.4, rng_for(3, "patch", "a")).tolist()
    )


def test_the_mask_is_pinned() -> None:
    mask = block_mask(6, 6, 0.5, rng_for(0, "patch", "pinned"), min_block=4)
    assert np.flatnonzero(mask.ravel()).tolist() == PINNED


PINNED = [12, 13, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 32, 33, 34, 35]
