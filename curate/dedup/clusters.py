"""Union-find over verified pairs: connected components with deterministic ids."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["components"]


def components(n: int, i: NDArray[np.integer], j: NDArray[np.integer]) -> NDArray[np.int64]:
    """Cluster id per item: the smallest index in its connected component.

    Items in no pair are their own cluster, so `ids == arange(n)` means "no duplicates".
    Ids depend only on the pairs, never on their order.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=True, connection="weak")
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n, dtype=np.int64))
    return first[labels]
