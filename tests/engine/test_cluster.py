"""Worker processes get native thread pools no wider than their own share of cores."""

from __future__ import annotations

import os
from typing import Any

from curate.config import EngineConfig
from curate.engine.cluster import dask_client, usable_cpus, worker_env


def _pools() -> dict[str, Any]:
    import polars as pl

    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS")}
    return {"env": env, "polars": pl.thread_pool_size()}


def test_worker_env_follows_threads_per_worker() -> None:
    env = worker_env(EngineConfig(threads_per_worker=3))
    assert env["OPENBLAS_NUM_THREADS"] == env["POLARS_MAX_THREADS"] == "3"
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_local_workers_start_with_pinned_pools() -> None:
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=1), quiet=True) as client:
        (seen,) = client.run(_pools).values()
    assert seen == {"env": {"OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}, "polars": 1}
