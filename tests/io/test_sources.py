from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from curate.config import FolderSource, HFSource, TableSource
from curate.errors import IngestError
from curate.io.sources import ingest, read_source
from curate.tables import INGEST_SCHEMA

ROWS = {
    "url": ["http://a.test/1.jpg", "https://b.test/2.png", "http://c.test/3.jpg"],
    "caption": ["a red circle", 'un chat, "roux"', "ünïcode ✓"],
    "lang": ["en", "fr", "de"],
}


def write_table(path: Path, fmt: str) -> Path:
    df = pl.DataFrame(ROWS)
    gz = path.suffix == ".gz"
    buf = io.BytesIO()
    if fmt == "csv":
        df.write_csv(buf)
    elif fmt == "tsv":
        df.write_csv(buf, separator="\t")
    elif fmt == "parquet":
        df.write_parquet(buf)
    else:
        df.write_ndjson(buf)
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("l.csv", "csv"),
        ("l.tsv", "tsv"),
        ("l.parquet", "parquet"),
        ("l.jsonl", "jsonl"),
        ("l.csv.gz", "csv"),
        ("l.tsv.gz", "tsv"),
        ("l.jsonl.gz", "jsonl"),
    ],
)
def test_every_table_format(tmp_path: Path, name: str, fmt: str) -> None:
    path = write_table(tmp_path / name, fmt)
    df = read_source(TableSource(path=str(path), name="list"))
    assert df.schema == pl.Schema(INGEST_SCHEMA)
    assert df["url"].to_list() == ROWS["url"]
    assert df["caption"].to_list() == ROWS["caption"]
    assert [json.loads(e) for e in df["extra"]] == [{"lang": v} for v in ROWS["lang"]]
    assert df["uid"].str.len_chars().to_list() == [20, 20, 20]
    assert df["uid"].n_unique() == 3


def test_uid_is_stable_across_formats_and_folders(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    a = read_source(TableSource(path=str(write_table(tmp_path / "l.csv", "csv")), name="L"))
    b = read_source(
        TableSource(path=str(write_table(tmp_path / "x" / "l.parquet", "parquet")), name="L")
    )
    assert a["uid"].to_list() == b["uid"].to_list()
    # the default name is the file name, never an absolute path: moving the file keeps uids
    c = read_source(TableSource(path=str(write_table(tmp_path / "x" / "l.csv", "csv"))))
    assert c["source"][0] == "l.csv"
    d = read_source(TableSource(path=str(tmp_path / "l.csv")))
    assert c["uid"].to_list() == d["uid"].to_list()


def test_custom_columns_and_selected_extras(tmp_path: Path) -> None:
    df = pl.DataFrame({"URL": ["http://a/1"], "TEXT": ["hi"], "k": [1], "drop": ["x"]})
    path = tmp_path / "c.parquet"
    df.write_parquet(path)
    src = TableSource(path=str(path), url_column="URL", caption_column="TEXT", extra_columns=["k"])
    out = read_source(src)
    assert out["url"][0] == "http://a/1" and out["caption"][0] == "hi"
    assert json.loads(out["extra"][0]) == {"k": 1}


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write_table(tmp_path / "l.csv", "csv")
    with pytest.raises(IngestError) as exc:
        read_source(TableSource(path=str(path), url_column="image_url"))
    assert "'image_url' not found" in str(exc.value)
    assert "url, caption, lang" in str(exc.value)
    assert str(path) in str(exc.value)


def test_unreadable_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(IngestError, match="cannot read as parquet"):
        read_source(TableSource(path=str(bad)))
    with pytest.raises(IngestError, match="no file matches"):
        read_source(TableSource(path=str(tmp_path / "none-*.csv")))
    with pytest.raises(IngestError, match="cannot read"):
        read_source(TableSource(path=str(tmp_path / "missing.csv")))
    with pytest.raises(IngestError, match="cannot tell the format"):
        read_source(TableSource(path=str(tmp_path / "list.xlsx")))
    gz = tmp_path / "broken.csv.gz"
    gz.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(IngestError, match="gzip"):
        read_source(TableSource(path=str(gz)))


def test_glob_of_tables_in_sorted_order(tmp_path: Path) -> None:
    write_table(tmp_path / "part-1.csv", "csv")
    write_table(tmp_path / "part-0.csv", "csv")
    df = read_source(TableSource(path=str(tmp_path / "part-*.csv"), name="parts"))
    assert df.height == 6
    assert df["uid"].n_unique() == 6


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "JPEG")
    return buf.getvalue()


def test_folder_with_sidecar_captions(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "b.jpg").write_bytes(_jpeg((255, 0, 0)))
    (root / "b.txt").write_text("a red square\n")
    (root / "sub" / "a.jpg").write_bytes(_jpeg((0, 0, 255)))
    (root / "notes.md").write_text("ignored")
    df = read_source(FolderSource(path=str(root)))
    assert [json.loads(e)["file"] for e in df["extra"]] == ["b.jpg", "sub/a.jpg"]
    assert df["caption"].to_list() == ["a red square", None]
    assert df["path"].to_list() == [str(root / "b.jpg"), str(root / "sub" / "a.jpg")]
    with pytest.raises(IngestError, match="not a folder"):
        read_source(FolderSource(path=str(tmp_path / "nope")))


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": _jpeg((0, 255, 0)), "path": None}], "text": ["green"], "n": [3]},
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "text": datasets.Value("string"),
                "n": datasets.Value("int32"),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    df = read_source(
        HFSource(path=str(tmp_path / "ds"), image_column="image", caption_column="text")
    )
    assert df["caption"].to_list() == ["green"]
    assert df["image"][0] == _jpeg((0, 255, 0))
    assert json.loads(df["extra"][0]) == {"n": 3}
    dd = datasets.DatasetDict({"validation": ds})
    dd.save_to_disk(str(tmp_path / "dd"))
    df2 = read_source(
        HFSource(path=str(tmp_path / "dd"), image_column="image", caption_column="text")
    )
    assert df2["uid"].to_list() != [] and df2["caption"].to_list() == ["green"]
    with pytest.raises(IngestError, match="split 'train' not found"):
        read_source(HFSource(path=str(tmp_path / "dd"), split="train", image_column="image"))
    with pytest.raises(IngestError, match="cannot load"):
        read_source(HFSource(path=str(tmp_path / "nothing")))


def test_two_sources_with_the_same_name_are_refused(tmp_path: Path) -> None:
    path = write_table(tmp_path / "l.csv", "csv")
    with pytest.raises(IngestError, match="same uid"):
        ingest([TableSource(path=str(path)), TableSource(path=str(path))])
    both = ingest([TableSource(path=str(path)), TableSource(path=str(path), name="again")])
    assert both.height == 6


def test_a_folder_of_videos_pairs_each_with_its_transcript(tmp_path: Path) -> None:
    from curate.config import FolderSource

    for name in ("a.mp4", "a.srt", "a.txt", "b.webm", "b.json", "c.mov", "c.vtt", "d.mkv", "x.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.txt").write_text("a cooking show")
    df = read_source(FolderSource(path=str(tmp_path), files="videos"))
    assert [json.loads(e)["file"] for e in df["extra"]] == ["a.mp4", "b.webm", "c.mov", "d.mkv"]
    assert [json.loads(e)["subtitles"] for e in df["extra"]] == [
        str(tmp_path / "a.srt"),
        str(tmp_path / "b.json"),
        str(tmp_path / "c.vtt"),
        None,
    ]
    assert df["caption"].to_list() == ["a cooking show", None, None, None]
    images = read_source(FolderSource(path=str(tmp_path)))
    assert [json.loads(e) for e in images["extra"]] == [{"file": "x.jpg"}]
