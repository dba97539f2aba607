"""A video corpus end to end over real HTTP: subtitle-cut clips with frames and audio in the
shards, one ledger row per clip plus one per failed input, each failure with its reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import FETCH
from PIL import Image

import curate
from curate.clips.partition import clip_members
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.shards.validate import validate_shards
from curate.tables import ClipMeta, parent_expr
from curate.testing import serve_web
from curate.testing.media import (
    Segment,
    claim_duration,
    cut_before_moov,
    make_audio,
    make_video,
    segments_for,
    timed_text,
)

GOOD = {
    "a.mp4": (segments_for([1.5, 1.0, 2.0]), "srt"),
    "b.webm": (segments_for([1.0, 2.0], offset=3), "vtt"),
    "c.mp4": (segments_for([2.0, 1.5], offset=1), "json"),
}
VIDEO = {"text_column": "subtitles", "min_clip_s": 0.5, "max_clip_s": 2.0, "side": 96, "frames": 3}


def _pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict[str, str]]:
    root = tmp_path_factory.mktemp("vweb")
    files = root / "files"
    for name, (segs, fmt) in GOOD.items():
        make_video(files / name, segs, size=(160, 120), fps=12)
        (files / f"{Path(name).stem}.{fmt}").write_bytes(timed_text(segs, fmt))
    make_video(files / "whole.mp4", segments_for([1.5]), size=(160, 120), fps=12)
    cut_before_moov(files / "a.mp4", files / "cut.mp4")
    claim_duration(files / "a.mp4", files / "long.mp4", 36000)
    (files / "random.mp4").write_bytes(bytes(range(256)) * 40)
    make_audio(files / "voice.m4a", segments_for([2.0]))
    (files / "bad.srt").write_bytes(bytes(range(256)) * 8)
    with serve_web(root, max_requests=500, max_seconds=600) as server:
        base = f"{server.base_url}/img"
        rows = [
            (f"{base}/{n}", f"clip {n}", f"{base}/{Path(n).stem}.{fmt}")
            for n, (_, fmt) in GOOD.items()
        ]
        rows += [
            (f"{base}/whole.mp4", "one caption for the whole video", None),
            (f"{base}/cut.mp4", "cut before moov", f"{base}/a.srt"),
            (f"{base}/long.mp4", "claims ten hours", f"{base}/a.srt"),
            (f"{base}/random.mp4", "random bytes", f"{base}/a.srt"),
            (f"{base}/voice.m4a", "audio only", f"{base}/a.srt"),
            (f"{base}/a.mp4", "subtitles that are not text", f"{base}/bad.srt"),
            (f"{base}/a.mp4", "subtitles missing", f"{base}/missing.srt"),
        ]
        table = pl.DataFrame(rows, schema=["url", "caption", "subtitles"], orient="row")
        table.write_parquet(root / "videos.parquet")
        cfg = {
            "name": "videos",
            "sources": [{"path": str(root / "videos.parquet")}],
            "ingest": {"samples_per_partition": 5},
            "fetch": FETCH,
            "image": {"size": 48, "resize_mode": "keep_ratio"},
            "media": VIDEO,
            "dedup": {"enabled": False},
            "shards": {"samples_per_shard": 4},
            "engine": {"n_workers": 2, "stall_report_s": 120},
        }
        (root / "p.yaml").write_text(yaml.safe_dump(cfg))
        res = curate.run(root / "p.yaml", root / "out", progress=False)
    urls = {r[0]: r[1] for r in rows}
    return res, urls


def test_every_input_is_clips_or_one_row_with_its_reason(
    video_run: tuple[RunResult, dict[str, str]],
) -> None:
    res, _ = video_run
    led = curate.open_ledger(res.output).collect().with_columns(parent=parent_expr())
    by_caption = {r["caption"]: r for r in led.filter(pl.col("uid") == pl.col("parent")).to_dicts()}
    assert {c: by_caption[c]["reason"] for c in by_caption} == {
        "cut before moov": "media_unreadable",
        "claims ten hours": "bad_duration",
        "random bytes": "not_media",
        "audio only": "no_video_stream",
        "subtitles that are not text": "subtitles_not_text",
        "subtitles missing": "http_404",
    }
    clips = led.filter(pl.col("uid") != pl.col("parent"))
    assert clips.height == 3 + 2 + 2 + 1 and (clips["status"] == "written").all()
    assert res.funnel["inputs"] == 10 and res.funnel["written"] == 8
    assert res.funnel["failed"] == {
        r: 1
        for r in (
            "bad_duration",
            "http_404",
            "media_unreadable",
            "no_video_stream",
            "not_media",
            "subtitles_not_text",
        )
    }


def test_written_clips_hold_their_own_segment(video_run: tuple[RunResult, dict[str, str]]) -> None:
    res, _ = video_run
    run = RunDir(res.output)
    assert validate_shards(run.shards_dir) == []
    manifest = json.loads(run.manifest.read_text())
    assert manifest["members"] == sorted(
        clip_members(curate.load_config(res.output.parent / "p.yaml").media)
    )  # type: ignore[arg-type]
    seen = 0
    for tar in run.shard_files():
        for key, members in iter_tar_samples(tar):
            meta = json.loads(members["json"])
            ClipMeta.model_validate(meta)  # schemas/clip.schema.json
            assert "." not in key and meta["uid"] == key and key.startswith(meta["parent"])
            assert meta["checks"] == {
                "cues_inside": True,
                "frames_inside": True,
                "av_durations_agree": True,
            }
            name = meta["url"].rsplit("/", 1)[1]
            segs = GOOD[name][0] if name in GOOD else segments_for([1.5])
            seg: Segment = next(
                s for s in segs if s.start <= (meta["start"] + meta["end"]) / 2 < s.end
            )
            if name in GOOD:
                assert (meta["start"], meta["end"]) == (seg.start, seg.end)
                assert members["txt"].decode() == seg.text == meta["cues"][0]["text"]
            with av.open(io.BytesIO(members["mp4"])) as c:
                frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            assert abs(len(frames) / 12 - (meta["end"] - meta["start"])) <= 1 / 12
            for px in frames:
                assert np.abs(px[8:-8, 8:-8].reshape(-1, 3).mean(axis=0) - seg.color).max() < 16
            with av.open(io.BytesIO(members["flac"])) as c:
                audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
            assert abs(audio.size / 16000 - (meta["end"] - meta["start"])) <= 0.02
            assert abs(_pitch(audio.astype(np.float64), 16000) - seg.tone_hz) < 10
            assert len(meta["frame_times"]) == 3
            assert all(meta["start"] <= t < meta["end"] for t in meta["frame_times"])
            for k in range(3):
                im = Image.open(io.BytesIO(members[f"f{k:02d}.jpg"]))
                assert min(im.size) == 48
            seen += 1
    assert seen == 8


def test_webdataset_reads_the_clip_shards_unchanged(
    video_run: tuple[RunResult, dict[str, str]],
) -> None:
    import webdataset as wds

    res, _ = video_run
    tars = [str(p) for p in RunDir(res.output).shard_files()]
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    assert len(samples) == 8
    for s in samples:
        assert {k for k in s if not k.startswith("__")} == {
            "mp4",
            "flac",
            "txt",
            "json",
            "f00.jpg",
            "f01.jpg",
            "f02.jpg",
        }
        assert json.loads(s["json"])["uid"] == s["__key__"]


def test_hugging_face_datasets_reads_the_clip_shards(
    video_run: tuple[RunResult, dict[str, str]], tmp_path: Path
) -> None:
    """datasets' webdataset loader with hf_features: one row per clip, each member as
    written. Left to itself it types .flac/.mp4 as Audio/Video, whose storage needs
    torchcodec and a system FFmpeg; hf_features keeps their bytes (frames decode as images)."""
    import datasets

    from curate.shards.hf import hf_features

    res, _ = video_run
    run = RunDir(res.output)
    written = {k: m for shard in run.shard_files() for k, m in iter_tar_samples(shard)}
    features = hf_features(run.shards_dir)
    assert set(features) == {"__key__", "__url__", *next(iter(written.values()))}
    assert features["mp4"] == features["flac"] == datasets.Value("binary")
    ds = datasets.load_dataset(
        str(run.shards_dir), split="train", cache_dir=str(tmp_path), features=features
    )
    assert ds.num_rows == len(written) == 8
    for row in ds:
        members = written[row["__key__"]]
        assert row["mp4"] == members["mp4"] and row["flac"] == members["flac"]
        assert row["txt"] == members["txt"].decode()
        assert row["json"]["uid"] == row["__key__"]
        assert row["json"]["cues"] == json.loads(members["json"])["cues"]
        assert row["f00.jpg"].size == Image.open(io.BytesIO(members["f00.jpg"])).size
