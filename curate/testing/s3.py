"""A real S3 API on 127.0.0.1 for tests: moto's server app behind a bounded WSGI server.

The pipeline talks to it exactly as to AWS (s3fs → aiobotocore → HTTP), so object-store
runs are tested end to end without a network. It binds 127.0.0.1 on a free port, answers at
most `max_requests` requests (then 503), and stops itself after `max_seconds`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["S3Server", "serve_s3"]

KEY, SECRET, REGION = "testing", "testing", "us-east-1"


@dataclass
class S3Server:
    """Where the server listens and the options/environment that reach it."""

    endpoint: str
    served: list[int] = field(default_factory=lambda: [0])

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """`storage_options` for a pipeline config or `curate.io.store.location`."""
        return {
            "s3": {
                "endpoint_url": self.endpoint,
                "key": KEY,
                "secret": SECRET,
                "client_kwargs": {"region_name": REGION},
            }
        }

    @property
    def env(self) -> dict[str, str]:
        """Environment that points boto-based tools (and `curate cat`) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    @property
    def requests(self) -> int:
        return self.served[0]


def _bounded(app: Any, limit: int, served: list[int]) -> Callable[..., Iterable[bytes]]:
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            served[0] += 1
            over = served[0] > limit
        if over:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"request budget of this test server spent"]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    return wrapped


@contextmanager
def serve_s3(
    buckets: tuple[str, ...] = ("curate",), *, max_requests: int = 50_000, max_seconds: float = 900
) -> Iterator[S3Server]:
    """Start the server with `buckets` created; stop it on exit or after `max_seconds`."""
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    app = DomainDispatcherApplication(create_backend_app)
    served = [0]
    httpd = make_server(
        "127.0.0.1",
        0,
        _bounded(app, max_requests, served),
        threaded=True,
        request_handler=Quiet,
    )
    server = S3Server(f"http://127.0.0.1:{httpd.server_port}", served)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    timer = threading.Timer(max_seconds, httpd.shutdown)
    timer.daemon = True
    timer.start()
    try:
        from curate.io.store import location

        plain = {"s3": {k: v for k, v in server.options["s3"].items() if k != "client_kwargs"}}
        for bucket in buckets:  # us-east-1 takes no location constraint, so name no region
            location(f"s3://{bucket}", plain).fs.mkdir(bucket)
        yield server
    finally:
        timer.cancel()
        httpd.shutdown()
        thread.join(timeout=10)
