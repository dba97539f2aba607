"""Dask client: a LocalCluster sized to the machine, or an existing scheduler's address."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from curate.config import EngineConfig

__all__ = ["dask_client"]


@contextlib.contextmanager
def dask_client(
    cfg: EngineConfig, scheduler: str | None = None, quiet: bool = False
) -> Iterator[Any]:
    """Yield a distributed.Client; a LocalCluster is closed on exit, a remote one is left up."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    n = cfg.n_workers or max(1, os.cpu_count() or 1)
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=40 if quiet else 30,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
