"""Deterministic, atomic WebDataset tar writing and a safe streaming reader.

Members are sorted by key then extension, with fixed mtime/owner/mode, so equal samples give
equal bytes. Keys may not contain dots or slashes (Hugging Face `datasets` cuts a key at the
first dot), and every sample of a shard must carry the same member set.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from curate.io.atomic import atomic_open

__all__ = ["FIXED_MTIME", "TarShardWriter", "check_key", "iter_tar_samples"]

FIXED_MTIME = 0
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # leaves room for the extension in 100 bytes
_EXT = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


def check_key(key: str) -> str:
    """Refuse keys that WebDataset readers would split or that escape the archive."""
    if not _KEY.match(key):
        raise ValueError(f"bad sample key {key!r}: use 1-64 of [A-Za-z0-9_-], no dots or slashes")
    return key


class TarShardWriter:
    """Write samples to `path` through `path.tmp`; the rename happens on a clean close."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ctx = atomic_open(self.path)
        self._file = self._ctx.__enter__()
        self._tar = tarfile.open(  # noqa: SIM115 - closed in close()/abort()
            fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT
        )
        self._members: tuple[str, ...] | None = None
        self._keys: set[str] = set()
        self.count = 0

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        check_key(key)
        if key in self._keys:
            raise ValueError(f"{self.path.name}: duplicate key {key!r}")
        exts = tuple(sorted(members))
        for ext in exts:
            if not _EXT.match(ext):
                raise ValueError(f"bad member extension {ext!r} for key {key!r}")
        if self._members is None:
            self._members = exts
        elif exts != self._members:
            raise ValueError(
                f"{self.path.name}: key {key!r} has members {exts}, shard has {self._members}"
            )
        for ext in exts:
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._keys.add(key)
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        self._tar.close()
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> TarShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


def iter_tar_samples(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream (key, {ext: bytes}) groups; skip links, devices and names that escape."""
    current: str | None = None
    members: dict[str, bytes] = {}
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            if not info.isreg():
                continue
            name = info.name
            if name.startswith("/") or ".." in name.split("/"):
                continue
            head, _, base = name.rpartition("/")
            stem, dot, ext = base.partition(".")
            if not dot:
                continue
            prefix = f"{head}/{stem}" if head else stem
            f = tar.extractfile(info)
            if f is None:
                continue
            if prefix != current:
                if current is not None:
                    yield current, members
                current, members = prefix, {}
            members[ext] = f.read()
    if current is not None:
        yield current, members
