"""`curate demo` is reproducible: runs on servers at other ports write the same shards.

The demo's URLs name a fixed host (`demo.curate.invalid`) and `fetch.connect_to` sends it to
whatever port the OS gave the server, so uids, sample json, ledger keys and the trainer's
held-out split (a hash of the key) never see the port; connect_to stays out of the config
hash, so a rerun into the same folder resumes instead of being refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import curate.testing
from curate.demo import DEMO_ORIGIN, run_demo, run_video_demo

ITEMS = 40  # small, yet 11 failure reasons, exact and near duplicates, a CLIP drop
LESSONS = 0  # the video demo without its long lessons: 8 inputs, 3 broken, 1 near copy
CORPORA = ("corpus", "video-corpus")


@contextlib.contextmanager
def recording_ports(ports: list[int]) -> Iterator[None]:
    """Note the port of every server the demo starts."""
    real = curate.testing.serve_web

    @contextlib.contextmanager
    def serve(*args: Any, **kwargs: Any) -> Iterator[curate.testing.WebServer]:
        with real(*args, **kwargs) as server:
            ports.append(server.port)
            yield server

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(curate.testing, "serve_web", serve)
        yield


@contextlib.contextmanager
def holding(ports: list[int]) -> Iterator[None]:
    """Listen on `ports` so the OS cannot hand one of them to the next server (a port that
    cannot be bound is someone else's, which keeps it from the server just as well)."""
    with contextlib.ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                sock.bind(("127.0.0.1", port))
                sock.listen()
        yield


def demo(out: Path) -> None:
    run_demo(out, n_items=ITEMS, progress=False)
    run_video_demo(out, lessons=LESSONS, progress=False)


def digests(corpus: Path) -> dict[str, str]:
    shards = corpus / "shards"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(shards.iterdir())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int], list[int]]:
    """The demo twice, into two folders, the second on ports the first did not have."""
    root = tmp_path_factory.mktemp("demo")
    first: list[int] = []
    second: list[int] = []
    with recording_ports(first):
        demo(root / "a")
    with holding(first), recording_ports(second):
        demo(root / "b")
    return root / "a", root / "b", first, second


def test_runs_on_other_ports_write_the_same_shards(
    runs: tuple[Path, Path, list[int], list[int]],
) -> None:
    a, b, first, second = runs
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    for corpus in CORPORA:
        da, db = digests(a / corpus), digests(b / corpus)
        assert any(name.endswith(".tar") for name in da)
        assert da.keys() == db.keys()
        for name in da.keys() - {"manifest.json"}:  # the tars, sizes.json, README.md
            assert da[name] == db[name], f"{corpus}/shards/{name}"
        # The manifest's config hash covers the sources' paths, which name the output
        # folder: the same folder gives the same manifest (see the resume test).
        ma, mb = (json.loads((r / corpus / "shards" / "manifest.json").read_text()) for r in (a, b))
        del ma["config_hash"], mb["config_hash"]
        assert ma == mb


def test_samples_name_the_fixed_host(runs: tuple[Path, Path, list[int], list[int]]) -> None:
    import tarfile

    a = runs[0]
    for corpus in CORPORA:
        for tar in sorted((a / corpus / "shards").glob("*.tar")):
            assert b"127.0.0.1" not in tar.read_bytes()
            with tarfile.open(tar) as tf:
                metas = [
                    json.loads(tf.extractfile(m).read())  # type: ignore[union-attr]
                    for m in tf.getmembers()
                    if m.name.endswith(".json") and m.name.count(".") == 1
                ]
            assert metas and all(m["url"].startswith(DEMO_ORIGIN + "/") for m in metas)


def test_a_rerun_into_the_same_folder_resumes(
    runs: tuple[Path, Path, list[int], list[int]],
) -> None:
    a, _, first, _ = runs
    before = {c: digests(a / c) for c in CORPORA}
    fetched = {p: p.stat().st_mtime_ns for c in CORPORA for p in (a / c / "state").rglob("*.json")}
    ports: list[int] = []
    with holding(first), recording_ports(ports):
        demo(a)  # overwrite=False: a changed fetch hash would be refused here
    assert not set(ports) & set(first)
    assert {c: digests(a / c) for c in CORPORA} == before  # the manifests too
    for stage in ("fetch", "clips"):
        markers = [p for p in fetched if p.parent.name == stage]
        assert markers and all(p.stat().st_mtime_ns == fetched[p] for p in markers), stage
