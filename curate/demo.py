"""`curate demo`: build a synthetic web, serve it on 127.0.0.1, run pipelines/demo.yaml on it.

The URL lists name a fixed host that cannot exist (`.invalid`, RFC 2606), and
`fetch.connect_to` sends its connections to the server's OS-chosen port. Uids, sample json,
ledger keys and the trainer's held-out split derive from the URL, so they (and the shards'
bytes) are the same on every run; connect_to stays out of the config hash, so a rerun into
the same folder resumes.
"""

from __future__ import annotations

from pathlib import Path

from curate.config import FetchConfig, PipelineConfig, load_config
from curate.errors import ConfigError
from curate.pipeline import RunResult, run

__all__ = ["DEMO_ORIGIN", "default_demo_config", "run_demo", "run_video_demo"]

DEMO_ORIGIN = "http://demo.curate.invalid"


def default_demo_config(name: str = "demo.yaml") -> Path:
    """pipelines/<name> of the checkout this package runs from."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / name
    if not path.exists():
        raise ConfigError(f"{path}: demo config not found; pass --config")
    return path


def _served(cfg: PipelineConfig, urls: Path, connect_to: dict[str, str]) -> PipelineConfig:
    """`cfg` reading `urls`, with DEMO_ORIGIN's connections sent to the running server."""
    source = cfg.sources[0].model_copy(update={"path": str(urls)})
    fetch = FetchConfig.model_validate(
        {**cfg.fetch.model_dump(), "connect_to": {**cfg.fetch.connect_to, **connect_to}}
    )
    return cfg.model_copy(update={"sources": [source], "fetch": fetch})


def run_demo(
    out: str | Path,
    n_items: int = 1000,
    config: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> RunResult:
    """Generate `out/web`, serve it, and build the corpus in `out/corpus`, offline."""
    from curate.testing import build_web, serve_web

    out = Path(out).resolve()
    cfg: PipelineConfig = load_config(config or default_demo_config())
    web = build_web(out / "web", n_items=n_items)
    urls = web.write_url_list(out / "web" / "urls.parquet", DEMO_ORIGIN)
    with serve_web(out / "web", max_seconds=1800) as server:
        cfg = _served(cfg, urls, server.connect_to(DEMO_ORIGIN))
        return run(cfg, out / "corpus", scheduler=scheduler, overwrite=overwrite, progress=progress)


def run_video_demo(
    out: str | Path,
    lessons: int = 12,
    overwrite: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> RunResult:
    """Generate `out/video-web`, serve it, and cut `out/video-corpus`, offline. `lessons`
    adds that many 25-second videos of ten subtitled segments (120 clips for 12), so the
    reference trainer has clips enough to judge frame order and subtitle matching."""
    import polars as pl

    from curate.testing import serve_web
    from curate.testing.media import build_video_web

    out = Path(out).resolve()
    cfg: PipelineConfig = load_config(default_demo_config("demo_video.yaml"))
    web = out / "video-web"
    rows = build_video_web(web, lessons=lessons)
    base = DEMO_ORIGIN
    table = pl.DataFrame(
        {
            "url": [base + str(r["route"]) for r in rows],
            "caption": [r["caption"] for r in rows],
            "subtitles": [base + str(r["subtitles"]) if r["subtitles"] else None for r in rows],
        }
    )
    urls = web / "videos.parquet"
    table.write_parquet(urls)
    with serve_web(web, max_seconds=1800) as server:
        cfg = _served(cfg, urls, server.connect_to(DEMO_ORIGIN))
        corpus = out / "video-corpus"
        return run(cfg, corpus, scheduler=scheduler, overwrite=overwrite, progress=progress)
