"""The clips task alone, in-process, on local files: a wedged input is given up on time and
the others are cut; the media files are removed once their clips are written."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import curate.clips.partition as part
from curate.config import PipelineConfig
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.tables import INGEST_SCHEMA, write_table
from curate.testing.media import make_video, segments_for, timed_text


def _ingest(run: RunDir, videos: list[Path]) -> None:
    rows = []
    for i, v in enumerate(videos):
        srt = v.with_suffix(".srt")
        rows.append(
            {
                "uid": f"{i:020x}",
                "source": "local",
                "url": None,
                "path": str(v),
                "image": None,
                "caption": v.stem,
                "extra": json.dumps({"subtitles": str(srt)}),
            }
        )
    write_table(run.ingest("00000"), pl.DataFrame(rows, schema=INGEST_SCHEMA))


def test_a_wedged_input_times_out_and_the_others_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = []
    for name in ("a", "wedged", "b"):
        segs = segments_for([1.0, 1.0])
        videos.append(make_video(tmp_path / "src" / f"{name}.mp4", segs))
        (tmp_path / "src" / f"{name}.srt").write_bytes(timed_text(segs, "srt"))
    run = RunDir(tmp_path / "run")
    _ingest(run, videos)
    cfg = PipelineConfig.model_validate(
        {
            "sources": [{"path": "unused.csv"}],
            "fetch": {"threads": 3},
            "image": {"size": 32},
            "media": {
                "min_clip_s": 0.5,
                "max_clip_s": 1.0,
                "frames": 2,
                "side": 64,
                "max_duration_s": 2.5,
                "probe_timeout_s": 1.0,
            },
        }
    )
    release = threading.Event()
    real = part.probe

    def probe(path: Path, *args: Any, **kw: Any) -> Any:
        if path.name == "wedged.mp4":
            release.wait(60)  # a probe that never returns, as far as the partition knows
        return real(path, *args, **kw)

    monkeypatch.setattr(part, "probe", probe)
    monkeypatch.setattr(part, "row_budget", lambda cfg, share: 0.0)
    budget = 0.0 + 1.0 + 2 * 2.5
    t0 = time.monotonic()
    try:
        summary = part.clips_partition(cfg, str(run.root), "00000")
    finally:
        release.set()
    assert time.monotonic() - t0 < budget + 5
    assert summary["failed"] == {"timeout": 1} and summary["ok"] == 4
    table = pl.read_parquet(run.raw_table("00000"))
    stuck = table.filter(pl.col("reason") == "timeout").row(0, named=True)
    assert stuck["uid"] == f"{1:020x}" and "abandoned" in stuck["detail"]
    keys = [k for k, _ in iter_tar_samples(run.raw_tar("00000"))]
    assert keys == [f"{0:020x}_00000", f"{0:020x}_00001", f"{2:020x}_00000", f"{2:020x}_00001"]
    assert not run.media_dir("00000").exists()
    assert all(v.exists() for v in videos)  # local sources are read in place, never removed
