"""hf_features: datasets reads shards whose json fields are null in the first samples."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from curate.shards.hf import hf_features
from curate.shards.tar import TarShardWriter


def test_a_field_null_at_first_is_typed_from_later_samples(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    rows = [
        {"uid": "a", "caption": None, "cues": [], "start": 0.0},
        {"uid": "b", "caption": "a dog", "cues": [{"text": "dog"}], "start": 1.5},
        {"uid": "c", "caption": None, "cues": [], "start": 2.0, "extra": None},
    ]
    with TarShardWriter(shards / "00000.tar") as tar:
        for r in rows[:2]:
            tar.write(r["uid"], {"json": json.dumps(r).encode(), "flac": b"fLaC", "txt": b"t"})
    with TarShardWriter(shards / "00001.tar") as tar:
        r = rows[2]
        tar.write(r["uid"], {"json": json.dumps(r).encode(), "flac": b"fLaC", "txt": b"t"})
    features = hf_features(shards)
    assert features["json"]["caption"] == datasets.Value("string")
    assert features["flac"] == datasets.Value("binary")
    ds = datasets.load_dataset(
        str(shards), split="train", features=features, cache_dir=str(tmp_path / "c")
    )
    got = {row["__key__"]: row for row in ds}
    assert got["b"]["json"]["cues"] == [{"text": "dog"}]
    assert got["c"]["json"]["extra"] is None and got["a"]["flac"] == b"fLaC"
