"""Crash safety and retries with real processes: kill -9 the run, kill a worker, retry."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import flat_site

import curate
from curate.io.atomic import KILL_BEFORE_RENAME
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.shards.validate import validate_shards
from curate.testing import serve_web


def snapshot(out: Path) -> dict[str, bytes]:
    """The outputs a resumed run must reproduce byte for byte."""
    files = [*(out / "shards").iterdir(), *(out / "ledger").iterdir(), *(out / "raw").iterdir()]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files) if p.is_file()}


def any_tmp(out: Path) -> bool:
    return bool(list(out.rglob("*.tmp")))


def _only_run_json_tmp(out: Path) -> bool:
    return sorted(p.name for p in out.iterdir()) == ["run.json.tmp"]


def _mid_partition(out: Path) -> bool:
    return (out / "raw" / "00001.tar.tmp").is_file() and not RunDir(out).raw_tar("00001").exists()


def _between_rename_and_marker(out: Path) -> bool:
    run = RunDir(out)
    return run.raw_tar("00002").is_file() and not run.marker("fetch", "00002").exists()


def _mid_shards(out: Path) -> bool:
    run = RunDir(out)
    done = len(run.markers("fetch")) == len(run.partitions()) == 4
    return done and (out / "shards" / "00000.tar.tmp").is_file() and not run.manifest.exists()


# Where the run is killed (the file whose rename it never reaches) and what must hold then.
KILLS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "before-run-json": ("run.json", _only_run_json_tmp),
    "mid-partition": ("raw/00001.tar", _mid_partition),
    "between-rename-and-marker": ("state/fetch/00002.json", _between_rename_and_marker),
    "mid-shards": ("shards/00000.tar", _mid_shards),
}


def _wait_group_gone(pgid: int, timeout_s: float = 60) -> None:
    """Until no live process of the killed group is left: a worker still dying must not
    write beside the rerun. (Zombies are dead; only their parent can reap them.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone while listed
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(stat.parent.name)
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} outlived SIGKILL: {alive}")


@pytest.mark.parametrize("moment", list(KILLS), ids=list(KILLS))
def test_kill_9_then_rerun_is_byte_identical(
    finished: RunResult, config_path: Path, tmp_path: Path, moment: str
) -> None:
    """kill -9 of the whole run (driver and workers) at a named moment, made certain by the
    atomic writer's test hook rather than by polling; the rerun must resume to equal bytes."""
    where, holds = KILLS[moment]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "run", str(config_path), "-o", str(out), "-q"],
        start_new_session=True,  # the hook kills the process group: this one, not pytest's
        env={**os.environ, KILL_BEFORE_RENAME: where},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        returncode = proc.wait(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _wait_group_gone(proc.pid)
    assert returncode == -signal.SIGKILL, f"the run ended ({returncode}) before {where}"
    assert holds(out), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    resumed = curate.run(config_path, out, progress=False)
    assert resumed.funnel == finished.funnel
    assert snapshot(out) == snapshot(finished.output)
    assert not any_tmp(out)


def test_crash_between_rename_and_marker(
    finished: RunResult, config_path: Path, tmp_path: Path
) -> None:
    """A file renamed into place whose marker never came is redone, to the same bytes."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished.output, out)
    run = RunDir(out)
    run.marker("fetch", "00001").unlink()
    run.raw_tar("00002").write_bytes(b"half a tar")
    run.marker("fetch", "00002").unlink()
    run.marker("shards", "00000").unlink()
    run.shard("00000").write_bytes(b"garbage")
    run.manifest.unlink()  # its task's marker stays: a missing output is redone all the same
    (out / "raw" / "00003.parquet.tmp").write_bytes(b"torn")
    curate.run(config_path, out, progress=False)
    assert snapshot(out) == snapshot(finished.output)
    assert not any_tmp(out)


def test_killing_a_worker_mid_task_loses_nothing(
    finished: RunResult, config_path: Path, tmp_path: Path, dask_cluster: Callable[[int], str]
) -> None:
    from distributed import Client

    address = dask_cluster(2)
    with Client(address, timeout="30s") as client:
        pids = list(client.run(os.getpid).values())
    out = tmp_path / "out"
    result: dict[str, RunResult] = {}

    def run() -> None:
        result["r"] = curate.run(config_path, out, scheduler=address, progress=False)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "raw").glob("*.tar.tmp")):
        time.sleep(0.02)
    os.kill(pids[0], signal.SIGKILL)  # the nanny restarts it; its task is rescheduled
    runner.join(timeout=240)
    assert not runner.is_alive()
    assert result["r"].funnel == finished.funnel
    assert snapshot(out) == snapshot(finished.output)


def test_retry_failed_refetches_only_transient_failures(tmp_path: Path) -> None:
    root = flat_site(tmp_path / "site", 4, 60)
    with serve_web(root, max_requests=200, max_seconds=120) as srv:
        routes = ["/img/0.jpg", "/fault/flaky/1/1.jpg", "/fault/404/2.jpg", "/img/3.jpg"]
        urls = [srv.base_url + r for r in routes]
        pl.DataFrame({"url": urls, "caption": ["a", "b", "c", "d"]}).write_parquet(
            tmp_path / "u.parquet"
        )
        cfg = {
            "sources": [{"path": str(tmp_path / "u.parquet")}],
            "ingest": {"samples_per_partition": 2},
            "fetch": {"allowed_networks": ["127.0.0.1/32"], "retries": 0},
            "shards": {"samples_per_shard": 2},
            "engine": {"n_workers": 1},
            "dedup": {"enabled": False},  # flat colour fills: near-duplicates by design
        }
        out = tmp_path / "out"
        first = curate.run(cfg, out, progress=False)
        assert first.funnel["failed"] == {"http_503": 1, "http_404": 1}
        kept = {
            k: m for tar in sorted((out / "shards").glob("*.tar")) for k, m in iter_tar_samples(tar)
        }
        second = curate.run(cfg, out, progress=False, retry_failed=True)
    assert second.funnel["failed"] == {"http_404": 1}
    assert second.funnel["written"] == 3
    assert srv.hits("/fault/flaky/1/1.jpg") == 2 and srv.hits("/fault/404/2.jpg") == 1
    assert srv.hits("/img/0.jpg") == 1  # successes are carried over, not fetched again
    ledger = curate.open_ledger(out).collect()
    assert ledger.sort("caption")["status"].to_list() == ["written", "written", "failed", "written"]
    assert validate_shards(out / "shards") == []
    now = {k: m for tar in sorted((out / "shards").glob("*.tar")) for k, m in iter_tar_samples(tar)}
    assert all(now[k] == m for k, m in kept.items())
    assert json.loads((out / "shards" / "sizes.json").read_text()) == {
        "00000.tar": 2,
        "00001.tar": 1,
    }
    # every shard holds exactly the keys the ledger places in it
    written = ledger.filter(pl.col("status") == "written")
    for tar in sorted((out / "shards").glob("*.tar")):
        keys = [k for k, _ in iter_tar_samples(tar)]
        assert keys == written.filter(pl.col("shard") == tar.name)["key"].to_list()
