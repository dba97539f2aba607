"""Run one stage's tasks on Dask: skip tasks whose marker exists, show progress, gather.

A stage that stops making progress must say where it is stuck rather than wait in silence:
after `stall_s` without a finished task the driver prints which tasks are running on which
worker, and each worker process dumps the Python stacks of all its threads to its stderr
(faulthandler, which works even when a thread holds the GIL or the event loop is blocked).
"""

from __future__ import annotations

import faulthandler
import sys
import threading
import time
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


_RUNNING = 0
_RUNNING_LOCK = threading.Lock()


def _arm(stall_s: float) -> None:
    err = sys.stderr
    try:
        err.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a descriptor
        err = sys.__stderr__
    faulthandler.dump_traceback_later(stall_s, repeat=True, file=err)


def _watched(
    stall_s: float | None, fn: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """Run `fn` on a worker with faulthandler armed: a task running past `stall_s` leaves
    every thread's stack in the worker's stderr. The timer is per process, so it is re-armed
    whenever a task starts or ends and cancelled when the last one ends."""
    global _RUNNING
    if not stall_s:
        return fn(*args)
    with _RUNNING_LOCK:
        _RUNNING += 1
        _arm(stall_s)
    try:
        return fn(*args)
    finally:
        with _RUNNING_LOCK:
            _RUNNING -= 1
            if _RUNNING:
                _arm(stall_s)
            else:
                faulthandler.cancel_dump_traceback_later()


def _stall_report(client: Any, stage: str, pending: dict[Any, StageTask], idle_s: float) -> str:
    """Which unfinished tasks run where, from the scheduler (which stays responsive)."""
    keys = {fut.key: t.index for fut, t in pending.items()}
    lines = [
        f"curate: {stage}: no task finished for {idle_s:.0f}s; "
        f"{len(pending)} unfinished: partitions {sorted(keys.values())[:20]}"
    ]
    try:
        processing = client.processing()
    except Exception as err:  # the report must never be what fails the run
        return "\n".join([*lines, f"  (scheduler did not answer: {err!r})"])
    for worker, running in sorted(processing.items()):
        mine = sorted(keys[k] for k in running if k in keys)
        if mine:
            lines.append(f"  {worker}: partitions {mine} (stacks in that worker's stderr)")
    return "\n".join(lines)


def run_tasks(
    client: Any,
    stage: str,
    tasks: Sequence[StageTask],
    *,
    retries: int = 2,
    progress: bool = True,
    resources: dict[str, float] | None = None,
    stall_s: float | None = None,
) -> list[dict[str, Any]]:
    """Submit the unfinished tasks; return every task's summary (read back from markers)."""
    from distributed import wait
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
    pending = {
        client.submit(
            _watched,
            stall_s,
            t.fn,
            *t.args,
            key=f"{stage}-{t.index}-{uuid.uuid4().hex[:8]}",
            retries=retries,
            resources=resources,
        ): t
        for t in todo
    }
    futures = list(pending)
    last = time.monotonic()
    try:
        while pending:
            try:
                done, _ = wait(list(pending), timeout=stall_s, return_when="FIRST_COMPLETED")
            except TimeoutError:
                idle = time.monotonic() - last
                print(_stall_report(client, stage, pending, idle), file=sys.stderr, flush=True)
                continue
            for fut in done:
                t = pending.pop(fut)
                results[t.index] = fut.result()
                bar.update(1)
            last = time.monotonic()
    finally:
        bar.close()
        for fut in futures:
            fut.cancel()
    return [results[t.index] for t in tasks]
