"""The synthetic web must be reproducible and its truth must match the files it wrote."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from curate.testing import SyntheticWeb, build_web
from curate.testing._photos import iou
from curate.testing._plan import FAULTS, NEAR_TRANSFORMS, plan_web
from curate.testing._scenes import COLORS, draw_scene, random_scene, scene_hash
from curate.testing.web import TRUTH_SCHEMA

ROLES = {
    "original",
    "exact_duplicate",
    "near_duplicate",
    "hard_negative",
    "mismatched_caption",
    "fault",
}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWeb:
    return build_web(tmp_path_factory.mktemp("web"), n_items=60, seed=7)


def _file(web: SyntheticWeb, item_id: str) -> Path:
    route = web.truth.filter(pl.col("item_id") == item_id)["route"].item()
    return web.files_dir / route.rsplit("/", 1)[1]


def _similarity(a: Path, b: Path) -> float:
    """Correlation of 32x32 grayscale thumbnails: ignores brightness shifts, not content."""
    thumbs = []
    for path in (a, b):
        img = Image.open(path).convert("L").resize((32, 32), Image.Resampling.BOX)
        x = np.asarray(img, dtype=np.float64)
        x -= x.mean()
        thumbs.append(x / (np.linalg.norm(x) + 1e-9))
    return float((thumbs[0] * thumbs[1]).sum())


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = build_web(tmp_path / "a", n_items=40, seed=3)
    b = build_web(tmp_path / "b", n_items=40, seed=3)
    names = sorted(p.name for p in a.files_dir.iterdir())
    assert names == sorted(p.name for p in b.files_dir.iterdir())
    assert len(names) == 40
    for name in names:
        assert (a.files_dir / name).read_bytes() == (b.files_dir / name).read_bytes(), name
    assert a.truth.equals(b.truth)
    assert (a.root / "truth.parquet").read_bytes() == (b.root / "truth.parquet").read_bytes()
    c = build_web(tmp_path / "c", n_items=40, seed=4)
    assert not c.truth.equals(a.truth)


def test_rebuild_replaces_stale_files(tmp_path: Path) -> None:
    build_web(tmp_path, n_items=12, seed=0)
    web = build_web(tmp_path, n_items=5, seed=0)
    assert len(list(web.files_dir.iterdir())) == 5
    assert SyntheticWeb.load(tmp_path).truth.equals(web.truth)


def test_every_planted_kind_is_present(web: SyntheticWeb) -> None:
    t = web.truth
    assert t.height == 60
    assert set(t["role"]) == ROLES
    assert set(t["kind"]) == {"photo", "scene"}
    assert set(t["fault"].drop_nulls()) == set(FAULTS)
    near = t.filter(pl.col("role") == "near_duplicate")
    assert set(near["transform"]) == set(NEAR_TRANSFORMS)
    hard = t.filter(pl.col("role") == "hard_negative")
    assert set(hard["transform"]) == {"crop_distinct"}
    assert hard["dup_of"].null_count() == hard.height


def test_truth_is_consistent_with_files(web: SyntheticWeb) -> None:
    t = web.truth
    assert dict(t.schema) == {k: v() for k, v in TRUTH_SCHEMA.items()}
    assert t["item_id"].is_unique().all() and t["route"].is_unique().all()
    ids = set(t["item_id"])
    for row in t.iter_rows(named=True):
        name = row["route"].rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-z_.]+", name) and name.startswith(row["item_id"])
        assert (web.files_dir / name).is_file()
        assert (row["expected_status"] == "ok") == (row["expected_reason"] is None)
        assert row["group"] in ids
        if row["role"] in ("exact_duplicate", "near_duplicate"):
            assert row["dup_of"] in ids and row["dup_of"] == row["group"]
            assert t.filter(pl.col("item_id") == row["dup_of"])["role"].item() == "original"
        else:
            assert row["dup_of"] is None
        if row["width"] is not None:
            with Image.open(web.files_dir / name) as img:
                assert img.size == (row["width"], row["height"])
        if row["role"] != "fault":
            assert row["expected_status"] == "ok" and row["route"] == f"/img/{name}"
    faults = t.filter(pl.col("role") == "fault")
    ok = set(faults.filter(pl.col("expected_status") == "ok")["fault"])
    assert ok == {"429", "redirect", "optout-other"}


def test_served_images_decode_except_cut_jpeg(web: SyntheticWeb) -> None:
    for row in web.truth.iter_rows(named=True):
        data = (web.files_dir / row["route"].rsplit("/", 1)[1]).read_bytes()
        if row["fault"] == "cut_jpeg":
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
        else:
            Image.open(io.BytesIO(data)).load()


def test_exact_duplicates_share_bytes(web: SyntheticWeb) -> None:
    exact = web.truth.filter(pl.col("role") == "exact_duplicate")
    assert exact.height >= 1
    for row in exact.iter_rows(named=True):
        a = hashlib.sha256(_file(web, row["item_id"]).read_bytes()).hexdigest()
        b = hashlib.sha256(_file(web, row["dup_of"]).read_bytes()).hexdigest()
        assert a == b


def test_near_duplicates_close_and_hard_negatives_far(web: SyntheticWeb) -> None:
    t = web.truth
    near_sims, hard_edit_sims = [], []
    for row in t.filter(pl.col("role") == "near_duplicate").iter_rows(named=True):
        mine, orig = _file(web, row["item_id"]), _file(web, row["dup_of"])
        assert mine.read_bytes() != orig.read_bytes()
        hard_edit = row["transform"] in ("wide_crop", "rotate")
        (hard_edit_sims if hard_edit else near_sims).append(_similarity(mine, orig))
    hard_sims = []
    for row in t.filter(pl.col("role") == "hard_negative").iter_rows(named=True):
        base = t.filter(pl.col("item_id") == row["group"]).row(0, named=True)
        assert base["source"] == row["source"] and base["kind"] == "photo"
        hard_sims.append(_similarity(_file(web, row["item_id"]), _file(web, base["item_id"])))
    assert min(near_sims) > 0.7, near_sims
    assert max(hard_sims) < 0.62, hard_sims
    # the hard edit family is further from its original, yet closer than any distinct crop
    assert hard_edit_sims and min(hard_edit_sims) > max(hard_sims), (hard_edit_sims, hard_sims)


def test_mismatched_captions_belong_to_other_items(web: SyntheticWeb) -> None:
    t = web.truth
    mism = t.filter(pl.col("role") == "mismatched_caption")
    assert mism.height >= 1
    for row in mism.iter_rows(named=True):
        assert row["caption"] != row["true_caption"]
        donors = t.filter(pl.col("true_caption") == row["caption"])
        assert donors.height >= 1
        assert row["group"] not in set(donors["group"])
    rest = t.filter(pl.col("role") != "mismatched_caption")
    assert (rest["caption"] == rest["true_caption"]).all()


def test_scene_captions_follow_the_drawing() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        scene = random_scene(rng)
        img = draw_scene(scene)
        xs = [s.cx for s in scene.shapes]
        assert xs == sorted(xs)
        for s in scene.shapes:
            assert s.color != scene.background and s.color in scene.caption
            assert s.shape in scene.caption
            pixel = np.asarray(img.getpixel((s.cx, s.cy)), dtype=int)
            assert np.abs(pixel - np.asarray(COLORS[s.color])).max() <= 8
        assert scene.caption.endswith(f"on a {scene.background} background")
        assert len({s.color for s in scene.shapes}) == len(scene.shapes)


def test_unrelated_items_are_kept_apart() -> None:
    """Crops of one photo barely overlap and scenes differ in hash, so truth has no hidden dups."""
    entries = plan_web(300, np.random.default_rng(0))
    windows: dict[str, list[tuple[float, float, float, float]]] = {}
    for e in entries:
        if e.window is not None:
            windows.setdefault(e.source, []).append(e.window)
    for crops in windows.values():
        for i, a in enumerate(crops):
            assert all(iou(a, b) <= 0.5 for b in crops[i + 1 :])
    hashes = [int(scene_hash(e.scene)) for e in entries if e.scene is not None]
    close = sum(
        1 for i, a in enumerate(hashes) for b in hashes[i + 1 :] if (a ^ b).bit_count() < 16
    )
    assert close == 0


@pytest.mark.parametrize(
    "suffix", ["csv", "tsv", "parquet", "jsonl", "csv.gz", "tsv.gz", "jsonl.gz"]
)
def test_url_list_round_trip(web: SyntheticWeb, tmp_path: Path, suffix: str) -> None:
    expected = web.url_list("http://127.0.0.1:9/")
    assert expected.columns == ["url", "caption", "item_id", "origin"]
    # a photo crop names the photo it was cut from; a drawn scene has none
    photo = web.truth["kind"] == "photo"
    assert expected["origin"].filter(photo).to_list() == web.truth["source"].filter(photo).to_list()
    assert expected["origin"].filter(~photo).null_count() == (~photo).sum()
    assert expected["item_id"].to_list() == web.truth["item_id"].to_list()
    assert expected["url"][0] == "http://127.0.0.1:9" + web.truth["route"][0]
    path = web.write_url_list(tmp_path / f"urls.{suffix}", "http://127.0.0.1:9/")
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    if suffix.startswith(("csv", "tsv")):
        sep = "\t" if suffix.startswith("tsv") else ","
        got = pl.read_csv(path, separator=sep, infer_schema=False)
    elif suffix == "parquet":
        got = pl.read_parquet(path)
    else:
        got = pl.read_ndjson(path)
    assert got.equals(expected)


def test_url_list_rejects_unknown_suffix(web: SyntheticWeb, tmp_path: Path) -> None:
    for name in ("urls.txt", "urls.parquet.gz"):
        with pytest.raises(ValueError, match="unsupported"):
            web.write_url_list(tmp_path / name, "http://x")


def test_build_web_rejects_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_web(tmp_path, n_items=0)
