"""The HTTP client against the real local fault server: each failure has its own reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from curate.config import FetchConfig
from curate.errors import SampleFailure
from curate.fetch.http import Fetcher, fetch_url, is_opted_out
from curate.testing import SyntheticWeb, WebServer, serve_web

CFG = FetchConfig(
    connect_timeout_s=2,
    read_timeout_s=2,
    total_timeout_s=2,
    retries=2,
    backoff_s=0.05,
    max_retry_after_s=2,
    max_bytes=5_000_000,
    allowed_networks=["127.0.0.1/32"],
)
DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex"})


def first_file(web: SyntheticWeb) -> str:
    route = web.truth.filter(web.truth["route"].str.starts_with("/img/"))["route"][0]
    return route.rsplit("/", 1)[1]


def reason(url: str, cfg: FetchConfig = CFG) -> str:
    with pytest.raises(SampleFailure) as exc:
        fetch_url(url, cfg)
    return exc.value.reason


def test_ok_returns_exact_bytes(web: SyntheticWeb, server: WebServer) -> None:
    name = first_file(web)
    body = fetch_url(f"{server.base_url}/img/{name}", CFG)
    assert body == (web.root / "files" / name).read_bytes()


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("/fault/404/{f}", "http_404"),
        ("/fault/410/{f}", "http_410"),
        ("/fault/500/{f}", "http_500"),
        ("/fault/empty/{f}", "empty"),
        ("/fault/redirect-loop/{f}", "too_many_redirects"),
        ("/fault/truncated/{f}", "truncated"),
        ("/fault/optout/{f}", "optout"),
        ("/img/does-not-exist.jpg", "http_404"),
    ],
)
def test_failures_have_reasons(
    web: SyntheticWeb, server: WebServer, route: str, expected: str
) -> None:
    assert reason(server.base_url + route.format(f=first_file(web))) == expected


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://x/a.jpg", "data:image/png;base64,AA", "/tmp/a.jpg"]
)
def test_bad_schemes_refused_before_io(url: str) -> None:
    assert reason(url) == "bad_scheme"


def test_404_is_not_retried_500_is(web: SyntheticWeb, server: WebServer) -> None:
    name = first_file(web)
    for code, tries in (("404", 1), ("500", 1 + CFG.retries)):
        path = f"/fault/{code}/{name}"
        before = server.hits(path)
        assert reason(server.base_url + path) == f"http_{code}"
        assert server.hits(path) - before == tries


def test_429_honours_retry_after_then_succeeds(web: SyntheticWeb) -> None:
    name = web.truth.filter(web.truth["fault"] == "429")["route"][0].rsplit("/", 1)[1]
    # its own server: the 429 route answers 429 only to a path's first request
    with serve_web(web.root, max_requests=10, max_seconds=30) as server:
        t0 = time.monotonic()
        body = fetch_url(f"{server.base_url}/fault/429/{name}", CFG)
        assert time.monotonic() - t0 >= 0.95  # Retry-After: 1
        assert server.hits(f"/fault/429/{name}") == 2
    assert body == (web.root / "files" / name).read_bytes()


def test_503_twice_then_200(web: SyntheticWeb, server: WebServer) -> None:
    name = first_file(web)
    body = fetch_url(f"{server.base_url}/fault/flaky/2/{name}", CFG)
    assert body == (web.root / "files" / name).read_bytes()
    assert server.hits(f"/fault/flaky/2/{name}") == 3  # path used by this test alone
    one_retry = CFG.model_copy(update={"retries": 1})
    assert reason(f"{server.base_url}/fault/flaky/5/{name}", one_retry) == "http_503"


def test_redirect_chain_is_followed(web: SyntheticWeb, server: WebServer) -> None:
    name = first_file(web)
    body = fetch_url(f"{server.base_url}/fault/redirect/3/{name}", CFG)
    assert body == (web.root / "files" / name).read_bytes()
    short = CFG.model_copy(update={"max_redirects": 2})
    assert reason(f"{server.base_url}/fault/redirect/3/{name}", short) == "too_many_redirects"


def test_slow_body_hits_the_total_deadline(web: SyntheticWeb, server: WebServer) -> None:
    t0 = time.monotonic()
    assert reason(f"{server.base_url}/fault/slow/{first_file(web)}") == "timeout"
    assert time.monotonic() - t0 < CFG.total_timeout_s + 1.0


@pytest.mark.parametrize("route", ["/fault/big/{f}", "/fault/big-chunked/{f}"])
def test_oversized_bodies_are_cut(web: SyntheticWeb, server: WebServer, route: str) -> None:
    assert reason(server.base_url + route.format(f=first_file(web))) == "too_large"


def test_connection_refused_and_dns() -> None:
    assert reason("http://127.0.0.1:9/x.jpg") == "connection_error"
    assert reason("http://no-such-host.invalid/x.jpg") == "dns_error"


def test_optout_scoping() -> None:
    ua = "curate/0.1 (x)"
    assert is_opted_out(["noai"], ua, DIRECTIVES)
    assert is_opted_out(["noindex, nofollow"], ua, DIRECTIVES)
    assert is_opted_out(["NoImageAI"], ua, DIRECTIVES)
    assert is_opted_out(["curate: noai"], ua, DIRECTIVES)
    assert is_opted_out(["*: noimageindex"], ua, DIRECTIVES)
    assert not is_opted_out(["otherbot: noai"], ua, DIRECTIVES)
    assert not is_opted_out(["nofollow, noarchive"], ua, DIRECTIVES)
    assert not is_opted_out(["noindex"], ua, frozenset({"noai"}))
    # a proxy may merge two header lines into one value; our scope still counts
    assert is_opted_out(["otherbot: noindex, curate: noai"], ua, DIRECTIVES)
    assert not is_opted_out(["curate: nofollow, otherbot: noai"], ua, DIRECTIVES)


def test_optout_other_agent_is_fetched(web: SyntheticWeb, server: WebServer) -> None:
    name = first_file(web)
    body = fetch_url(f"{server.base_url}/fault/optout-other/{name}", CFG)
    assert body == (web.root / "files" / name).read_bytes()
    assert requests.get(f"{server.base_url}/fault/optout/{name}", timeout=5).headers["X-Robots-Tag"]


def test_one_fetcher_is_shared_by_threads(web: SyntheticWeb, server: WebServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fetcher = Fetcher(CFG)
    name = first_file(web)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(fetcher.fetch, [f"{server.base_url}/img/{name}"] * 24))
    assert set(bodies) == {(web.root / "files" / name).read_bytes()}


@pytest.mark.parametrize("kind", ["slow-headers", "gzip-stall"])
def test_total_deadline_covers_headers_and_compressed_bodies(
    web: SyntheticWeb, server: WebServer, kind: str
) -> None:
    t0 = time.monotonic()
    assert reason(f"{server.base_url}/fault/{kind}/{first_file(web)}") == "timeout"
    assert time.monotonic() - t0 < CFG.total_timeout_s + 1.0


def test_malformed_url_is_bad_url() -> None:
    assert reason("http://[::1/x.jpg") == "bad_url"


def test_retry_after_beyond_the_cap_gives_up_at_once(web: SyntheticWeb, server: WebServer) -> None:
    """A server asking for more patience than max_retry_after_s is not retried early."""
    path = f"/fault/retry-after/120/{first_file(web)}"
    t0 = time.monotonic()
    assert reason(server.base_url + path) == "http_503"
    assert time.monotonic() - t0 < 1.0 and server.hits(path) == 1
    path = f"/fault/retry-after/1/{first_file(web)}"
    assert reason(server.base_url + path) == "http_503"
    assert server.hits(path) == 1 + CFG.retries  # within the cap: retried


def test_fetch_to_streams_into_a_file_and_leaves_nothing_on_failure(
    web: SyntheticWeb, server: WebServer, tmp_path: Path
) -> None:
    name = first_file(web)
    fetcher = Fetcher(CFG)
    dest = tmp_path / "media" / "a.bin"
    size = fetcher.fetch_to(f"{server.base_url}/fault/flaky/1/{name}?to", dest, 5_000_000)
    assert (
        dest.read_bytes() == (web.root / "files" / name).read_bytes()
        and size == dest.stat().st_size
    )
    for url, cap, why in [
        (f"{server.base_url}/fault/big/{name}", 10_000_000, "too_large"),
        (f"{server.base_url}/img/{name}", 100, "too_large"),  # a per-modality cap
        (f"{server.base_url}/fault/truncated/{name}", 5_000_000, "truncated"),
    ]:
        out = tmp_path / f"{why}-{cap}.bin"
        with pytest.raises(SampleFailure) as exc:
            fetcher.fetch_to(url, out, cap)
        assert exc.value.reason == why
        assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
