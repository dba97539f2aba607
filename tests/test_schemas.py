from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from curate.pipeline import RunResult
from curate.schemas import Manifest, SampleMeta, check_schemas, write_schemas

REPO = Path(__file__).resolve().parents[1]


def test_checked_in_schemas_match_the_code() -> None:
    assert check_schemas(REPO / "schemas") == [], "run `make schema` and commit schemas/"


def test_drift_is_detected(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    (tmp_path / "pipeline.schema.json").write_text("{}\n")
    assert check_schemas(tmp_path) == ["pipeline.schema.json"]
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "schema", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "pipeline.schema.json" in proc.stdout


def test_run_outputs_follow_the_schemas(finished: RunResult) -> None:
    shards = finished.output / "shards"
    Manifest.model_validate_json((shards / "manifest.json").read_text())
    with tarfile.open(next(shards.glob("*.tar"))) as tar:
        metas = [m for m in tar.getmembers() if m.name.endswith(".json")]
        for m in metas[:5]:
            f = tar.extractfile(m)
            assert f is not None
            SampleMeta.model_validate(json.loads(f.read()))


def test_cli_import_stays_light() -> None:
    heavy = "('dask', 'polars', 'torch', 'PIL')"
    code = f"import sys, curate.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
