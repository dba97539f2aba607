"""Run a stage's tasks on Dask: skip those already done for the same inputs, write markers.

A stage that stops making progress must say where it is stuck rather than wait in silence:
after `stall_s` without a finished task the driver prints which tasks are running on which
worker, and each worker process dumps the Python stacks of all its threads to its stderr
(faulthandler, which works even when a thread holds the GIL or the event loop is blocked).
"""

from __future__ import annotations

import faulthandler
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from curate.engine.stage import Task, read_markers, record_timing, timing, write_marker
from curate.io.store import existing, remove_files
from curate.rundir import RunDir

__all__ = ["run_calls", "run_stage"]

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


def _stall_report(client: Any, stage: str, pending: dict[Any, str], idle_s: float) -> str:
    """Which unfinished tasks run where, from the scheduler (which stays responsive)."""
    keys = {fut.key: name for fut, name in pending.items()}
    lines = [
        f"curate: {stage}: no task finished for {idle_s:.0f}s; "
        f"{len(pending)} unfinished: {sorted(keys.values())[:20]}"
    ]
    try:
        processing = client.processing()
    except Exception as err:  # the report must never be what fails the run
        return "\n".join([*lines, f"  (scheduler did not answer: {err!r})"])
    for worker, running in sorted(processing.items()):
        mine = sorted(keys[k] for k in running if k in keys)
        if mine:
            lines.append(f"  {worker}: {mine} (stacks in that worker's stderr)")
    return "\n".join(lines)


Call = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, str]:
    """(result, seconds, worker) of one stage task, measured where it ran: the driver's
    clock would add queueing. `curate why` shows it beside each stage's result."""
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):
        where = "driver"
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0, where


def _execute(
    client: Any,
    label: str,
    calls: Sequence[Call],
    on_done: Callable[[str, Any], None],
    *,
    retries: int,
    progress: bool,
    resources: dict[str, float] | None,
    stall_s: float | None,
    done_already: int = 0,
) -> None:
    """Submit (name, fn, args) calls; `on_done(name, result)` as each finishes, on this
    thread. A quiet spell longer than `stall_s` prints where the unfinished ones run. A call
    that fails after its retries does not stop the others: every one that can finish does
    (so its marker is written and a rerun keeps it), then the first failure is raised.

    Finished futures arrive through a queue fed by done-callbacks: waiting on the pending
    set for the first to complete costs O(pending) per completion, O(n²) over a stage,
    and its per-call waiters grew the driver by ~0.4 MB a task (200 MB over 469 tasks)."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(calls) + done_already,
        initial=done_already,
        desc=f"{label:>8}",
        unit="task",
        disable=not progress,
        file=sys.stderr,
    )
    pending = {
        client.submit(
            _watched,
            stall_s,
            fn,
            *args,
            key=f"{label}-{name}-{uuid.uuid4().hex[:8]}",
            retries=retries,
            resources=resources,
            pure=False,
        ): name
        for name, fn, args in calls
    }
    futures = list(pending)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for fut in futures:
        fut.add_done_callback(finished.put)
    last = time.monotonic()
    failed: list[tuple[str, BaseException]] = []
    try:
        while pending:
            try:
                fut = finished.get(timeout=stall_s)
            except queue.Empty:
                idle = time.monotonic() - last
                print(_stall_report(client, label, pending, idle), file=sys.stderr, flush=True)
                continue
            name = pending.pop(fut, None)
            if name is None:  # a callback repeated for a future already handled
                continue
            try:
                result = fut.result()
            except Exception as err:  # retries are spent: keep the others' work
                failed.append((name, err))
                continue
            finally:
                last = time.monotonic()
            on_done(name, result)
            bar.update(1)
    finally:
        bar.close()
        for fut in futures:
            fut.cancel()
    if failed:
        first, error = failed[0]
        others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        print(f"curate: {label}: task {first} failed{others}", file=sys.stderr, flush=True)
        raise error


def run_calls(
    client: Any,
    label: str,
    calls: Sequence[Call],
    *,
    retries: int = 2,
    progress: bool = False,
    stall_s: float | None = None,
) -> list[Any]:
    """Run calls that leave no files (e.g. blocks of a search) with the same retries and
    stall reports as stage tasks; results in call order."""
    results: dict[str, Any] = {}
    _execute(
        client,
        label,
        calls,
        results.__setitem__,
        retries=retries,
        progress=progress,
        resources=None,
        stall_s=stall_s,
    )
    return [results[name] for name, _, _ in calls]


def run_stage(
    client: Any,
    run: RunDir,
    stage: str,
    tasks: Sequence[Task],
    *,
    retries: int = 2,
    progress: bool = True,
    resources: dict[str, float] | None = None,
    stall_s: float | None = None,
) -> list[dict[str, Any]]:
    """Run the tasks whose marker is missing or was written for other inputs; write each
    marker when its task returns; return every task's summary, in task order.

    Markers of keys the plan no longer has (e.g. a shard beyond a smaller plan) are removed.
    """
    summaries: dict[str, dict[str, Any]] = {}
    todo: list[Task] = []
    stale: list[Any] = []
    changed = 0
    markers = read_markers(run, stage, [t.key for t in tasks])
    outputs = [p for t in tasks for p in t.outputs]
    present = dict(zip(map(str, outputs), existing(outputs), strict=True))
    for t, marker in zip(tasks, markers, strict=True):
        current = marker is not None and marker.get("inputs") == t.inputs
        if current and not t.force and all(present[str(p)] for p in t.outputs):
            assert marker is not None
            summaries[t.key] = marker["summary"]
            continue
        if marker is not None and not current and not t.force:
            changed += 1
            stale.append(run.marker(stage, t.key))
        todo.append(t)
    # A task redone for new inputs loses its old marker first: killed halfway through
    # rewriting its outputs, it must not look done to a later run with the old inputs.
    remove_files(stale)
    planned = {t.key for t in tasks}
    for path in run.markers(stage):
        if path.stem not in planned:
            path.unlink()
    if progress and changed:
        print(
            f"{stage:>8}: inputs changed for {changed} of {len(tasks)} task(s); redoing them",
            file=sys.stderr,
            flush=True,
        )
    by_key = {t.key: t for t in todo}

    def finished(key: str, timed: tuple[Any, float, str]) -> None:
        summary, seconds, worker = timed
        if not isinstance(summary, dict):
            fn = getattr(by_key[key].fn, "__qualname__", by_key[key].fn)
            raise TypeError(
                f"{stage} task {key}: {fn} returned {type(summary).__name__}, not a summary dict"
            )
        extra = summary.pop("completes", None) or {}
        for other, marker in extra.items():
            write_marker(run, other, key, marker["inputs"], marker["summary"])
        write_marker(run, stage, key, by_key[key].inputs, summary)
        timings.append(timing(stage, key, seconds, worker))
        if run.local:  # appending is cheap here: a kill keeps what finished
            record_timing(run, timings)
            timings.clear()
        summaries[key] = summary

    timings: list[dict[str, Any]] = []
    try:
        _execute(
            client,
            stage,
            [(t.key, _timed, (t.fn, *t.args)) for t in todo],
            finished,
            retries=retries,
            progress=progress,
            resources=resources,
            stall_s=stall_s,
            done_already=len(tasks) - len(todo),
        )
    finally:
        record_timing(run, timings)
    return [summaries[t.key] for t in tasks]
