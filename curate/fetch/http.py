"""HTTP(S) fetching of one URL: deadlines, a body cap, retries with backoff, opt-out headers.

Every failure becomes a `SampleFailure` with a specific reason, so the partition loop records
it as a ledger row. Only transient failures (429, 5xx, dropped connections) are retried.
"""

from __future__ import annotations

import random
import re
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
import urllib3

from curate.config import FetchConfig
from curate.errors import SampleFailure

__all__ = ["TRANSIENT_REASONS", "fetch_url", "is_opted_out", "make_session"]

TRANSIENT_STATUS = {429, 500, 502, 503, 504}
TRANSIENT_REASONS = {
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "connection_error",
    "truncated",
}
_OPTOUT = {"noai", "noimageai"}
_CHUNK = 64 * 1024


def make_session(cfg: FetchConfig) -> requests.Session:
    """One session per worker thread pool: connection reuse, our user agent, capped redirects."""
    s = requests.Session()
    s.headers["User-Agent"] = cfg.user_agent
    s.max_redirects = cfg.max_redirects
    s.trust_env = False
    return s


def _agent_token(user_agent: str) -> str:
    return user_agent.split("/", 1)[0].strip().lower()


def is_opted_out(headers: list[str], user_agent: str) -> bool:
    """True when an X-Robots-Tag forbids AI use for all agents or for ours.

    `X-Robots-Tag: otherbot: noai` is scoped to another agent and is ignored.
    """
    token = _agent_token(user_agent)
    for value in headers:
        scope = None
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*:(.*)$", value)
        if m and m.group(1).lower() not in _OPTOUT:
            scope, value = m.group(1).lower(), m.group(2)
        directives = {d.strip().lower() for d in value.split(",")}
        if directives & _OPTOUT and scope in (None, token, "*"):
            return True
    return False


def _retry_after(resp: requests.Response) -> float | None:
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


def _classify(err: requests.RequestException) -> SampleFailure:
    text = str(err)
    if isinstance(err, requests.exceptions.SSLError):
        return SampleFailure("tls_error", text)
    if isinstance(err, requests.exceptions.TooManyRedirects):
        return SampleFailure("too_many_redirects", text)
    if isinstance(err, requests.exceptions.Timeout):
        return SampleFailure("timeout", text)
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return SampleFailure("truncated", text)
    if isinstance(err, requests.exceptions.ConnectionError):
        if "NameResolutionError" in text or "Name or service not known" in text:
            return SampleFailure("dns_error", text)
        return SampleFailure("connection_error", text)
    if isinstance(err, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return SampleFailure("bad_url", text)
    return SampleFailure("fetch_error", text)


def _read_body(resp: requests.Response, cfg: FetchConfig, deadline: float) -> bytes:
    """Stream the body under the byte cap and the total deadline; never keep a partial body."""
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > cfg.max_bytes:
        raise SampleFailure("too_large", f"Content-Length {length} > max_bytes={cfg.max_bytes}")
    parts: list[bytes] = []
    size = 0
    raw = resp.raw
    while True:
        # read1 returns as soon as any bytes arrive, so the deadline is checked while a slow
        # server dribbles; read(n) would block until n bytes came.
        try:
            chunk = raw.read1(_CHUNK, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as err:
            raise SampleFailure("timeout", str(err)) from None
        except urllib3.exceptions.DecodeError as err:
            raise SampleFailure("bad_encoding", str(err)) from None
        except urllib3.exceptions.ProtocolError as err:
            raise SampleFailure("truncated", str(err)) from None
        if not chunk:
            break
        size += len(chunk)
        if size > cfg.max_bytes:
            raise SampleFailure("too_large", f"body passed max_bytes={cfg.max_bytes}")
        if time.monotonic() > deadline:
            raise SampleFailure("timeout", f"total deadline of {cfg.total_timeout_s}s passed")
        parts.append(chunk)
    return b"".join(parts)


def _attempt(url: str, cfg: FetchConfig, session: requests.Session) -> bytes:
    deadline = time.monotonic() + cfg.total_timeout_s
    try:
        with session.get(
            url, stream=True, timeout=(cfg.connect_timeout_s, cfg.read_timeout_s)
        ) as resp:
            if resp.status_code >= 400:
                raise SampleFailure(
                    f"http_{resp.status_code}", resp.reason or "", _retry_after(resp)
                )
            if is_opted_out(resp.raw.headers.getlist("X-Robots-Tag"), cfg.user_agent):
                raise SampleFailure("optout", "X-Robots-Tag forbids AI use")
            body = _read_body(resp, cfg, deadline)
    except requests.RequestException as err:
        raise _classify(err) from None
    if not body:
        raise SampleFailure("empty", "zero-byte body")
    return body


def fetch_url(url: str, cfg: FetchConfig, session: requests.Session) -> bytes:
    """Fetch one http(s) URL, retrying transient failures with backoff and jitter."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise SampleFailure("bad_scheme", f"scheme {scheme or '(none)'!r} is not http(s)")
    attempt = 0
    while True:
        try:
            return _attempt(url, cfg, session)
        except SampleFailure as failure:
            if failure.reason not in TRANSIENT_REASONS or attempt >= cfg.retries:
                raise
            backoff = cfg.backoff_s * (2**attempt)
            wait = max(failure.retry_after or 0.0, backoff) * (1 + 0.25 * random.random())
            time.sleep(min(wait, cfg.max_retry_after_s))
            attempt += 1
