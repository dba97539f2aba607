"""Run one stage's tasks on Dask: skip tasks whose marker exists, show progress, gather."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.io.atomic import read_json

__all__ = ["StageTask", "run_tasks"]


@dataclass(frozen=True)
class StageTask:
    """One unit of a stage: done when `marker` exists (written last by `fn`) and, if given,
    `expect` is a subset of it (e.g. the digest of the plan the marker was written for)."""

    index: int
    marker: Path
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    expect: dict[str, Any] | None = None
    force: bool = False

    def done(self) -> dict[str, Any] | None:
        if self.force or not self.marker.exists():
            return None
        summary: dict[str, Any] = read_json(self.marker)
        if self.expect and any(summary.get(k) != v for k, v in self.expect.items()):
            return None
        return summary


def run_tasks(
    client: Any,
    stage: str,
    tasks: Sequence[StageTask],
    *,
    retries: int = 2,
    progress: bool = True,
    resources: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Submit the unfinished tasks; return every task's summary (read back from markers)."""
    from distributed import as_completed
    from tqdm import tqdm

    results: dict[int, dict[str, Any]] = {}
    todo = []
    for t in tasks:
        summary = t.done()
        if summary is not None:
            results[t.index] = summary
        else:
            todo.append(t)
    bar = tqdm(
        total=len(tasks),
        initial=len(results),
        desc=f"{stage:>8}",
        unit="part",
        disable=not progress,
        file=sys.stderr,
    )
    futures = {
        client.submit(
            t.fn,
            *t.args,
            key=f"{stage}-{t.index}-{uuid.uuid4().hex[:8]}",
            retries=retries,
            resources=resources,
        ): t
        for t in todo
    }
    try:
        for fut in as_completed(futures):
            t = futures[fut]
            results[t.index] = fut.result()
            bar.update(1)
    finally:
        bar.close()
        for fut in futures:
            fut.cancel()
    return [results[t.index] for t in tasks]
