"""One wedged row must not hold a whole fetch partition: it becomes a timeout row."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from PIL import Image

import curate.fetch.partition as part
from curate.config import PipelineConfig
from curate.media.image import process_image
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.tables import INGEST_SCHEMA


def _jpeg(seed: int) -> bytes:
    img = Image.new("RGB", (64, 48), (seed * 40 % 256, 90, 200 - seed * 30 % 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_ingest(run_dir: Path, images: list[bytes]) -> None:
    """ingest/00000.parquet with one in-source image per row, uids u0, u1, ..."""
    n = len(images)
    rows = pl.DataFrame(
        {
            "uid": [f"u{i}" for i in range(n)],
            "source": ["s"] * n,
            "url": [None] * n,
            "path": [None] * n,
            "image": images,
            "caption": [f"c{i}" for i in range(n)],
            "extra": ["{}"] * n,
        },
        schema=INGEST_SCHEMA,
    )
    (run_dir / "ingest").mkdir()
    rows.write_parquet(run_dir / "ingest" / "00000.parquet")


def test_a_wedged_decode_is_given_up_and_the_rest_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [_jpeg(i) for i in range(5)]
    wedged = images[2]
    write_ingest(tmp_path, images)
    cfg = PipelineConfig.model_validate(
        {
            "sources": [{"path": "unused.csv"}],
            "fetch": {"total_timeout_s": 0.2, "retries": 0, "threads": 3},
            "image": {"size": 32},
        }
    )
    release = threading.Event()

    def decode(data: bytes, icfg: Any) -> Any:
        if data == wedged:
            release.wait(60)  # a decoder that never returns, as far as the partition knows
        return process_image(data, icfg)

    monkeypatch.setattr(part, "process_image", decode)
    monkeypatch.setattr(part, "DECODE_ALLOWANCE_S", 1.0)
    budget = part.row_budget(cfg)
    assert budget < 3
    t0 = time.monotonic()
    try:
        summary = part.fetch_partition(cfg, str(tmp_path), "00000")
    finally:
        release.set()
    assert time.monotonic() - t0 < budget + 5
    assert summary["ok"] == 4 and summary["failed"] == {"timeout": 1}
    table = pl.read_parquet(tmp_path / "raw" / "00000.parquet")
    assert table["uid"].to_list() == [f"u{i}" for i in range(5)]  # input order kept
    stuck = table.row(2, named=True)
    assert (stuck["status"], stuck["reason"]) == ("failed", "timeout")
    assert "abandoned" in stuck["detail"]
    keys = [k for k, _ in iter_tar_samples(tmp_path / "raw" / "00000.tar")]
    assert keys == ["u0", "u1", "u3", "u4"]


def test_row_budget_covers_queueing_and_rate_limits() -> None:
    def budget(**fetch: Any) -> float:
        cfg = PipelineConfig.model_validate({"sources": [{"path": "x.csv"}], "fetch": fetch})
        return part.row_budget(cfg)

    base = {"total_timeout_s": 10, "retries": 2, "max_retry_after_s": 5, "threads": 16}
    one = budget(**base, per_domain_concurrency=16)
    # each row: 3 attempts x 10 s + 2 backoffs x 5 s + robots 10 s = 50 s; one queue ahead
    assert one == 2 * 50 + part.DECODE_ALLOWANCE_S
    # a single slot per domain: a row may wait for all 16 threads ahead of it
    assert budget(**base, per_domain_concurrency=1) == 17 * 50 + part.DECODE_ALLOWANCE_S
    # a rate limit of 1 request/s: every request of every thread may go first
    limited = budget(**base, per_domain_concurrency=16, per_domain_rate_per_s=1.0)
    assert limited == one + 16 * 6 * 3


def test_features_written_by_fetch_equal_the_features_stage(tmp_path: Path) -> None:
    """The fetch stage's in-memory features are byte for byte what the features stage
    computes from the raw tar, so a resumed run can use either."""
    from curate.features.rows import features_inputs, features_partition

    photos = [_jpeg(i) for i in range(4)]
    images = [*photos[:2], b"not an image", *photos[2:]]
    write_ingest(tmp_path, images)
    cfg = PipelineConfig.model_validate(
        {"sources": [{"path": "unused.csv"}], "fetch": {"threads": 3}, "image": {"size": 32}}
    )
    summary = part.fetch_partition(cfg, str(tmp_path), "00000")
    assert summary["ok"] == 4 and summary["failed"] == {"not_image": 1}
    run = RunDir(tmp_path)
    completes = summary["completes"]["features"]
    assert summary["raw_sha256"] == hashlib.sha256(run.raw_table("00000").read_bytes()).hexdigest()
    assert completes["inputs"] == features_inputs(summary["raw_sha256"])
    fused = run.features("00000").read_bytes()
    table = pl.read_parquet(run.features("00000"))
    assert table["uid"].to_list() == ["u0", "u1", "u3", "u4"]
    assert table["phash"].n_unique() >= 2 and table["thumb"].null_count() == 0
    run.features("00000").unlink()
    again = features_partition(str(tmp_path), "00000")
    assert again == completes["summary"] and again["samples"] == 4
    assert run.features("00000").read_bytes() == fused
