"""Dedup quality on the synthetic web's planted copies, through the real features code.

Planted: exact copies, and resized, recompressed, cropped (2–5 %) and brightness-shifted
copies of photos; next to them, distinct crops of the same photos (hard negatives) and drawn
scenes whose flat backgrounds make pHashes collide. Pair precision and recall must be ≥ 0.98.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from curate.config import DedupConfig, ImageConfig
from curate.dedup.find import find_duplicates
from curate.errors import SampleFailure
from curate.features.hashes import sha256_hex, signature
from curate.media.image import process_image
from curate.testing import SyntheticWeb, build_web


@pytest.fixture(scope="module")
def big_web(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWeb:
    return build_web(tmp_path_factory.mktemp("dedup-web"), n_items=800, seed=11)


def _features(web: SyntheticWeb, image: ImageConfig) -> pl.DataFrame:
    rows = []
    for r in web.truth.filter(pl.col("expected_status") == "ok").iter_rows(named=True):
        data = (web.files_dir / r["route"].rsplit("/", 1)[-1]).read_bytes()
        try:
            stored = process_image(data, image)
        except SampleFailure:
            continue  # planted faults served through /img (e.g. a cut JPEG)
        ph, thumb = signature(stored.data)
        rows.append(
            {
                "uid": r["item_id"],
                "sha256": sha256_hex(stored.data),
                "phash": ph,
                "thumb": thumb.tobytes(),
                "caption": r["caption"],
                "caption_hash": r["caption"],
                "url_caption_hash": r["route"],
                "width": stored.width,
                "height": stored.height,
                "original_width": stored.original_width,
                "original_height": stored.original_height,
                "copies": r["item_id"] if r["role"] == "hard_negative" else r["group"],
                "group": r["group"],
                "role": r["role"],
            }
        )
    return pl.DataFrame(rows, schema_overrides={"phash": pl.UInt64})


def _pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {p for g in groups.values() for p in itertools.combinations(sorted(g), 2)}


def _truth_pairs(table: pl.DataFrame) -> set[tuple[str, str]]:
    """Planted copy groups, joined where the stored images are byte-identical (a centre
    crop can cut a scene's only object away, leaving two identical flat backgrounds)."""
    uids = table["uid"].to_list()
    labels = {u: u for u in uids}

    def find(u: str) -> str:
        while labels[u] != u:
            u = labels[u]
        return u

    for key in ("copies", "sha256"):
        first: dict[str, str] = {}
        for u, k in zip(uids, table[key], strict=True):
            a, b = find(u), find(first.setdefault(k, u))
            labels[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for u in uids:
        groups.setdefault(find(u), []).append(u)
    return _pairs(groups)


@pytest.mark.parametrize("mode", ["border", "keep_ratio", "center_crop"])
def test_planted_duplicates_precision_and_recall(big_web: SyntheticWeb, mode: str) -> None:
    table = _features(big_web, ImageConfig(size=256, resize_mode=mode))
    dropped = find_duplicates(table, DedupConfig())
    keeper = dict(zip(dropped["uid"], dropped["dup_of"], strict=True))

    def root(uid: str) -> str:
        while uid in keeper:
            uid = keeper[uid]
        return uid

    predicted: dict[str, list[str]] = {}
    for uid in table["uid"]:
        predicted.setdefault(root(uid), []).append(uid)
    got, want = _pairs(predicted), _truth_pairs(table)
    assert len(want) >= 80  # enough planted pairs for 0.98 to mean something
    precision = len(got & want) / len(got)
    recall = len(got & want) / len(want)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall, want - got, got - want)
    methods = set(dropped["dedup_method"])
    assert {"exact_bytes", "perceptual"} <= methods
    # a hard negative (a distinct crop of the same photo) and its photo's copies never meet
    group = dict(zip(table["uid"], table["group"], strict=True))
    hard = set(table.filter(pl.col("role") == "hard_negative")["uid"])
    assert len(hard) >= 10
    for a, b in got:
        assert not ((a in hard or b in hard) and group[a] == group[b]), (a, b)


def test_keep_policy_keeps_the_largest_source_then_the_lowest_uid(big_web: SyntheticWeb) -> None:
    table = _features(big_web, ImageConfig(size=256, resize_mode="border"))  # all stored 256²
    dropped = find_duplicates(table, DedupConfig())
    area = table["original_width"] * table["original_height"]
    px = dict(zip(table["uid"], area.to_list(), strict=True))
    assert any(px[u] != px[o] for u, o in zip(dropped["uid"], dropped["dup_of"], strict=True))
    assert dropped.height > 0
    for uid, of in zip(dropped["uid"], dropped["dup_of"], strict=True):
        assert (px[of], -int(of)) > (px[uid], -int(uid)), (uid, of)
    # deterministic: shuffled rows give the same decisions
    again = find_duplicates(table.sample(fraction=1.0, shuffle=True, seed=3), DedupConfig())
    assert again.sort("uid").equals(dropped.sort("uid"))
    assert np.all(dropped["dup_of"].is_in(table["uid"].implode()).to_numpy())
