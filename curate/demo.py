"""`curate demo`: build a synthetic web, serve it on 127.0.0.1, run pipelines/demo.yaml on it."""

from __future__ import annotations

from pathlib import Path

from curate.config import PipelineConfig, load_config
from curate.errors import ConfigError
from curate.pipeline import RunResult, run

__all__ = ["default_demo_config", "run_demo"]


def default_demo_config() -> Path:
    """pipelines/demo.yaml of the checkout this package runs from."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: demo config not found; pass --config")
    return path


def run_demo(
    out: str | Path,
    n_items: int = 300,
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
