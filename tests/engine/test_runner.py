"""The engine owns completion: it writes each task's marker with the digest of what the task
read, reruns exactly the tasks whose digest changed, and reports a stalled stage."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from curate.config import EngineConfig
from curate.engine.cluster import dask_client
from curate.engine.runner import run_calls, run_stage
from curate.engine.stage import Task, digest, read_marker
from curate.rundir import RunDir


def _write(path: str, text: str) -> dict[str, Any]:
    Path(path).write_text(text)
    return {"wrote": text, "completes": {"other": {"inputs": "x", "summary": {"by": text}}}}


def _fail(_: str) -> dict[str, Any]:
    raise RuntimeError("boom")


@pytest.fixture(scope="module")
def client() -> Any:
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=2), quiet=True) as c:
        yield c


def test_markers_are_the_engines_and_only_changed_inputs_rerun(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = RunDir(tmp_path)
    out = {k: tmp_path / f"{k}.txt" for k in ("a", "b")}
    tasks = [Task(k, _write, (str(p), f"v1-{k}"), digest("v1", k)) for k, p in out.items()]
    got = run_stage(client, run, "s", tasks, progress=False)
    assert [g["wrote"] for g in got] == ["v1-a", "v1-b"]
    marker = read_marker(run, "s", "a")
    assert marker == {"inputs": digest("v1", "a"), "summary": {"wrote": "v1-a"}}
    assert read_marker(run, "other", "b") == {"inputs": "x", "summary": {"by": "v1-b"}}

    out["a"].write_text("tampered")  # a done task is not rerun: its marker names its inputs
    changed = [
        tasks[0],
        Task("b", _write, (str(out["b"]), "v2-b"), digest("v2", "b")),
    ]
    got = run_stage(client, run, "s", changed, progress=True)
    assert [g["wrote"] for g in got] == ["v1-a", "v2-b"]
    assert out["a"].read_text() == "tampered" and out["b"].read_text() == "v2-b"
    assert "s: inputs changed for 1 of 2 task(s); redoing them" in capsys.readouterr().err

    run_stage(client, run, "s", changed[1:], progress=False)  # "a" left the plan
    assert [p.stem for p in run.markers("s")] == ["b"]


def test_a_missing_output_is_redone_though_the_marker_is_current(
    client: Any, tmp_path: Path
) -> None:
    run = RunDir(tmp_path)
    out = tmp_path / "o.txt"
    task = Task("o", _write, (str(out), "v1"), "d", (out,))
    run_stage(client, run, "s", [task], progress=False)
    out.write_text("kept")
    run_stage(client, run, "s", [task], progress=False)
    assert out.read_text() == "kept"
    out.unlink()
    run_stage(client, run, "s", [task], progress=False)
    assert out.read_text() == "v1"


def test_a_failing_task_writes_no_marker_and_the_others_finish(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = RunDir(tmp_path)
    tasks = [Task("a", _fail, ("x",), "d")]
    tasks += [Task(k, _write, (str(tmp_path / k), k), "d") for k in ("b", "c", "d")]
    with pytest.raises(RuntimeError, match="boom"):
        run_stage(client, run, "s", tasks, retries=0, progress=False)
    assert read_marker(run, "s", "a") is None
    assert [p.stem for p in run.markers("s")] == ["b", "c", "d"]  # kept for the rerun
    assert "curate: s: task a failed" in capsys.readouterr().err


def test_a_task_must_return_a_summary(client: Any, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"s task a: .*sleep returned NoneType, not a summary"):
        run_stage(client, RunDir(tmp_path), "s", [Task("a", time.sleep, (0,), "d")], progress=False)
    assert read_marker(RunDir(tmp_path), "s", "a") is None


def test_run_calls_returns_results_in_call_order(client: Any) -> None:
    calls = [(f"c{i}", pow, (i, 2)) for i in range(5)]
    assert run_calls(client, "sq", calls) == [0, 1, 4, 9, 16]


def test_a_stalled_stage_reports_where_it_is_stuck(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def nap(s: float) -> dict[str, Any]:
        time.sleep(s)
        return {"slept": s}

    tasks = [Task("00000", nap, (4.0,), "d0"), Task("00001", nap, (0.0,), "d1")]
    run = RunDir(tmp_path)
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=2), quiet=True) as c:
        out = run_stage(c, run, "slow", tasks, progress=False, stall_s=1.5)
        worker = next(iter(c.scheduler_info()["workers"]))
    assert out == [{"slept": 4.0}, {"slept": 0.0}]  # both finished: a report never cancels work
    err = capfd.readouterr().err
    assert "curate: slow: no task finished for" in err
    assert f"{worker}: ['00000']" in err
    # the worker's own dump: every thread, including the one running the task
    assert "Timeout (0:00:01" in err
    assert "in _watched" in err and "runner.py" in err
    assert json.loads(run.marker("slow", "00000").read_text())["inputs"] == "d0"


def test_no_report_when_tasks_keep_finishing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tasks = [Task(str(i), time.sleep, (0.2,), "d") for i in range(6)]
    with dask_client(EngineConfig(n_workers=1, threads_per_worker=1), quiet=True) as c:
        run_calls(c, "quick", [(t.key, t.fn, t.args) for t in tasks], stall_s=1.0)
        time.sleep(1.5)  # a timer left armed after the last task would fire now
    err = capfd.readouterr().err
    assert "no task finished" not in err and "Timeout (" not in err


def _nap(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


def test_each_task_s_wall_time_is_recorded_where_it_ran_outside_the_markers(
    client: Any, tmp_path: Path
) -> None:
    from curate.engine.stage import read_timings

    run = RunDir(tmp_path)
    tasks = [Task("a", _nap, (0.3,), "d-a"), Task("b", _nap, (0.0,), "d-b")]
    run_stage(client, run, "s", tasks, progress=False)
    before = {p.name: p.read_bytes() for p in run.markers("s")}
    got = read_timings(run)
    assert set(got) == {("s", "a"), ("s", "b")}
    assert 0.3 <= got[("s", "a")]["seconds"] < 5 and got[("s", "b")]["seconds"] < 0.3
    assert got[("s", "a")]["worker"].startswith("tcp://127.0.0.1")
    # a rerun of one task appends; the last line counts; markers keep their bytes
    run_stage(client, run, "s", [Task("a", _nap, (0.0,), "d-a2"), tasks[1]], progress=False)
    assert read_timings(run)[("s", "a")]["seconds"] < 0.3
    assert before["b.json"] == run.marker("s", "b").read_bytes()
    with run.timings.open("a") as f:  # a line cut short by a kill is skipped, not fatal
        f.write('{"stage": "s", "key": "c", "sec')
    assert set(read_timings(run)) == {("s", "a"), ("s", "b")}
