"""Dedup quality on the synthetic web's planted copies, through the real features code.

Planted: exact copies, and resized, recompressed, cropped (2–5 %) and brightness-shifted
copies of photos (the easy family, which the defaults must find); 7–9 % crops and 1–3°
rotations (the hard family, found only in part: it keeps the test informative, not
saturated); next to them, distinct crops of the same photos (hard negatives) and drawn scenes
whose flat backgrounds make pHashes collide.

The web, the hashes and the distances are bit-identical on every CPU (tests/features/
test_golden.py pins them), so these figures are the same everywhere. Measured on this web
(seed 11), defaults k = 8, verify 0.28: easy recall 0.989 / 1.0 / 1.0 (border / keep_ratio /
center_crop), hard 0.55 / 0.50 / 0.43, precision 1.0. The verify threshold sits 0.07–0.09
above the worst verified copy and 0.05–0.24 below the nearest lookalike. The floors leave
two easy misses of slack per mode; each run prints its margins.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from curate.config import DedupConfig, ImageConfig
from curate.dedup.find import find_duplicates
from curate.errors import SampleFailure
from curate.features.hashes import THUMB_SIZE, sha256_hex, signature, thumb_distance
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


_HARD = {"wide_crop", "rotate"}
EASY_RECALL, HARD_RECALL, PRECISION = 0.97, (0.2, 0.9), 0.98


def _margins(table: pl.DataFrame, want: set[tuple[str, str]], cfg: DedupConfig) -> str:
    """Where the thresholds sit between the two measured distributions, as one report line.

    Positives: planted pairs within the pHash radius (those verification decides); their
    largest thumbnail distance is the copy side's margin. Negatives: all other pairs within
    the radius; their smallest distance is the lookalike side's margin.
    """
    uids = table["uid"].to_list()
    ph = table["phash"].to_numpy()
    thumbs = np.frombuffer(b"".join(table["thumb"].to_list()), np.uint8)
    thumbs = thumbs.reshape(-1, THUMB_SIZE, THUMB_SIZE, 3)
    i, j = np.triu_indices(len(uids), 1)
    k = cfg.perceptual.max_distance
    near = np.bitwise_count(ph[i] ^ ph[j]) <= k
    i, j = i[near], j[near]
    d = thumb_distance(thumbs[i], thumbs[j])
    planted = np.array([(uids[a], uids[b]) in want for a, b in zip(i, j, strict=True)], bool)
    thr = cfg.perceptual.verify_threshold
    pos = d[planted & (d < thr)]
    neg = d[~planted]
    ham = np.bitwise_count(
        ph[[uids.index(a) for a, _ in want]] ^ ph[[uids.index(b) for _, b in want]]
    )
    return (
        f"pHash distance of planted pairs: median {np.median(ham):.0f}, "
        f"90th pct {np.percentile(ham, 90):.0f}, radius {k}; "
        f"thumb distance: worst verified copy {pos.max():.3f} "
        f"(margin {thr - pos.max():+.3f}), nearest lookalike {neg.min() if neg.size else 1:.3f} "
        f"(margin {(neg.min() if neg.size else 1) - thr:+.3f}, {int((neg < thr).sum())} under)"
    )


@pytest.mark.parametrize("mode", ["border", "keep_ratio", "center_crop"])
def test_planted_duplicates_precision_and_recall(big_web: SyntheticWeb, mode: str) -> None:
    table = _features(big_web, ImageConfig(size=256, resize_mode=mode))
    cfg = DedupConfig()
    dropped = find_duplicates(table, cfg)
    keeper = dict(zip(dropped["uid"], dropped["dup_of"], strict=True))

    def root(uid: str) -> str:
        while uid in keeper:
            uid = keeper[uid]
        return uid

    predicted: dict[str, list[str]] = {}
    for uid in table["uid"]:
        predicted.setdefault(root(uid), []).append(uid)
    got, want = _pairs(predicted), _truth_pairs(table)
    edit = dict(zip(big_web.truth["item_id"], big_web.truth["transform"], strict=True))
    hard = {p for p in want if {edit[p[0]], edit[p[1]]} & _HARD}
    easy = want - hard
    assert len(easy) >= 80 and len(hard) >= 25  # enough pairs for the floors to mean something
    precision = len(got & want) / len(got)
    easy_recall = len(got & easy) / len(easy)
    hard_recall = len(got & hard) / len(hard)
    report = (
        f"{mode}: precision {precision:.3f}, easy recall {easy_recall:.3f} "
        f"({len(easy - got)} of {len(easy)} missed), hard recall {hard_recall:.3f}; "
        + _margins(table, want, cfg)
    )
    print(report)
    assert precision >= PRECISION, (report, got - want)
    assert easy_recall >= EASY_RECALL, (report, easy - got)
    assert HARD_RECALL[0] <= hard_recall <= HARD_RECALL[1], report
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
