"""The local web server must produce each fault exactly as the truth table promises."""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from curate.testing import WebServer, build_web, serve_web
from curate.testing.server import BIG_BODY_BYTES


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "files").mkdir()
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    img.save(root / "files" / "a.jpg", "JPEG", quality=90)
    img.save(root / "files" / "b.png", "PNG")
    (root / "secret.txt").write_text("not served")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[WebServer]:
    with serve_web(root, max_seconds=120) as srv:
        yield srv


def _get(
    server: WebServer, path: str, timeout: float | tuple[float, float] = 5
) -> requests.Response:
    return requests.get(server.base_url + path, timeout=timeout)


def _raw_status(server: WebServer, path: str) -> int:
    """Send the path verbatim; requests would normalise away `..` segments."""
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_img_route_serves_exact_bytes(server: WebServer, root: Path) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    for name, ctype in (("a.jpg", "image/jpeg"), ("b.png", "image/png")):
        r = _get(server, f"/img/{name}")
        assert r.status_code == 200
        assert r.content == (root / "files" / name).read_bytes()
        assert r.headers["Content-Type"] == ctype
        assert int(r.headers["Content-Length"]) == len(r.content)


def test_connect_to_sends_a_fixed_origin_here(server: WebServer, root: Path) -> None:
    from curate.config import FetchConfig
    from curate.fetch.http import Fetcher

    assert server.base_url == f"http://127.0.0.1:{server.port}"
    assert server.connect_to("http://site.invalid") == {
        "site.invalid:80": f"127.0.0.1:{server.port}"
    }
    assert server.connect_to("http://site.invalid:8080/x") == {
        "site.invalid:8080": f"127.0.0.1:{server.port}"
    }
    cfg = FetchConfig(allow_private_networks=True, connect_to=server.connect_to("http://s.invalid"))
    data = Fetcher(cfg).fetch("http://s.invalid/img/a.jpg")
    assert data == (root / "files" / "a.jpg").read_bytes()


def test_keep_alive_session_and_head(server: WebServer) -> None:
    with requests.Session() as s:
        for _ in range(3):
            assert s.get(server.base_url + "/img/a.jpg", timeout=5).status_code == 200
        h = s.head(server.base_url + "/img/a.jpg", timeout=5)
        assert h.status_code == 200 and h.content == b"" and int(h.headers["Content-Length"]) > 0


@pytest.mark.parametrize("code", [404, 410, 500])
def test_error_status_routes(server: WebServer, code: int) -> None:
    assert _get(server, f"/fault/{code}/a.jpg").status_code == code


@pytest.mark.parametrize(
    "path", ["/img/missing.jpg", "/nope/a.jpg", "/fault/unknown/a.jpg", "/img/A.JPG", "/"]
)
def test_unknown_paths_are_404(server: WebServer, path: str) -> None:
    assert _get(server, path).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/img/../secret.txt", "/img/..", "/img/..%2fsecret.txt", "/fault/404/../../secret.txt"],
)
def test_path_traversal_is_404(server: WebServer, path: str) -> None:
    assert _raw_status(server, path) == 404


def test_429_then_ok(server: WebServer, root: Path) -> None:
    first = _get(server, "/fault/429/a.jpg")
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    second = _get(server, "/fault/429/a.jpg")
    assert second.status_code == 200
    assert second.content == (root / "files" / "a.jpg").read_bytes()
    assert server.hits("/fault/429/a.jpg") == 2
    assert _get(server, "/fault/429/b.png").status_code == 429  # counted per path


def test_redirect_chain_and_loop(server: WebServer, root: Path) -> None:
    r = _get(server, "/fault/redirect/3/a.jpg")
    assert r.status_code == 200 and len(r.history) == 3
    assert r.content == (root / "files" / "a.jpg").read_bytes()
    assert r.url.endswith("/img/a.jpg")
    assert [h.status_code for h in r.history] == [302, 302, 302]
    assert len(_get(server, "/fault/redirect/0/a.jpg").history) == 0
    with pytest.raises(requests.TooManyRedirects):
        _get(server, "/fault/redirect-loop/a.jpg")


def test_truncated_body(server: WebServer) -> None:
    try:
        r = _get(server, "/fault/truncated/a.jpg")
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
        return
    assert len(r.content) < int(r.headers["Content-Length"])


def test_html_served_as_jpeg(server: WebServer) -> None:
    r = _get(server, "/fault/html/a.jpg")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.content.startswith(b"<!DOCTYPE html>")


def test_optout_headers_and_empty_body(server: WebServer) -> None:
    r = _get(server, "/fault/optout/a.jpg")
    assert r.status_code == 200 and r.headers["X-Robots-Tag"] == "noai"
    r = _get(server, "/fault/optout-other/a.jpg")
    assert r.status_code == 200 and r.headers["X-Robots-Tag"] == "otherbot: noai"
    r = _get(server, "/fault/empty/a.jpg")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"


def test_slow_trickles_bytes(server: WebServer, root: Path) -> None:
    size = (root / "files" / "a.jpg").stat().st_size
    start = time.monotonic()
    with requests.get(server.base_url + "/fault/slow/a.jpg", stream=True, timeout=5) as r:
        assert int(r.headers["Content-Length"]) == size
        got = b"".join(b for _, b in zip(range(2), r.iter_content(chunk_size=1), strict=False))
    assert got == (root / "files" / "a.jpg").read_bytes()[:2]
    assert 0.3 < time.monotonic() - start < 3
    with pytest.raises((requests.ConnectionError, requests.Timeout)):
        _get(server, "/fault/slow/a.jpg", timeout=(2, 0.2))


@pytest.mark.parametrize("chunked", [False, True])
def test_big_body_streams(server: WebServer, chunked: bool) -> None:
    path = "/fault/big-chunked/a.jpg" if chunked else "/fault/big/a.jpg"
    with requests.get(server.base_url + path, stream=True, timeout=5) as r:
        if chunked:
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in r.headers
        else:
            assert int(r.headers["Content-Length"]) == BIG_BODY_BYTES > 30_000_000
        chunks = [c for _, c in zip(range(4), r.iter_content(65536), strict=False)]
    assert chunks[0][:3] == b"\xff\xd8\xff"
    assert sum(map(len, chunks)) == 4 * 65536


def test_stops_after_max_requests(root: Path) -> None:
    with serve_web(root, max_requests=3) as srv:
        for _ in range(3):
            assert requests.get(srv.base_url + "/img/a.jpg", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.base_url + "/img/a.jpg", timeout=5)
        assert srv.requests_served == 3


def test_stops_after_max_seconds(root: Path) -> None:
    with serve_web(root, max_seconds=1.0) as srv:
        assert requests.get(srv.base_url + "/img/a.jpg", timeout=5).status_code == 200
        time.sleep(1.5)
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.base_url + "/img/a.jpg", timeout=5)


def test_stops_on_exit_and_drops_pooled_connections(root: Path) -> None:
    with requests.Session() as s:
        with serve_web(root) as srv:
            assert s.get(srv.base_url + "/img/a.jpg", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            s.get(srv.base_url + "/img/a.jpg", timeout=5)


def test_server_is_quiet(root: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with serve_web(root) as srv:
        requests.get(srv.base_url + "/img/a.jpg", timeout=5)
        requests.get(srv.base_url + "/img/missing.jpg", timeout=5)
        with requests.get(srv.base_url + "/fault/big/a.jpg", stream=True, timeout=5) as r:
            next(r.iter_content(1024))
        time.sleep(0.1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _outcome(base_url: str, route: str) -> tuple[str, str | None]:
    """A minimal reference client: what a careful fetcher should conclude for a route."""
    try:
        for attempt in range(2):
            r = requests.get(base_url + route, timeout=(2, 0.3), stream=True)
            if r.status_code == 429 and attempt == 0:
                time.sleep(float(r.headers["Retry-After"]))
                continue
            break
        with r:
            if r.status_code != 200:
                return "failed", f"http_{r.status_code}"
            if int(r.headers.get("Content-Length", 0)) > 30_000_000:
                return "failed", "too_large"
            parts: list[bytes] = []
            size = 0
            for chunk in r.iter_content(65536):
                parts.append(chunk)
                size += len(chunk)
                if size > 30_000_000:
                    return "failed", "too_large"
            body = b"".join(parts)
            tag = r.headers.get("X-Robots-Tag", "")
    except requests.TooManyRedirects:
        return "failed", "too_many_redirects"
    except requests.exceptions.ChunkedEncodingError:
        return "failed", "truncated"
    except (requests.ConnectionError, requests.Timeout):
        return "failed", "timeout"
    if not body:
        return "failed", "empty"
    if "noai" in tag and ":" not in tag:
        return "failed", "optout"
    if body[:2] != b"\xff\xd8" and body[:4] != b"\x89PNG" and body[8:12] != b"WEBP":
        return "failed", "not_image"
    try:
        Image.open(io.BytesIO(body)).load()
    except OSError:
        return "failed", "decode_error"
    return "ok", None


def test_truth_matches_server_behaviour(tmp_path: Path) -> None:
    web = build_web(tmp_path, n_items=45, seed=11)
    rows = web.truth.filter(
        (web.truth["role"] == "fault") | (web.truth["item_id"].is_in(["000000", "000001"]))
    )
    with serve_web(web.root, max_seconds=60) as srv:
        for row in rows.iter_rows(named=True):
            got = _outcome(srv.base_url, row["route"])
            assert got == (row["expected_status"], row["expected_reason"]), row
