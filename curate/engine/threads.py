"""Results of a partition's thread pool in input order, with a budget per row.

A row whose work runs past its budget (a wedged decoder, a socket no timeout reaches) is
given up: the caller records it as a timeout row and the thread is abandoned, never waited
for, so one stuck input cannot hold its partition, or the run, forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

__all__ = ["bounded_map"]

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[[T], R], items: Sequence[T], threads: int, budget: float
) -> Iterator[R | None]:
    """fn over items on `threads` threads; results in input order, None for an item whose
    call ran past `budget` seconds from its start (queueing time does not count)."""
    started: dict[int, float] = {}
    lock = threading.Lock()

    def timed(i: int, item: T) -> R:
        with lock:
            started[i] = time.monotonic()
        return fn(item)

    pool = ThreadPoolExecutor(max_workers=threads)
    futures: list[Future[R]] = [pool.submit(timed, i, item) for i, item in enumerate(items)]
    try:
        for i, fut in enumerate(futures):
            while True:
                begun = started.get(i)
                wait = 1.0 if begun is None else max(0.0, begun + budget - time.monotonic())
                try:
                    result = fut.result(timeout=wait)
                except FutureTimeout:
                    if begun is not None:
                        yield None
                        break
                else:
                    yield result
                    break
    finally:
        # A stuck thread is left behind rather than waited for; the rest are finished.
        pool.shutdown(wait=all(f.done() for f in futures), cancel_futures=True)
