"""Local sources through the whole pipeline: a folder of images and a saved HF dataset."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

import curate
from curate.shards.validate import validate_shards

ENGINE = {"n_workers": 1}


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (120, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_folder_source_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "red.jpg").write_bytes(jpeg((255, 0, 0)))
    (root / "red.txt").write_text("a red rectangle")
    (root / "blue.png").write_bytes(jpeg((0, 0, 255)))  # JPEG bytes named .png: magic decides
    (root / "cut.jpg").write_bytes(jpeg((0, 255, 0))[:300])
    (root / "page.jpg").write_bytes(b"<html>not an image</html>")
    cfg = {
        "sources": [{"kind": "folder", "path": str(root)}],
        "image": {"size": 64, "resize_mode": "center_crop"},
        "engine": ENGINE,
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    ledger = curate.open_ledger(tmp_path / "out").collect().sort("path")
    got = dict(zip([Path(p).name for p in ledger["path"]], ledger["reason"], strict=True))
    assert got == {
        "blue.png": None,
        "cut.jpg": "decode_error",
        "page.jpg": "not_image",
        "red.jpg": None,
    }
    assert res.funnel["written"] == 2
    assert validate_shards(tmp_path / "out" / "shards") == []
    import webdataset as wds

    samples = list(
        wds.WebDataset(str(tmp_path / "out/shards/00000.tar"), shardshuffle=False).decode("pil")
    )
    by_file = {s["json"]["file"]: s for s in samples}
    assert by_file["red.jpg"]["txt"] == "a red rectangle" and by_file["blue.png"]["txt"] == ""
    assert by_file["red.jpg"]["jpg"].size == (64, 64)
    assert by_file["red.jpg"]["jpg"].getpixel((32, 32))[0] > 200


def test_hf_source_end_to_end(tmp_path: Path) -> None:
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": jpeg((0, 200, 0)), "path": None}, {"bytes": b"junk", "path": None}],
            "text": ["green", "broken"],
        },
        features=feats,
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    cfg = {
        "sources": [
            {
                "kind": "hf",
                "path": str(tmp_path / "ds"),
                "image_column": "image",
                "caption_column": "text",
            }
        ],
        "image": {"size": 32},
        "engine": ENGINE,
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    ledger = curate.open_ledger(tmp_path / "out").collect()
    assert ledger.select("caption", "status", "reason").rows() == [
        ("green", "written", None),
        ("broken", "failed", "not_image"),
    ]
    assert res.funnel["written"] == 1


def test_demo_inspect_and_validate_commands(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "demo",
            "-o",
            str(out),
            "-n",
            "40",
            "--lessons",
            "0",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "funnel" in proc.stdout and "written" in proc.stdout
    truth = pl.read_parquet(out / "web" / "truth.parquet")
    ledger = curate.open_ledger(out / "corpus").collect()
    assert ledger.height == truth.height
    ok = truth.filter(pl.col("expected_status") == "ok")
    copies = pl.when(pl.col("role") == "hard_negative").then("item_id").otherwise("group")
    # the hard edit family (7–9 % crops, rotations) is found only in part
    hard = ok.filter(pl.col("transform").is_in(["wide_crop", "rotate"])).height
    easy = ok.filter(~pl.col("transform").is_in(["wide_crop", "rotate"]).fill_null(False))
    dups = easy.height - easy.select(copies).n_unique()
    found = ledger.filter(pl.col("reason") == "duplicate").height
    assert dups > 0 and dups <= found <= dups + hard
    low = ledger.filter(pl.col("reason") == "clip_score_low")
    assert low.height > 0 and (low["clip_score"] < 0.5).all()  # the demo's CLIP filter
    written = ledger.filter(pl.col("status") == "written").height
    assert written == ok.height - found - low.height  # every fetched input accounted for
    sizes = json.loads((out / "corpus" / "shards" / "sizes.json").read_text())
    inspect = subprocess.run(
        [sys.executable, "-m", "curate", "inspect", str(out / "corpus")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    written = [line for line in inspect.stdout.splitlines() if line.startswith("│ written ")]
    assert inspect.returncode == 0 and written, inspect.stdout
    assert written[0].split("│")[2].strip() == str(sum(sizes.values()))
    check = subprocess.run(
        [sys.executable, "-m", "curate", "validate", str(out / "corpus" / "shards")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and check.stdout.splitlines()[-1].startswith("ok:")
    shard = out / "corpus" / "shards" / "00000.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    check = subprocess.run(
        [sys.executable, "-m", "curate", "validate", str(out / "corpus" / "shards")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1 and "FAIL 00000.tar" in check.stdout

    # the video-text corpus beside it: subtitle clips, broken videos with their reasons
    assert "video-text corpus" in proc.stdout
    videos = curate.open_ledger(out / "video-corpus").collect()
    failed = videos.filter(pl.col("status") == "failed")
    assert sorted(failed["reason"]) == ["media_unreadable", "no_video_stream", "not_media"]
    assert videos.filter(pl.col("status") == "written").height == 8
    # the same footage at half the size: each of its clips duplicates one of cooking's
    again = videos.filter(pl.col("url").str.ends_with("/cooking_small.mp4"))
    cooking = videos.filter(pl.col("url").str.ends_with("/cooking.mp4"))
    assert again.height == cooking.height == 2
    assert again["dedup_method"].to_list() == ["near_clip"] * 2, again
    assert sorted(again["dup_of"]) == sorted(cooking["uid"])
    check = subprocess.run(
        [sys.executable, "-m", "curate", "validate", str(out / "video-corpus" / "shards")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and check.stdout.splitlines()[-1].startswith("ok:")


def test_replaced_local_image_or_empty_input_is_refused(tmp_path: Path) -> None:
    from curate.errors import ConfigMismatchError, IngestError

    root = tmp_path / "imgs"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg((255, 0, 0)))
    cfg = {"sources": [{"kind": "folder", "path": str(root)}], "engine": ENGINE}
    curate.run(cfg, tmp_path / "out", progress=False)
    (root / "a.jpg").write_bytes(jpeg((0, 0, 255), size=(130, 80)))  # same name, new bytes
    with pytest.raises(ConfigMismatchError):
        curate.run(cfg, tmp_path / "out", progress=False)
    pl.DataFrame(
        {"url": [], "caption": []}, schema={"url": pl.String, "caption": pl.String}
    ).write_csv(tmp_path / "empty.csv")
    with pytest.raises(IngestError, match="no input rows"):
        curate.run(
            {"sources": [{"path": str(tmp_path / "empty.csv")}]}, tmp_path / "o2", progress=False
        )
