"""near_clips: clips linked when most frames of the shorter one find a partner frame."""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.config import DedupConfig
from curate.dedup.find import find_duplicates, near_clips


def _flip(h: int, *bits: int) -> int:
    for b in bits:
        h ^= 1 << b
    return h


RNG = np.random.default_rng(7)
A = [int(x) for x in RNG.integers(0, 2**63, 4, dtype=np.int64)]
OTHER = [int(x) for x in RNG.integers(0, 2**63, 4, dtype=np.int64)]


def test_a_reencoded_clip_links_and_other_footage_does_not() -> None:
    again = [_flip(h, 1, 9, 33) for h in A]  # every frame 3 bits off
    labels = near_clips([A, again, OTHER], max_distance=6, min_matched=0.5)
    assert labels[0] == labels[1] != labels[2]


def test_too_few_matched_frames_do_not_link() -> None:
    one_shared = [A[0], *OTHER[1:]]  # a shared title card is not the same clip
    assert len(set(near_clips([A, one_shared], 6, 0.5).tolist())) == 2
    two_shared = [A[0], A[1], *OTHER[2:]]
    assert len(set(near_clips([A, two_shared], 6, 0.5).tolist())) == 1
    assert len(set(near_clips([A, two_shared], 6, 0.75).tolist())) == 2


def test_a_short_clip_inside_a_long_one_links_by_the_shorter() -> None:
    """Matched frames count against the clip with fewer frames (a trimmed re-upload)."""
    assert len(set(near_clips([A + OTHER, A[1:3]], 0, 1.0).tolist())) == 1


def test_a_still_shot_links_when_all_its_frames_match() -> None:
    """Matches are counted on the clip with fewer frames, even when they share a partner."""
    assert len(set(near_clips([[A[0], A[0]], A], 0, 1.0).tolist())) == 1


def test_frames_of_one_clip_never_link_it_to_itself_or_chain_others() -> None:
    still = [A[0]] * 4  # a still shot: four equal frames
    labels = near_clips([still, OTHER, [OTHER[0]] * 2], 0, 0.5)
    assert labels[0] != labels[1]
    assert labels[1] == labels[2]
    assert near_clips([], 4, 0.5).size == 0


def _features(frames: list[list[int]], phash: list[int]) -> pl.DataFrame:
    n = len(frames)
    return pl.DataFrame(
        {
            "uid": [f"{i:020x}" for i in range(n)],
            "sha256": [f"s{i}" for i in range(n)],
            "phash": phash,
            "thumb": [bytes(24 * 24 * 3)] * n,
            "caption_hash": [f"c{i}" for i in range(n)],
            "url_caption_hash": [f"u{i}" for i in range(n)],
            "width": [100] * n,
            "height": [100] * n,
            "original_width": [100 + i for i in range(n)],
            "original_height": [100] * n,
            "frame_phash": frames,
            "caption": [f"caption {i}" for i in range(n)],
        },
        schema_overrides={"phash": pl.UInt64, "frame_phash": pl.List(pl.UInt64)},
    )


def test_find_duplicates_names_the_method_and_keeps_the_larger_clip() -> None:
    # Clips 0 and 1: same footage; their middle frames (phash) are identical, as are those of
    # unrelated clip 2, which the image method would have wrongly joined.
    table = _features([A, [_flip(h, 2) for h in A], OTHER], [A[2], A[2], A[2]])
    dropped = find_duplicates(table, DedupConfig())
    assert dropped.to_dicts() == [
        {"uid": f"{0:020x}", "dedup_method": "near_clip", "dup_of": f"{1:020x}"}
    ]
    off = find_duplicates(table, DedupConfig.model_validate({"clips": {"enabled": False}}))
    assert off.height == 0


def test_images_keep_the_perceptual_method() -> None:
    table = _features([[], [], []], [A[0], _flip(A[0], 3), OTHER[0]])
    dropped = find_duplicates(table, DedupConfig())
    assert dropped["dedup_method"].to_list() == ["perceptual"]
