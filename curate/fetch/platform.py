"""Platform URLs (YouTube, Vimeo, ...) through yt-dlp: an optional fetcher for video corpora.

A platform page is not a media file, so the HTTP fetcher cannot read it; yt-dlp resolves the
page to a stream and downloads it. It is an extra (`pip install 'curate[platform]'`),
imported only when a row needs it. The page URL passes the same guard as any fetch (scheme,
private addresses) before yt-dlp sees it. What yt-dlp requests after that (the platform's
API and CDN) is its own and curate does not inspect it; its generic extractor, which would
follow media URLs found in arbitrary page content, is switched off, so only the platforms'
own extractors run. The download is capped at `media.max_bytes` (yt-dlp's size limit, then
checked), sockets time out after the fetch's `total_timeout_s` without data (a slow but
moving download is not cut), one video at most is fetched from a playlist URL, and one
progressive (single-file) format at or under `max_height` is chosen, so no ffmpeg merge
step is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from curate.errors import SampleFailure

__all__ = ["download", "is_platform_url", "ytdlp_options"]

EXTRA_HINT = "pip install 'curate[platform]'"


def is_platform_url(url: str, hosts: list[str]) -> bool:
    """Whether `url`'s host is one of `hosts` or a subdomain of one."""
    try:
        host = (urlsplit(url.strip()).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    return any(host == h or host.endswith("." + h) for h in hosts)


def ytdlp_options(dest: Path, max_bytes: int, max_height: int, timeout_s: float) -> dict[str, Any]:
    """yt-dlp's options: one progressive file at or under `max_height`, capped in size,
    written to `dest`, quiet, no playlists, nothing else fetched."""
    h = int(max_height)
    return {
        "format": f"b[height<={h}][ext=mp4]/b[height<={h}]/w",
        "outtmpl": {"default": str(dest)},
        "max_filesize": int(max_bytes),
        "socket_timeout": float(timeout_s),
        "noplaylist": True,
        "playlistend": 1,
        "allowed_extractors": ["default", "-generic"],
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "overwrites": True,
        "retries": 2,
        "writesubtitles": False,
        "writeautomaticsub": False,
        "writethumbnail": False,
        "cachedir": False,
    }


def download(url: str, dest: Path, max_bytes: int, max_height: int, timeout_s: float) -> Path:
    """Download the platform video at `url` to `dest`; raise SampleFailure with a ledger
    reason when yt-dlp is missing, the video is unavailable, or the file is too large."""
    try:
        import yt_dlp  # type: ignore[import-untyped]
    except ImportError:
        raise SampleFailure(
            "fetcher_missing", f"{url}: a platform URL needs yt-dlp ({EXTRA_HINT})"
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    options = ytdlp_options(dest, max_bytes, max_height, timeout_s)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
    except Exception as err:  # yt-dlp raises its own DownloadError for every cause
        raise SampleFailure("platform_unavailable", f"{url}: {err}"[:500]) from None
    if not dest.is_file():  # yt-dlp skips, rather than fails, e.g. a file over max_filesize
        raise SampleFailure(
            "platform_unavailable",
            f"{url}: yt-dlp wrote no file (no format under media.max_bytes={max_bytes}?)",
        )
    if dest.stat().st_size > max_bytes:
        dest.unlink()
        raise SampleFailure("too_large", f"{url}: over media.max_bytes={max_bytes}")
    return dest
