"""Clips deduplicated by their frames and scored by CLIP over all their frames, end to end
on real H.264: the same footage at another size is found clip by clip, other footage and
other scenes of one video are not; a clip's scores are the mean and best of its frames'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import curate
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.tables import clip_scores, parent_expr
from curate.testing.media import make_video, segments_for, timed_text

SEGMENTS = segments_for([1.5, 1.5, 1.5, 1.5])
TINY = {"enabled": True, "model": "curate-tiny", "pretrained": None, "batch_size": 16}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    root = tmp_path_factory.mktemp("clipdup")
    files = root / "files"
    # "small" is "large" made again at a third of the pixels; "other" is other footage
    # with the same timings, colours, tones and words.
    for name, size, seed in (("large", (240, 180), 1), ("small", (160, 120), 1)):
        make_video(files / f"{name}.mp4", SEGMENTS, size=size, fps=12, pattern=seed)
    make_video(files / "other.mp4", SEGMENTS, size=(240, 180), fps=12, pattern=2)
    for name in ("large", "small", "other"):
        (files / f"{name}.srt").write_bytes(timed_text(SEGMENTS, "srt"))
    cfg = {
        "name": "clipdup",
        "sources": [{"kind": "folder", "path": str(files), "files": "videos"}],
        "ingest": {"samples_per_partition": 2},
        "image": {"size": 64, "resize_mode": "keep_ratio"},
        "media": {"min_clip_s": 1.0, "max_clip_s": 2.0, "side": 120, "frames": 4},
        "clip": TINY,
        "dedup": {"captions": {"enabled": False}},
        "engine": {"n_workers": 2, "stall_report_s": 120},
    }
    return curate.run(cfg, root / "out", progress=False)


def _ledger(run: RunResult) -> pl.DataFrame:
    table = pl.read_parquet(RunDir(run.output).ledger_dir / "*.parquet")
    return table.with_columns(
        parent_expr().alias("parent"),
        pl.col("path").str.extract(r"/(\w+)\.mp4$").alias("video"),
        pl.col("uid").str.slice(21).alias("clip"),
    )


def test_the_same_footage_resized_is_dropped_clip_by_clip(run: RunResult) -> None:
    ledger = _ledger(run)
    assert ledger.group_by("video").len().sort("video")["len"].to_list() == [4, 4, 4]
    small = ledger.filter(pl.col("video") == "small").sort("clip")
    assert small["status"].to_list() == ["dropped"] * 4, small
    assert small["reason"].to_list() == ["duplicate"] * 4
    assert small["dedup_method"].to_list() == ["near_clip"] * 4
    # Each small clip duplicates the large video's clip of the same scene, not another.
    large = dict(ledger.filter(pl.col("video") == "large").select("clip", "uid").iter_rows())
    assert small["dup_of"].to_list() == [large[c] for c in small["clip"].to_list()]
    # Other footage, and the other scenes of one video, are not duplicates.
    kept = ledger.filter(pl.col("video") != "small")
    assert kept["status"].to_list() == ["written"] * 8, kept.select(
        "video", "status", "dedup_method"
    )
    assert kept["dedup_method"].null_count() == 8


def test_the_image_method_leaves_clips_to_their_frames(run: RunResult) -> None:
    """A clip's middle frame alone never makes it a `perceptual` duplicate."""
    ledger = _ledger(run)
    assert "perceptual" not in ledger["dedup_method"].drop_nulls().to_list()


def test_a_clip_scores_the_mean_and_best_of_its_frames(run: RunResult) -> None:
    scores = clip_scores(RunDir(run.output))
    assert scores.height == 12
    assert (scores["clip_score"] <= scores["clip_score_max"] + 1e-6).all()
    assert (scores["clip_score"] < scores["clip_score_max"] - 1e-6).any(), "frames all alike"
    found = {}
    for shard in RunDir(run.output).shard_files():
        for key, members in iter_tar_samples(shard):
            found[key] = members
    assert len(found) == 8
    by_uid = {r["uid"]: r for r in scores.iter_rows(named=True)}
    for key, members in sorted(found.items())[:3]:
        frames = [members[f"f{k:02d}.jpg"] for k in range(4)]
        text = members["txt"].decode()
        each = curate.clip_score(frames, [text] * 4, model="curate-tiny", pretrained=None)
        assert by_uid[key]["clip_score"] == pytest.approx(float(np.mean(each)), abs=1e-4)
        assert by_uid[key]["clip_score_max"] == pytest.approx(float(np.max(each)), abs=1e-4)
    ledger = _ledger(run)
    assert ledger.filter(pl.col("status") == "written")["clip_score_max"].null_count() == 0


def test_folder_inputs_name_their_file(run: RunResult) -> None:
    """The fixture's premise: each ledger row traces to its video file."""
    assert _ledger(run)["video"].null_count() == 0
    assert Path(run.output).is_dir()
