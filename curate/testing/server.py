"""A bounded local HTTP server for the synthetic web, with one route per failure mode.

Download tests must hit real sockets (timeouts, truncation, redirects) yet stay hermetic,
so the server binds 127.0.0.1 on an OS-chosen port and stops itself after a request
budget or a deadline, even if a test forgets to close it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["BIG_BODY_BYTES", "WebServer", "serve_web"]

BIG_BODY_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024
_BIG_FIRST = b"\xff\xd8\xff\xe0" + bytes(_CHUNK - 4)  # looks like a JPEG to a sniffer
_BIG_REST = bytes(_CHUNK)
_SLOW_INTERVAL_S = 0.5
_SLOW_GIVE_UP_S = 60.0
_MAX_HOPS = 50
_NAME = re.compile(r"^[0-9a-z_][0-9a-z_.]*$")
_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
    ".json": "application/json",
}
_HTML = (
    b"<!DOCTYPE html><html><head><title>Gallery</title></head><body>"
    + (b"<p>This image has moved. Please enable JavaScript.</p>" * 8)
    + b"</body></html>\n"
)
_SILENT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


def _ctype(name: str) -> str:
    return _TYPES.get(Path(name).suffix, "application/octet-stream")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: WebServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request, open_=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._track(request, open_=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-response are normal here; anything else still prints."""
        if not isinstance(sys.exc_info()[1], _SILENT):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "curate-testweb/1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 30  # idle keep-alive connections give up instead of pinning a thread
    server: _HTTPServer
    _head = False

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; tests read `WebServer.requests_served` instead."""

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    # -- plumbing ----------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        owner = self.server.owner
        if not owner._admit():
            self.close_connection = True  # over budget: hang up without answering
            return
        self._head = head
        path = urlsplit(self.path).path
        owner._count_hit(path)
        try:
            self._route(path)
            self.wfile.flush()
        except _SILENT:
            self.close_connection = True
        finally:
            owner._finish_request()

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _status(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, f"{status} {self.responses[status][0]}\n".encode(), "text/plain", headers
        )

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _image(self, data: bytes, name: str, headers: dict[str, str] | None = None) -> None:
        self._send(200, data, _ctype(name), headers)

    def _stopping(self) -> bool:
        return self.server.owner._stopped.is_set()

    # -- routes ------------------------------------------------------------------------

    def _route(self, path: str) -> None:
        if path == "/robots.txt":
            moved = self.server.owner._read_root("robots-moved-to.txt")
            if moved is not None:
                return self._redirect(moved.decode().strip())
            robots = self.server.owner._read_root("robots.txt")
            if robots is None:
                return self._status(404)
            return self._send(200, robots, "text/plain")
        if path.startswith("/root/") and _NAME.match(path[6:]):
            body = self.server.owner._read_root(path[6:])
            return self._status(404) if body is None else self._send(200, body, "text/plain")
        parts = path.split("/")[1:]
        name = parts[-1] if parts else ""
        data = self.server.owner._read(name) if _NAME.match(name) and ".." not in name else None
        if data is None or parts[0] not in ("img", "fault"):
            return self._status(404)
        if parts[0] == "img" and len(parts) == 2:
            return self._image(data, name)
        if len(parts) == 4 and parts[1] == "redirect" and parts[2].isdigit():
            hops = int(parts[2])
            if hops > _MAX_HOPS:
                return self._status(404)
            if hops == 0:
                return self._image(data, name)
            nxt = f"/fault/redirect/{hops - 1}/{name}" if hops > 1 else f"/img/{name}"
            return self._redirect(nxt)
        if len(parts) == 4 and parts[1] == "redirect-to":
            return self._redirect(bytes.fromhex(parts[2]).decode())  # to any URL, for SSRF tests
        if len(parts) == 4 and parts[1] == "flaky" and parts[2].isdigit():
            if self.server.owner.hits(path) <= int(parts[2]):
                return self._status(503, {"Retry-After": "0"})
            return self._image(data, name)
        if len(parts) == 4 and parts[1] == "retry-after" and parts[2].isdigit():
            return self._status(503, {"Retry-After": parts[2]})  # always busy, asks for patience
        if len(parts) == 4 and parts[1] == "hold" and parts[2].isdigit():
            with self.server.owner._holding():  # a slow origin, to observe client concurrency
                time.sleep(int(parts[2]) / 1000)
            return self._image(data, name)
        if len(parts) != 3:
            return self._status(404)
        kind = parts[1]
        if kind in ("404", "410", "500"):
            return self._status(int(kind))
        if kind == "429":
            if self.server.owner.hits(path) == 1:
                return self._status(429, {"Retry-After": "1"})
            return self._image(data, name)
        if kind == "redirect-loop":
            return self._redirect(path)
        if kind == "optout":
            return self._image(data, name, {"X-Robots-Tag": "noai"})
        if kind == "optout-other":
            return self._image(data, name, {"X-Robots-Tag": "otherbot: noai"})
        if kind == "empty":
            return self._image(b"", name)
        if kind == "html":
            return self._send(200, _HTML, "image/jpeg")
        if kind == "truncated":
            return self._partial(data, name)
        if kind == "slow":
            return self._slow(data, name)
        if kind == "slow-headers":
            return self._slow_headers()
        if kind == "gzip-stall":
            return self._gzip_stall()
        if kind in ("big", "big-chunked"):
            return self._big(chunked=kind == "big-chunked")
        return self._status(404)

    def _headers_only(self, ctype: str, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _partial(self, data: bytes, name: str) -> None:
        """Promise the whole file, send half, then hang up."""
        self._headers_only(_ctype(name), len(data))
        self.close_connection = True
        if not self._head:
            self.wfile.write(data[: len(data) // 2])

    def _slow(self, data: bytes, name: str) -> None:
        """Trickle one byte per interval until the client leaves or a minute passes."""
        self._headers_only(_ctype(name), len(data))
        self.close_connection = True
        if self._head:
            return
        deadline = time.monotonic() + _SLOW_GIVE_UP_S
        for i in range(len(data)):
            if self._stopping() or time.monotonic() > deadline:
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(_SLOW_INTERVAL_S)

    def _slow_headers(self) -> None:
        """Status line, then header bytes one per interval: per-read timeouts never fire."""
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        deadline = time.monotonic() + _SLOW_GIVE_UP_S
        for byte in b"X-Padding: " + b"a" * 4096:
            if self._stopping() or time.monotonic() > deadline:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(_SLOW_INTERVAL_S)

    def _gzip_stall(self) -> None:
        """A gzip body of endless empty deflate blocks: bytes flow, nothing decodes."""
        import zlib

        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")
        self.end_headers()
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        deadline = time.monotonic() + _SLOW_GIVE_UP_S
        while not self._stopping() and time.monotonic() < deadline:
            self.wfile.write(comp.flush(zlib.Z_SYNC_FLUSH) or comp.compress(b""))
            self.wfile.flush()
            time.sleep(0.05)

    def _big(self, chunked: bool) -> None:
        """Stream 64 MiB of JPEG-looking bytes, with or without a Content-Length."""
        self._headers_only("image/jpeg", None if chunked else BIG_BODY_BYTES)
        if self._head:
            return
        for k in range(BIG_BODY_BYTES // _CHUNK):
            if self._stopping():
                self.close_connection = True
                return
            block = _BIG_FIRST if k == 0 else _BIG_REST
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                self.wfile.write(block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class WebServer:
    """Handle on a running server: where it listens, how busy it was, and how to stop it.

    Create it through `serve_web`, which starts it and guarantees it is stopped.
    """

    def __init__(self, root: Path, max_requests: int, max_seconds: float) -> None:
        self.files = Path(root) / "files"
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._served = 0
        self._hits: dict[str, int] = {}
        self._in_flight = 0
        self._holds = 0
        self._hold_peak = 0
        self._peak = 0
        self._starts: list[float] = []
        self._conns: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler, bind_and_activate=True)
        self._httpd.owner = self
        host, port = self._httpd.server_address[:2]
        self.port = int(port)
        self.base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(max_seconds, self.shutdown)
        self._timer.daemon = True

    def connect_to(self, origin: str) -> dict[str, str]:
        """A `fetch.connect_to` entry that sends `origin`'s connections (`http://host` or
        `http://host:port`) here: URLs can then name a fixed host whatever port the OS gave
        this server, and uids and sample json stay the same from run to run."""
        parts = urlsplit(origin)
        return {f"{parts.hostname}:{parts.port or 80}": f"127.0.0.1:{self.port}"}

    def _start(self) -> None:
        self._thread.start()
        self._timer.start()

    @property
    def requests_served(self) -> int:
        """Requests admitted so far (each redirect hop and retry counts)."""
        with self._lock:
            return self._served

    @property
    def stopped(self) -> bool:
        """True once the server no longer answers: budget, deadline or shutdown()."""
        return self._stopped.is_set()

    def hits(self, path: str) -> int:
        """How many requests a path has had (every route is counted)."""
        with self._lock:
            return self._hits.get(path, 0)

    def shutdown(self) -> None:
        """Stop accepting, hang up open connections, and end streaming responses. Idempotent."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            conns = list(self._conns)
        self._timer.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._httpd.shutdown()
        self._httpd.server_close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- used by the handler -------------------------------------------------------------

    def _track(self, conn: socket.socket, open_: bool) -> None:
        """Remember open sockets so shutdown can also close idle keep-alive connections."""
        with self._lock:
            if open_:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    @property
    def max_holding(self) -> int:
        """The most /fault/hold/ requests that were waiting at the same moment.

        Unlike max_in_flight, it cannot count a response the client already read while the
        handler thread is still finishing.
        """
        with self._lock:
            return self._hold_peak

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        with self._lock:
            self._holds += 1
            self._hold_peak = max(self._hold_peak, self._holds)
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at the same moment."""
        with self._lock:
            return self._peak

    @property
    def request_starts(self) -> list[float]:
        """time.monotonic() at which each admitted request began."""
        with self._lock:
            return list(self._starts)

    def _admit(self) -> bool:
        with self._lock:
            if self._stopped.is_set() or self._served >= self.max_requests:
                return False
            self._served += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._starts.append(time.monotonic())
            return True

    def _finish_request(self) -> None:
        with self._lock:
            self._in_flight -= 1
            done = self._served >= self.max_requests
        if done:
            threading.Thread(target=self.shutdown, daemon=True).start()

    def _count_hit(self, path: str) -> int:
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            return self._hits[path]

    def _read_root(self, name: str) -> bytes | None:
        with contextlib.suppress(OSError):
            return (self.files.parent / name).read_bytes()
        return None

    def _read(self, name: str) -> bytes | None:
        with contextlib.suppress(OSError):  # missing file or a directory
            return (self.files / name).read_bytes()
        return None


@contextlib.contextmanager
def serve_web(
    root: Path, *, max_requests: int = 20000, max_seconds: float = 600.0
) -> Iterator[WebServer]:
    """Serve `root/files` on 127.0.0.1 until the block exits, the budget or the deadline."""
    server = WebServer(root, max_requests=max_requests, max_seconds=max_seconds)
    server._start()
    try:
        yield server
    finally:
        server.shutdown()
