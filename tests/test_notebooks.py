"""The audit notebooks run in a real Jupyter kernel (nbclient + ipykernel), cell by cell,
against the demo's finished runs: a notebook that breaks fails the suite. They are kept
without outputs, so a diff shows code, never a stale result."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RUNS = {"audit_image_text.ipynb": "corpus", "audit_video_audio.ipynb": "video-corpus"}


def execute(path: Path, run_dir: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel with CURATE_RUN set; raises on a failing cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "CURATE_RUN": str(run_dir)}
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    old = dict(os.environ)
    os.environ.update(env)  # the kernel process inherits the environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def test_every_notebook_is_listed_and_saved_without_outputs() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(RUNS)
    for name in RUNS:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", sorted(RUNS))
def test_notebook_runs_in_a_kernel_on_the_demo_run(name: str, demo_runs: Path) -> None:
    nb = execute(NOTEBOOKS / name, demo_runs / RUNS[name])
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the views rendered: HTML galleries with inline pictures and plotly figures
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "data:image/jpeg;base64," in html
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
