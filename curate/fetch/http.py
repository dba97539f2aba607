"""Safe, polite HTTP(S) fetching of one URL.

Per hop: the scheme is checked, the host resolved and its addresses checked (SSRF), robots.txt
consulted when enabled, a per-domain slot taken; redirects are followed by hand so every hop is
re-checked. The body is streamed under a byte cap and one total deadline. Every failure is a
`SampleFailure` with a specific reason; only transient ones (429, 5xx, dropped connections,
truncated bodies) are retried, with exponential backoff and jitter honouring Retry-After.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as UrllibTimeout
from urllib3.response import BaseHTTPResponse

from curate.config import FetchConfig
from curate.errors import SampleFailure
from curate.fetch.politeness import DomainLimiter, RobotsCache
from curate.fetch.safety import AddressGuard, Resolver
from curate.fetch.transport import Watchdog, guarded_pool_manager
from curate.io.atomic import atomic_open

__all__ = [
    "RETRY_FAILED_REASONS",
    "TRANSIENT_REASONS",
    "Fetcher",
    "fetch_url",
    "get_fetcher",
    "is_opted_out",
]

TRANSIENT_REASONS = frozenset(
    {"http_429", "http_500", "http_502", "http_503", "http_504", "connection_error", "truncated"}
)
# What `curate run --retry-failed` fetches again: failures that may pass on another day.
RETRY_FAILED_REASONS = TRANSIENT_REASONS | {"timeout", "fetch_error"}
_CHUNK = 64 * 1024
_ROBOTS_MAX = 512 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def agent_token(user_agent: str) -> str:
    return user_agent.split("/", 1)[0].strip().lower()


def is_opted_out(headers: list[str], user_agent: str, directives: frozenset[str]) -> bool:
    """True when an X-Robots-Tag carries an opt-out for all agents or for ours.

    `otherbot: noai` is scoped to another agent and ignored; a scope holds until the next
    one, so a merged value like `otherbot: noindex, curate: noai` still reaches us.
    """
    token = agent_token(user_agent)
    for value in headers:
        scope: str | None = None
        for element in value.split(","):
            m = re.match(r"\s*([A-Za-z0-9_.*\-]+)\s*:(.*)$", element)
            if m and m.group(1).lower() not in directives:
                scope, element = m.group(1).lower(), m.group(2)
            if element.strip().lower() in directives and scope in (None, token, "*"):
                return True
    return False


def _retry_after(resp: BaseHTTPResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _classify(err: HTTPError) -> SampleFailure:
    """urllib3's error (raised as is: no retries in the pool) to a reason."""
    text = str(err)
    if isinstance(err, SSLError):
        return SampleFailure("tls_error", text)
    if isinstance(err, NewConnectionError | ProtocolError):  # NewConnection is a ConnectTimeout
        return SampleFailure("connection_error", text)
    if isinstance(err, UrllibTimeout):
        return SampleFailure("timeout", text)
    if isinstance(err, LocationValueError):
        return SampleFailure("bad_url", text)
    return SampleFailure("fetch_error", text)


def _redirect(resp: BaseHTTPResponse) -> str | None:
    """The Location of a redirect (an empty one too: it loops to too_many_redirects)."""
    if resp.status in _REDIRECTS and "Location" in resp.headers:
        return str(resp.headers["Location"])
    return None


def _release(resp: BaseHTTPResponse) -> None:
    """Hand the connection back: a fully read body already did; otherwise close it first,
    so a half-read response never serves the next request."""
    resp.close()
    resp.release_conn()


class Fetcher:
    """Everything one worker process shares across threads: guard, DNS cache, limits, robots."""

    def __init__(self, cfg: FetchConfig, resolver: Resolver | None = None, share: float = 1.0):
        self.cfg = cfg
        self.guard = AddressGuard(
            cfg.allow_private_networks,
            cfg.allowed_networks,
            resolver,
            cfg.dns_cache_ttl_s,
            timeout_s=cfg.connect_timeout_s,
            connect_to=cfg.connect_to,
        )
        concurrency = max(1, int(cfg.per_domain_concurrency * share))
        rate = cfg.per_domain_rate_per_s * share if cfg.per_domain_rate_per_s else None
        self.limiter = DomainLimiter(concurrency, rate)
        self.directives = frozenset(d.lower() for d in cfg.optout_directives)
        self.robots = (
            RobotsCache(agent_token(cfg.user_agent), self._fetch_robots) if cfg.robots_txt else None
        )
        self._local = threading.local()

    def pool(self) -> urllib3.PoolManager:
        """This thread's connection pools (no proxies, netrc or cookies from anywhere)."""
        manager: urllib3.PoolManager | None = getattr(self._local, "pool", None)
        if manager is None:
            headers = urllib3.util.make_headers(accept_encoding=True)
            headers.update({"User-Agent": self.cfg.user_agent, "Accept": "*/*"})
            manager = guarded_pool_manager(self.guard, pool_size=4, headers=headers)
            self._local.pool = manager
        return manager

    def _fetch_robots(self, url: str) -> tuple[int, bytes]:
        """robots.txt with up to five redirects, each hop checked (RFC 9309 2.3.1.2)."""
        deadline = time.monotonic() + self.cfg.total_timeout_s
        current = url
        with Watchdog(self.cfg.total_timeout_s):
            for hop in range(6):
                self._check_hop(current, hop)
                resp = self._request(current, deadline)
                try:
                    location = _redirect(resp)
                    if location is not None:
                        current = urljoin(current, location)
                        continue
                    if resp.status >= 300:
                        return max(resp.status, 404) if resp.status < 400 else resp.status, b""
                    buf = io.BytesIO()
                    self._read_body(resp, deadline, _ROBOTS_MAX, buf)
                    return resp.status, buf.getvalue()
                finally:
                    _release(resp)
        return 404, b""  # more than five redirects: unavailable, which RFC 9309 treats as 4xx

    def _check_hop(self, url: str, hop: int) -> tuple[str, str]:
        try:
            parts = urlsplit(url)
        except ValueError as err:
            raise SampleFailure("redirect_blocked" if hop else "bad_url", str(err)) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            if hop:
                raise SampleFailure("redirect_blocked", f"redirect to scheme {scheme!r}")
            raise SampleFailure("bad_scheme", f"scheme {scheme or '(none)'!r} is not http(s)")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as err:
            raise SampleFailure("bad_url", str(err)) from None
        host = parts.hostname or ""
        try:
            self.guard.check(host, port)
        except SampleFailure as failure:
            if hop and failure.reason == "private_address":
                raise SampleFailure("redirect_blocked", failure.detail) from None
            raise
        return host, f"{scheme}://{parts.netloc.lower()}"

    def _request(self, url: str, deadline: float) -> BaseHTTPResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SampleFailure("timeout", f"total deadline of {self.cfg.total_timeout_s}s passed")
        timeout = urllib3.Timeout(
            connect=min(self.cfg.connect_timeout_s, remaining),
            read=min(self.cfg.read_timeout_s, remaining),
        )
        try:
            return self.pool().urlopen(
                "GET", url, redirect=False, retries=False, preload_content=False, timeout=timeout
            )
        except HTTPError as err:
            raise _classify(err) from None

    def _read_body(self, resp: BaseHTTPResponse, deadline: float, cap: int, sink: BinaryIO) -> int:
        """Stream into `sink` under the cap and the deadline; returns the size. A failure
        leaves a partial body in the sink, which the caller discards."""
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > cap:
            raise SampleFailure("too_large", f"Content-Length {length} > max_bytes={cap}")
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SampleFailure(
                    "timeout", f"total deadline of {self.cfg.total_timeout_s}s passed"
                )
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(self.cfg.read_timeout_s, remaining))
            try:
                # read1 returns as soon as bytes arrive, so a dribbling server meets the deadline
                chunk = resp.read1(_CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as err:
                raise SampleFailure("timeout", str(err)) from None
            except urllib3.exceptions.DecodeError as err:
                raise SampleFailure("bad_encoding", str(err)) from None
            except (urllib3.exceptions.ProtocolError, OSError) as err:
                raise SampleFailure("truncated", str(err)) from None
            if not chunk:
                return size
            size += len(chunk)
            if size > cap:
                raise SampleFailure("too_large", f"body passed max_bytes={cap}")
            sink.write(chunk)

    def _attempt(self, url: str, sink: BinaryIO, cap: int) -> int:
        deadline = time.monotonic() + self.cfg.total_timeout_s
        timed_out = SampleFailure(
            "timeout",
            f"no answer within read_timeout_s={self.cfg.read_timeout_s} "
            f"or total_timeout_s={self.cfg.total_timeout_s}",
        )  # one text for every timeout, so reruns write the same ledger bytes
        with Watchdog(self.cfg.total_timeout_s) as dog:
            try:
                size = self._hops(url, deadline, sink, cap)
            except SampleFailure as failure:
                if dog.expired or failure.reason == "timeout":
                    raise timed_out from None
                raise
        if dog.expired:  # a close-delimited body cut by the watchdog looks complete
            raise timed_out
        return size

    def _hops(self, url: str, deadline: float, sink: BinaryIO, cap: int) -> int:
        current = url
        for hop in range(self.cfg.max_redirects + 1):
            host, origin = self._check_hop(current, hop)
            if self.robots is not None and not self.robots.allowed(origin, current):
                raise SampleFailure("robots_disallowed", f"{origin}/robots.txt disallows {current}")
            with self.limiter.slot(host):
                resp = self._request(current, deadline)
                try:
                    location = _redirect(resp)
                    if location is not None:
                        current = urljoin(current, location)
                        continue
                    if resp.status >= 400:
                        raise SampleFailure(
                            f"http_{resp.status}", resp.reason or "", _retry_after(resp)
                        )
                    tags = resp.headers.getlist("X-Robots-Tag")
                    if is_opted_out(tags, self.cfg.user_agent, self.directives):
                        raise SampleFailure("optout", "X-Robots-Tag: " + ", ".join(tags))
                    size = self._read_body(resp, deadline, cap, sink)
                finally:
                    _release(resp)
            if not size:
                raise SampleFailure("empty", "zero-byte body")
            return size
        raise SampleFailure("too_many_redirects", f"more than {self.cfg.max_redirects} redirects")

    def fetch(self, url: str, max_bytes: int | None = None) -> bytes:
        """Fetch one URL into memory, under `max_bytes` (default: the fetch section's)."""
        buf = io.BytesIO()
        self._fetch_into(url, buf, self.cfg.max_bytes if max_bytes is None else max_bytes)
        return buf.getvalue()

    def check_url(self, url: str) -> None:
        """Refuse a URL this fetcher would refuse before any request (scheme, private
        address, bad port): for a URL handed to another downloader."""
        self._check_hop(url, 0)

    def fetch_to(self, url: str, path: Path, max_bytes: int) -> int:
        """Stream one URL into `path` (written as path.tmp, renamed when whole), never held
        in memory: for media of any length under `max_bytes`. Returns the size."""
        with atomic_open(path) as f:
            return self._fetch_into(url, f, max_bytes)

    def _fetch_into(self, url: str, sink: BinaryIO, cap: int) -> int:
        """Fetch into `sink`, retrying transient failures with backoff and jitter; each
        attempt starts the sink afresh."""
        attempt = 0
        while True:
            sink.seek(0)
            sink.truncate()
            try:
                return self._attempt(url, sink, cap)
            except SampleFailure as failure:
                if failure.reason not in TRANSIENT_REASONS or attempt >= self.cfg.retries:
                    raise
                if (failure.retry_after or 0.0) > self.cfg.max_retry_after_s:
                    raise  # the server asks for more patience than configured: give up now
                backoff = self.cfg.backoff_s * (2**attempt)
                wait = max(failure.retry_after or 0.0, backoff) * (1 + 0.25 * random.random())
                time.sleep(min(wait, self.cfg.max_retry_after_s))
                attempt += 1


_FETCHERS: dict[tuple[str, str, float], Fetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def get_fetcher(cfg: FetchConfig, share: float = 1.0) -> Fetcher:
    """The process-wide Fetcher for this config: DNS cache, limits and robots persist across
    partitions that the same worker runs."""
    # connect_to is left out of every dump (it is not part of the config hash), so it is
    # keyed on its own: two runs with other targets must not share a guard.
    key = (cfg.model_dump_json(), json.dumps(cfg.connect_to, sort_keys=True), share)
    with _FETCHERS_LOCK:
        if key not in _FETCHERS:
            _FETCHERS[key] = Fetcher(cfg, share=share)
        return _FETCHERS[key]


def fetch_url(url: str, cfg: FetchConfig, resolver: Resolver | None = None) -> bytes:
    """One-off fetch with a fresh Fetcher (tests, the Python API)."""
    return Fetcher(cfg, resolver=resolver).fetch(url)
