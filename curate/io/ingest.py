"""Ingest in bounded memory: sources, a file at a time, into ingest partitions.

A billion-row URL list must not pass through the driver at once. The sources are read file
by file (`iter_source`) and cut into partitions of `samples_per_partition` rows, staged in a
local folder; the fingerprint that decides whether an existing run may be resumed is then
computed over the staged partitions, column by column as if over the whole table, and only
after the run directory accepted it are the partitions copied in
(those already there are kept: a resumed run never rewrites its inputs). The driver holds
one source file and one partition at a time.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.config import FolderSource, HFSource, TableSource
from curate.errors import IngestError
from curate.io.atomic import atomic_open
from curate.io.sources import iter_source, source_name
from curate.io.store import StorageOptions
from curate.rundir import RunDir, partition_name
from curate.tables import INGEST_SCHEMA, write_table

__all__ = ["Staged", "stage_ingest"]

Sources = list[TableSource | FolderSource | HFSource]


@dataclass(frozen=True)
class Staged:
    """Ingest partitions written to a local folder, not yet in a run."""

    folder: Path
    rows: int
    parts: int

    def fingerprint(self) -> str:
        """What the inputs are: uids and carried columns, local files' size and mtime, and
        the bytes of in-source images (whose uids come from paths or row numbers alone).
        Hashed as over one table, reading one column of one partition at a time."""
        h = hashlib.sha256()
        for col in ("uid", "extra"):
            first = True
            for i in range(self.parts):
                path = self.folder / f"{partition_name(i)}.parquet"
                values = pl.read_parquet(path, columns=[col])[col].to_list()
                if values:
                    text = "\n".join(v or "" for v in values)
                    h.update((text if first else "\n" + text).encode())
                    first = False
        for col in ("path", "image"):
            for i in range(self.parts):
                path = self.folder / f"{partition_name(i)}.parquet"
                for v in pl.read_parquet(path, columns=[col])[col].drop_nulls().to_list():
                    if col == "image":
                        h.update(hashlib.sha256(v).digest())
                        continue
                    try:
                        st = Path(v).stat()
                        h.update(f"{v}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                    except OSError:
                        h.update(f"{v}:missing\n".encode())
        return h.hexdigest()

    def publish(self, run: RunDir) -> None:
        """Copy the partitions the run does not have yet into it."""
        for i in range(self.parts):
            name = partition_name(i)
            target = run.ingest(name)
            if target.exists():
                continue
            with (self.folder / f"{name}.parquet").open("rb") as src, atomic_open(target) as dst:
                shutil.copyfileobj(src, dst)


def _same_name_check(sources: Sources, options: StorageOptions | None) -> None:
    """uids hash (source name, row number, locator, caption): sources can only share one
    when they share a name, and then every uid is compared, as before streaming."""
    names = [source_name(s) for s in sources]
    shared = {n for n in names if names.count(n) > 1}
    if not shared:
        return
    seen: set[str] = set()
    for src in sources:
        if source_name(src) not in shared:
            continue
        for frame in iter_source(src, options):
            uids = frame["uid"].to_list()
            if seen.intersection(uids):
                raise IngestError(
                    "two sources give the same uid (source names must differ): "
                    + ", ".join(sorted(shared))
                )
            seen.update(uids)


def stage_ingest(
    sources: Sources, options: StorageOptions | None, per_part: int, folder: Path
) -> Staged:
    """Read every source in config order and write partitions of `per_part` rows (at least
    one, maybe empty) to `folder`; raises IngestError before any run is touched."""
    _same_name_check(sources, options)
    buffer: list[pl.DataFrame] = []
    held = rows = parts = 0

    def flush(frame: pl.DataFrame) -> None:
        nonlocal parts
        write_table(folder / f"{partition_name(parts)}.parquet", frame.rechunk())
        parts += 1

    for src in sources:
        for frame in iter_source(src, options):
            rows += frame.height
            buffer.append(frame)
            held += frame.height
            while held >= per_part:
                joined = pl.concat(buffer)
                flush(joined.slice(0, per_part))
                rest = joined.slice(per_part)
                buffer, held = ([rest] if rest.height else []), rest.height
    if held or parts == 0:
        flush(pl.concat(buffer) if buffer else pl.DataFrame(schema=INGEST_SCHEMA))
    return Staged(folder, rows, parts)
