"""The labels stages end to end on the synthetic web over HTTP: every kept sample carries
its label members, each passes its checks, and a second run writes the same bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import pipeline_yaml

import curate
from curate.config import LabelsConfig
from curate.labels.members import LABELS_VERSION, Expect, check_member
from curate.labels.mlm import IGNORE, MASK_ID, token_length
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.tables import read_dedup

TINY = {"enabled": True, "model": "curate-tiny", "pretrained": None, "batch_size": 32}
LABELS = {"seed": 3, "codebook_size": 8, "itm_hard": 2, "itm_random": 1}


def _run(urls: Path, folder: Path) -> RunResult:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = pipeline_yaml(folder, urls, clip=TINY, labels=LABELS, shards={"shuffle_seed": 11})
    return curate.run(cfg, folder / "out", progress=False)


@pytest.fixture(scope="module")
def labelled(urls: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return _run(urls, tmp_path_factory.mktemp("labelled"))


def _samples(run: RunResult) -> dict[str, dict[str, bytes]]:
    return {k: m for s in RunDir(run.output).shard_files() for k, m in iter_tar_samples(s)}


def test_every_sample_carries_valid_labels(labelled: RunResult) -> None:
    samples = _samples(labelled)
    spec = LabelsConfig(**LABELS)
    keys = frozenset(samples)
    full = 0
    assert len(samples) == labelled.funnel["written"] > 20
    for key, members in samples.items():
        assert {"mlm.npz", "patchmask.npy", "regions.json", "itm.json"} <= set(members)
        from PIL import Image

        w, h = Image.open(io.BytesIO(members["jpg"])).size
        expect = Expect(width=w, height=h, keys=keys)
        for name in ("mlm.npz", "patchmask.npy", "regions.json", "itm.json"):
            assert check_member(name, members[name], spec, expect) == [], (key, name)
        negs = json.loads(members["itm.json"])["negatives"]
        assert len(negs) <= 3 and key not in {n["key"] for n in negs}  # fewer: see below
        kinds = [n["kind"] for n in negs]  # CLIP ran: hard ones first
        assert kinds == ["hard", "hard", "random"][: len(kinds)]
        mine = token_length(members["txt"].decode())
        for n in negs:  # matched in length, so a score cannot lean on it
            assert abs(token_length(samples[n["key"]]["txt"].decode()) - mine) <= 2
        full += len(negs) == 3
    assert full > len(samples) / 2, "most samples find three length-matched negatives"


def test_negatives_never_come_from_a_sample_s_dedup_cluster(labelled: RunResult) -> None:
    """A dropped duplicate's kept copy is in the corpus; its negatives avoid the dropped
    one's cluster by construction (one kept sample per cluster), and no negative is a
    dropped sample."""
    samples = _samples(labelled)
    dropped = set(read_dedup(RunDir(labelled.output))["uid"].to_list())
    assert dropped, "the synthetic web plants duplicates"
    for members in samples.values():
        assert not {n["key"] for n in json.loads(members["itm.json"])["negatives"]} & dropped


def test_mlm_rates_over_the_corpus(labelled: RunResult) -> None:
    chosen = ordinary = masked = 0
    for members in _samples(labelled).values():
        with np.load(io.BytesIO(members["mlm.npz"])) as z:
            ids, labels = z["input_ids"], z["labels"]
        hit = labels != IGNORE
        chosen += int(hit.sum())
        ordinary += int(((labels != IGNORE) | ((ids > 0) & (ids < 49406))).sum())
        masked += int((ids[hit] == MASK_ID).sum())
    assert 0.12 < chosen / ordinary < 0.3
    # 80 % of the chosen tokens become [MASK]: within 4 binomial standard errors (keys carry
    # the test server's port, so which tokens are drawn changes from session to session)
    assert abs(masked / chosen - 0.8) < 4 * (0.8 * 0.2 / chosen) ** 0.5


def test_a_second_run_writes_the_same_bytes(
    labelled: RunResult, urls: Path, tmp_path: Path
) -> None:
    again = _run(urls, tmp_path / "again")
    first = {p.name: p.read_bytes() for p in RunDir(labelled.output).shard_files()}
    second = {p.name: p.read_bytes() for p in RunDir(again.output).shard_files()}
    assert first == second
    assert (labelled.output / "decisions" / "codebook.npy").read_bytes() == (
        again.output / "decisions" / "codebook.npy"
    ).read_bytes()


def _corrupt(run: RunResult, tmp: Path, change: Any) -> Path:
    """A copy of the corpus's shards with the first sample of the first tar changed."""
    import shutil

    from curate.shards.tar import TarShardWriter

    folder = tmp / "shards"
    shutil.copytree(RunDir(run.output).shards_dir, folder)
    first = sorted(folder.glob("*.tar"))[0]
    samples = list(iter_tar_samples(first))
    key, members = samples[0]
    samples[0] = (key, change(dict(members)))
    first.unlink()
    with TarShardWriter(first) as tar:
        for k, m in samples:
            tar.write(k, m)
    return folder


def test_validate_names_a_broken_label_and_a_dangling_negative(
    labelled: RunResult, tmp_path: Path
) -> None:
    from curate.shards.validate import validate_shards

    assert validate_shards(RunDir(labelled.output).shards_dir) == []

    def wrong_grid(m: dict[str, bytes]) -> dict[str, bytes]:
        buf = io.BytesIO()
        np.save(buf, np.zeros((3, 3), bool))
        return {**m, "patchmask.npy": buf.getvalue()}

    problems = validate_shards(_corrupt(labelled, tmp_path / "a", wrong_grid))
    assert any("00000.tar: key" in p and "patchmask.npy" in p for p in problems), problems
    # the rest of the shard is still read: its keys are there for the others' negatives
    assert not any("is no sample" in p for p in problems), problems

    def dangling(m: dict[str, bytes]) -> dict[str, bytes]:
        doc = json.loads(m["itm.json"])
        doc["negatives"][0]["key"] = "f" * 20
        return {**m, "itm.json": json.dumps(doc).encode()}

    problems = validate_shards(_corrupt(labelled, tmp_path / "b", dangling))
    assert any("negative 'ffffffffffffffffffff' is no sample" in p for p in problems), problems

    def out_of_vocab(m: dict[str, bytes]) -> dict[str, bytes]:
        buf = io.BytesIO()
        np.savez(buf, input_ids=np.full(77, 70000, np.int32), labels=np.full(77, -100, np.int32))
        return {**m, "mlm.npz": buf.getvalue()}

    problems = validate_shards(_corrupt(labelled, tmp_path / "c", out_of_vocab))
    assert any("mlm.npz: " in p and "an input id outside" in p for p in problems), problems


def test_shuffled_shards_hold_every_kept_sample_once_in_a_seeded_order(
    labelled: RunResult,
) -> None:
    from curate.shards.final import kept_samples, plan_shards, read_plan
    from curate.tables import read_placement

    run = RunDir(labelled.output)
    kept = kept_samples(run)["uid"].to_list()
    written = [k for s in run.shard_files() for k, _ in iter_tar_samples(s)]
    assert sorted(written) == sorted(kept) and written != kept
    again = [u for p in plan_shards(kept_samples(run), 20, 11) for _, u in p.members]
    assert again == written
    planned = [u for p in run.shard_plans() for _, u in read_plan(run, p.stem).members]
    assert planned == written
    placement = read_placement(run)  # by partition: every written uid once, in its shard
    assert sorted(placement["uid"].to_list()) == sorted(written)
    where = {k: s.name for s in run.shard_files() for k, _ in iter_tar_samples(s)}
    assert all(where[u] == shard for u, shard, _ in placement.iter_rows())


def test_the_manifest_records_the_label_spec(labelled: RunResult) -> None:
    manifest = json.loads((RunDir(labelled.output).shards_dir / "manifest.json").read_text())
    assert manifest["labels"]["version"] == LABELS_VERSION == 2
    assert np.array_equal(
        np.asarray(manifest["labels"]["codebook"]),
        np.load(RunDir(labelled.output).codebook),
    )
    assert LabelsConfig.model_validate(manifest["labels"]["spec"]) == LabelsConfig(**LABELS)
    assert {"itm.json", "mlm.npz", "patchmask.npy", "regions.json"} <= set(manifest["members"])


def test_an_audio_corpus_gets_text_matching_and_audio_spans(tmp_path: Path) -> None:
    from curate.shards.validate import validate_shards
    from curate.testing.media import make_audio, segments_for, timed_text

    files = tmp_path / "files"
    for name, offset in (("talk", 0), ("song", 2)):
        segs = segments_for([1.5, 2.0, 1.5], offset)
        make_audio(files / f"{name}.wav", segs)
        (files / f"{name}.srt").write_bytes(timed_text(segs, "srt"))
    cfg = {
        "sources": [{"kind": "folder", "path": str(files), "files": "audio"}],
        "media": {"kind": "audio", "min_clip_s": 1.0, "max_clip_s": 2.0},
        "dedup": {"enabled": False},
        "labels": {"tasks": ["mlm", "itm", "audiomask"], "audio_span_s": 0.25},
        "engine": {"n_workers": 1},
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    samples = _samples(res)
    assert len(samples) == 6
    spec = LabelsConfig(tasks=["mlm", "itm", "audiomask"], audio_span_s=0.25)
    for members in samples.values():
        assert set(members) == {"flac", "txt", "json", "mlm.npz", "itm.json", "audiomask.json"}
        meta = json.loads(members["json"])
        expect = Expect(duration=meta["end"] - meta["start"])
        assert check_member("audiomask.json", members["audiomask.json"], spec, expect) == []
        negs = json.loads(members["itm.json"])["negatives"]
        assert [n["kind"] for n in negs] == ["random"] * 4  # no pictures, no CLIP: random
    assert validate_shards(RunDir(res.output).shards_dir) == []


def test_clips_get_frame_order_and_subtitle_negatives_from_other_videos(tmp_path: Path) -> None:
    from curate.shards.validate import validate_shards
    from curate.testing.media import make_video, segments_for, timed_text

    files = tmp_path / "files"
    for name, seed in (("cooking", 1), ("garden", 2)):
        segs = segments_for([1.5, 1.5, 1.5, 1.5], seed)
        make_video(files / f"{name}.mp4", segs, size=(160, 120), fps=12, pattern=seed)
        (files / f"{name}.srt").write_bytes(timed_text(segs, "srt"))
    labels = {"tasks": ["mlm", "itm", "fom", "vsm"], "vsm_neighbours": 1, "vsm_hard": 2}
    cfg = {
        "sources": [{"kind": "folder", "path": str(files), "files": "videos"}],
        "media": {"min_clip_s": 1.0, "max_clip_s": 2.0, "frames": 4, "side": 96},
        "image": {"size": 48},
        "clip": TINY,
        "labels": labels,
        "engine": {"n_workers": 2},
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    samples = _samples(res)
    assert len(samples) == 8
    for key, members in samples.items():
        parent, index = key.split("_")
        order = json.loads(members["fom.json"])["order"]
        assert sorted(order) == [0, 1, 2, 3]
        negs = json.loads(members["vsm.json"])["negatives"]
        assert [n["kind"] for n in negs] == ["hard", "hard", "random"]
        for n in negs:
            p, i = n["key"].split("_")
            assert not (p == parent and abs(int(i) - int(index)) <= 1), (key, n["key"])
            assert n["text"] == samples[n["key"]]["txt"].decode()
    assert validate_shards(RunDir(res.output).shards_dir) == []
