"""Run-directory state: run.json with the config hash, so reruns resume or are refused."""

from __future__ import annotations

import datetime as dt
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from curate.config import PipelineConfig
from curate.errors import ConfigMismatchError
from curate.io.atomic import read_json, write_json

__all__ = ["RUN_SUBDIRS", "finish_run", "start_run"]

RUN_SUBDIRS = ("ingest", "raw", "features", "ledger", "shards", "state")
_PACKAGES = (
    "curate",
    "dask",
    "distributed",
    "polars",
    "pyarrow",
    "pillow",
    "urllib3",
    "webdataset",
)


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def start_run(out: Path, cfg: PipelineConfig, chash: str, overwrite: bool) -> dict[str, Any]:
    """Create or resume a run directory; refuse a different config unless `overwrite`."""
    run_json = out / "run.json"
    # A kill while run.json itself was being written leaves only its .tmp: that run never
    # started, so the directory is still ours and empty.
    (out / "run.json.tmp").unlink(missing_ok=True)
    if run_json.exists():
        previous = read_json(run_json)
        if previous.get("config_hash") != chash:
            if not overwrite:
                raise ConfigMismatchError(
                    f"{out}: holds a run with another config or input "
                    f"(config hash {str(previous.get('config_hash'))[:12]} != {chash[:12]}); "
                    "rerun with --overwrite to discard it, or choose another output"
                )
            _clear(out)
        elif overwrite:
            _clear(out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigMismatchError(
            f"{out}: is not empty and is not a curate run directory; choose an empty output"
        )
    elif out.exists() and overwrite:
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.rglob("*.tmp"):  # left by a killed run; no other run writes here
        tmp.unlink(missing_ok=True)
    info: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "config_hash": chash,
        "versions": _versions(),
        "started_at": _now(),
        "finished_at": None,
    }
    write_json(run_json, info)
    return info


def _clear(out: Path) -> None:
    for name in RUN_SUBDIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for f in ("run.json", "report.html"):
        (out / f).unlink(missing_ok=True)


def finish_run(out: Path, info: dict[str, Any], funnel: dict[str, Any]) -> None:
    write_json(out / "run.json", {**info, "finished_at": _now(), "funnel": funnel})
