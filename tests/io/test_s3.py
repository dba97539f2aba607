"""The pipeline on an object store: a real S3 API (moto's server) on 127.0.0.1.

Sources are read from the bucket and the run directory lives in it; the workers read and
write the bucket themselves. The store run must give the bytes a local run gives, resume
after kill -9, refuse a changed config, retry failures, and be read back by `curate
validate` and by webdataset through a `pipe:curate cat` URL.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import webdataset as wds
import yaml
from conftest import flat_site
from PIL import Image

import curate
from curate.errors import ConfigMismatchError, CurateError
from curate.io.store import location
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.testing import serve_web
from curate.testing.s3 import S3Server, serve_s3

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with serve_s3(("curate",), max_requests=60_000, max_seconds=900) as server:
        yield server


def _store_config(config_path: Path, s3: S3Server, key: str) -> dict[str, Any]:
    """The suite's pipeline with its URL list uploaded to the bucket and read from there."""
    cfg: dict[str, Any] = yaml.safe_load(config_path.read_text())
    local = Path(cfg["sources"][0]["path"])
    url = f"s3://curate/{key}/{local.name}"  # same file name: the same source name and uids
    location(url, s3.options).write_bytes(local.read_bytes())
    cfg["sources"][0]["path"] = url
    cfg["storage_options"] = s3.options
    return cfg


def _objects(root: str, s3: S3Server, folders: tuple[str, ...]) -> dict[str, bytes]:
    base = location(root, s3.options)
    out = {}
    for folder in folders:
        for p in sorted((base / folder).iterdir(), key=lambda p: p.name):
            out[f"{folder}/{p.name}"] = p.read_bytes()
    return out


def _local(out: Path, folders: tuple[str, ...]) -> dict[str, bytes]:
    return {
        f"{folder}/{p.name}": p.read_bytes()
        for folder in folders
        for p in sorted((out / folder).iterdir())
        if p.is_file()
    }


FOLDERS = ("shards", "ledger", "raw", "features")


def same(store: dict[str, bytes], local: dict[str, bytes]) -> bool:
    """Equal bytes, but for the manifest's config hash (the source path is a URL here)."""

    def comparable(files: dict[str, bytes]) -> dict[str, Any]:
        out: dict[str, Any] = dict(files)
        manifest = json.loads(out.pop("shards/manifest.json"))
        assert len(manifest.pop("config_hash")) == 64
        out["manifest"] = manifest
        return out

    return comparable(store) == comparable(local)


@pytest.fixture(scope="module")
def store_run(s3: S3Server, config_path: Path) -> tuple[dict[str, Any], RunResult]:
    cfg = _store_config(config_path, s3, "inputs")
    return cfg, curate.run(cfg, "s3://curate/run", progress=False)


def test_store_run_writes_the_bytes_a_local_run_writes(
    store_run: tuple[dict[str, Any], RunResult], finished: RunResult, s3: S3Server
) -> None:
    _, result = store_run
    assert result.funnel == finished.funnel
    assert same(_objects("s3://curate/run", s3, FOLDERS), _local(Path(finished.output), FOLDERS))
    root = location("s3://curate/run", s3.options)
    names = [p.path for p in root.rglob("*")]
    assert not [n for n in names if n.endswith(".tmp")], "a store never holds a temporary"
    info = json.loads((root / "run.json").read_text())
    assert info["finished_at"] and info["funnel"] == finished.funnel
    assert info["config"]["storage_options"]["s3"]["secret"] == "***"  # no secret in run.json
    assert info["config"]["storage_options"]["s3"]["endpoint_url"] == s3.endpoint
    timings = (root / "state" / "timings.jsonl").read_text().splitlines()
    assert {json.loads(line)["stage"] for line in timings} >= {"fetch", "shards", "ledger"}
    ledger = curate.open_ledger(root).collect()
    assert ledger.height == finished.funnel["inputs"]


def test_rerun_on_the_store_is_a_no_op(
    store_run: tuple[dict[str, Any], RunResult], s3: S3Server
) -> None:
    cfg, result = store_run
    before = _objects("s3://curate/run", s3, FOLDERS)
    again = curate.run(cfg, "s3://curate/run", progress=False)
    assert again.funnel == result.funnel
    assert _objects("s3://curate/run", s3, FOLDERS) == before


def test_changed_fetch_config_is_refused_on_the_store(
    store_run: tuple[dict[str, Any], RunResult],
) -> None:
    cfg, _ = store_run
    changed = {**cfg, "image": {**cfg["image"], "size": 64}}
    with pytest.raises(ConfigMismatchError, match="config hash"):
        curate.run(changed, "s3://curate/run", progress=False)


def test_validate_and_webdataset_read_the_store(
    store_run: tuple[dict[str, Any], RunResult], s3: S3Server
) -> None:
    env = {**os.environ, **s3.env}
    cli = [sys.executable, "-m", "curate"]
    ok = subprocess.run(
        [*cli, "validate", "s3://curate/run/shards"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: s3://curate/run/shards" in ok.stdout
    sizes = json.loads(location("s3://curate/run/shards/sizes.json", s3.options).read_text())
    cat = f"pipe:{sys.executable} -m curate cat --storage-options '{json.dumps(s3.options)}'"
    urls = [f"{cat} s3://curate/run/shards/{name}" for name in sorted(sizes)]
    old = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    try:
        samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert len(samples) == sum(sizes.values())
    assert all(isinstance(s["jpg"], Image.Image) and s["txt"] for s in samples)
    # a corrupted shard on the store is named by validate
    bad = location("s3://curate/run/shards", s3.options)
    first = sorted(sizes)[0]
    data = (bad / first).read_bytes()
    try:
        (bad / first).write_bytes(data[: len(data) // 2])
        broken = subprocess.run(
            [*cli, "validate", "s3://curate/run/shards"], env=env, capture_output=True, text=True
        )
        assert broken.returncode == 1
        assert first in broken.stdout
    finally:
        (bad / first).write_bytes(data)


def test_kill_9_on_the_store_then_rerun_is_byte_identical(
    s3: S3Server, config_path: Path, finished: RunResult, tmp_path: Path
) -> None:
    cfg = _store_config(config_path, s3, "inputs-kill")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = "s3://curate/killed"
    run = RunDir(location(out, s3.options))
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "run", str(path), "-o", out, "-q"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr").open("wb"),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(run.markers("fetch")) < 2 and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(run.markers("fetch")) >= 2, "the run never finished two partitions"
    assert not run.manifest.exists(), "killed too late to test resume"
    resumed = curate.run(cfg, out, progress=False)
    assert resumed.funnel == finished.funnel
    assert same(_objects(out, s3, FOLDERS), _local(Path(finished.output), FOLDERS))


def test_retry_failed_on_the_store(s3: S3Server, tmp_path: Path) -> None:
    root = flat_site(tmp_path / "site", 3, 80)
    with serve_web(root, max_requests=100, max_seconds=120) as srv:
        routes = ["/img/0.jpg", "/fault/flaky/1/1.jpg", "/img/2.jpg"]
        table = pl.DataFrame({"url": [srv.base_url + r for r in routes], "caption": list("abc")})
        buf = io.BytesIO()
        table.write_parquet(buf)
        location("s3://curate/retry/u.parquet", s3.options).write_bytes(buf.getvalue())
        cfg = {
            "sources": [{"path": "s3://curate/retry/u.parquet"}],
            "ingest": {"samples_per_partition": 2},
            "fetch": {"allowed_networks": ["127.0.0.1/32"], "retries": 0},
            "shards": {"samples_per_shard": 2},
            "engine": {"n_workers": 1},
            "dedup": {"enabled": False},
            "storage_options": s3.options,
        }
        first = curate.run(cfg, "s3://curate/retry/out", progress=False)
        second = curate.run(cfg, "s3://curate/retry/out", progress=False, retry_failed=True)
    assert first.funnel["failed"] == {"http_503": 1}
    assert second.funnel["failed"] == {} and second.funnel["written"] == 3
    assert srv.hits("/img/0.jpg") == 1 and srv.hits("/fault/flaky/1/1.jpg") == 2


def test_a_non_run_prefix_is_refused(s3: S3Server) -> None:
    location("s3://curate/stranger/notes.txt", s3.options).write_bytes(b"mine")
    with pytest.raises(CurateError, match="not a curate run"):
        curate.run(
            {"sources": [{"path": "s3://curate/inputs/urls.csv"}], "storage_options": s3.options},
            "s3://curate/stranger",
            progress=False,
        )


def test_media_pipelines_need_a_local_run_directory(s3: S3Server, tmp_path: Path) -> None:
    cfg = {
        "sources": [{"path": "s3://curate/inputs/urls.csv"}],
        "media": {"kind": "video"},
        "clip": {"enabled": False},
        "storage_options": s3.options,
    }
    with pytest.raises(CurateError, match="local run directory"):
        curate.run(cfg, "s3://curate/video", progress=False)


def test_inspect_why_and_report_read_a_run_on_the_store(
    store_run: tuple[dict[str, Any], RunResult], s3: S3Server
) -> None:
    env = {**os.environ, **s3.env}  # credentials and endpoint from the environment
    cli = [sys.executable, "-m", "curate"]
    shown = subprocess.run(
        [*cli, "inspect", "s3://curate/run"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "written" in shown.stdout
    ledger = curate.open_ledger(location("s3://curate/run", s3.options)).collect()
    uid = ledger.filter(pl.col("status") == "written")["uid"][0]
    why = subprocess.run(
        [*cli, "why", "s3://curate/run", uid, "--json"], env=env, capture_output=True, text=True
    )
    assert why.returncode == 0, why.stderr
    assert json.loads(why.stdout.splitlines()[0])["uid"] == uid
    report = subprocess.run(
        [*cli, "report", "s3://curate/run"], env=env, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    page = location("s3://curate/run/report.html", s3.options).read_text()
    assert page.startswith("<!doctype html>") and "data:image/jpeg;base64," in page
