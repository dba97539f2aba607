"""The optional yt-dlp fetcher: options it passes, the reasons it gives, and a platform row
cut into clips through the pipeline with a stand-in yt_dlp module (tests use no network)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import curate
from curate.errors import SampleFailure
from curate.fetch.platform import download, is_platform_url, ytdlp_options
from curate.rundir import RunDir
from curate.testing.media import make_video, segments_for

HOSTS = ["youtube.com", "youtu.be", "vimeo.com"]


def test_platform_hosts_match_by_host_and_subdomain_only() -> None:
    assert is_platform_url("https://www.youtube.com/watch?v=x", HOSTS)
    assert is_platform_url("https://youtu.be/x", HOSTS)
    assert not is_platform_url("https://notyoutube.com/v.mp4", HOSTS)
    assert not is_platform_url("https://example.com/youtube.com.mp4", HOSTS)
    assert not is_platform_url("http://[::1", HOSTS)


def test_options_cap_size_and_height_and_fetch_one_file(tmp_path: Path) -> None:
    opts = ytdlp_options(tmp_path / "v.mp4", 1000, 480, 7.0)
    assert opts["max_filesize"] == 1000 and opts["socket_timeout"] == 7.0
    assert opts["format"].startswith("b[height<=480]")  # progressive: no ffmpeg merge
    assert opts["noplaylist"] and opts["outtmpl"] == {"default": str(tmp_path / "v.mp4")}


def test_missing_yt_dlp_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # import fails
    with pytest.raises(SampleFailure) as info:
        download("https://youtu.be/x", tmp_path / "v.mp4", 10, 360, 5)
    assert info.value.reason == "fetcher_missing" and "curate[platform]" in info.value.detail


def _fake_ytdlp(source: Path | None, seen: list[dict[str, Any]]) -> types.ModuleType:
    """A yt_dlp stand-in: copies `source` where yt-dlp would write, or fails like it."""

    class YoutubeDL:
        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            seen.append(options)

        def __enter__(self) -> YoutubeDL:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def download(self, urls: list[str]) -> int:
            if source is None:
                raise RuntimeError("ERROR: [youtube] x: Video unavailable")
            shutil.copyfile(source, self.options["outtmpl"]["default"])
            return 0

    return types.SimpleNamespace(YoutubeDL=YoutubeDL)  # type: ignore[return-value]


def test_unavailable_and_oversized_videos_get_reasons(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setitem(sys.modules, "yt_dlp", _fake_ytdlp(None, seen))
    with pytest.raises(SampleFailure) as info:
        download("https://youtu.be/x", tmp_path / "v.mp4", 10, 360, 5)
    assert info.value.reason == "platform_unavailable" and "unavailable" in info.value.detail
    big = tmp_path / "big.mp4"
    big.write_bytes(b"x" * 100)
    monkeypatch.setitem(sys.modules, "yt_dlp", _fake_ytdlp(big, seen))
    with pytest.raises(SampleFailure) as info:
        download("https://youtu.be/x", tmp_path / "v.mp4", 10, 360, 5)
    assert info.value.reason == "too_large"
    assert not (tmp_path / "v.mp4").exists()


FAKE_MODULE = """
import json, os, shutil


class YoutubeDL:
    def __init__(self, options):
        self.options = options

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def download(self, urls):
        with open(os.environ["FAKE_YTDLP_LOG"], "a") as log:
            log.write(json.dumps({"urls": urls, "max_filesize": self.options["max_filesize"]}))
            log.write("\\n")
        shutil.copyfile(os.environ["FAKE_YTDLP_SOURCE"], self.options["outtmpl"]["default"])
        return 0
"""


def test_a_platform_row_is_cut_into_clips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Dask workers are processes: the stand-in is a module on their path."""
    video = make_video(tmp_path / "src.mp4", segments_for([1.5, 1.5]), size=(160, 120), fps=12)
    mods = tmp_path / "mods" / "yt_dlp"
    mods.mkdir(parents=True)
    (mods / "__init__.py").write_text(FAKE_MODULE)
    log = tmp_path / "ytdlp.log"
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # spawned workers copy sys.path
    monkeypatch.setenv("FAKE_YTDLP_SOURCE", str(video))
    monkeypatch.setenv("FAKE_YTDLP_LOG", str(log))
    # "localhost" stands in for a platform host (no DNS here); the guard runs first, so
    # a platform URL it refuses never reaches yt-dlp.
    rows = [
        ("http://localhost/watch?v=abc", "a talk"),
        ("ftp://localhost/watch?v=def", "a talk over ftp"),
    ]
    pl.DataFrame(rows, schema=["url", "caption"], orient="row").write_parquet(
        tmp_path / "rows.parquet"
    )
    cfg = {
        "sources": [{"path": str(tmp_path / "rows.parquet")}],
        "fetch": {"allow_private_networks": True},
        "media": {
            "text_column": None,
            "platform_fetcher": "yt-dlp",
            "platform_hosts": ["localhost"],
            "max_clip_s": 3.0,
        },
        "image": {"size": 48},
        "dedup": {"enabled": False},
        "engine": {"n_workers": 1},
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    ledger = pl.read_parquet(RunDir(res.output).ledger_dir / "*.parquet")
    written = ledger.filter(pl.col("status") == "written")
    assert written.height == 1, ledger.select("reason", "detail").to_dicts()
    assert sorted(ledger["reason"].drop_nulls().to_list()) == ["bad_scheme"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [{"urls": [rows[0][0]], "max_filesize": 2_000_000_000}]


def test_platform_rows_without_the_fetcher_are_named(tmp_path: Path) -> None:
    pl.DataFrame({"url": ["https://youtu.be/abc"], "caption": ["x"]}).write_parquet(
        tmp_path / "rows.parquet"
    )
    cfg = {
        "sources": [{"path": str(tmp_path / "rows.parquet")}],
        "media": {"text_column": None},
        "engine": {"n_workers": 1},
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    ledger = pl.read_parquet(RunDir(res.output).ledger_dir / "*.parquet")
    assert ledger["reason"].to_list() == ["platform_url"]
