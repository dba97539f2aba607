"""`curate report` on real demo runs: a self-contained page whose numbers, galleries and
clip checks agree with the ledger and the bytes in the run directory."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import polars as pl
import pytest
from PIL import Image

import curate
from curate.report import build_report, clip_table
from curate.report.media import flac_seconds
from curate.rundir import RunDir

IMG = re.compile(r"<img [^>]*src=\"([^\"]*)\"")


def _images(page: str) -> list[bytes]:
    out = []
    for src in IMG.findall(page):
        assert src.startswith("data:image/jpeg;base64,"), src[:80]
        out.append(base64.b64decode(src.split(",", 1)[1]))
    return out


def test_the_report_is_one_self_contained_file_of_the_run(demo_runs: Path) -> None:
    run = demo_runs / "corpus"
    proc = subprocess.run([sys.executable, "-m", "curate", "report", str(run)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"report: {run / 'report.html'}" in proc.stdout
    page = (run / "report.html").read_text()
    # nothing loads from elsewhere: no external script, stylesheet or image
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"?(https?:)?//", page)
    assert "Plotly.newPlot" in page and page.count("<section") >= 8
    assert "section failed" not in page
    pics = _images(page)
    assert len(pics) >= 20
    for data in pics:  # every thumbnail is a real JPEG
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and max(im.size) <= 160
    ledger = curate.open_ledger(run).collect()
    # the funnel table: every (status, stage, reason) of the ledger with its count
    for status, stage, reason, n in ledger.group_by("status", "stage", "reason").len().rows():
        assert f"<td>{status}</td><td>{stage}</td><td>{reason}</td><td>{n}</td>" in page
    # the duplicates section shows each of the largest clusters' kept uid
    biggest = ledger.filter(pl.col("dup_of").is_not_null()).group_by("dup_of").len()
    top = biggest.sort(["len", "dup_of"], descending=[True, False])["dup_of"][0]
    assert top[:10] in page
    # the trainer's metrics: every task with its held-out accuracy
    metrics = json.loads((run / "train" / "metrics.json").read_text())
    for task, m in metrics["tasks"].items():
        assert f"<td>{task}</td><td>{m['n']}</td><td>{m['accuracy']:.4g}</td>" in page


def test_the_report_counts_what_it_embeds_and_survives_missing_raw_tars(
    demo_runs: Path, tmp_path: Path
) -> None:
    run = tmp_path / "corpus"
    shutil.copytree(demo_runs / "corpus", run)
    full = build_report(run)
    page = full.path.read_text()
    assert full.images == len(_images(page)) and full.charts == page.count("Plotly.newPlot")
    for tar in (run / "raw").glob("*.tar"):
        tar.unlink()  # galleries lose their pictures; the page must still be whole
    bare = build_report(run, tmp_path / "bare.html")
    text = bare.path.read_text()
    assert bare.charts == full.charts and "no image" in text and "section failed" not in text
    assert bare.images < full.images


def test_clip_checks_and_audio_durations_come_from_the_clips_own_bytes(demo_runs: Path) -> None:
    run = demo_runs / "video-corpus"
    table = clip_table(RunDir(run), curate.open_ledger(run))
    ledger = curate.open_ledger(run).collect()
    assert table.height == ledger.filter(pl.col("uid").str.contains("_")).height > 0
    assert table["check:av_durations_agree"].all()
    # the FLAC header's duration is the decoded audio's duration
    shard = sorted((run / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".flac"))
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.rate
    assert flac_seconds(data) == pytest.approx(samples / rate, abs=1e-9)
    key = member.name.split(".", 1)[0]
    row = table.filter(pl.col("uid") == key).row(0, named=True)
    assert row["audio"] == pytest.approx(samples / rate) and row["duration"] > 0
    assert flac_seconds(b"RIFF" + bytes(60)) is None
    page = build_report(run).path.read_text()
    assert "alignment checks" in page and "av_durations_agree" in page
    assert "section failed" not in page and "VSM negatives" in page
    assert page.count('class="frame"') >= 4  # frame strips
