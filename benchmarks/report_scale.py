"""`curate report` on a large run: a synthetic run directory with a 1M-row ledger.

    .venv/bin/python benchmarks/report_scale.py --rows 1000000 --rounds 2

The run is built once (cached in /tmp/curate-bench/report-N): 100 partitions of ledger,
features and raw tars (every fetched sample's JPEG in its partition's tar, as a real run
keeps them: 16 distinct 128 px photos, ~4 KB each), 8 % fetch failures over 8 reasons,
12 % duplicates in clusters of 1-5 copies (exact and perceptual, with pHashes a few bits
apart), a CLIP threshold and a caption rule dropping 6 %, log-normal image sizes, captions
of 1-40 words. No shards, labels or trainer metrics: those sections read a few samples
whatever the run's size.

Anchor: a process that only reads the ledger's columns the report uses with polars
(`pl.scan_parquet(...).select(...).collect()`): the floor for anything that looks at every
row. curate: `python -m curate report DIR` as a user runs it. Both are whole processes
(interpreter start and imports included), timed alternately; peak RSS is the child's.
Goal (issue 12): a 1M-row ledger renders in under a minute.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path("/tmp/curate-bench")
PARTS = 100
REASONS = [
    "http_404",
    "http_500",
    "timeout",
    "not_image",
    "too_large",
    "truncated",
    "optout",
    "decode_error",
]
WORDS = ["a", "the", "red", "blue", "photo", "of", "cat", "dog", "on", "in", "with", "old"]


def _photos(n: int = 16) -> list[bytes]:
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry"):
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        for k in range(3):
            w, h = img.size
            crop = img.crop((k * w // 8, k * h // 8, w - k * w // 10, h - k * h // 10))
            crop.thumbnail((128, 128))
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=85)
            out.append(buf.getvalue())
    return out[:n]


def build(rows: int) -> Path:
    """The synthetic run directory (built once per size)."""
    out = BENCH / f"report-{rows}"
    if (out / "run.json").exists():
        return out
    rng = np.random.default_rng(0)
    photos = _photos()
    uids = np.array([f"{x:020x}" for x in rng.integers(0, 2**63, rows, dtype=np.int64)])
    status = np.full(rows, "written", dtype=object)
    stage = np.full(rows, "fetch", dtype=object)
    reason = np.full(rows, None, dtype=object)
    failed = rng.random(rows) < 0.08
    status[failed], reason[failed] = "failed", rng.choice(REASONS, failed.sum())
    ok = np.flatnonzero(~failed)
    dup = ok[rng.random(ok.size) < 0.12]
    kept_pool = np.setdiff1d(ok, dup)
    dup_of = np.full(rows, None, dtype=object)
    # clusters of 1-5 copies: each duplicate points at a kept sample, small clusters common
    heads = rng.choice(kept_pool, max(1, dup.size // 2))
    dup_of[dup] = uids[rng.choice(heads, dup.size)]
    method = np.full(rows, None, dtype=object)
    method[dup] = rng.choice(["exact_bytes", "perceptual"], dup.size, p=[0.4, 0.6])
    status[dup], stage[dup], reason[dup] = "dropped", "dedup", "duplicate"
    score = np.clip(rng.normal(0.78, 0.12, rows), -0.6, 0.99).astype(np.float32)
    score[failed] = np.nan
    nwords = rng.integers(0, 41, rows)
    low = (~failed) & (status == "written") & ((score < 0.5) | (nwords == 0))
    status[low], stage[low] = "dropped", "filter"
    reason[low] = np.where(nwords[low] == 0, "caption_too_short", "clip_score_low")
    caption = [" ".join(rng.choice(WORDS, k)) for k in nwords]
    mp = np.exp(rng.normal(np.log(0.6e6), 0.6, rows))
    aspect = rng.choice([1.0, 1.33, 1.5, 1.78, 0.75, 0.67], rows)
    width = np.sqrt(mp * aspect).astype(np.int32)
    height = (width / aspect).astype(np.int32)
    phash = rng.integers(0, 2**63, rows, dtype=np.int64).astype(np.uint64)
    part = np.arange(rows) * PARTS // rows
    idx = {u: i for i, u in enumerate(uids)}
    for i in dup:  # a perceptual copy's pHash is its kept sample's with a few bits flipped
        flips = rng.choice(64, rng.integers(0, 7), replace=False)
        phash[i] = phash[idx[dup_of[i]]] ^ np.uint64(sum(1 << int(b) for b in flips))
    ledger = pl.DataFrame(
        {
            "uid": uids,
            "source": "urls.parquet",
            "url": [f"https://example.org/img/{i:08d}.jpg" for i in range(rows)],
            "path": None,
            "caption": caption,
            "status": status.tolist(),
            "reason": reason.tolist(),
            "detail": None,
            "stage": stage.tolist(),
            "width": np.where(failed, 0, 256).astype(np.int32),
            "height": np.where(failed, 0, 256).astype(np.int32),
            "original_width": np.where(failed, 0, width),
            "original_height": np.where(failed, 0, height),
            "bytes": np.where(failed, 0, 4000).astype(np.int64),
            "clip_score": score,
            "clip_score_max": score,
            "dedup_method": method.tolist(),
            "dup_of": dup_of.tolist(),
            "partition": [f"{p:05d}" for p in part],
            "shard": None,
            "key": None,
        },
        schema_overrides={
            "path": pl.String,
            "detail": pl.String,
            "shard": pl.String,
            "key": pl.String,
            "reason": pl.String,
            "dedup_method": pl.String,
            "dup_of": pl.String,
        },
    )
    for d in ("ledger", "features", "raw", "ingest", "state"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for p in range(PARTS):
        name = f"{p:05d}"
        mine = ledger.filter(pl.col("partition") == name)
        mine.write_parquet(out / "ledger" / f"{name}.parquet")
        fetched = mine.filter(~((pl.col("status") == "failed") & (pl.col("stage") == "fetch")))
        sel = np.flatnonzero(part == p)
        feats = (
            pl.DataFrame({"uid": uids[sel], "phash": phash[sel]})
            .filter(pl.col("uid").is_in(fetched["uid"].implode()))
            .with_columns(frame_phash=pl.lit(None, pl.List(pl.UInt64)))
        )
        feats.write_parquet(out / "features" / f"{name}.parquet")
        with tarfile.open(out / "raw" / f"{name}.tar", "w") as tar:
            for k, uid in enumerate(fetched["uid"]):
                data = photos[(k * 7 + p) % len(photos)]
                info = tarfile.TarInfo(f"{uid}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if (p + 1) % 10 == 0:
            print(f"built partition {p + 1}/{PARTS}", file=sys.stderr, flush=True)
    config = {"filters": {"clip_min_score": 0.5, "caption_min_words": 1}}
    (out / "run.json").write_text(
        json.dumps(
            {
                "config": config,
                "config_hash": "bench",
                "name": f"report-{rows}",
                "started_at": "2026-12-07T00:00:00+00:00",
                "finished_at": "2026-12-07T01:00:00+00:00",
                "funnel": {"inputs": rows, "written": int((status == "written").sum())},
            }
        )
    )
    return out


ANCHOR = """
import sys, polars as pl
cols = ["uid", "url", "caption", "status", "stage", "reason", "dedup_method", "dup_of",
        "clip_score", "clip_score_max", "original_width", "original_height", "partition"]
df = pl.scan_parquet(sys.argv[1] + "/ledger/*.parquet").select(cols).collect()
print(df.height)
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of a whole child process."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stderr[-2000:]}")
    # ru_maxrss of children is the largest of any child so far: run the bigger one last
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    run = build(args.rows)
    anchor, ours, rss = [], [], 0.0
    for _ in range(args.rounds):
        anchor.append(timed([sys.executable, "-c", ANCHOR, str(run)])[0])
        wall, rss = timed([sys.executable, "-m", "curate", "report", str(run)])
        ours.append(wall)
    page = run / "report.html"
    html = page.read_text()
    raw_gb = sum(f.stat().st_size for f in (run / "raw").glob("*.tar")) / 1e9
    print(f"rows {args.rows:,}; raw tars {raw_gb:.2f} GB")
    print(f"{'':<24} {'wall s (median)':>16} {'range':>14}")
    for name, t in (("anchor: read ledger", anchor), ("curate report", ours)):
        print(f"{name:<24} {statistics.median(t):>16.2f} {min(t):>7.2f}-{max(t):.2f}")
    med = statistics.median(ours)
    print(
        f"report / anchor: {med / statistics.median(anchor):.1f}x; peak RSS of the report "
        f"process {rss:.0f} MB; page {page.stat().st_size / 1e6:.1f} MB, "
        f"{html.count('<img ')} images, {html.count('Plotly.newPlot')} charts; "
        f"goal under 60 s: {'met' if med < 60 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
