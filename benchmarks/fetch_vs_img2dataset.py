"""Download throughput: curate's fetch+shards pipeline against img2dataset, same data, same host.

What it measures. N realistic JPEGs (0.3–2 MP, made once from scikit-image's bundled photos and
cached in --workdir) are served by one local HTTP server (curate.testing.serve_web) running in
its own subprocess, so neither tool shares a process or a GIL with it. Then img2dataset and
curate alternate for --rounds rounds, each in a fresh subprocess and output folder, both asked
for 256 px "border" resizes re-encoded as JPEG q95 into 1000-sample WebDataset shards, with
2 processes/workers. Wall time covers the whole subprocess (interpreter start, imports, cluster
start-up, writing shards); peak RSS is the sum over the process tree sampled every 0.1 s; CPU is
user+sys of the tree (getrusage of reaped children); "server cpu" is what the HTTP server spent
answering that run, which competes for the same cores.

How to read it. The table gives, per round, images written, wall seconds, images/s, peak RSS
and CPU seconds. Below it: median images/s per tool and the ratio curate / img2dataset (the
goal is >= 2.0). A run where a tool fails or drops images prints a loud WARNING: its speed is
then not comparable. The resize check decodes 20 samples written by both tools for the same URL
and reports the mean absolute pixel difference (0–255); a few levels is expected (different
resamplers), tens would mean the resize modes disagree.
"""

from __future__ import annotations

import os

os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # albumentations (via img2dataset) phones home

import argparse
import contextlib
import io
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil  # type: ignore[import-untyped,unused-ignore]
from _bench_images import ensure_images
from PIL import Image

TOOLS = ("img2dataset", "curate")
GOAL = 2.0
I2D_ARGS: dict[str, Any] = (
    dict(input_format="parquet", url_col="url", caption_col="caption", timeout=10, retries=0)
    | dict(output_format="webdataset", number_sample_per_shard=1000, enable_wandb=False)
    | dict(processes_count=2, distributor="multiprocessing", disallowed_header_directives=[])
    | dict(image_size=256, resize_mode="border", encode_format="jpg", encode_quality=95)
)


def run_child(tool: str, spec: dict[str, Any]) -> None:
    """Body of a measured subprocess: run one tool once, let exceptions end it with rc != 0."""
    if tool == "img2dataset":
        from img2dataset import download

        download(**spec)
    else:
        import curate

        curate.run(spec["config"], spec["output"], progress=False)


def tree_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(tool: str, spec: dict[str, Any], log: Path) -> dict[str, Any]:
    """Run the tool in a subprocess; return wall seconds, peak tree RSS, CPU and return code."""
    cmd = [sys.executable, __file__, "--child", tool, json.dumps(spec)]
    cpu0, peak, t0 = tree_cpu(), 0, time.perf_counter()
    with log.open("w") as fh:
        proc = psutil.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            rss = 0
            try:
                procs = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            peak = max(peak, rss)
            time.sleep(0.1)
    wall = time.perf_counter() - t0
    return {"wall": wall, "rss": peak / 2**20, "cpu": tree_cpu() - cpu0, "rc": proc.returncode}


def count_img2dataset(out: Path) -> tuple[int, dict[str, int]]:
    ok, failed = 0, dict[str, int]()
    for f in out.glob("*_stats.json"):
        st = json.loads(f.read_text())
        ok += st["successes"]
        for reason, k in st["status_dict"].items():
            if reason != "success":
                failed[reason[:80]] = failed.get(reason[:80], 0) + k
    return ok, failed


def count_curate(out: Path) -> tuple[int, dict[str, int]]:
    sizes = out / "shards" / "sizes.json"
    ok = sum(json.loads(sizes.read_text()).values()) if sizes.exists() else 0
    try:
        import curate

        led = curate.open_ledger(out).collect().filter(pl.col("status") != "written")
        rows = led.group_by("status", "reason").len().iter_rows()
        failed = {f"{s}:{r}": int(k) for s, r, k in rows}
    except FileNotFoundError:
        failed = {"no ledger (run crashed)": -1}
    return ok, failed


def read_tars(folder: Path) -> dict[str, bytes]:
    """url -> jpg bytes for every sample of every tar in `folder`."""
    found: dict[str, bytes] = {}
    for tar_path in sorted(folder.glob("*.tar")):
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(tar_path) as tf:
            for m in tf:
                f = tf.extractfile(m) if m.isfile() else None
                if f is not None:
                    key, _, ext = m.name.partition(".")
                    members.setdefault(key, {})[ext] = f.read()
        for parts in members.values():
            if "jpg" in parts and "json" in parts:
                found[json.loads(parts["json"])["url"]] = parts["jpg"]
    return found


def resize_check(i2d_out: Path, cur_out: Path, k: int = 20) -> str:
    a, b = read_tars(i2d_out), read_tars(cur_out / "shards")
    common = sorted(set(a) & set(b))
    if not common:
        return "resize check: no URL written by both tools"
    pick = np.random.default_rng(0).choice(len(common), min(k, len(common)), replace=False)
    diffs, shapes = [], set()
    for i in pick:
        x, y = (Image.open(io.BytesIO(d[common[i]])).convert("RGB") for d in (a, b))
        shapes.add((x.size, y.size))
        if x.size == y.size:
            diffs.append(float(np.abs(np.asarray(x, float) - np.asarray(y, float)).mean()))
    if not diffs:
        return f"resize check: sizes differ for every sample: {sorted(shapes)}"
    return (
        f"resize check ({len(diffs)} samples, sizes img2dataset/curate {sorted(shapes)}): mean "
        f"abs pixel diff {statistics.mean(diffs):.2f}, max per-image {max(diffs):.2f} (0-255)"
    )


def start_server(workdir: Path, max_requests: int) -> tuple[subprocess.Popen[str], str]:
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom curate.testing import serve_web\n"
        "with serve_web(Path(sys.argv[1]), max_requests=int(sys.argv[2]),"
        " max_seconds=86400.0) as s:\n    print(s.base_url, flush=True)\n    time.sleep(86400)\n"
    )
    cmd = [sys.executable, "-c", code, str(workdir), str(max_requests)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def specs(args: argparse.Namespace, urls: Path, out: Path, tool: str) -> dict[str, Any]:
    if tool == "img2dataset":
        paths = dict(url_list=str(urls), output_folder=str(out))
        return I2D_ARGS | paths | {"thread_count": args.threads}
    from curate.config import FetchConfig

    fetch: dict[str, Any] = {"threads": 16, "retries": 0}
    if "allow_private_networks" in FetchConfig.model_fields:
        fetch["allow_private_networks"] = True  # the server is on 127.0.0.1
    config = {
        "sources": [{"path": str(urls)}],
        "ingest": {"samples_per_partition": 250},
        "fetch": fetch,
        "image": dict(size=256, resize_mode="border", encode_format="jpg", encode_quality=95),
        "shards": {"samples_per_shard": 1000},
        "engine": {"n_workers": 2, "threads_per_worker": 1},
    }
    return {"config": config, "output": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/curate-bench"))
    ap.add_argument("--threads", type=int, default=32, help="img2dataset threads per process")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return run_child(args.child[0], json.loads(args.child[1]))

    from importlib.metadata import version

    print(
        f"cpus: {os.cpu_count()}  python {platform.python_version()}  Pillow "
        f"{version('Pillow')}  img2dataset {version('img2dataset')}  curate {version('curate')}"
    )
    workdir: Path = args.workdir.resolve()
    pairs, gen_s = ensure_images(workdir, args.n)
    total_mb = sum((workdir / "files" / f).stat().st_size for f, _ in pairs) / 2**20
    print(
        f"images: {len(pairs)} JPEGs, {total_mb:.0f} MiB in {workdir / 'files'}"
        f" (generated or checked in {gen_s:.1f} s)"
    )
    server, base = start_server(workdir, max_requests=2 * args.rounds * args.n + 1000)
    print(f"server: {base} (separate process, pid {server.pid})")
    rows: list[dict[str, Any]] = []
    try:
        urls = workdir / "urls.parquet"
        pl.DataFrame(
            {"url": [f"{base}/img/{f}" for f, _ in pairs], "caption": [c for _, c in pairs]}
        ).write_parquet(urls)
        srv = psutil.Process(server.pid)
        for rnd in range(1, args.rounds + 1):
            for tool in TOOLS:
                out = workdir / "runs" / f"{tool}-r{rnd}"
                shutil.rmtree(out, ignore_errors=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                s0 = sum(srv.cpu_times()[:2])
                res = measure(tool, specs(args, urls, out, tool), workdir / f"{tool}-r{rnd}.log")
                res["server_cpu"] = sum(srv.cpu_times()[:2]) - s0
                count = count_img2dataset if tool == "img2dataset" else count_curate
                res["ok"], res["failed"] = count(out)
                res.update(tool=tool, round=rnd, out=out, ips=res["ok"] / res["wall"])
                rows.append(res)
                print(f"  {tool} round {rnd}: {res['ok']} ok in {res['wall']:.1f} s", flush=True)
                if res["rc"] != 0 or res["ok"] != args.n:
                    tail = (workdir / f"{tool}-r{rnd}.log").read_text()[-3000:]
                    print(
                        f"!!! WARNING: {tool} round {rnd}: rc={res['rc']}, {res['ok']}/"
                        f"{args.n} written, failures {res['failed']}\n--- log tail ---\n{tail}"
                    )
    finally:
        server.terminate()
        server.wait()
    print(
        f"\n{'tool':<12}{'round':>6}{'ok':>7}{'wall s':>9}{'img/s':>9}{'peak MiB':>10}"
        f"{'cpu s':>8}{'server cpu s':>14}"
    )
    for r in rows:
        print(
            f"{r['tool']:<12}{r['round']:>6}{r['ok']:>7}{r['wall']:>9.1f}{r['ips']:>9.1f}"
            f"{r['rss']:>10.0f}{r['cpu']:>8.1f}{r['server_cpu']:>14.1f}"
        )
    med = {t: statistics.median(r["ips"] for r in rows if r["tool"] == t) for t in TOOLS}
    ratio = med["curate"] / med["img2dataset"] if med["img2dataset"] else float("nan")
    print(f"\nmedian img/s: img2dataset {med['img2dataset']:.1f}, curate {med['curate']:.1f}")
    print(
        f"ratio curate / img2dataset = {ratio:.2f}  (goal >= {GOAL}: "
        f"{'MET' if ratio >= GOAL else 'NOT MET'})"
    )
    if any(r["rc"] != 0 or r["ok"] != args.n for r in rows):
        print("!!! WARNING: some run failed or dropped images; the ratio is not valid")
    last = {r["tool"]: r["out"] for r in rows}
    print(resize_check(last["img2dataset"], last["curate"]))


if __name__ == "__main__":
    main()
