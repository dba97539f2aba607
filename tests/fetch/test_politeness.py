"""Per-domain concurrency and rate, robots.txt once per host — measured at the server."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

import curate
from curate.config import FetchConfig
from curate.errors import SampleFailure
from curate.fetch.http import Fetcher
from curate.testing import WebServer, serve_web

CFG = FetchConfig(retries=0, total_timeout_s=10, allowed_networks=["127.0.0.1/32"])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebServer]:
    files = tmp_path / "files"
    files.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, "JPEG")
    for i in range(12):
        (files / f"{i:03d}.jpg").write_bytes(buf.getvalue())
    (tmp_path / "robots.txt").write_text(
        "User-agent: otherbot\nDisallow: /\n\nUser-agent: curate\nDisallow: /fault/\n"
    )
    with serve_web(tmp_path, max_requests=500, max_seconds=120) as srv:
        yield srv


def test_concurrency_per_domain_is_capped(site: WebServer) -> None:
    fetcher = Fetcher(CFG.model_copy(update={"per_domain_concurrency": 2}))
    urls = [f"{site.base_url}/fault/hold/150/{i:03d}.jpg" for i in range(10)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetcher.fetch, urls))
    assert site.max_holding == 2


def test_rate_per_domain_spaces_request_starts(site: WebServer) -> None:
    fetcher = Fetcher(CFG.model_copy(update={"per_domain_rate_per_s": 20}))
    urls = [f"{site.base_url}/img/{i:03d}.jpg" for i in range(10)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetcher.fetch, urls))
    starts = site.request_starts
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 10
    assert min(gaps) > 0.04  # 1/20 s apart, less scheduling noise
    assert starts[-1] - starts[0] >= 0.9 * 9 / 20


def test_robots_txt_fetched_once_and_obeyed(site: WebServer) -> None:
    fetcher = Fetcher(CFG.model_copy(update={"robots_txt": True}))
    ok = [f"{site.base_url}/img/{i:03d}.jpg" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        assert all(pool.map(fetcher.fetch, ok))
    with pytest.raises(SampleFailure) as exc:
        fetcher.fetch(f"{site.base_url}/fault/hold/1/000.jpg")
    assert exc.value.reason == "robots_disallowed"
    assert site.hits("/fault/hold/1/000.jpg") == 0  # skipped before the media request
    assert site.hits("/robots.txt") == 1


def test_missing_robots_txt_allows_everything(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    (files / "a.png").write_bytes(buf.getvalue())
    with serve_web(tmp_path, max_requests=20, max_seconds=30) as srv:
        fetcher = Fetcher(CFG.model_copy(update={"robots_txt": True}))
        assert fetcher.fetch(f"{srv.base_url}/img/a.png") == buf.getvalue()
        assert srv.hits("/robots.txt") == 1


def test_pipeline_splits_the_domain_limit_across_workers(site: WebServer, tmp_path: Path) -> None:
    urls = [f"{site.base_url}/fault/hold/200/{i:03d}.jpg" for i in range(12)]
    pl.DataFrame({"url": urls, "caption": ["green"] * 12}).write_parquet(tmp_path / "u.parquet")
    cfg = {
        "sources": [{"path": str(tmp_path / "u.parquet")}],
        "ingest": {"samples_per_partition": 6},
        "fetch": {"allowed_networks": ["127.0.0.1/32"], "per_domain_concurrency": 2, "threads": 8},
        "engine": {"n_workers": 2},
        "dedup": {"enabled": False},  # twelve copies of one image, on purpose
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    assert res.funnel["written"] == 12
    assert site.max_holding <= 2


def test_robots_txt_redirect_is_followed(site: WebServer, tmp_path: Path) -> None:
    (tmp_path / "robots.txt").unlink()
    (tmp_path / "moved.txt").write_text("User-agent: *\nDisallow: /\n")
    (tmp_path / "robots-moved-to.txt").write_text("/root/moved.txt")
    fetcher = Fetcher(CFG.model_copy(update={"robots_txt": True}))
    with pytest.raises(SampleFailure) as exc:
        fetcher.fetch(f"{site.base_url}/img/000.jpg")
    assert exc.value.reason == "robots_disallowed"
    assert site.hits("/img/000.jpg") == 0 and site.hits("/root/moved.txt") == 1
