from __future__ import annotations

import numpy as np

from curate.dedup.clusters import components


def test_components_chain_and_singletons() -> None:
    ids = components(6, np.array([4, 1]), np.array([2, 4]))
    assert ids.tolist() == [0, 1, 1, 3, 1, 5]


def test_components_order_free_and_empty() -> None:
    a = components(5, np.array([0, 3, 2]), np.array([3, 4, 1]))
    b = components(5, np.array([1, 4, 3]), np.array([2, 3, 0]))
    assert a.tolist() == b.tolist() == [0, 1, 1, 0, 0]
    assert components(3, np.array([], dtype=int), np.array([], dtype=int)).tolist() == [0, 1, 2]
    assert components(0, np.array([]), np.array([])).size == 0


def test_keep_policy_order() -> None:
    import polars as pl

    from curate.dedup.policy import keepers, rank

    t = pl.DataFrame(
        {
            "uid": ["b", "a", "c", "d", "e"],
            "width": [10, 10, 10, 10, 10],
            "height": [10, 10, 10, 10, 10],
            "original_width": [100, 100, 50, None, 100],
            "original_height": [100, 100, 50, None, 100],
            "clip_score": [0.2, 0.1, 0.9, 0.5, None],
        }
    )
    r = rank(t)
    # most source pixels first; among equals the higher CLIP score, nulls last; then uid
    assert [t["uid"][int(i)] for i in np.argsort(r)] == ["b", "a", "e", "c", "d"]
    assert keepers(np.array([0, 0, 0, 3, 3]), r).tolist() == [0, 0, 0, 4, 4]
    no_clip = rank(t.drop("clip_score"))
    assert [t["uid"][int(i)] for i in np.argsort(no_clip)] == ["a", "b", "e", "c", "d"]
