"""Test fixtures with ground truth: a synthetic image–text web and a local server for it.

Shipped inside the package so pipeline tests, benchmarks and demos can all build the same
seeded web offline and check every outcome against `truth.parquet`.
"""

from __future__ import annotations

from curate.testing.server import WebServer, serve_web
from curate.testing.web import SyntheticWeb, build_web

__all__ = ["SyntheticWeb", "WebServer", "build_web", "serve_web"]
