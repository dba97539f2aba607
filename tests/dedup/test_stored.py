"""Thumbnails and embeddings read by worker tasks give the decisions of the in-memory path.

A run directory is written by hand: four partitions of features with planted near-copies
(thumbnails a pixel apart, pHashes a bit apart) and embeddings with planted semantic copies
(same direction, other length, across partitions). `find_duplicates` over the full table in
memory and over the search table with `StoredThumbs` / `stored_semantic` must drop the same
samples for the same reasons, here and on a real Dask cluster whose workers read the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from curate.config import DedupConfig
from curate.dedup.find import find_duplicates
from curate.dedup.stage import search_table
from curate.dedup.stored import StoredThumbs, stored_semantic
from curate.features.hashes import THUMB_SIZE
from curate.rundir import RunDir, partition_name
from curate.tables import FEATURES_SCHEMA, write_table

SIZES = (40, 1, 55, 30)  # one partition of a single row: boundaries must hold


def _write_run(root: Path) -> tuple[pl.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    n = sum(SIZES)
    thumbs = rng.integers(0, 256, (n, THUMB_SIZE, THUMB_SIZE, 3), dtype=np.uint8)
    phash = rng.integers(0, 2**63, n, dtype=np.uint64)
    emb = rng.standard_normal((n, 24)).astype(np.float32)
    for a, b in [(3, 90), (41, 42), (60, 120), (10, 11)]:  # perceptual copies
        thumbs[b] = thumbs[a]
        thumbs[b, 0, 0] ^= 1
        phash[b] = phash[a] ^ np.uint64(1 << 5)
    for a, b in [(5, 100), (50, 51), (77, 125)]:  # semantic copies
        emb[b] = emb[a] * 3.0
    emb[20] = 0.0  # no direction: never paired
    table = pl.DataFrame(
        {
            "uid": [f"u{i:04d}" for i in range(n)],
            "sha256": [f"s{i}" for i in range(n)],
            "phash": phash,
            "thumb": [t.tobytes() for t in thumbs],
            "caption_hash": [f"c{i}" for i in range(n)],
            "url_caption_hash": [f"x{i}" for i in range(n)],
            "width": np.full(n, 64, np.int32),
            "height": rng.integers(40, 90, n).astype(np.int32),
            "original_width": [None] * n,
            "original_height": [None] * n,
            "frame_phash": [[] for _ in range(n)],
        },
        schema=FEATURES_SCHEMA,
    )
    run = RunDir(root)
    start = 0
    for k, size in enumerate(SIZES):
        part = partition_name(k)
        write_table(run.ingest(part), pl.DataFrame({"uid": table["uid"][start : start + size]}))
        chunk = table.slice(start, size)
        write_table(run.features(part), chunk)
        raw = chunk.select("uid", caption=pl.lit("a caption"))
        write_table(run.raw_table(part), raw)
        np.save(run.image_embeddings(part), emb[start : start + size])
        start += size
    return table.with_columns(caption=pl.lit("a caption")), emb


CFG = DedupConfig.model_validate({"semantic": {"enabled": True, "threshold": 0.97}})


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, Any]:
    root = tmp_path_factory.mktemp("stored") / "run"
    table, emb = _write_run(root)
    return root, table, emb


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _decisions(frame: pl.DataFrame) -> list[tuple[str, str, str]]:
    return sorted(frame.select("uid", "dedup_method", "dup_of").iter_rows())


def test_search_table_holds_no_thumbnails_and_locates_rows(
    stored: tuple[Path, pl.DataFrame, Any],
) -> None:
    root, table, _ = stored
    search, loc = search_table(RunDir(root), captions=False)
    assert "thumb" not in search.columns and "caption" not in search.columns
    assert search["uid"].to_list() == table["uid"].to_list()
    part, local = loc.locate(np.array([0, 39, 40, 41, 95, 125], dtype=np.int64))
    assert part.tolist() == [0, 0, 1, 2, 2, 3] and local.tolist() == [0, 39, 0, 0, 54, 29]


@pytest.mark.parametrize("on_cluster", [False, True], ids=["here", "workers"])
def test_stored_thumbs_and_embeddings_decide_as_in_memory(
    stored: tuple[Path, pl.DataFrame, Any], client: Any, on_cluster: bool
) -> None:
    root, table, emb = stored
    expected = find_duplicates(table, CFG, emb)
    methods = expected["dedup_method"].value_counts()
    assert dict(methods.iter_rows()) == {"perceptual": 4, "semantic": 3}
    run = RunDir(root)
    search, loc = search_table(run, captions=False)
    c = client if on_cluster else None
    got = find_duplicates(
        search,
        CFG,
        client=c,
        thumbs=StoredThumbs(run.root, loc, c),
        semantic=stored_semantic(run.root, loc, c),
    )
    assert _decisions(got) == _decisions(expected)


def test_stored_thumbs_gather_and_distances(
    stored: tuple[Path, pl.DataFrame, Any], client: Any
) -> None:
    root, table, _ = stored
    run = RunDir(root)
    _, loc = search_table(run, captions=False)
    thumbs = StoredThumbs(run.root, loc, client)
    rows = np.array([125, 0, 40, 3, 90], dtype=np.int64)
    want = np.stack([np.frombuffer(table["thumb"][int(r)], np.uint8) for r in rows])
    assert np.array_equal(thumbs.gather(rows).reshape(len(rows), -1), want)
    dist = thumbs.pair_distance(np.array([3, 0], np.int64), np.array([90, 125], np.int64))
    assert dist[0] < 0.05 < dist[1]


def test_semantic_trains_on_a_seeded_sample_past_the_cap(
    stored: tuple[Path, pl.DataFrame, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 256 rows per centre k-means trains on a seeded sample of them: the planted copies
    are still found (pairs are exact within clusters, and a copy shares its original's
    nearest centre whatever the centres are), and the same seed gives the same labels."""
    import curate.dedup.stored as stored_module

    root, _, _ = stored
    run = RunDir(root)
    _, loc = search_table(run, captions=False)
    rows = np.arange(int(loc.offsets[-1]), dtype=np.int64)
    monkeypatch.setattr(stored_module, "POINTS_PER_CENTROID", 10)  # 3 centres: 30 of 126 rows
    first = stored_semantic(run.root, loc, seed=3)(rows, 0.97, None)
    again = stored_semantic(run.root, loc, seed=3)(rows, 0.97, None)
    assert np.array_equal(first, again)
    for a, b in [(5, 100), (50, 51), (77, 125)]:
        assert first[a] == first[b]
    assert len(set(first.tolist())) == rows.size - 3
