"""Run-directory contract: what counts as a resumable, foreign, unusable or half-started output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.errors import ConfigMismatchError, CurateError
from curate.io.atomic import read_json, write_json
from curate.rundir import LAYOUT, RunDir

HASHES = {"config": "c" * 64, "fetch": "f" * 64}


def _start(
    out: Path, hashes: dict[str, str] = HASHES, overwrite: bool = False
) -> dict[str, object]:
    return RunDir(out).start({"name": "t"}, "t", hashes, overwrite)


def test_kill_while_writing_run_json_leaves_a_startable_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json.tmp").write_bytes(b'{"config_ha')  # the kill hit mid-write
    info = _start(out)
    assert read_json(out / "run.json")["fetch_hash"] == info["fetch_hash"] == "f" * 64
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


@pytest.mark.parametrize(
    "leftovers",
    [
        ["run.json.tmp"],
        [],
        ["state/", "raw/"],
        ["run.json.tmp", "state/fetch/", "raw/00001.tar.tmp", "report.html.tmp"],
    ],
    ids=["run-json-tmp", "empty", "empty-folders", "tmp-in-folders"],
)
def test_a_run_killed_before_run_json_existed_is_resumed(
    tmp_path: Path, leftovers: list[str]
) -> None:
    """Issue 22: a kill in a run's first second leaves only curate's own leftovers; the rerun
    takes the folder as its own (the check runs before `start` cleans them) and clears them."""
    out = tmp_path / "out"
    out.mkdir()
    for name in leftovers:
        if name.endswith("/"):
            (out / name).mkdir(parents=True)
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(b'{"config_ha')
    run = RunDir(out)
    assert run.holds_only_leftovers()
    run.check_location()
    _start(out)
    assert run.is_run() and not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    "files",
    [
        ["notes.txt"],
        ["run.json.tmp", "notes.txt"],
        ["run.json.tmp", "raw/photo.jpg"],
        ["run.json.tmp", "photos/"],
        ["run.json.tmp", "notes.tmp"],
        ["run.json.tmp/"],
    ],
    ids=["foreign", "tmp-and-foreign", "foreign-in-raw", "foreign-folder", "other-tmp", "dir"],
)
def test_foreign_files_beside_leftovers_are_refused(tmp_path: Path, files: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in files:
        if name.endswith("/"):
            (out / name).mkdir(parents=True)
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(b"mine")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert not RunDir(out).holds_only_leftovers()
    with pytest.raises(CurateError, match="is not empty and is not a curate run directory"):
        RunDir(out).check_location()
    for overwrite in (False, True):
        with pytest.raises(CurateError, match="is not empty and is not a curate run directory"):
            _start(out, overwrite=overwrite)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_symlink_is_never_a_leftover(tmp_path: Path) -> None:
    """A link named like curate's folder may lead to someone's data: refused, not walked."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.tmp").write_bytes(b"theirs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "raw").symlink_to(elsewhere)
    with pytest.raises(CurateError, match="not a curate run directory"):
        RunDir(out).check_location()
    assert (elsewhere / "x.tmp").read_bytes() == b"theirs"


def test_foreign_files_are_still_refused_even_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(CurateError, match="not a curate run directory"):
            _start(out, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_file_or_an_unwritable_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "corpus"
    target.write_text("x")
    with pytest.raises(CurateError, match="is a file, not a folder"):
        RunDir(target).check_location()
    with pytest.raises(CurateError, match="is a file, so"):
        RunDir(target / "below").check_location()
    assert target.read_text() == "x"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root may write anywhere: let the check see what others do
        real = os.access
        monkeypatch.setattr(
            "curate.rundir.os.access", lambda p, m: False if Path(p) == locked else real(p, m)
        )
    try:
        for out in (locked, locked / "out"):
            with pytest.raises(CurateError, match=f"{locked}: not writable"):
                RunDir(out).check_location()
    finally:
        locked.chmod(0o700)


def test_cli_names_a_file_output_in_one_line_and_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "corpus"
    target.write_text("x")
    (tmp_path / "in.csv").write_text("url,caption\nhttp://127.0.0.1:9/a.jpg,a\n")
    (tmp_path / "p.yaml").write_text("name: t\nsources:\n  - path: in.csv\n")
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "run", str(tmp_path / "p.yaml"), "-o", str(target), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {target}: is a file, not a folder; choose a folder for the run"
    ]


def test_other_fetch_inputs_are_refused_and_an_older_layout_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _start(out)
    (out / "raw").mkdir()
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        _start(out, {"config": "c" * 64, "fetch": "g" * 64})
    assert (out / "raw").is_dir()
    again = _start(out, {"config": "d" * 64, "fetch": "f" * 64})  # only later stages changed
    assert again["config_hash"] == "d" * 64 and (out / "raw").is_dir()
    layout_1 = {"config": {}, "config_hash": "old", "started_at": "2026-12-01T00:00:00+00:00"}
    write_json(out / "run.json", layout_1)
    with pytest.raises(ConfigMismatchError, match=f"older curate \\(layout 1, now {LAYOUT}\\)"):
        _start(out)
    _start(out, overwrite=True)
    assert not (out / "raw").exists()


def test_a_foreign_run_json_does_not_make_a_folder_a_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "raw").mkdir(parents=True)
    (out / "run.json").write_text('{"some": "other tool"}')
    assert not RunDir(out).is_run()
    with pytest.raises(CurateError, match="not a curate run directory"):
        _start(out, overwrite=True)
    assert (out / "raw").is_dir()


def test_partitions_and_markers_sort_by_number(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    names = ["100000", "99999", "10001", "00000"]
    for name in names:
        run.ingest(name).parent.mkdir(exist_ok=True)
        run.ingest(name).write_bytes(b"")
        write_json(run.marker("s", name), {})
    write_json(run.marker("s", "all"), {})
    assert run.partitions() == ["00000", "10001", "99999", "100000"]
    assert [p.stem for p in run.markers("s")] == ["00000", "10001", "99999", "100000", "all"]


def test_every_path_is_inside_the_run_and_partitions_come_from_ingest(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    paths = [
        run.run_json,
        run.report,
        run.ingest("00000"),
        run.raw_tar("00000"),
        run.raw_table("00000"),
        run.features("00000"),
        run.clip_scores("00000"),
        run.image_embeddings("00000"),
        run.text_embeddings("00000"),
        run.ledger("00000"),
        run.decision("dedup"),
        run.shard("00000"),
        run.sizes,
        run.manifest,
        run.card,
        run.marker("fetch", "00000"),
    ]
    assert len(set(paths)) == len(paths)
    assert all(p.is_relative_to(tmp_path) for p in paths)
    for name in ("00001", "00000"):
        run.ingest(name).parent.mkdir(exist_ok=True)
        run.ingest(name).write_bytes(b"")
    assert run.partitions() == ["00000", "00001"]
