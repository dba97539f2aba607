"""Hermetic test settings and shared fixtures: a synthetic web served on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import curate
from curate.pipeline import RunResult
from curate.testing import SyntheticWeb, WebServer, build_web, serve_web

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWeb:
    return build_web(tmp_path_factory.mktemp("web"), n_items=60, seed=1)


@pytest.fixture(scope="session")
def server(web: SyntheticWeb) -> Iterator[WebServer]:
    with serve_web(web.root, max_requests=20000, max_seconds=900) as srv:
        yield srv


FETCH = {
    "connect_timeout_s": 2,
    "read_timeout_s": 2,
    "total_timeout_s": 2,
    "retries": 2,
    "backoff_s": 0.05,
    "max_retry_after_s": 2,
    "max_bytes": 5_000_000,
    "threads": 8,
    "allowed_networks": ["127.0.0.1/32"],
}


def flat_site(root: Path, n: int, step: int) -> Path:
    """A site of n flat-colour 50×40 JPEGs (files/0.jpg...), red channel step × i, for
    serve_web: small inputs whose fetch outcomes a test plants by route."""
    import io

    from PIL import Image

    (root / "files").mkdir(parents=True)
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (50, 40), (step * i, 100, 200)).save(buf, "JPEG")
        (root / "files" / f"{i}.jpg").write_bytes(buf.getvalue())
    return root


def pipeline_yaml(folder: Path, urls: Path, **overrides: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": "e2e",
        "sources": [{"path": str(urls), "url_column": "url", "caption_column": "caption"}],
        "ingest": {"samples_per_partition": 16},
        "fetch": FETCH,
        "image": {"size": 96, "resize_mode": "border", "encode_quality": 85},
        "shards": {"samples_per_shard": 20},
        "engine": {"n_workers": 2, "stall_report_s": 60},
    }
    for section, values in overrides.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def urls(web: SyntheticWeb, server: WebServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return web.write_url_list(tmp_path_factory.mktemp("list") / "urls.csv", server.base_url)


@pytest.fixture(scope="session")
def config_path(urls: Path) -> Path:
    return pipeline_yaml(urls.parent, urls)


@pytest.fixture(scope="session")
def finished(config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    out = tmp_path_factory.mktemp("run") / "out"
    return curate.run(config_path, out, progress=False)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Start a real `dask scheduler` and `dask worker` processes on 127.0.0.1.

    Yields start(n_workers) -> scheduler address; every process is stopped afterwards.
    """
    bindir = Path(sys.executable).parent
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs: list[subprocess.Popen[bytes]] = []

    def start(n_workers: int) -> str:
        sched_file = tmp_path / "scheduler.json"
        cmd = [str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--no-dashboard", "--scheduler-file", str(sched_file)]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, **quiet))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = str(json.loads(sched_file.read_text())["address"])
        cmd = [str(bindir / "dask"), "worker", address, "--nworkers", str(n_workers)]
        cmd += ["--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, **quiet))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=60)
        return address

    try:
        yield start
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`curate demo` on 60 items (image corpus: CLIP filter, dedup, labels; video corpus:
    subtitle clips, one re-encoded copy, three broken files), the image corpus trained for a
    few steps so its metrics exist: what the audit report, notebooks and `curate why` read.
    (The 8 clips are too few to hold some out for training.)"""
    from curate.train import TrainSettings, train

    out = tmp_path_factory.mktemp("demo") / "demo"
    cmd = [sys.executable, "-m", "curate", "demo", "-o", str(out), "-n", "60"]
    proc = subprocess.run(
        [*cmd, "--lessons", "0", "-q"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    settings = TrainSettings(
        steps=20, batch_size=8, progress=False, control=False, loader_seconds=0.2
    )
    train(out / "corpus", settings)
    return out
