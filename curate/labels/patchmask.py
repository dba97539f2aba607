"""Block-wise masking over a patch grid (BEiT): masked patches come in rectangles, so a
model cannot fill them from their immediate neighbours.

Rectangles of at least `min_block` patches and aspect ratio within [1/max_aspect,
max_aspect] are drawn until `ratio` of the grid is masked; BEiT stops short of the target,
this tops up with single patches, so every mask has exactly round(ratio * patches).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["block_mask", "grid_for"]


def grid_for(width: int, height: int, patch: int) -> tuple[int, int]:
    """(rows, cols) of `patch`-pixel patches over an image (a partial edge patch counts)."""
    if patch <= 0:
        raise ValueError(f"patch size {patch} must be positive")
    return max(1, math.ceil(height / patch)), max(1, math.ceil(width / patch))


def block_mask(
    rows: int,
    cols: int,
    ratio: float,
    rng: np.random.Generator,
    min_block: int = 16,
    max_aspect: float = 3.0,
    attempts: int = 10,
) -> NDArray[np.bool_]:
    """A (rows, cols) boolean mask with exactly round(ratio * rows * cols) True patches."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"mask ratio {ratio} is not in [0, 1]")
    total = rows * cols
    target = round(ratio * total)
    mask = np.zeros((rows, cols), dtype=bool)
    log_aspect = (math.log(1 / max_aspect), math.log(max_aspect))
    stalled = 0
    while mask.sum() < target and stalled < attempts:
        left = target - int(mask.sum())
        area = rng.uniform(min(min_block, left), max(min(min_block, left), left))
        aspect = math.exp(rng.uniform(*log_aspect))
        h = max(1, min(rows, round(math.sqrt(area * aspect))))
        w = max(1, min(cols, round(math.sqrt(area / aspect))))
        top = int(rng.integers(0, rows - h + 1))
        lft = int(rng.integers(0, cols - w + 1))
        block = mask[top : top + h, lft : lft + w]
        new = int((~block).sum())
        if 0 < new <= left:
            block[:] = True
            stalled = 0
        else:
            stalled += 1
    short = target - int(mask.sum())
    if short > 0:  # top up with single patches, chosen without replacement
        free = np.flatnonzero(~mask.ravel())
        mask.ravel()[rng.choice(free, size=short, replace=False)] = True
    return mask
