"""Regions, their targets and the codebook: boxes inside, colours right, exact arithmetic."""

from __future__ import annotations

import numpy as np

from curate.labels import rng_for
from curate.labels.regions import (
    assign,
    fit_codebook,
    grid_regions,
    pick_masked,
    region_features,
    superpixel_regions,
)


def _quadrants(h: int = 60, w: int = 80) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = (200, 200, 200)
    return img


def test_grid_regions_tile_the_image_with_their_colours() -> None:
    img = _quadrants()
    regions = grid_regions(img, 2, 2)
    assert [r.box for r in regions] == [
        (0, 0, 40, 30),
        (40, 0, 80, 30),
        (0, 30, 40, 60),
        (40, 30, 80, 60),
    ]
    assert sum(r.area for r in regions) == 60 * 80
    assert [r.mean_rgb for r in regions] == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 200)]
    assert regions[0].hist[4] == 1.0 and regions[3].hist[7] == 1.0  # red: 100; grey: 111
    uneven = grid_regions(np.zeros((7, 9, 3), np.uint8), 4, 4)
    assert all(0 <= r.box[0] < r.box[2] <= 9 and 0 <= r.box[1] < r.box[3] <= 7 for r in uneven)
    assert sum(r.area for r in uneven) == 63


def test_superpixel_boxes_lie_inside_the_image() -> None:
    from skimage import data

    img = data.astronaut()[::4, ::4]
    regions = superpixel_regions(img, 16)
    h, w = img.shape[:2]
    assert 4 <= len(regions) <= 32  # SLIC gives about n, fewer on smooth images
    assert all(0 <= r.box[0] < r.box[2] <= w and 0 <= r.box[1] < r.box[3] <= h for r in regions)
    assert sum(r.area for r in regions) == h * w


def test_features_are_quantised_and_the_codebook_is_exact_and_pinned() -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) // 64 * 64 for _ in range(30)]
    feats = region_features([r for im in imgs for r in grid_regions(im, 4, 4)])
    assert feats.shape == (480, 11)
    assert np.array_equal(feats * 1024, np.round(feats * 1024))
    book = fit_codebook(feats, 8, rng_for(0, "codebook", "corpus"))
    again = fit_codebook(feats[::-1].copy(), 8, rng_for(0, "codebook", "corpus"))
    assert book.shape == (8, 11) and np.array_equal(book * 1024, np.round(book * 1024))
    classes = assign(feats, book)
    assert np.bincount(classes, minlength=8).min() > 0
    # Rows in another order meet the same start (k-means++ draws from the distinct rows).
    assert np.array_equal(book, again)
    assert classes[:12].tolist() == PINNED


def test_masked_regions_are_a_sorted_share() -> None:
    picked = pick_masked(16, 0.25, rng_for(0, "regions", "x"))
    assert len(picked) == 4 and picked == sorted(set(picked)) and max(picked) < 16
    assert pick_masked(3, 0.01, rng_for(0, "regions", "x")) != []
    assert pick_masked(0, 0.5, rng_for(0, "regions", "x")) == []


PINNED = [4, 1, 0, 6, 6, 3, 1, 3, 2, 3, 1, 7]


def test_a_fitted_codebook_is_a_fixed_point_and_validate_says_when_not() -> None:
    from curate.config import LabelsConfig
    from curate.labels.regions import lloyd_step
    from curate.labels.verify import LabelSpec, codebook_problems

    x = np.round(np.random.default_rng(0).random((400, 11)) * 1024) / 1024
    book = fit_codebook(x, 6, rng_for(0, "codebook", "corpus"))
    assert np.array_equal(lloyd_step(x, book), book)
    spec = LabelsConfig(codebook_size=6)
    assert codebook_problems(x, LabelSpec(spec, book)) == []
    moved = book.copy()
    moved[2, 0] += 2**-10
    assert "1 of 6 centres move" in codebook_problems(x, LabelSpec(spec, moved))[0]
    assert "want min(6" in codebook_problems(x, LabelSpec(spec, book[:5]))[0]
