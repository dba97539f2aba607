"""`curate demo`: build a synthetic web, serve it on 127.0.0.1, run pipelines/demo.yaml on it."""

from __future__ import annotations

from pathlib import Path

from curate.config import PipelineConfig, load_config
from curate.errors import ConfigError
from curate.pipeline import RunResult, run

__all__ = ["default_demo_config", "run_demo", "run_video_demo"]


def default_demo_config(name: str = "demo.yaml") -> Path:
    """pipelines/<name> of the checkout this package runs from."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / name
    if not path.exists():
        raise ConfigError(f"{path}: demo config not found; pass --config")
    return path


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
    with serve_web(out / "web", max_seconds=1800) as server:
        urls = web.write_url_list(out / "web" / "urls.parquet", server.base_url)
        source = cfg.sources[0].model_copy(update={"path": str(urls)})
        cfg = cfg.model_copy(update={"sources": [source]})
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
    with serve_web(web, max_seconds=1800) as server:
        base = server.base_url
        table = pl.DataFrame(
            {
                "url": [base + str(r["route"]) for r in rows],
                "caption": [r["caption"] for r in rows],
                "subtitles": [base + str(r["subtitles"]) if r["subtitles"] else None for r in rows],
            }
        )
        urls = web / "videos.parquet"
        table.write_parquet(urls)
        source = cfg.sources[0].model_copy(update={"path": str(urls)})
        cfg = cfg.model_copy(update={"sources": [source]})
        corpus = out / "video-corpus"
        return run(cfg, corpus, scheduler=scheduler, overwrite=overwrite, progress=progress)
