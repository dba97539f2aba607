"""Download throughput: curate's whole pipeline against img2dataset, same data, same host.

What it measures. N web-like JPEGs (default 3,000; median 0.6 MP and ~100 KB, some spread, a
few 2–4 MP; made once from scikit-image's bundled photos and cached in --workdir, see
_bench_images.py) are held in memory by one local aiohttp server running in its own
subprocess, so neither tool shares a process or a GIL with it. img2dataset (CLI, 2 processes ×
32 threads) and curate (`python -m curate run`, 2 Dask workers, default stages: fetch,
features, exact + perceptual dedup, shards) then alternate for --rounds rounds, each in a
fresh process and output folder, both asked for keep_ratio 256 px resizes re-encoded as JPEG
q95 into 500-sample WebDataset shards (6 shards, so img2dataset's 2 processes get equal
work).

Per run:
  wall     the whole process: interpreter start, imports, cluster start-up, fetching,
           every later stage, writing shards and exiting.
  start    process start → the first image request reaching the server (imports, cluster).
  fetch    first → last image request: the steady state; "steady img/s" is N / fetch.
  tail     last request → exit (last decodes, later stages, shards, shutdown).
  cpu      user+sys of the whole process tree (getrusage of reaped children).
  peak MiB sum of RSS over the tree, sampled every 0.1 s.
  server   CPU the HTTP server spent on that run; it competes for the same cores.

The limit. Before the rounds, the benchmark times in this process, on one core, the ideal
per-image pipeline on the same files: reduced-size JPEG decode (libjpeg-turbo DCT scaling via
simplejpeg, or Pillow's draft mode, whichever is faster), BOX resize to keep_ratio 256 and
Pillow JPEG q95 encode. Its images/s × 2 cores is the ceiling no downloader can pass on this
machine; curate's whole-process and steady-state rates are printed as fractions of it.

Left out: real networks (latency, DNS, TLS, slow or failing hosts) — the server is on
127.0.0.1 and answers from memory; disk speed (outputs go to --workdir); img2dataset's
optional features. The goal lines are the issue's: curate / img2dataset >= 2.0 whole-process
and curate >= 60 % of the limit. A tool that fails or drops images prints a loud WARNING: its
speed is then not comparable. --load N runs N busy-loop processes beside each run, to
reproduce a loaded machine.
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
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil  # type: ignore[import-untyped,unused-ignore]
from _bench_images import ensure_images, size_summary
from PIL import Image

TOOLS = ("img2dataset", "curate")
GOAL_RATIO = 2.0
GOAL_LIMIT = 0.6
SIZE, QUALITY, CORES, PER_SHARD = 256, 95, 2, 500
ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, os, sys, time
from pathlib import Path
from aiohttp import web

folder, parent = Path(sys.argv[1]), int(sys.argv[2])
files = {p.name: p.read_bytes() for p in folder.glob("*.jpg")}
stats = {"count": 0, "first": None, "last": None}

async def image(request):
    body = files.get(request.match_info["name"])
    if body is None:
        raise web.HTTPNotFound()
    now = time.time()
    stats["count"] += 1
    stats["first"] = stats["first"] or now
    stats["last"] = now
    return web.Response(body=body, content_type="image/jpeg")

async def get_stats(request):
    return web.json_response(stats)

async def reset(request):
    stats.update(count=0, first=None, last=None)
    return web.json_response(stats)

async def main():
    app = web.Application()
    app.add_routes([web.get("/img/{name}", image), web.get("/_stats", get_stats),
                    web.get("/_reset", reset)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    while os.getppid() == parent:  # stop by itself once the benchmark is gone
        await asyncio.sleep(1.0)

asyncio.run(main())
"""


def start_server(files: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-c", SERVER, str(files), str(os.getpid())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def server_call(base: str, what: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_{what}", timeout=10) as r:
        result: dict[str, Any] = json.loads(r.read())
        return result


def start_load(n: int) -> list[subprocess.Popen[bytes]]:
    """N busy-loop processes: the 'another job is running' case."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def ideal_seconds(data: bytes) -> tuple[float, float]:
    """One image through the ideal pipeline, both decode paths: (simplejpeg s, Pillow s)."""
    import simplejpeg

    out = []
    for path in ("simplejpeg", "pillow"):
        t0 = time.perf_counter()
        if path == "simplejpeg":
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            s = SIZE / min(w, h)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            arr = simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_width=size[0], min_height=size[1], fastdct=True
            )
            im = Image.fromarray(arr, "RGB")
        else:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            s = SIZE / min(w, h)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            im.draft("RGB", size)
            im = im.convert("RGB")
        if im.size != size:
            im = im.resize(size, Image.Resampling.BOX)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=QUALITY)
        out.append(time.perf_counter() - t0)
    return out[0], out[1]


def measure_limit(files: list[Path], k: int) -> tuple[float, str]:
    """Per-core ideal images/s on an even sample of `k` files (best of two passes) × CORES."""
    pick = files[:: max(1, len(files) // k)][:k]
    blobs = [p.read_bytes() for p in pick]
    best = [float("inf"), float("inf")]
    for _ in range(2):
        tot = [0.0, 0.0]
        for b in blobs:
            a, p = ideal_seconds(b)
            tot[0] += a
            tot[1] += p
        best = [min(x, y) for x, y in zip(best, tot, strict=True)]
    per_image = min(best) / len(blobs)
    detail = (
        f"per image on one core: simplejpeg path {1e3 * best[0] / len(blobs):.2f} ms, "
        f"Pillow draft path {1e3 * best[1] / len(blobs):.2f} ms ({len(blobs)} images)"
    )
    return CORES / per_image, detail


def tree_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run one tool's process; wall seconds, peak tree RSS, CPU, return code, start time."""
    cpu0, peak = tree_cpu(), 0
    env = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1"}
    t_start, t0 = time.time(), time.perf_counter()
    with log.open("w") as fh:
        proc = psutil.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
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
    return {
        "wall": wall,
        "t_start": t_start,
        "rss": peak / 2**20,
        "cpu": tree_cpu() - cpu0,
        "rc": proc.returncode,
    }


def command(tool: str, urls: Path, out: Path, args: argparse.Namespace) -> list[str]:
    if tool == "img2dataset":
        exe = str(Path(sys.executable).with_name("img2dataset"))
        opts = dict(
            url_list=urls,
            output_folder=out,
            input_format="parquet",
            url_col="url",
            caption_col="caption",
            timeout=10,
            retries=0,
            output_format="webdataset",
            number_sample_per_shard=PER_SHARD,
            processes_count=CORES,
            thread_count=args.threads,
            distributor="multiprocessing",
            image_size=SIZE,
            resize_mode="keep_ratio",
            encode_format="jpg",
            encode_quality=QUALITY,
            enable_wandb=False,
            disallowed_header_directives="[]",
        )
        return [exe, *(f"--{k}={v}" for k, v in opts.items())]
    config = {
        "sources": [{"path": str(urls)}],
        "ingest": {"samples_per_partition": args.partition},
        "fetch": {"threads": args.curate_threads, "retries": 0, "allow_private_networks": True},
        "image": {"size": SIZE, "resize_mode": "keep_ratio", "encode_quality": QUALITY},
        "dedup": {"enabled": args.dedup},
        "shards": {"samples_per_shard": PER_SHARD},
        "engine": {"n_workers": CORES, "threads_per_worker": 1},
    }
    cfg = out.with_suffix(".yaml")
    cfg.write_text(json.dumps(config))  # JSON is YAML
    return [sys.executable, "-m", "curate", "run", str(cfg), "-o", str(out), "-q"]


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
        sys.path.insert(0, str(ROOT))
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
    diffs, same = [], 0
    for i in pick:
        x, y = (Image.open(io.BytesIO(d[common[i]])).convert("RGB") for d in (a, b))
        if x.size == y.size:
            same += 1
            diffs.append(float(np.abs(np.asarray(x, float) - np.asarray(y, float)).mean()))
    if not diffs:
        return "resize check: output sizes differ for every sample"
    return (
        f"resize check: {same}/{len(pick)} samples the same size in both tools; mean abs pixel "
        f"diff {statistics.mean(diffs):.2f}, max per-image {max(diffs):.2f} (0-255)"
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (range {min(values):.2f}–{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/curate-bench"))
    ap.add_argument("--threads", type=int, default=32, help="img2dataset threads per process")
    ap.add_argument("--curate-threads", type=int, default=16, help="curate fetch.threads")
    ap.add_argument("--partition", type=int, default=250, help="curate samples_per_partition")
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes beside each run")
    ap.add_argument("--limit-n", type=int, default=600, help="images timed for the limit")
    ap.add_argument("--dedup", action="store_true", help="keep curate's dedup stage on")
    ap.add_argument("--only", choices=TOOLS, help="run one tool only")
    args = ap.parse_args()

    from importlib.metadata import version

    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  cpus: {os.cpu_count()}  python "
        f"{platform.python_version()}  Pillow {version('Pillow')}  simplejpeg "
        f"{version('simplejpeg')}  img2dataset {version('img2dataset')}  dask "
        f"{version('distributed')}  aiohttp {version('aiohttp')}  load {args.load}"
    )
    workdir: Path = args.workdir.resolve()
    pairs, gen_s = ensure_images(workdir, args.n)
    paths = [workdir / "files" / f for f, _ in pairs]
    total_mb = sum(p.stat().st_size for p in paths) / 2**20
    print(f"images: {len(pairs)} JPEGs, {total_mb:.0f} MiB (made or checked in {gen_s:.1f} s)")
    print(f"        {size_summary(paths)}")
    limit, detail = measure_limit(paths, args.limit_n)
    print(f"limit:  {limit:.0f} img/s on {CORES} cores; {detail}")

    serve = workdir / "serve"  # exactly the N files, so the server holds no others
    shutil.rmtree(serve, ignore_errors=True)
    serve.mkdir()
    for p in paths:
        os.link(p, serve / p.name)
    server, base = start_server(serve)
    print(f"server: {base} (aiohttp, separate process, pid {server.pid})", flush=True)
    urls = workdir / "urls.parquet"
    pl.DataFrame(
        {"url": [f"{base}/img/{f}" for f, _ in pairs], "caption": [c for _, c in pairs]}
    ).write_parquet(urls)
    srv = psutil.Process(server.pid)
    tools = (args.only,) if args.only else TOOLS
    rows: list[dict[str, Any]] = []
    hogs = start_load(args.load)
    try:
        for rnd in range(1, args.rounds + 1):
            for tool in tools if rnd % 2 else tools[::-1]:
                out = workdir / "runs" / f"{tool}-r{rnd}"
                shutil.rmtree(out, ignore_errors=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                server_call(base, "reset")
                s0 = sum(srv.cpu_times()[:2])
                log = workdir / "runs" / f"{tool}-r{rnd}.log"
                res = measure(command(tool, urls, out, args), log)
                res["server_cpu"] = sum(srv.cpu_times()[:2]) - s0
                st = server_call(base, "stats")
                count = count_img2dataset if tool == "img2dataset" else count_curate
                res["ok"], res["failed"] = count(out)
                first, last = st["first"] or res["t_start"], st["last"] or res["t_start"]
                res.update(tool=tool, round=rnd, out=out, ips=res["ok"] / res["wall"])
                res["start"] = first - res["t_start"]
                res["fetch"] = max(1e-9, last - first)
                res["tail"] = res["wall"] - res["start"] - res["fetch"]
                res["steady"] = st["count"] / res["fetch"]
                rows.append(res)
                print(f"  {tool} round {rnd}: {res['ok']} ok in {res['wall']:.1f} s", flush=True)
                if res["rc"] != 0 or res["ok"] != args.n:
                    print(
                        f"!!! WARNING: {tool} round {rnd}: rc={res['rc']}, {res['ok']}/"
                        f"{args.n} written, failures {res['failed']}\n--- log tail ---\n"
                        f"{log.read_text()[-3000:]}"
                    )
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        server.terminate()
        server.wait()
    print(
        f"\n{'tool':<12}{'rnd':>4}{'ok':>6}{'wall s':>8}{'img/s':>7}{'start s':>8}{'fetch s':>8}"
        f"{'steady img/s':>13}{'tail s':>7}{'cpu s':>7}{'peak MiB':>9}{'server cpu':>11}"
    )
    for r in rows:
        print(
            f"{r['tool']:<12}{r['round']:>4}{r['ok']:>6}{r['wall']:>8.1f}{r['ips']:>7.0f}"
            f"{r['start']:>8.1f}{r['fetch']:>8.1f}{r['steady']:>13.0f}{r['tail']:>7.1f}"
            f"{r['cpu']:>7.1f}{r['rss']:>9.0f}{r['server_cpu']:>11.1f}"
        )
    by = {t: [r for r in rows if r["tool"] == t] for t in tools}
    print()
    for t in tools:
        print(
            f"{t:<12} whole-process img/s {spread([r['ips'] for r in by[t]])}; steady img/s "
            f"{spread([r['steady'] for r in by[t]])}; cpu s {spread([r['cpu'] for r in by[t]])}"
        )
    if len(tools) == 2:
        pair = list(zip(by["img2dataset"], by["curate"], strict=True))
        whole = [c["ips"] / i["ips"] for i, c in pair if i["ips"]]
        steady = [c["steady"] / i["steady"] for i, c in pair]
        ok = bool(whole) and statistics.median(whole) >= GOAL_RATIO
        print(
            f"curate / img2dataset whole-process: {spread(whole) if whole else 'n/a'} "
            f"(goal >= {GOAL_RATIO}: {'MET' if ok else 'NOT MET'}); steady: {spread(steady)}"
        )
    if "curate" in by:
        frac = [r["ips"] / limit for r in by["curate"]]
        fs = [r["steady"] / limit for r in by["curate"]]
        ok = statistics.median(frac) >= GOAL_LIMIT
        print(
            f"curate / {CORES}-core limit ({limit:.0f} img/s): whole-process {spread(frac)} "
            f"(goal >= {GOAL_LIMIT}: {'MET' if ok else 'NOT MET'}); steady {spread(fs)}"
        )
    if any(r["rc"] != 0 or r["ok"] != args.n for r in rows):
        print("!!! WARNING: some run failed or dropped images; its speed is not comparable")
    if len(tools) == 2:
        print(resize_check(by["img2dataset"][-1]["out"], by["curate"][-1]["out"]))


if __name__ == "__main__":
    main()
