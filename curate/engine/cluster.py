"""Dask client: a LocalCluster sized to the machine, or an existing scheduler's address."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from curate.config import EngineConfig

__all__ = ["dask_client", "usable_cpus", "worker_env"]

# Native thread pools that size themselves to every core of the machine unless told.
_POOL_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "POLARS_MAX_THREADS",
    "RAYON_NUM_THREADS",
)


def usable_cpus() -> int:
    """Cores this process may run on (affinity), not the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_env(cfg: EngineConfig) -> dict[str, str]:
    """Each worker's native pools get its own share of cores, threads_per_worker.

    Unpinned, every worker process starts a BLAS/OpenMP/polars pool as wide as the machine,
    so n workers run n × cores native threads beside their fetch threads; on a loaded
    machine such pools spin and wait for each other instead of working.
    """
    n = str(cfg.threads_per_worker)
    return dict.fromkeys(_POOL_VARS, n)


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
    n = cfg.n_workers or usable_cpus()
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=40 if quiet else 30,
            env=worker_env(cfg),
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
