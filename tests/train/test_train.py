"""`curate train` on a real labelled corpus: subtitle clips cut from MP4s whose white bar
sweeps across each clip, so frame order can be learned. The model must beat chance and its
blind baseline on held-out videos, the random-label control must sit at chance, too short a
run must fail naming the task, and so must a corpus whose frames or region classes were
sabotaged after the fact (`sabotage.py`)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import curate
from curate.pipeline import RunResult
from curate.shards.tar import iter_tar_samples
from curate.train import TrainSettings, open_corpus, train
from curate.train.data import THUMB, _rgb, _thumbs, iter_examples, plain_rate, trainer_rate

pytestmark = pytest.mark.timeout(900)  # three models per run: slow on a busy 2-core machine


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    from curate.testing.media import build_video_web

    root = tmp_path_factory.mktemp("lessons")
    rows = build_video_web(root, lessons=8)
    files = root / "files"
    for row in rows:  # keep the sweep videos, with their subtitles beside them
        if "lesson" not in str(row["route"]):
            (files / Path(str(row["route"])).name).unlink(missing_ok=True)
    cfg = {
        "sources": [{"kind": "folder", "path": str(files), "files": "videos"}],
        "media": {"min_clip_s": 1.0, "max_clip_s": 4.0, "frames": 4, "side": 96},
        "image": {"size": 64},
        "clip": {"enabled": False},
        "dedup": {"enabled": False},  # synthetic segments can look alike; keep all 80
        "labels": {"tasks": ["mlm", "regions", "fom"], "codebook_size": 8},
        "engine": {"n_workers": 2},
    }
    return curate.run(cfg, root / "out", progress=False)


def _thumb(data: bytes) -> np.ndarray:
    """What the loader makes of a whole stored frame (a THUMB x THUMB sample)."""
    rgb, _, _ = _rgb(data, THUMB)
    return _thumbs(rgb, np.asarray([[0, 0, rgb.shape[1], rgb.shape[0]]], np.float64))[0]


def test_the_loader_shows_each_clip_s_frames_in_the_drawn_order(clips: RunResult) -> None:
    corpus = open_corpus(clips.output)
    assert corpus.samples == 80 and corpus.frames == 4
    assert corpus.tasks == ("mlm", "mrc", "fom")
    examples = list(iter_examples(corpus, "train", 0.0))
    assert len(examples) == 80
    frames = {
        key: [m[f"f{i:02d}.jpg"] for i in range(4)]
        for shard in corpus.shards
        for key, m in iter_tar_samples(shard)
    }
    seen = 0
    for e in examples:
        assert e.frames.shape == (4, 3 * THUMB * THUMB)
        assert sorted(e.frame_order.tolist()) == [0, 1, 2, 3]
        assert e.regions.shape[0] == 16 and e.region_masked.sum() == 4
        # a masked region's cells are blank (exactly 0, which no pixel decodes to) in every
        # frame: the region comes from the middle frame, which is also a frame token
        shown = e.frames.reshape(4, THUMB, THUMB, 3)
        blank = (shown == 0).all(axis=(0, 3))  # (rows, columns)
        assert blank.sum() == 4 and (shown[:, ~blank] != 0).any(axis=-1).all()
        assert (np.abs(e.regions[:, : 3 * THUMB * THUMB]) <= 1).all()
        assert (e.mlm_labels != -100).any()
        # the loader shows each slot the frame fom.json names there
        expect = np.stack([_thumb(frames[e.key][int(i)]) for i in e.frame_order])
        drawn = e.frames != 0
        assert np.array_equal(e.frames[drawn], expect[drawn])
        seen += 1
    assert seen == 80
    # the white bar: in the stored frames' order, its column moves right
    for key, shots in frames.items():
        lift = [
            np.asarray(Image.open(io.BytesIO(f)).convert("L"), np.float64).mean(0) for f in shots
        ]
        column = np.argmax(np.asarray(lift) - np.median(lift, axis=0), axis=1)
        assert (np.diff(column) > 0).all(), (key, column)
    assert plain_rate(corpus, 0.2)[0] > 0 and trainer_rate(corpus, 0.2)[0] > 0


FOM_ONLY = TrainSettings(
    steps=300, held_out=0.3, tasks=("fom",), progress=False, loader_seconds=0.2
)


def test_frame_order_is_learned_and_the_blind_and_control_runs_stay_at_chance(
    clips: RunResult,
) -> None:
    m = train(clips.output, FOM_ONLY)
    fom = m["tasks"]["fom"]
    # n counts held-out clips, all of whole held-out videos; four slot predictions each
    assert fom["chance"] == pytest.approx(0.25) and fom["predictions"] == 4 * fom["n"]
    assert m["samples"]["held_out"] == fom["n"] and m["samples"]["held_out"] % 10 == 0
    assert fom["passed"] and fom["accuracy"] >= fom["bar"] > 0.3, fom
    assert fom["blind"]["accuracy"] < fom["chance_bar"], fom  # no pixels, no order
    assert fom["control"]["at_chance"], fom
    assert fom["loss"][-1] < fom["loss"][0] and len(fom["loss"]) == 50
    assert m["passed"] and m["failures"] == [] and m["leaks"] == []
    # what this run does not cover is said, not silently passed
    assert m["untested"] == {"mlm": "left out by --tasks", "mrc": "left out by --tasks"}
    assert m["loader"]["samples_per_s"] > 0 and m["loader"]["ratio"] > 0
    saved = json.loads((clips.output / "train" / "metrics.json").read_text())
    assert saved["tasks"]["fom"]["accuracy"] == fom["accuracy"]


def _sabotaged(clips: RunResult, tmp_path: Path, name: str) -> Path:
    from sabotage import SABOTAGES

    copy = tmp_path / name
    shutil.copytree(clips.output / "shards", copy / "shards")
    SABOTAGES[name](copy / "shards", 0)
    return copy


def test_frames_stored_out_of_order_fail_frame_order(clips: RunResult, tmp_path: Path) -> None:
    # fom.json still says the true order of frames no longer stored in it: the trainer
    # catches it on its own (validate does too, from the moved middle frame's regions)
    copy = _sabotaged(clips, tmp_path, "frames_scrambled")
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "train", str(copy), "--steps", "300",
         "--tasks", "fom", "--held-out", "0.3", "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL fom: held-out accuracy does not beat chance" in proc.stderr


def test_random_region_classes_fail_masked_region_modelling(
    clips: RunResult, tmp_path: Path
) -> None:
    copy = _sabotaged(clips, tmp_path, "random_region_classes")
    settings = TrainSettings(
        steps=300, held_out=0.3, tasks=("mrc",), progress=False, loader_seconds=0.2
    )
    m = train(copy, settings)
    mrc = m["tasks"]["mrc"]
    assert not m["passed"] and m["failures"] == ["mrc"] and not mrc["beats_chance"], mrc


def test_a_run_too_short_to_learn_exits_non_zero_naming_the_task(clips: RunResult) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "train", str(clips.output), "--steps", "2",
         "--tasks", "fom", "--no-control", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL fom: held-out accuracy does not beat chance" in proc.stderr
    assert "NOT above chance" in proc.stdout


def test_a_broken_shard_is_skipped_counted_and_named_not_a_crash(
    clips: RunResult, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(clips.output / "shards", copy / "shards")
    (shard,) = (copy / "shards").glob("*.tar")
    # one sample's frame order that is not JSON, then the shard cut off part-way
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    broken = next(m.name for m, _ in members if m.name.endswith(".fom.json"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            data = b"{not json" if m.name == broken else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    data = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # cut inside a member's data
        cut = next(m for m in tar.getmembers() if m.offset_data > 0.7 * len(data) and m.size > 2)
    shard.write_bytes(data[: cut.offset_data + cut.size // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "train", str(copy), "--steps", "2",
         "--tasks", "fom", "--no-control", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "FAIL shards: 2 unreadable shards or samples skipped" in proc.stderr, proc.stderr
    skipped = json.loads((copy / "train" / "metrics.json").read_text())["skipped"]
    assert skipped["count"] == 2 and skipped["over_limit"]
    assert 0 < skipped["samples_unread"] < 80
    faults = {(f["key"], f["shard"]) for f in skipped["faults"]}
    assert (broken.split(".")[0], shard.name) in faults  # the sample, by key and shard
    assert (None, shard.name) in faults  # the shard that ends early
    assert any("fom" in f["reason"] or "JSON" in f["reason"] for f in skipped["faults"])
    # tolerated when the user allows that many: counted all the same
    m = train(copy, TrainSettings(steps=2, tasks=("fom",), control=False, progress=False,
                                  max_skipped=skipped["samples_unread"]))  # fmt: skip
    assert m["skipped"]["count"] == 2 and not m["skipped"]["over_limit"]


def test_a_corpus_without_labels_is_refused(finished: RunResult) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "train", str(finished.output), "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "carries no labels" in proc.stderr
