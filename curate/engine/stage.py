"""The stage contract: a stage plans tasks; the engine runs them and owns completion.

A `Stage` is a name, a `plan` (what the run needs from this stage, as tasks) and optional
resources and sample members. A `Task` names its unit (`key`), the function that writes its
outputs and returns a summary, and `inputs`: the digest of everything it reads (input files
and the config sections it uses). The engine writes `state/<stage>/<key>.json` holding that
digest and the summary after the function returns; "done" means the marker's digest equals
the task's and its declared outputs exist. Change a threshold and only the tasks that read
it (and those downstream, whose inputs then differ) run again.

A task that also produces another stage's outputs for the same key (the fetch writes each
partition's features while the bytes are in memory) returns them under `completes`:
`{stage: {"inputs": digest, "summary": {...}}}`, and the engine writes that marker too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from upath import UPath

from curate.config import PipelineConfig
from curate.io.atomic import write_bytes, write_json
from curate.io.store import AnyPath, read_many
from curate.rundir import RunDir

__all__ = [
    "Plan",
    "Stage",
    "Task",
    "cluster_client",
    "digest",
    "read_marker",
    "read_markers",
    "read_timings",
    "record_timing",
    "stage_digest",
    "timing",
    "write_marker",
]


@dataclass(frozen=True)
class Task:
    """One unit of a stage. `fn(*args)` writes `outputs` and returns a JSON summary; it is
    done when its marker names the same `inputs` and every output exists."""

    key: str
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    inputs: str
    outputs: tuple[AnyPath, ...] = ()
    force: bool = False


@dataclass(frozen=True)
class Plan:
    """What a stage's plan may know about the run."""

    run: RunDir
    cfg: PipelineConfig
    config_hash: str
    fetch_hash: str
    workers: int
    members: tuple[str, ...]
    retry_failed: bool = False


@dataclass(frozen=True)
class Stage:
    """A named step: `plan` lists its tasks; `members` are the tar members it adds to each
    sample; `resources` are Dask worker resources its tasks need (e.g. a GPU)."""

    name: str
    plan: Callable[[Plan], list[Task]]
    members: Callable[[PipelineConfig], tuple[str, ...]] | None = None
    resources: Callable[[PipelineConfig], dict[str, float] | None] | None = None


Part = Path | UPath | BaseModel | str | bytes | None


def digest(*parts: Part) -> str:
    """sha256 over the parts, each tagged: a file's bytes (or its absence), a config
    section's JSON, text or bytes. The same reads give the same digest on any machine."""
    files = [p for p in parts if isinstance(p, Path | UPath)]
    contents = iter(read_many(files))
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path | UPath):
            data = next(contents)
            h.update(b"F" + (data if data is not None else b"\x00missing"))
        elif isinstance(part, BaseModel):
            h.update(b"C" + part.model_dump_json().encode())
        elif isinstance(part, str):
            h.update(b"S" + part.encode())
        elif isinstance(part, bytes):
            h.update(b"B" + part)
        else:
            h.update(b"N")
        h.update(b"\x1f")
    return h.hexdigest()


def read_marker(run: RunDir, stage: str, key: str) -> dict[str, Any] | None:
    """The marker of a finished task ({"inputs", "summary"}), or None."""
    return read_markers(run, stage, [key])[0]


def read_markers(run: RunDir, stage: str, keys: list[str]) -> list[dict[str, Any] | None]:
    """Markers of many tasks, read together (concurrently on a store)."""
    found = read_many([run.marker(stage, k) for k in keys])
    return [None if data is None else json.loads(data) for data in found]


def write_marker(run: RunDir, stage: str, key: str, inputs: str, summary: dict[str, Any]) -> None:
    write_json(run.marker(stage, key), {"inputs": inputs, "summary": summary})


def timing(stage: str, key: str, seconds: float, worker: str) -> dict[str, Any]:
    """One finished task's wall seconds, as a line of state/timings.jsonl."""
    return {"stage": stage, "key": key, "seconds": round(seconds, 3), "worker": worker,
            "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def record_timing(run: RunDir, lines: list[dict[str, Any]]) -> None:
    """Append finished tasks' timings to state/timings.jsonl (the driver writes them; a rerun
    appends, the last line of a key counts). Kept out of the markers, whose bytes are the
    inputs of later stages and must not vary run to run. A store cannot append, so there the
    file is rewritten whole: the runner passes a stage's lines together, not one per task."""
    if not lines:
        return
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    path = run.timings
    if run.local:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(text)
        return
    before = path.read_text() if path.exists() else ""
    write_bytes(path, (before + text).encode())


def read_timings(run: RunDir) -> dict[tuple[str, str], dict[str, Any]]:
    """The last recorded timing of each (stage, task key); {} for runs before timings."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not run.timings.exists():
        return out
    for line in run.timings.read_text().splitlines():
        try:
            rec = json.loads(line)
            out[(rec["stage"], rec["key"])] = rec
        except (ValueError, KeyError, TypeError):  # a line cut by a kill: skip it
            continue
    return out


def stage_digest(run: RunDir, stage: str) -> str:
    """Digest of a stage's markers, i.e. of the inputs of everything it last wrote: what a
    corpus-wide task downstream reads, identified without rereading the files themselves."""
    return digest(*run.markers(stage))


@contextlib.contextmanager
def cluster_client() -> Iterator[Any]:
    """Inside a task on a Dask worker, a client to the same cluster for sub-tasks (the worker
    thread steps out of its pool meanwhile); elsewhere None, meaning local threads."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        yield None
        return
    with worker_client() as client:
        yield client
