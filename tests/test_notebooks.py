"""The audit notebooks run, cell by cell, against a finished run's directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from curate.pipeline import RunResult

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def run_notebook(path: Path, run_dir: Path) -> dict[str, object]:
    """Execute every code cell in one namespace, as a kernel would, with CURATE_RUN set."""
    nb = json.loads(path.read_text())
    ns: dict[str, object] = {"__name__": "__main__"}
    old = os.environ.get("CURATE_RUN")
    os.environ["CURATE_RUN"] = str(run_dir)
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), f"{path.name}", "exec"), ns)
    finally:
        if old is None:
            os.environ.pop("CURATE_RUN", None)
        else:
            os.environ["CURATE_RUN"] = old
    return ns


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_a_finished_run(path: Path, finished: RunResult) -> None:
    ns = run_notebook(path, finished.output)
    assert ns["f"] == finished.funnel
