"""Pretraining-task labels as pure functions of (sample, corpus seed, spec).

Each function takes what it labels and a `numpy.random.Generator` from `rng_for(seed,
task, uid)`, so one sample's labels never depend on another's, on the order samples are
processed, or on the machine: PCG64 draws the same numbers everywhere, and the arithmetic
that ranks or clusters (negatives, the region codebook) is exact.
"""

from curate.labels.fom import frame_order, mask_spans
from curate.labels.mlm import Masked, mask_caption, mask_tokens, tokenize
from curate.labels.negatives import Negative, pick_negatives, quantised_similarity
from curate.labels.patchmask import block_mask, grid_for
from curate.labels.regions import (
    Region,
    assign,
    fit_codebook,
    grid_regions,
    pick_masked,
    region_features,
    superpixel_regions,
)
from curate.labels.seed import rng_for

__all__ = [
    "Masked",
    "Negative",
    "Region",
    "assign",
    "block_mask",
    "fit_codebook",
    "frame_order",
    "grid_for",
    "grid_regions",
    "mask_caption",
    "mask_spans",
    "mask_tokens",
    "pick_masked",
    "pick_negatives",
    "quantised_similarity",
    "region_features",
    "rng_for",
    "superpixel_regions",
    "tokenize",
]
