"""Run-directory contract: what counts as a resumable, foreign or half-started output."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import PipelineConfig
from curate.engine.rundir import start_run
from curate.errors import ConfigMismatchError
from curate.io.atomic import read_json


def _cfg(tmp_path: Path) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": "t", "sources": [{"path": str(tmp_path / "in.csv")}]}
    )


def test_kill_while_writing_run_json_leaves_a_startable_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json.tmp").write_bytes(b'{"config_ha')  # the kill hit mid-write
    info = start_run(out, _cfg(tmp_path), "abc", overwrite=False)
    assert read_json(out / "run.json")["config_hash"] == info["config_hash"] == "abc"
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_foreign_files_are_still_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigMismatchError, match="not a curate run directory"):
        start_run(out, _cfg(tmp_path), "abc", overwrite=False)
    assert (out / "notes.txt").read_text() == "mine"
