"""A stage that stops making progress says where: the driver names the partitions and the
worker, and the worker process dumps its threads' stacks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from curate.config import EngineConfig
from curate.engine.cluster import dask_client
from curate.engine.runner import StageTask, run_tasks


def test_a_stalled_stage_reports_where_it_is_stuck(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tasks = [
        StageTask(0, tmp_path / "a.done.json", time.sleep, (4.0,)),
        StageTask(1, tmp_path / "b.done.json", time.sleep, (0.0,)),
    ]
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=2), quiet=True) as client:
        out = run_tasks(client, "slow", tasks, progress=False, stall_s=1.5)
        worker = next(iter(client.scheduler_info()["workers"]))
    assert out == [None, None]  # both finished: a report never cancels work
    err = capfd.readouterr().err
    assert "curate: slow: no task finished for" in err
    assert f"{worker}: partitions [0]" in err
    # the worker's own dump: every thread, including the one running the task
    assert "Timeout (0:00:01" in err
    assert "in _watched" in err and "runner.py" in err


def test_no_report_when_tasks_keep_finishing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tasks = [StageTask(i, tmp_path / f"{i}.done.json", time.sleep, (0.2,)) for i in range(6)]
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=1), quiet=True) as client:
        run_tasks(client, "quick", tasks, progress=False, stall_s=1.0)
        time.sleep(1.5)  # a timer left armed after the last task would fire now
    err = capfd.readouterr().err
    assert "no task finished" not in err and "Timeout (" not in err
