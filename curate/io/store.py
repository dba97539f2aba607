"""Where files live: a local folder or an fsspec URL (s3://, gs://, hf://, memory://, file://).

Every path curate reads or writes — sources, eval sets, the run directory — goes through
`location`, which gives a `UPath`: a `pathlib.Path` subclass for local paths (so local code
paths stay exactly as they were) and an fsspec-backed path for URLs, carrying the storage
options configured for its protocol. A `UPath` pickles with its options, so a task shipped
to a worker that shares no disk with the driver opens the same store with the same
credentials and endpoint.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from upath import UPath

__all__ = [
    "AnyPath",
    "as_path",
    "existing",
    "is_local",
    "is_url",
    "load_npy",
    "location",
    "npy_shape",
    "read_many",
    "read_parquet",
    "remove_files",
    "remove_tree",
    "scan_files",
    "storage_options_for",
    "version",
]

AnyPath = Path | UPath
StorageOptions = Mapping[str, Mapping[str, Any]]


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a store by protocol (`s3://b/k`), not a local path."""
    return "://" in str(path) and not isinstance(path, Path)


def storage_options_for(url: str, options: StorageOptions | None) -> dict[str, Any]:
    """The options configured for `url`'s protocol (`s3` for s3:// and s3a://)."""
    protocol = url.split("://", 1)[0].lower()
    found = dict((options or {}).get(protocol, {}))
    if not found and protocol == "s3a":
        found = dict((options or {}).get("s3", {}))
    return found


def location(path: str | os.PathLike[str] | UPath, options: StorageOptions | None = None) -> UPath:
    """A local path (absolute) or a store URL with its protocol's storage options.

    `file://` URLs become local paths, so a run given `file:///data/run` writes exactly as
    one given `/data/run` does (atomic renames, fsync).
    """
    if isinstance(path, UPath) and not isinstance(path, Path):
        return path
    text = str(path) if isinstance(path, UPath) else os.fspath(path)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        opts = storage_options_for(text, options)
        # Workers write what the driver then lists: a cached listing would hide their files.
        opts.setdefault("use_listings_cache", False)
        return UPath(text, **opts)
    return UPath(Path(text).expanduser().absolute())


def as_path(path: str | os.PathLike[str] | UPath) -> AnyPath:
    """A path object for `path`: UPaths and Paths as given, strings via `location`."""
    if isinstance(path, Path | UPath):
        return path
    return location(path)


def read_parquet(path: AnyPath, columns: list[str] | None = None) -> pl.DataFrame:
    """A parquet file, local or on a store (read whole: the files curate writes are a
    partition or a decision table, never a corpus)."""
    if isinstance(path, Path):
        return pl.read_parquet(path, columns=columns)
    with path.open("rb") as f:
        return pl.read_parquet(f, columns=columns)


def scan_files(files: list[AnyPath]) -> pl.LazyFrame:
    """Parquet files as one lazy frame: scanned in place locally, read one by one from a
    store (polars' own object-store reader takes other option names than fsspec's)."""
    if all(isinstance(f, Path) for f in files):
        return pl.scan_parquet([Path(str(f)) for f in files])
    return pl.concat([read_parquet(f).lazy() for f in files], how="vertical")


def load_npy(path: AnyPath, mmap: bool = False) -> NDArray[Any]:
    """A .npy array, local or on a store; `mmap` maps a local file, so taking a few rows
    reads only their pages (a store's file is read whole)."""
    if isinstance(path, Path):
        return np.load(path, mmap_mode="r" if mmap else None)
    with path.open("rb") as f:
        return np.load(io.BytesIO(f.read()))


def version(path: AnyPath) -> str:
    """What changes when a file's bytes change, without reading them: size and mtime
    locally, size and the store's ETag (or its modification time) on a store."""
    if isinstance(path, Path):
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    info = path.fs.info(path.path)
    tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
    return f"{info.get('size')}:{tag}"


def npy_shape(path: AnyPath) -> tuple[int, ...]:
    """A .npy array's shape from its header alone (a few hundred bytes, even on a store)."""
    with path.open("rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read(f)
    return tuple(int(n) for n in shape)


def read_many(paths: list[AnyPath]) -> list[bytes | None]:
    """The bytes of each file, None where absent. On a store the reads go out together
    (fsspec's concurrent `cat`), not one round trip after another: a resume checks one
    marker per task, a hundred thousand of them for a large corpus."""
    remote = [p for p in paths if not isinstance(p, Path)]
    found: dict[str, bytes] = {}
    for fs in {id(p.fs): p.fs for p in remote}.values():
        mine = [p.path for p in remote if p.fs is fs]
        for key, value in fs.cat(mine, on_error="return").items():
            if isinstance(value, FileNotFoundError):
                continue  # absent: None below
            if isinstance(value, BaseException):  # throttled, forbidden...: not "absent"
                raise value
            found[fs._strip_protocol(key)] = value
    out: list[bytes | None] = []
    for p in paths:
        if isinstance(p, Path):
            try:
                out.append(p.read_bytes())
            except FileNotFoundError:
                out.append(None)
        else:
            out.append(found.get(p.fs._strip_protocol(p.path)))
    return out


def existing(paths: list[AnyPath]) -> list[bool]:
    """Whether each path exists; on a store, one listing per folder instead of a request
    per file."""
    listed: dict[str, set[str]] = {}
    out = []
    for p in paths:
        if isinstance(p, Path):
            out.append(p.exists())
            continue
        folder = p.parent
        key = folder.path
        if key not in listed:
            try:
                names = folder.fs.ls(folder.path, detail=False)
            except FileNotFoundError:
                names = []
            listed[key] = {str(n).rstrip("/").rsplit("/", 1)[-1] for n in names}
        out.append(p.name in listed[key])
    return out


def is_local(path: UPath | Path) -> bool:
    """Whether `path` is on this machine's filesystem (a `pathlib.Path`)."""
    return isinstance(path, Path)


def remove_files(paths: list[AnyPath]) -> None:
    """Delete files (one batched request per store); absent ones are fine."""
    remote: dict[int, tuple[Any, list[str]]] = {}
    for p in paths:
        if isinstance(p, Path):
            p.unlink(missing_ok=True)
        else:
            remote.setdefault(id(p.fs), (p.fs, []))[1].append(p.path)
    for fs, names in remote.values():
        present = [n for n in names if fs.exists(n)]
        if present:
            fs.rm(present)


def remove_tree(path: UPath | Path) -> None:
    """Delete a folder (or a store prefix) and everything under it; absent is fine."""
    if isinstance(path, Path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    if path.exists():
        path.fs.rm(path.path, recursive=True)
