"""fetch.connect_to: a host:port's connections go elsewhere, everything else keeps the URL's
host (Host header, redirects, hashes), and the guard still judges the address dialled."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from curate.config import FetchConfig, PipelineConfig, config_hash, fetch_hash
from curate.errors import SampleFailure
from curate.fetch.http import Fetcher, get_fetcher
from curate.fetch.safety import AddressGuard, split_host_port

HOST = "demo.curate.invalid"
STRICT = FetchConfig(connect_timeout_s=2, read_timeout_s=2, total_timeout_s=3, retries=0)
LOCAL = STRICT.model_copy(update={"allowed_networks": ["127.0.0.1/32"]})


class Resolver:
    """DNS from a table, counting lookups; an unknown name fails as getaddrinfo would."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers with the Host header it got; `/go?to=URL` redirects there."""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        type(self).hits += 1
        query = parse_qs(urlsplit(self.path).query)
        if "to" in query:
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"Host: {self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    hits = 0


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    """Port of a server on 127.0.0.1 that echoes the Host header."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def mapped(cfg: FetchConfig, port: int, key: str = f"{HOST}:80") -> FetchConfig:
    return FetchConfig.model_validate(
        {**cfg.model_dump(), "connect_to": {key: f"127.0.0.1:{port}"}}
    )


def failure(fetcher: Fetcher, url: str) -> SampleFailure:
    with pytest.raises(SampleFailure) as exc:
        fetcher.fetch(url)
    return exc.value


def test_the_request_keeps_the_urls_host_and_needs_no_dns(echo: int) -> None:
    resolver = Resolver()
    fetcher = Fetcher(mapped(LOCAL, echo), resolver=resolver)
    assert fetcher.fetch(f"http://{HOST}/a.jpg") == f"Host: {HOST}".encode()
    assert (
        fetcher.fetch(f"http://{HOST.upper()}./b.jpg") == f"Host: {HOST}".encode()
    )  # urllib3 form
    assert resolver.calls == []


def test_other_hosts_and_other_ports_resolve_as_before(echo: int) -> None:
    resolver = Resolver({"other.test": ["127.0.0.1"]})
    fetcher = Fetcher(mapped(LOCAL, echo), resolver=resolver)
    assert fetcher.fetch(f"http://other.test:{echo}/a.jpg") == f"Host: other.test:{echo}".encode()
    assert failure(fetcher, f"http://{HOST}:8080/a.jpg").reason == "dns_error"  # :80 is mapped
    assert resolver.calls == ["other.test", HOST]


def test_a_private_target_is_refused_without_an_allowance(echo: int) -> None:
    before = _Echo.hits
    f = failure(Fetcher(mapped(STRICT, echo), resolver=Resolver()), f"http://{HOST}/a.jpg")
    assert f.reason == "private_address"
    assert "connect_to 127.0.0.1" in f.detail
    named = STRICT.model_copy(update={"connect_to": {f"{HOST}:80": "intranet.test:80"}})
    resolver = Resolver({"intranet.test": ["10.1.2.3"]})
    assert failure(Fetcher(named, resolver=resolver), f"http://{HOST}/a.jpg").reason == (
        "private_address"
    )
    assert resolver.calls == ["intranet.test"]  # a named target is resolved, then judged
    assert _Echo.hits == before  # nothing was sent


def test_redirects_are_checked_per_hop(echo: int) -> None:
    resolver = Resolver({"internal.test": ["10.0.0.5"]})
    fetcher = Fetcher(mapped(LOCAL, echo), resolver=resolver)
    # a relative redirect stays on the mapped host; one to another host meets the guard
    assert fetcher.fetch(f"http://{HOST}/go?to=/b.jpg") == f"Host: {HOST}".encode()
    f = failure(fetcher, f"http://{HOST}/go?to=http://internal.test/b.jpg")
    assert f.reason == "redirect_blocked"
    assert resolver.calls == ["internal.test"]


def test_the_guard_dials_the_targets_port() -> None:
    guard = AddressGuard(allow_private=True, connect_to={"Demo.Curate.Invalid:80": "[::1]:8080"})
    assert guard.pinned(HOST, 80) == ("::1", 8080)
    assert guard.pinned(HOST + ".", 80) == ("::1", 8080)
    assert guard.route(HOST, 443) == (HOST, 443)
    assert split_host_port("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        split_host_port("nohost")


@pytest.mark.parametrize(
    "entry", ["host", "host:0", "host:99999", "host:http", ":80", "http://host:80", "u@host:80"]
)
def test_entries_must_be_host_and_port(entry: str) -> None:
    with pytest.raises(ValidationError):
        FetchConfig(connect_to={entry: "127.0.0.1:80"})
    with pytest.raises(ValidationError):
        FetchConfig(connect_to={"host:80": entry})


def test_entries_are_canonical() -> None:
    cfg = FetchConfig(connect_to={"CDN.Example.com.:443": " [::1]:8443"})
    assert cfg.connect_to == {"cdn.example.com:443": "[::1]:8443"}


def test_it_stays_out_of_dumps_and_hashes_but_not_out_of_the_fetcher_cache() -> None:
    base = {"name": "t", "sources": [{"path": "urls.csv"}]}
    plain = PipelineConfig.model_validate(base)
    pinned = PipelineConfig.model_validate({**base, "fetch": {"connect_to": {"a.test:80": "b:1"}}})
    assert "connect_to" not in pinned.model_dump()["fetch"]
    assert fetch_hash(pinned) == fetch_hash(plain)
    assert config_hash(pinned) == config_hash(plain)
    other = pinned.fetch.model_copy(update={"connect_to": {"a.test:80": "b:2"}})
    assert get_fetcher(pinned.fetch) is get_fetcher(pinned.fetch)
    assert get_fetcher(pinned.fetch) is not get_fetcher(other)
    assert get_fetcher(pinned.fetch).guard.route("a.test", 80) == ("b", 1)
