"""Eval sets from every supported form, and clear errors for bad ones."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest

from curate.config import EvalSet, ImageConfig
from curate.dedup.evalset import eval_digest, load_eval
from curate.errors import ConfigError
from curate.testing._photos import load_photo

CFG = ImageConfig(size=64)


def _jpeg(name: str) -> bytes:
    buf = io.BytesIO()
    load_photo(name).resize((128, 96)).save(buf, "JPEG")
    return buf.getvalue()


def test_folder_parquet_bytes_hf_struct_and_paths_agree(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg("coffee"))
    (folder / "b.jpg").write_bytes(_jpeg("rocket"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8not a jpeg")  # skipped, not fatal
    (folder / "notes.md").write_text("ignored")
    data = [_jpeg("coffee"), _jpeg("rocket")]
    pl.DataFrame({"image": data}).write_parquet(tmp_path / "bytes.parquet")
    pl.DataFrame({"image": [{"bytes": d, "path": None} for d in data]}).write_parquet(
        tmp_path / "hf.parquet"
    )
    pl.DataFrame({"path": ["imgs/a.jpg", "imgs/b.jpg"]}).write_parquet(tmp_path / "paths.parquet")
    forms = ["imgs", "bytes.parquet", "hf.parquet", "paths.parquet"]
    loaded = [load_eval(EvalSet(name="e", images=str(tmp_path / f)), CFG) for f in forms]
    for ev in loaded:
        assert ev.phash.tolist() == loaded[0].phash.tolist() and len(ev.phash) == 2
        assert ev.thumbs.shape == (2, 24, 24, 3)


def test_captions_from_txt_and_tables(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("a dog\n\n  a cat  \n")
    pl.DataFrame({"caption": ["a dog", None, "a cat"]}).write_csv(tmp_path / "c.csv")
    for f in ("c.txt", "c.csv"):
        ev = load_eval(EvalSet(name="e", captions=str(tmp_path / f)), CFG)
        assert ev.captions == ["a dog", "a cat"] and ev.phash.size == 0


def test_bad_eval_sets_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'gone'.*does not exist"):
        load_eval(EvalSet(name="gone", images=str(tmp_path / "nope")), CFG)
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match="image` or `path` column"):
        load_eval(EvalSet(name="e", images=str(tmp_path / "x.parquet")), CFG)
    with pytest.raises(ConfigError, match="`caption` column"):
        load_eval(EvalSet(name="e", captions=str(tmp_path / "x.parquet")), CFG)
    (tmp_path / "one.jpg").write_bytes(_jpeg("coffee"))
    with pytest.raises(ConfigError, match="folder or a parquet"):
        load_eval(EvalSet(name="e", images=str(tmp_path / "one.jpg")), CFG)


def test_eval_digest_follows_the_files(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("a dog\n")
    evs = [EvalSet(name="e", captions=str(tmp_path / "c.txt"))]
    before = eval_digest(evs)
    assert eval_digest(evs) == before
    (tmp_path / "c.txt").write_text("a dog\na cat\n")
    assert eval_digest(evs) != before
