"""Score-then-threshold filters: rules record reasons in a `reasons` list column, `keep` and
`dropped` split the rows, and the reasons feed the ledger."""

from curate.filters.reasons import (
    REASONS,
    Frame,
    MissingColumnError,
    add_reason,
    apply_rules,
    dropped,
    first_reason,
    keep,
)
from curate.filters.rules import (
    calibrate,
    caption_language,
    caption_length,
    clip_threshold,
    clip_top_fraction,
    max_aspect_ratio,
    min_side,
)

__all__ = [
    "REASONS",
    "Frame",
    "MissingColumnError",
    "add_reason",
    "apply_rules",
    "calibrate",
    "caption_language",
    "caption_length",
    "clip_threshold",
    "clip_top_fraction",
    "dropped",
    "first_reason",
    "keep",
    "max_aspect_ratio",
    "min_side",
]
