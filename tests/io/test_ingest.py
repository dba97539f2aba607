"""Ingest a file at a time gives the rows, partitions and fingerprint of ingesting it whole."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from curate.config import FolderSource, TableSource
from curate.errors import IngestError
from curate.io.ingest import stage_ingest
from curate.io.sources import ingest


def whole_fingerprint(table: pl.DataFrame) -> str:
    """The fingerprint's definition over one table (as curate computed it before staging)."""
    h = hashlib.sha256()
    for col in ("uid", "extra"):
        h.update("\n".join(v or "" for v in table[col].to_list()).encode())
    for path in table["path"].drop_nulls().to_list():
        try:
            st = Path(path).stat()
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}:missing\n".encode())
    for image in table["image"].drop_nulls().to_list():
        h.update(hashlib.sha256(image).digest())
    return h.hexdigest()


def _lists(folder: Path) -> Path:
    """Three files of one source whose columns and types differ, and a fourth with none."""
    folder.mkdir()
    pl.DataFrame(
        {"url": ["http://a/1", "http://a/2"], "caption": ["x", "y"], "n": [1, 2]}
    ).write_parquet(folder / "part-0.parquet")
    pl.DataFrame(
        {"url": ["http://b/1"], "caption": ["z"], "n": [2.5], "lang": ["de"]}
    ).write_parquet(folder / "part-1.parquet")
    pl.DataFrame({"url": [f"http://c/{i}" for i in range(9)], "caption": ["w"] * 9}).write_parquet(
        folder / "part-2.parquet"
    )
    pl.DataFrame(schema={"url": pl.String, "caption": pl.String, "lang": pl.String}).write_parquet(
        folder / "part-3.parquet"
    )
    return folder


@pytest.mark.parametrize("per_part", [1, 4, 5, 100])
def test_staged_partitions_and_fingerprint_match_the_whole_table(
    tmp_path: Path, per_part: int
) -> None:
    lists = _lists(tmp_path / "lists")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    sources = [
        TableSource(path=str(lists / "part-*.parquet"), name="web"),
        FolderSource(path=str(tmp_path / "imgs")),
    ]
    whole = ingest(sources)
    assert json.loads(whole["extra"][0]) == {"n": 1.0, "lang": None}  # relaxed across files
    staged = stage_ingest(sources, None, per_part, tmp_path / f"stage{per_part}")
    parts = [pl.read_parquet(staged.folder / f"{i:05d}.parquet") for i in range(staged.parts)]
    assert staged.rows == whole.height == 13
    assert [p.height for p in parts] == [
        min(per_part, whole.height - i) for i in range(0, whole.height, per_part)
    ]
    assert pl.concat(parts).equals(whole)
    assert staged.fingerprint() == whole_fingerprint(whole)


def test_a_shared_source_name_is_checked_uid_by_uid(tmp_path: Path) -> None:
    lists = _lists(tmp_path / "lists")
    one = TableSource(path=str(lists / "part-0.parquet"), name="same")
    other = TableSource(path=str(lists / "part-2.parquet"), name="same")
    staged = stage_ingest([one, other], None, 8, tmp_path / "ok")  # other rows: other uids
    assert staged.rows == 11
    with pytest.raises(IngestError, match="source names must differ"):
        stage_ingest([one, one], None, 8, tmp_path / "twice")
