"""Deterministic, atomic WebDataset tar writing and a safe streaming reader.

Members are sorted by key then extension, with fixed mtime/owner/mode, so equal samples give
equal bytes. Keys may not contain dots or slashes (Hugging Face `datasets` cuts a key at the
first dot), and every sample of a shard must carry the same member set.

Headers are built here rather than by `tarfile`, byte for byte what `tarfile` writes in
USTAR format for these fields (tested): tarfile spent ~0.2 ms per sample on them, half
of what the HTTP request costs. Reading takes a fast path over archives of plain regular
members and hands anything else (pax or GNU headers, links, bad checksums) to `tarfile`.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import BinaryIO

from curate.io.atomic import atomic_open
from curate.io.store import AnyPath, as_path

__all__ = ["FIXED_MTIME", "TarShardWriter", "check_key", "iter_tar_samples", "read_keys"]

FIXED_MTIME = 0
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # leaves room for the extension in 100 bytes
_EXT = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_BLOCK = 512
_RECORD = 20 * _BLOCK  # tarfile pads a closed archive to whole records
_MAX_SIZE = 8**11 - 1  # the largest size an 11-digit octal USTAR field holds


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte USTAR header `tarfile` writes for a regular file with mode 0644, owner
    0/0, empty user and group names and mtime FIXED_MTIME."""
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ValueError(f"member name {name!r} is longer than 100 bytes")
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"member {name!r}: size {size} does not fit a USTAR header")
    head = b"".join(
        (
            raw.ljust(100, b"\0"),
            b"0000644\0",  # mode
            b"0000000\0",  # uid
            b"0000000\0",  # gid
            b"%011o\0" % size,
            b"%011o\0" % FIXED_MTIME,
            b" " * 8,  # checksum, counted as spaces
            b"0",  # regular file
            b"\0" * 100,  # link name
            b"ustar\x0000",
            b"\0" * 64,  # user and group names
            b"\0" * 16,  # device major, minor: empty for files, as tarfile writes them
        )
    ).ljust(_BLOCK, b"\0")
    return head[:148] + b"%06o\0" % sum(head) + head[155:]


def check_key(key: str) -> str:
    """Refuse keys that WebDataset readers would split or that escape the archive."""
    if not _KEY.match(key):
        raise ValueError(f"bad sample key {key!r}: use 1-64 of [A-Za-z0-9_-], no dots or slashes")
    return key


class TarShardWriter:
    """Write samples to `path` through `path.tmp`; the rename happens on a clean close."""

    def __init__(self, path: str | AnyPath) -> None:
        self.path = as_path(path)
        self._ctx = atomic_open(self.path)
        self._file: BinaryIO = self._ctx.__enter__()
        self._offset = 0
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
        parts: list[bytes] = []
        for ext in exts:
            data = members[ext]
            parts += (ustar_header(f"{key}.{ext}", len(data)), data, b"\0" * (-len(data) % _BLOCK))
        self._file.writelines(parts)  # no joined copy of the sample's bytes
        self._offset += sum(map(len, parts))
        self._keys.add(key)
        self.count += 1

    def close(self) -> None:
        end = self._offset + 2 * _BLOCK  # two zero blocks end the archive
        self._file.write(b"\0" * (2 * _BLOCK + -end % _RECORD))
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
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


def _plain_header(block: bytes) -> tuple[str, int] | None:
    """(name, size) of a plain USTAR/v7 regular-file header with a valid checksum, else None
    (then tarfile decides what the archive holds)."""
    if block[156:157] not in (b"0", b"\0") or block[345:346] != b"\0":  # type, prefix
        return None
    try:
        chk = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
        size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        name = block[:100].split(b"\0", 1)[0].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    if chk != sum(block[:148]) + 256 + sum(block[156:]) or not name or name.endswith("/"):
        return None
    return name, size


def _plain_members(path: AnyPath) -> list[tuple[str, int, int]] | None:
    """(name, data offset, size) of every member when all are plain regular files, else None.
    Reads headers only, seeking over the data."""
    found: list[tuple[str, int, int]] = []
    with path.open("rb") as f:
        while True:
            block = f.read(_BLOCK)
            if len(block) < _BLOCK:
                return None  # truncated: let tarfile say so
            if block == b"\0" * _BLOCK:
                return found
            parsed = _plain_header(block)
            if parsed is None:
                return None
            name, size = parsed
            found.append((name, f.tell(), size))
            f.seek(size + -size % _BLOCK, 1)


def _group(
    members: Iterator[tuple[str, bytes]],
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(name, data) in archive order → (key, {ext: data}); unsafe or extensionless skipped."""
    current: str | None = None
    group: dict[str, bytes] = {}
    for name, data in members:
        if name.startswith("/") or ".." in name.split("/"):
            continue
        head, _, base = name.rpartition("/")
        stem, dot, ext = base.partition(".")
        if not dot:
            continue
        prefix = f"{head}/{stem}" if head else stem
        if prefix != current:
            if current is not None:
                yield current, group
            current, group = prefix, {}
        group[ext] = data
    if current is not None:
        yield current, group


def _read_plain(path: AnyPath, index: list[tuple[str, int, int]]) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as f:
        for name, offset, size in index:
            f.seek(offset)
            data = f.read(size)
            if len(data) != size:
                raise tarfile.ReadError(f"{path.name}: unexpected end of data in {name}")
            yield name, data


def _read_tarfile(path: AnyPath) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isreg() else None
            if f is not None:
                yield info.name, f.read()


def iter_tar_samples(path: str | AnyPath) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream (key, {ext: bytes}) groups; skip links, devices and names that escape."""
    p = as_path(path)
    index = _plain_members(p)
    yield from _group(_read_plain(p, index) if index is not None else _read_tarfile(p))


def read_keys(
    path: str | AnyPath,
    keys: Iterable[str],
    want: Callable[[str], bool] = lambda _: True,
    head: Mapping[str, int] | None = None,
) -> dict[str, dict[str, bytes]]:
    """{key: {ext: bytes}} of the listed keys' members whose extension `want` accepts (only
    the first `head[ext]` bytes of those extensions), read without the rest: headers are
    walked seeking over other members' data, and the walk stops once every listed key has
    been passed, which assumes a key's members are contiguous (as every curate tar writes
    them). Archives that are not plain USTAR go through tarfile; a member cut short raises
    tarfile.ReadError."""
    p = as_path(path)
    listed = set(keys)
    remaining = set(listed)
    limits = head or {}
    out: dict[str, dict[str, bytes]] = {}
    if not remaining:
        return out
    with p.open("rb") as f:
        current = None
        while remaining:
            block = f.read(_BLOCK)
            if len(block) < _BLOCK or block == b"\0" * _BLOCK:
                return out
            parsed = _plain_header(block)
            if parsed is None:
                break  # not plain: let tarfile read it
            name, size = parsed
            key, _, ext = name.partition(".")
            if key != current and current in out:
                remaining.discard(current)
            current = key
            if key in remaining and ext and want(ext):
                n = min(size, limits.get(ext, size))
                data = f.read(n)
                if len(data) != n:
                    raise tarfile.ReadError(f"{p.name}: unexpected end of data in {name}")
                f.seek(size - n + -size % _BLOCK, 1)
                out.setdefault(key, {})[ext] = data
            else:
                if key in remaining:
                    out.setdefault(key, {})
                f.seek(size + -size % _BLOCK, 1)
        else:
            return out
    return {
        key: {ext: data[: limits.get(ext, len(data))] for ext, data in group.items() if want(ext)}
        for key, group in _group(_read_tarfile(p))
        if key in listed
    }
