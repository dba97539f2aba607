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
