"""Atomic file writes: a kill never leaves a half file.

Locally: write `*.tmp`, flush, fsync, rename. On an object store (s3://, gs://...) a rename
is a copy, so the bytes go to a local temporary file and are uploaded in one put: the store
shows the object whole or not at all, and a killed upload leaves nothing under its name.

Test hook: with `CURATE_TEST_KILL_BEFORE_RENAME` set to the end of a path (`run.json`,
`raw/00001.tar`, `state/fetch/00002.json`), a local write of that file SIGKILLs its process
group (the driver and its LocalCluster workers) once the tmp is whole, before the rename:
tests/test_resilience.py kills a run at a named moment instead of polling for one. It fires
only in a process group that leads its own session (`setsid`, `start_new_session=True`), so it
can never take down the shell or test process that started the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from upath import UPath

__all__ = ["KILL_BEFORE_RENAME", "atomic_open", "read_json", "write_bytes", "write_json"]

KILL_BEFORE_RENAME = "CURATE_TEST_KILL_BEFORE_RENAME"


def _kill_point(final: Path) -> None:
    """The test hook (see the module docstring): one environment lookup per local write."""
    where = os.environ.get(KILL_BEFORE_RENAME)
    if not where or not final.as_posix().endswith("/" + where.strip("/")):
        return
    group = os.getpgrp()
    if os.getsid(0) == group:
        os.killpg(group, signal.SIGKILL)


@contextlib.contextmanager
def atomic_open(path: str | Path | UPath) -> Iterator[BinaryIO]:
    """Open `path.tmp` for writing; on clean exit fsync and rename it over `path` (on an
    object store: upload it in one put)."""
    if isinstance(path, UPath) and not isinstance(path, Path):
        with _remote_open(path) as f:
            yield f
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    f = open(tmp, "wb")  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        _kill_point(final)
        os.replace(tmp, final)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _remote_open(final: UPath) -> Iterator[BinaryIO]:
    with tempfile.TemporaryDirectory(prefix="curate-put-") as folder:
        tmp = os.path.join(folder, final.name)
        with open(tmp, "wb") as f:
            yield f
        final.fs.put_file(tmp, final.path)


def write_bytes(path: str | Path | UPath, data: bytes) -> None:
    if isinstance(path, UPath) and not isinstance(path, Path):
        path.fs.pipe_file(path.path, data)  # one put: whole or absent
        return
    with atomic_open(path) as f:
        f.write(data)


def write_json(path: str | Path | UPath, obj: Any) -> None:
    """Sorted keys and a trailing newline, so equal objects give equal bytes."""
    write_bytes(path, (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode())


def read_json(path: str | Path | UPath) -> Any:
    target = path if isinstance(path, UPath) else Path(path)
    return json.loads(target.read_text(encoding="utf-8"))
