"""An audio–text corpus: recordings cut into segments at their transcript timings, each a
FLAC holding its own segment's tone, failures with reasons."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
from conftest import FETCH

import curate
from curate.clips.partition import clip_members
from curate.config import MediaConfig, parse_config
from curate.errors import ConfigError
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.shards.validate import validate_shards
from curate.tables import ClipMeta, parent_expr
from curate.testing import serve_web
from curate.testing.media import make_audio, segments_for, timed_text

GOOD = {
    "a.wav": (segments_for([1.0, 1.5]), "srt"),
    "b.flac": (segments_for([2.0, 1.0], offset=2), "json"),
    "c.m4a": (segments_for([1.5, 1.5], offset=4), "vtt"),
}


def _pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    root = tmp_path_factory.mktemp("aweb")
    files = root / "files"
    for name, (segs, fmt) in GOOD.items():
        make_audio(files / name, segs)
        (files / f"{Path(name).stem}.{fmt}").write_bytes(timed_text(segs, fmt))
    with wave.open(str(files / "empty.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    (files / "noise.flac").write_bytes(b"not audio at all" * 100)
    with serve_web(root, max_requests=300, max_seconds=600) as server:
        base = f"{server.base_url}/img"
        rows = [(f"{base}/{n}", n, f"{base}/{Path(n).stem}.{f}") for n, (_, f) in GOOD.items()]
        rows += [(f"{base}/empty.wav", "empty", None), (f"{base}/noise.flac", "noise", None)]
        table = pl.DataFrame(rows, schema=["url", "caption", "transcript"], orient="row")
        table.write_parquet(root / "audio.parquet")
        media = {"kind": "audio", "text_column": "transcript", "min_clip_s": 0.5, "max_clip_s": 2.0}
        cfg = parse_config(
            {
                "name": "audio",
                "sources": [{"path": str(root / "audio.parquet")}],
                "fetch": FETCH,
                "media": media,
                "shards": {"samples_per_shard": 3},
                "engine": {"n_workers": 1},
            }
        )
        return curate.run(cfg, root / "out", progress=False)


def test_segments_hold_their_own_tone_and_failures_have_reasons(audio_run: RunResult) -> None:
    led = curate.open_ledger(audio_run.output).collect().with_columns(parent=parent_expr())
    failed = led.filter(pl.col("uid") == pl.col("parent"))
    assert dict(zip(failed["caption"], failed["reason"], strict=True)) == {
        "empty": "bad_duration",
        "noise": "not_media",
    }
    assert audio_run.funnel["inputs"] == 5 and audio_run.funnel["written"] == 6
    run = RunDir(audio_run.output)
    assert validate_shards(run.shards_dir) == []
    assert json.loads(run.manifest.read_text())["members"] == ["flac", "json", "txt"]
    seen = 0
    for tar in run.shard_files():
        for key, members in iter_tar_samples(tar):
            assert set(members) == set(clip_members(MediaConfig(kind="audio")))
            meta = json.loads(members["json"])
            ClipMeta.model_validate(meta)
            segs, _ = GOOD[meta["url"].rsplit("/", 1)[1]]
            seg = segs[meta["clip"]]
            assert (meta["start"], meta["end"], meta["frame_times"]) == (seg.start, seg.end, [])
            assert (
                members["txt"].decode() == seg.text
                and key == f"{meta['parent']}_{meta['clip']:05d}"
            )
            with av.open(io.BytesIO(members["flac"])) as c:
                audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
            assert abs(audio.size / 16000 - (seg.end - seg.start)) <= 0.02
            assert abs(_pitch(audio.astype(np.float64), 16000) - seg.tone_hz) < 10
            seen += 1
    assert seen == 6


def test_an_audio_corpus_cannot_ask_for_clip_scores() -> None:
    with pytest.raises(ConfigError, match="an audio corpus"):
        parse_config(
            {"sources": [{"path": "x.csv"}], "media": {"kind": "audio"}, "clip": {"enabled": True}}
        )
