"""ITM negatives: never the sample's own dedup cluster, never above the ceiling, the hard
ones the nearest, exact similarities."""

from __future__ import annotations

import numpy as np

from curate.labels import rng_for
from curate.labels.negatives import pick_negatives, quantised_similarity


def _emb(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def test_similarity_is_exact_in_any_summation_order() -> None:
    e = _emb(50, 512)
    sim = quantised_similarity(e, e)
    q = np.round(e.astype(np.float64) * 4096).astype(np.int64)
    assert np.array_equal(sim * 4096 * 4096, (q @ q.T).astype(np.float64))
    reversed_dims = quantised_similarity(e[:, ::-1], e[:, ::-1])
    assert np.array_equal(sim, reversed_dims)


def test_hard_negatives_skip_the_cluster_and_the_ceiling() -> None:
    e = _emb(40)
    e[1] = e[0]  # sample 1 is a near copy of 0: same dedup cluster
    e[2] = (0.95 * e[0].astype(np.float64) + 0.05 * e[3]).astype(np.float16)  # too close
    cluster = np.arange(40)
    cluster[1] = 0
    sim = quantised_similarity(e, e)
    negs = pick_negatives(0, 40, cluster, rng_for(0, "itm", "0"), 3, 1, 0.9, sim[0])
    idx = [n.index for n in negs]
    assert len(negs) == 4 and len(set(idx)) == 4
    assert 0 not in idx and 1 not in idx and 2 not in idx
    assert all(n.similarity is not None and n.similarity <= 0.9 for n in negs)
    hard = [n for n in negs if n.kind == "hard"]
    allowed = [i for i in range(3, 40) if sim[0, i] <= 0.9]
    best = sorted(allowed, key=lambda i: (-sim[0, i], i))[:3]
    assert [n.index for n in hard] == best


def test_random_negatives_without_embeddings() -> None:
    cluster = np.array([0, 0, 1, 2, 3, 4])
    negs = pick_negatives(0, 6, cluster, rng_for(0, "itm", "0"), 2, 1)
    assert len(negs) == 3 and all(n.kind == "random" and n.similarity is None for n in negs)
    assert {n.index for n in negs} <= {2, 3, 4, 5}
    again = pick_negatives(0, 6, cluster, rng_for(0, "itm", "0"), 2, 1)
    assert negs == again
    few = pick_negatives(0, 2, np.array([0, 0]), rng_for(0, "itm", "0"), 2, 1)
    assert few == []  # nobody outside the cluster


def test_every_negative_is_matched_in_length_and_fewer_only_when_too_few_are() -> None:
    e = _emb(60)
    sim = quantised_similarity(e, e)
    lengths = np.random.default_rng(1).integers(3, 30, 60)
    for anchor in range(60):
        negs = pick_negatives(
            anchor, 60, np.arange(60), rng_for(0, "itm", str(anchor)), 3, 1, 0.9, sim[anchor],
            lengths=lengths,
        )  # fmt: skip
        assert all(abs(lengths[n.index] - lengths[anchor]) <= 2 for n in negs)
        pool = [
            i for i in range(60)
            if i != anchor and abs(lengths[i] - lengths[anchor]) <= 2 and sim[anchor, i] <= 0.9
        ]  # fmt: skip
        assert len(negs) == min(4, len(pool))
        hard = [n.index for n in negs if n.kind == "hard"]
        assert hard == sorted(pool, key=lambda i: (-sim[anchor, i], i))[:3]


def test_one_anchor_alone_gets_what_it_gets_among_all() -> None:
    """validate recomputes a sample of anchors with the stage's own function: the same
    negatives whichever block an anchor's similarities were computed in."""
    from curate.config import LabelsConfig
    from curate.labels.corpus import build_corpus, negatives_for

    words = ["a", "red", "dog", "on", "the", "green", "sofa", "by", "night"]
    rng = np.random.default_rng(2)
    texts = {f"v{i % 7}_{i:05d}": " ".join(rng.choice(words, 3 + i % 5)) for i in range(50)}
    emb = dict(zip(sorted(texts), _emb(50), strict=True))
    spec = LabelsConfig(itm_hard=2, vsm_neighbours=1)
    for embeddings in (emb, None):
        corpus = build_corpus(texts, 77, embeddings)
        for task in ("itm", "vsm"):
            every = dict(negatives_for(corpus, range(50), task, spec))
            for i in (0, 17, 49):
                assert dict(negatives_for(corpus, [i], task, spec))[i] == every[i]
            for i, negs in every.items():
                assert 0 < len(negs) <= 4 and i not in {n.index for n in negs}
