"""SSRF: schemes, private targets in every spelling, redirect hops, pinning, TLS."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from curate.config import FetchConfig
from curate.errors import SampleFailure
from curate.fetch.http import Fetcher
from curate.fetch.safety import AddressGuard, parse_ip_literal
from curate.testing import SyntheticWeb, WebServer

STRICT = FetchConfig(connect_timeout_s=2, read_timeout_s=2, total_timeout_s=3, retries=0)
LOCAL = STRICT.model_copy(update={"allowed_networks": ["127.0.0.1/32"]})


class StubResolver:
    """Answers from a table and counts lookups; stands in for DNS that 127.0.0.1 can't fake."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.table[host]


def failure(fetcher: Fetcher, url: str) -> SampleFailure:
    with pytest.raises(SampleFailure) as exc:
        fetcher.fetch(url)
    return exc.value


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.5"],
        ["172.16.3.4"],
        ["192.168.1.1"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["224.0.0.1"],
        ["240.0.0.1"],
        ["0.0.0.0"],
        ["100.64.0.1"],
        ["::1"],
        ["fe80::1"],
        ["fc00::1"],
        ["ff02::1"],
        ["::ffff:127.0.0.1"],
        ["::ffff:10.1.2.3"],
        ["2002:7f00:1::"],  # 6to4 wrapping 127.0.0.1
        ["93.184.216.34", "10.0.0.1"],  # one private answer taints the host
    ],
)
def test_private_resolutions_are_refused_before_connecting(addresses: list[str]) -> None:
    resolver = StubResolver({"evil.test": addresses})
    f = failure(Fetcher(STRICT, resolver=resolver), "http://evil.test/a.jpg")
    assert f.reason == "private_address"
    assert resolver.calls == ["evil.test"]


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "017700000001",
        "[::1]",
        "[::ffff:7f00:1]",
        "[::ffff:169.254.169.254]",
        "localhost",
    ],
)
def test_numeric_and_local_forms_are_refused(host: str) -> None:
    resolver = StubResolver({"localhost": ["127.0.0.1"]})
    f = failure(Fetcher(STRICT, resolver=resolver), f"http://{host}:8080/a.jpg")
    assert f.reason == "private_address"
    assert resolver.calls == ([] if host != "localhost" else ["localhost"])


def test_literal_parsing_matches_libc() -> None:
    assert str(parse_ip_literal("2130706433")) == "127.0.0.1"
    assert str(parse_ip_literal("0x7f.1")) == "127.0.0.1"
    assert parse_ip_literal("example.com") is None
    assert parse_ip_literal("1e100.net") is None


def test_default_refuses_the_local_server(web: SyntheticWeb, server: WebServer) -> None:
    name = web.truth["route"][0].rsplit("/", 1)[1]
    before = server.requests_served
    assert failure(Fetcher(STRICT), f"{server.base_url}/img/{name}").reason == "private_address"
    assert server.requests_served == before


def test_connection_goes_to_the_checked_address(web: SyntheticWeb, server: WebServer) -> None:
    """cdn.test exists only in the stub: the body arrives only if we connect where we checked."""
    route = web.truth.filter(web.truth["route"].str.starts_with("/img/"))["route"][0]
    port = server.base_url.rsplit(":", 1)[1]
    resolver = StubResolver({"cdn.test": ["127.0.0.1"]})
    fetcher = Fetcher(LOCAL, resolver=resolver)
    expected = (web.root / "files" / route.rsplit("/", 1)[1]).read_bytes()
    for _ in range(3):
        assert fetcher.fetch(f"http://cdn.test:{port}{route}") == expected
    assert resolver.calls == ["cdn.test"]  # one lookup, then the per-worker DNS cache


def test_a_resolver_that_never_answers_is_a_dns_error_within_the_connect_timeout() -> None:
    """getaddrinfo cannot be interrupted; the fetch stops waiting for it instead."""
    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(30)  # a resolver whose servers drop every query
        return ["127.0.0.1"]

    cfg = LOCAL.model_copy(update={"connect_timeout_s": 0.3})
    t0 = time.monotonic()
    try:
        f = failure(Fetcher(cfg, resolver=hanging), "http://slow-dns.test/a.jpg")
    finally:
        release.set()
    assert time.monotonic() - t0 < 3
    assert f.reason == "dns_error" and "within 0.3s" in f.detail


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/img/{name}",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/img/{name}",
        "http://2130706434:{port}/img/{name}",
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
    ],
)
def test_every_redirect_hop_is_rechecked(web: SyntheticWeb, server: WebServer, target: str) -> None:
    name = web.truth["route"][0].rsplit("/", 1)[1]
    port = server.base_url.rsplit(":", 1)[1]
    location = target.format(port=port, name=name).encode().hex()
    url = f"{server.base_url}/fault/redirect-to/{location}/{name}"
    f = failure(Fetcher(LOCAL), url)
    assert f.reason == "redirect_blocked", f


def test_guard_allowlist_is_exact() -> None:
    import ipaddress

    guard = AddressGuard(allowed_networks=["127.0.0.1/32"])
    assert guard.permitted(ipaddress.ip_address("127.0.0.1"))
    assert guard.permitted(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not guard.permitted(ipaddress.ip_address("127.0.0.2"))
    assert guard.permitted(ipaddress.ip_address("8.8.8.8"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HTTPS on 127.0.0.1 with a certificate from an untrusted CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 100)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(folder), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_untrusted_certificate_is_tls_error_never_http(tls_server: str) -> None:
    f = failure(Fetcher(LOCAL.model_copy(update={"retries": 2})), f"{tls_server}/a.jpg")
    assert f.reason == "tls_error"  # not retried, not downgraded: TLS errors are final
    assert "CERTIFICATE_VERIFY_FAILED" in f.detail
