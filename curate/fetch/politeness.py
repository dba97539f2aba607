"""Per-domain politeness for one worker process: a concurrency cap, a request rate, robots.txt.

Limits are per process; the pipeline divides the configured totals by the number of Dask
workers so the whole run stays under them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from urllib.robotparser import RobotFileParser

__all__ = ["DomainLimiter", "RobotsCache"]


class DomainLimiter:
    """At most `concurrency` requests in flight per host, starts spaced 1/rate apart."""

    def __init__(self, concurrency: int, rate_per_s: float | None) -> None:
        self.concurrency = max(1, concurrency)
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = {}

    def _sem(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            if host not in self._sems:
                self._sems[host] = threading.BoundedSemaphore(self.concurrency)
            return self._sems[host]

    def _wait_turn(self, host: str) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self.interval
        if start > now:
            time.sleep(start - now)

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        sem = self._sem(host.lower())
        with sem:
            self._wait_turn(host.lower())
            yield


class RobotsCache:
    """robots.txt fetched once per origin per process; RFC 9309 semantics for errors."""

    def __init__(self, agent: str, fetch: Callable[[str], tuple[int, bytes]]) -> None:
        self.agent = agent
        self._fetch = fetch
        self._lock = threading.Lock()
        self._origin_locks: dict[str, threading.Lock] = {}
        self._parsers: dict[str, RobotFileParser | bool] = {}
        self.fetches = 0

    def allowed(self, origin: str, url: str) -> bool:
        with self._lock:
            lock = self._origin_locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._parsers:
                self._parsers[origin] = self._load(origin)
        rules = self._parsers[origin]
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(self.agent, url)

    def _load(self, origin: str) -> RobotFileParser | bool:
        self.fetches += 1
        try:
            status, body = self._fetch(origin + "/robots.txt")
        except Exception:
            return False  # unreachable: RFC 9309 says assume complete disallow
        if 400 <= status < 500:
            return True  # no robots.txt: everything allowed
        if status >= 500:
            return False
        parser = RobotFileParser()
        parser.parse(body.decode("utf-8", errors="replace").splitlines())
        return parser
