"""`curate validate` recomputes every label (issue 22): the untouched corpus passes, and each
sabotage of tests/sabotage.py that a recomputation can see fails with exit 1, naming the
shard, the key and the member; the one it cannot see (frames reordered around the middle
frame) is pinned as passing, the trainer's to catch. Image and video corpora."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import pipeline_yaml
from sabotage import SABOTAGES, rewrite

import curate
from curate.cli import main
from curate.pipeline import RunResult
from curate.shards.tar import iter_tar_samples
from curate.shards.validate import validate_shards

TINY = {"enabled": True, "model": "curate-tiny", "pretrained": None, "batch_size": 32}
LABELS = {"seed": 3, "codebook_size": 8, "itm_hard": 2, "itm_random": 1}


@pytest.fixture(scope="module")
def image_run(urls: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("image")
    cfg = pipeline_yaml(folder, urls, clip=TINY, labels=LABELS, shards={"shuffle_seed": 11})
    return Path(str(curate.run(cfg, folder / "out", progress=False).output))


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.testing.media import make_video, segments_for, timed_text

    tmp = tmp_path_factory.mktemp("video")
    files = tmp / "files"
    for name, seed in (("cooking", 1), ("garden", 2), ("harbour", 3)):
        segs = segments_for([1.5, 1.5, 1.5, 1.5], seed)
        make_video(files / f"{name}.mp4", segs, size=(160, 120), fps=12, pattern=seed)
        (files / f"{name}.srt").write_bytes(timed_text(segs, "srt"))
    tasks = ["mlm", "patchmask", "regions", "itm", "fom", "vsm"]
    cfg = {
        "sources": [{"kind": "folder", "path": str(files), "files": "videos"}],
        "media": {"min_clip_s": 1.0, "max_clip_s": 2.0, "frames": 4, "side": 96},
        "image": {"size": 48},
        "clip": TINY,
        "labels": {"tasks": tasks, "vsm_neighbours": 1, "codebook_size": 8},
        "shards": {"samples_per_shard": 5},
        "engine": {"n_workers": 2},
    }
    res: RunResult = curate.run(cfg, tmp / "out", progress=False)
    return Path(str(res.output))


def _copy(run: Path, to: Path) -> Path:
    """A run directory sharing everything but its shards with `run`."""
    to.mkdir(parents=True)
    for entry in run.iterdir():
        if entry.name != "shards":
            os.symlink(entry, to / entry.name)
    shutil.copytree(run / "shards", to / "shards")
    return to


def _validate(target: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["validate", str(target), *extra])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("corpus", ["image", "video"])
def test_untouched_corpora_pass_with_every_label_recomputed(
    corpus: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    run: Path = request.getfixturevalue(f"{corpus}_run")
    code, out = _validate(run / "shards", capsys)
    assert code == 0, out
    assert "note: labels recomputed for every sample; codebook checked" in out
    code, out = _validate(run, capsys)  # the run directory: negatives recomputed exactly
    assert code == 0, out
    assert "note: negatives recomputed exactly" in out


def test_rewrite_unchanged_gives_the_same_bytes(image_run: Path, tmp_path: Path) -> None:
    copy = _copy(image_run, tmp_path / "run")
    rewrite(copy / "shards", lambda key, members: members)
    for path in sorted((image_run / "shards").iterdir()):
        assert (copy / "shards" / path.name).read_bytes() == path.read_bytes(), path.name


# (corpus, sabotage, what a FAIL line names after the key). Every one is caught from the
# shards alone but negatives_replaced: a replacement that keeps the rules (length, ceiling,
# neighbours) is only told from the spec's choice with the run's text embeddings.
CAUGHT = [
    ("image", "random_region_classes", r"regions\.json: classes differ from the codebook's"),
    ("image", "renamed_region_classes", r"regions\.json: .*\(consistently renamed\)"),
    ("image", "random_mlm_labels", r"mlm\.npz: labels differ from its txt's masking"),
    ("image", "unmasked_mlm_input", r"mlm\.npz: the input is never masked"),
    ("image", "mlm_shifted", r"mlm\.npz: labels are shifted by 1 position"),
    ("image", "patchmask_moved", r"patchmask\.npy: .*the right count in the wrong place"),
    ("image", "captions_deranged", r"mlm\.npz: "),
    ("image", "negatives_replaced", r"itm\.json: "),
    ("video", "frames_scrambled", r"regions\.json: \d+ of \d+ regions differ from its picture"),
    ("video", "fom_swapped_between_clips", r"fom\.json: order \[.*\] is not the spec's"),
    ("video", "negatives_replaced", r"vsm\.json: "),
    ("video", "renamed_region_classes", r"regions\.json: .*\(consistently renamed\)"),
    ("video", "random_mlm_labels", r"mlm\.npz: "),
]


@pytest.mark.parametrize(("corpus", "name", "names"), CAUGHT)
def test_a_sabotage_fails_validate_naming_shard_key_and_member(
    corpus: str,
    name: str,
    names: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _copy(request.getfixturevalue(f"{corpus}_run"), tmp_path / "run")
    SABOTAGES[name](run / "shards", 7)
    targets = [run] if name == "negatives_replaced" else [run / "shards", run]
    for target in targets:
        code, out = _validate(target, capsys)
        assert code == 1, out
        where = re.compile(r"^FAIL \d{5}\.tar: key '[^']+': " + names, re.M)
        assert where.search(out), out[-3000:]


@pytest.mark.parametrize("corpus", ["image", "video"])
def test_a_deleted_label_member_names_the_sample_once(
    corpus: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _copy(request.getfixturevalue(f"{corpus}_run"), tmp_path / "run")
    SABOTAGES["member_deleted"](run / "shards", 7)
    code, out = _validate(run / "shards", capsys)
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert code == 1 and len(fails) == 1, out
    lacks = r"FAIL \d{5}\.tar: key '[^']+' lacks \['[a-z]+\.(json|npz|npy)'\]"
    assert re.fullmatch(lacks, fails[0]), fails


def test_frames_reordered_around_the_middle_frame_are_the_trainer_s_to_catch(
    video_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No label is made from frame order but fom.json, which the trainer applies itself:
    validate cannot see frames stored out of order while the middle one stays."""
    run = _copy(video_run, tmp_path / "run")
    SABOTAGES["frames_scrambled_middle_kept"](run / "shards", 7)
    assert _validate(run, capsys)[0] == 0


def test_a_broken_shard_is_reported_once(image_run: Path, tmp_path: Path) -> None:
    """One sample of shard 0 without its txt: one line for the shard, none for the other
    shards' negatives into it (its keys are still known), a count in the notes."""
    shards = _copy(image_run, tmp_path / "run") / "shards"
    first = next(iter_tar_samples(shards / "00000.tar"))[0]
    rewrite(shards, lambda k, m: {e: d for e, d in m.items() if k != first or e != "txt"})
    notes: list[str] = []
    problems = validate_shards(shards, notes=notes)
    assert problems == [f"00000.tar: key {first!r} lacks ['txt']"]
    assert any("negatives name samples of broken shards" in n for n in notes), notes
    (shards / "00000.tar").write_bytes((shards / "00000.tar").read_bytes()[:3000])
    problems = validate_shards(shards)
    assert [p.split(":")[0] for p in problems] == ["00000.tar"], problems
    assert "unreadable or truncated" in problems[0]


def test_only_the_run_directory_tells_a_plausible_negative_from_the_spec_s(
    image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A random negative swapped for another sample of the same length, named truly: the
    rules hold, so the shards alone pass; the run's text embeddings recompute it."""
    from curate.labels.mlm import token_length

    run = _copy(image_run, tmp_path / "run")
    samples = {k: m for p in sorted((run / "shards").glob("*.tar")) for k, m in iter_tar_samples(p)}
    length = {k: token_length(m["txt"].decode()) for k, m in samples.items()}
    anchor = sorted(samples)[0]
    doc = json.loads(samples[anchor]["itm.json"])
    taken = {anchor, *(n["key"] for n in doc["negatives"])}
    last = doc["negatives"][-1]
    other = next(k for k in sorted(samples) if k not in taken and length[k] == length[last["key"]])
    last["key"], last["caption"] = other, samples[other]["txt"].decode()
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    rewrite(run / "shards", lambda k, m: {**m, "itm.json": data} if k == anchor else m)
    assert _validate(run / "shards", capsys)[0] == 0
    code, out = _validate(run, capsys)
    assert code == 1 and f"key {anchor!r}: itm.json: negatives are not the spec's" in out, out


def test_a_seeded_sample_checks_that_many_samples(
    image_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(image_run, tmp_path / "run")
    SABOTAGES["mlm_shifted"](run / "shards", 7)
    code, out = _validate(run / "shards", capsys, "--labels-sample", "5")
    fails = [line for line in out.splitlines() if "mlm.npz" in line]
    assert code == 1 and len(fails) == 5, out
    assert re.search(r"note: labels recomputed for 5 of \d+ samples\n", out)
    assert _validate(run / "shards", capsys, "--labels-sample", "5")[1] == out  # seeded
    assert _validate(run / "shards", capsys, "--labels-sample", "0")[0] == 0


def test_the_codebook_must_be_the_one_fitted_on_the_corpus(image_run: Path, tmp_path: Path) -> None:
    """Region classes recomputed from a moved codebook differ; a codebook moved so little
    that no class changes is still not a fixed point of a Lloyd step."""
    shards = _copy(image_run, tmp_path / "run") / "shards"
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["labels"]["codebook"][0][0] += 2**-10
    (shards / "manifest.json").write_text(json.dumps(manifest))
    problems = validate_shards(shards)
    assert any(p.startswith("manifest.json: the codebook is not fitted") for p in problems), (
        problems
    )
    assert validate_shards(shards.parent) != []  # and it is not the run's codebook.npy
    manifest["labels"]["version"] = 1
    (shards / "manifest.json").write_text(json.dumps(manifest))
    assert validate_shards(shards)[0].startswith("manifest.json: labels version 1")
