"""Atomic file writes: a kill never leaves a half file.

Locally: write `*.tmp`, flush, fsync, rename. On an object store (s3://, gs://...) a rename
is a copy, so the bytes go to a local temporary file and are uploaded in one put: the store
shows the object whole or not at all, and a killed upload leaves nothing under its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from upath import UPath

__all__ = ["atomic_open", "read_json", "write_bytes", "write_json"]


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
