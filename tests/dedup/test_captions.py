from __future__ import annotations

import hashlib
import itertools
import random

import numpy as np
import pytest
from numpy.typing import NDArray

from curate.dedup.captions import caption_duplicates, caption_hash, normalise_caption


def _jaccard(a: str, b: str, k: int = 5) -> float:
    """Exact shingle Jaccard, written independently of the module's helper."""

    def grams(s: str) -> set[str]:
        s = normalise_caption(s)
        return {s} if len(s) <= k else {s[i : i + k] for i in range(len(s) - k + 1)}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def _pairs(ids: NDArray[np.int64]) -> set[tuple[int, int]]:
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(ids.tolist()):
        groups.setdefault(c, []).append(i)
    return {p for g in groups.values() for p in itertools.combinations(g, 2)}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  A   red_barn...in a FIELD ", "a red barn in a field"),
        ("ﬁsh ＡＢＣ１２３", "fish abc123"),
        ("Straße", "strasse"),
        ("cafe\u0301 café", "café café"),
        ("Image 2 of 10 (2019)", "image 2 of 10 2019"),
        ("see https://example.com/a?b=1 and www.foo.org/bar now", "see and now"),
        ("HTTP://EXAMPLE.COM/X.jpg Photo", "photo"),
        ("नमस्ते, दुनिया!", "नमस्ते दुनिया"),
        ("!!! -- ___", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_normalise_caption(raw: str | None, expected: str) -> None:
    assert normalise_caption(raw) == expected


def test_caption_hash_variants_differences_and_empty() -> None:
    h = caption_hash("A red barn, in a field.")
    assert len(h) == 16 and int(h, 16) >= 0
    assert h == hashlib.blake2b(b"a red barn in a field", digest_size=8).hexdigest()
    for variant in [
        "a red barn in a field",
        "A RED BARN IN A FIELD!!",
        "a red  barn in a field http://x.co/1",
    ]:
        assert caption_hash(variant) == h
    assert caption_hash("a red barn in a meadow") != h
    assert caption_hash("a red barn in a field 2") != h
    # Vowel signs are combining marks; dropping them would merge different Hindi words.
    assert caption_hash("कि") != caption_hash("का")
    for empty in [None, "", "   ", "?!", "https://example.com/img.jpg"]:
        assert caption_hash(empty) == ""


def test_boilerplate_near_duplicates_cluster_but_different_captions_do_not() -> None:
    captions = [
        "Stock Photo - A red barn in a field | Shutterstock ID 10234",
        "Stock Photo - Two dogs on a sunny beach | Shutterstock ID 10234",
        "stock photo: a red barn in a field -- shutterstock id 10571",
        "A bowl of ramen with egg and spring onions on a wooden table",
        "A bowl of salad with feta and black olives on a marble table",
    ]
    assert _jaccard(captions[0], captions[2]) > 0.85
    assert max(_jaccard(a, b) for a, b in [captions[:2], captions[3:]]) < 0.5
    assert caption_duplicates(captions).tolist() == [0, 1, 0, 3, 4]


def _planted(seed: int = 7) -> tuple[list[str], set[tuple[int, int]]]:
    """300 random captions plus 40 near copies: (index of original, index of copy) pairs."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choices(letters, k=rng.randint(4, 9))) for _ in range(400)})
    captions = [" ".join(rng.choices(vocab, k=rng.randint(8, 15))) for _ in range(300)]
    plants: set[tuple[int, int]] = set()
    for n, src in enumerate(rng.sample(range(300), 40)):
        words = captions[src].split()
        if n % 4 == 0:  # one word replaced
            k = rng.randrange(len(words))
            words[k] = rng.choice([v for v in vocab if v != words[k]])
            copy = " ".join(words)
        elif n % 4 == 1:  # case
            copy = captions[src].upper() if n % 8 == 1 else captions[src].title()
        elif n % 4 == 2:  # punctuation and spacing
            copy = ", ".join(words[:3]) + " - " + "  ".join(words[3:]) + "!"
        else:  # one word replaced, plus case, punctuation and a URL
            words[-1] = rng.choice([v for v in vocab if v != words[-1]])
            copy = " ".join(words).capitalize() + ". https://cdn.example.com/i/123.jpg"
        plants.add((src, len(captions)))
        captions.append(copy)
    return captions, plants


def test_planted_near_copies_found_exactly() -> None:
    captions, plants = _planted()
    # The plants are clearly over the threshold and every other pair clearly under it, so LSH
    # misses are vanishingly unlikely (P(candidate) > 0.999 at Jaccard 0.6 with 128 perms).
    sims = {p: _jaccard(captions[p[0]], captions[p[1]]) for p in plants}
    assert min(sims.values()) >= 0.6
    others = (p for p in itertools.combinations(range(len(captions)), 2) if p not in plants)
    assert max(_jaccard(captions[i], captions[j]) for i, j in others) < 0.3

    ids = caption_duplicates(captions, threshold=0.5)
    found = _pairs(ids)
    tp = len(found & plants)
    assert tp / len(found) == 1.0 and tp / len(plants) == 1.0
    assert all(ids[j] == i for i, j in plants)  # id = smallest index of the cluster


def test_default_threshold_no_false_positives_and_clear_pairs_found() -> None:
    captions, plants = _planted()
    found = _pairs(caption_duplicates(captions))
    sims = {p: _jaccard(captions[p[0]], captions[p[1]]) for p in plants}
    assert all(sims[p] >= 0.8 for p in found)  # verification is exact: never below threshold
    # Pairs well over the threshold are certain in practice; ones within a few points of it
    # are caught only with probability ~0.95, so they are not asserted.
    assert {p for p, s in sims.items() if s >= 0.85} <= found
    assert any(s < 0.8 for s in sims.values())  # the plant does straddle the threshold


def test_deterministic_and_order_free() -> None:
    captions, _ = _planted(seed=3)
    a = caption_duplicates(captions)
    assert a.dtype == np.int64 and a.shape == (len(captions),)
    assert np.array_equal(a, caption_duplicates(captions))
    n = len(captions)
    rev = caption_duplicates(captions[::-1])
    assert _pairs(a) == {tuple(sorted((n - 1 - i, n - 1 - j))) for i, j in _pairs(rev)}


def test_empty_captions_never_cluster_identical_ones_always_do() -> None:
    captions = [None, "", "  ", "!!", "http://x.com/a.jpg", None, "A cat", "a cat!", "cat", "cats"]
    assert caption_duplicates(captions).tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 8, 9]
    assert caption_duplicates([]).tolist() == []
    identical = ["The same caption, again"] * 3 + ["the SAME caption again"]
    for threshold, num_perm, shingle in [(1.0, 16, 5), (0.8, 128, 1), (0.3, 64, 50)]:
        ids = caption_duplicates(identical, threshold=threshold, num_perm=num_perm, shingle=shingle)
        assert ids.tolist() == [0, 0, 0, 0]


def test_threshold_one_keeps_only_identical_shingle_sets() -> None:
    captions = ["a red barn in a field", "A red barn in a field!", "a red barn in a field today"]
    assert caption_duplicates(captions, threshold=1.0).tolist() == [0, 0, 2]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.01}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"num_perm": 8}, "num_perm"),
        ({"shingle": 0}, "shingle"),
    ],
)
def test_argument_validation(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        caption_duplicates(["a", "b"], **kwargs)  # type: ignore[arg-type]
