"""What `curate validate` costs now that it recomputes every label (issue 22), against the
labels stages' own time in the same run.

    .venv/bin/python benchmarks/validate_labels.py --sizes 10000          # build, then time
    .venv/bin/python benchmarks/validate_labels.py --runs demo-out/corpus  # an existing run

For each size: the synthetic web of N inputs (`curate.testing.build_web`, cached under
/tmp/curate-bench/scale-web-N as benchmarks/scale.py builds it) served on 127.0.0.1, and
`python -m curate run` with pipelines/demo.yaml's settings, labels included (tiny CLIP, so
ITM has hard negatives), 2 workers. Then, each as a whole process: `curate validate
OUT/shards` (negatives by their rules) and `curate validate OUT` (negatives recomputed from
the run's text embeddings). Printed: samples, the labels stages' task seconds (labelset +
labels, summed over tasks, from state/timings.jsonl) and their wall span, each validate's
wall and CPU seconds, and the ratio validate wall / labels task seconds (goal: at most 1).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

BENCH = Path("/tmp/curate-bench")
REPO = Path(__file__).resolve().parents[1]


def build_run(n: int) -> Path:
    """A finished labelled run of the synthetic web of n inputs (built once)."""
    from curate.testing import build_web, serve_web

    out = BENCH / f"validate-run-{n}"
    if (out / "shards" / "manifest.json").exists():
        return out
    root = BENCH / f"scale-web-{n}"
    if (root / "truth.parquet").exists():
        import polars as pl

        from curate.testing.web import SyntheticWeb

        web = SyntheticWeb(root, pl.read_parquet(root / "truth.parquet"))
    else:
        web = build_web(root, n_items=n, seed=0)
    cfg = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    cfg["name"] = "validate-bench"
    cfg["engine"] = {"n_workers": 2, "threads_per_worker": 1}
    with serve_web(web.root, max_requests=4 * n + 1000, max_seconds=6 * 3600) as srv:
        urls = web.write_url_list(BENCH / f"validate-urls-{n}.parquet", srv.base_url)
        cfg["sources"][0]["path"] = str(urls)
        path = BENCH / f"validate-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "curate", "run", str(path), "-o", str(out), "-q"]
        subprocess.run(cmd, check=True, capture_output=True)
    return out


def label_stages(run: Path) -> dict[str, float]:
    """Task seconds of labelset and labels (the last run of each task) and their wall span."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for line in (run / "state" / "timings.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["stage"] in ("labelset", "labels"):
            last[(rec["stage"], rec["key"])] = rec
    ends = [datetime.fromisoformat(r["at"]).timestamp() for r in last.values()]
    starts = [e - r["seconds"] for e, r in zip(ends, last.values(), strict=True)]
    out = {
        s: sum(r["seconds"] for (st, _), r in last.items() if st == s)
        for s in ("labelset", "labels")
    }
    out["wall"] = max(ends) - min(starts) if ends else 0.0
    return out


def timed_validate(target: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of `curate validate target` as a whole process, and its tail."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "validate", str(target)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(
            f"validate failed on {target}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return wall, cpu, proc.stdout.strip().splitlines()[-1]


def measure(run: Path) -> dict[str, Any]:
    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    stages = label_stages(run)
    shards = timed_validate(run / "shards")
    whole = timed_validate(run)
    return {
        "run": str(run),
        "samples": manifest["total_samples"],
        **stages,
        "shards": shards,
        "whole": whole,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[])
    p.add_argument("--runs", type=Path, nargs="*", default=[])
    args = p.parse_args()
    runs = [*args.runs, *(build_run(n) for n in args.sizes)]
    head = (
        f"{'samples':>8} {'labelset s':>10} {'labels s':>9} {'stages wall':>11} "
        f"{'validate shards wall/cpu':>24} {'validate run wall/cpu':>22} {'ratio':>6}  run"
    )
    print(head, flush=True)
    for run in runs:
        r = measure(run)
        task = r["labelset"] + r["labels"]
        (sw, sc, _), (ww, wc, _) = r["shards"], r["whole"]
        print(
            f"{r['samples']:>8} {r['labelset']:>10.1f} {r['labels']:>9.1f} {r['wall']:>11.1f} "
            f"{sw:>14.1f} / {sc:>7.1f} {ww:>12.1f} / {wc:>7.1f} {max(sw, ww) / task:>6.2f}  {run}",
            flush=True,
        )


if __name__ == "__main__":
    main()
