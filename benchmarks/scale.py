"""How the full image-text pipeline's cost grows with the corpus (issue 13).

    .venv/bin/python benchmarks/scale.py --sizes 10000 30000 100000

For each size: the synthetic web (`curate.testing.build_web`: drawn scenes and scikit-image
photos, planted duplicates, mismatched captions and faulty URLs, every URL distinct; built
once under /tmp/curate-bench/scale-web-N) served on 127.0.0.1, and `python -m curate run`
on it with the demo's settings (tiny CLIP on, dedup, CLIP filter, no labels), 2 workers.
Each run is a whole process; psutil samples the RSS of the driver (the `curate run`
process) and of every other process under it (the Dask workers and their nannies) every
0.25 s. Printed: wall time, inputs/s, per-input ms, peak RSS of the driver and of the
largest worker, bytes written, and the ratios against the smallest size; then each stage's
task seconds per input (from the run's state/timings.jsonl), and the RSS timeline of each
run goes to /tmp/curate-bench/scale-rss-N.csv.
Goal (issue 13): per-input time and worker peak RSS within 1.2x from 10k to 100k, driver
peak RSS under 1.5 GB at 100k.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from curate.testing import build_web, serve_web

BENCH = Path("/tmp/curate-bench")
REPO = Path(__file__).resolve().parents[1]


def web_for(n: int) -> Any:
    """The synthetic web of n inputs (built once; same seed, same bytes)."""
    from curate.testing.web import SyntheticWeb

    root = BENCH / f"scale-web-{n}"
    if (root / "truth.parquet").exists():
        import polars as pl

        return SyntheticWeb(root, pl.read_parquet(root / "truth.parquet"))
    return build_web(root, n_items=n, seed=0)


def config(urls: Path) -> dict[str, Any]:
    demo = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    demo.pop("labels", None)  # labels are issue 11's cost, measured by make demo
    demo["name"] = "scale"
    demo["sources"][0]["path"] = str(urls)
    demo["engine"] = {"n_workers": 2, "threads_per_worker": 1}
    return dict(demo)


class Sampler(threading.Thread):
    """Peak RSS of a process and, separately, of each of its descendants."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.every = every
        self.driver = 0
        self.workers: dict[int, int] = {}
        self.timeline: list[tuple[float, int, int]] = []  # (seconds, driver, largest worker)
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            try:
                driver = self.root.memory_info().rss
                self.driver = max(self.driver, driver)
                largest = 0
                for child in self.root.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    largest = max(largest, rss)
                    self.workers[child.pid] = max(self.workers.get(child.pid, 0), rss)
                self.timeline.append((time.monotonic() - t0, driver, largest))
            except psutil.Error:
                return
            time.sleep(self.every)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(n: int) -> dict[str, Any]:
    web = web_for(n)
    out = BENCH / f"scale-run-{n}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    with serve_web(web.root, max_requests=4 * n + 1000, max_seconds=6 * 3600) as srv:
        urls = web.write_url_list(BENCH / f"scale-urls-{n}.parquet", srv.base_url)
        cfg = BENCH / f"scale-{n}.yaml"
        cfg.write_text(yaml.safe_dump(config(urls)))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "curate", "run", str(cfg), "-o", str(out), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = Sampler(proc.pid)
        sampler.start()
        _, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"curate run failed at {n}:\n{stderr[-3000:]}")
    with open(BENCH / f"scale-rss-{n}.csv", "w") as f:  # where memory grows, beside timings
        f.write("seconds,driver_mb,largest_worker_mb\n")
        for t, d, w in sampler.timeline:
            f.write(f"{t:.2f},{d / 2**20:.0f},{w / 2**20:.0f}\n")
    stages: dict[str, float] = {}
    for line in (out / "state" / "timings.jsonl").read_text().splitlines():
        rec = json.loads(line)
        stages[rec["stage"]] = stages.get(rec["stage"], 0.0) + rec["seconds"]
    return {
        "n": n,
        "stages": {k: 1000 * v / n for k, v in stages.items()},  # task CPU-ms per input
        "wall": wall,
        "per_input_ms": 1000 * wall / n,
        "driver_mb": sampler.driver / 2**20,
        "worker_mb": max(sampler.workers.values(), default=0) / 2**20,
        "bytes_gb": du(out) / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    args = p.parse_args()
    rows = []
    head = f"{'inputs':>8} {'wall s':>8} {'in/s':>7} {'ms/in':>6} {'driver MB':>10} "
    head += f"{'worker MB':>10} {'written GB':>10} {'ms/in x':>8} {'worker x':>8}"
    print(head, flush=True)
    for n in args.sizes:
        r = measure(n)
        rows.append(r)
        base = rows[0]
        print(
            f"{n:>8} {r['wall']:>8.1f} {n / r['wall']:>7.1f} {r['per_input_ms']:>6.2f} "
            f"{r['driver_mb']:>10.0f} {r['worker_mb']:>10.0f} {r['bytes_gb']:>10.2f} "
            f"{r['per_input_ms'] / base['per_input_ms']:>8.2f} "
            f"{r['worker_mb'] / base['worker_mb']:>8.2f}",
            flush=True,
        )
    names = list(rows[-1]["stages"])
    print("\ntask seconds per input (ms), summed over a stage's tasks:")
    print(f"{'inputs':>8} " + " ".join(f"{k:>9}" for k in names))
    for r in rows:
        print(f"{r['n']:>8} " + " ".join(f"{r['stages'].get(k, 0.0):>9.2f}" for k in names))


if __name__ == "__main__":
    main()
