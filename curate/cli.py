"""The `curate` commands (run, demo, validate, cat, train...): thin wrappers over the API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curate.io.store import AnyPath

__all__ = ["format_funnel", "main"]


def format_funnel(funnel: dict[str, Any]) -> str:
    from curate.ledger import funnel_rows

    width = {0: (8, 8), 1: (22, 6), 2: (20, 6)}
    return "\n".join(
        f"{'  ' * (depth + 1)}{label:<{width[depth][0]}} {n:>{width[depth][1]}}"
        for depth, label, n in funnel_rows(funnel)
    )


def _print_result(out: AnyPath, funnel: dict[str, Any], seconds: float) -> None:
    from curate.rundir import RunDir

    run = RunDir(out)
    print(f"\nfunnel ({seconds:.1f}s):")
    print(format_funnel(funnel))
    print(f"\nshards:  {run.shards_dir}")
    print(f"ledger:  {run.ledger_dir}")
    print(f"run.json {run.run_json}")


def _cmd_run(args: argparse.Namespace) -> int:
    from curate.pipeline import run

    res = run(
        args.config,
        args.output,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
    )
    _print_result(res.output, res.funnel, res.seconds)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from curate.demo import run_demo, run_video_demo

    t0 = time.perf_counter()
    res = run_demo(
        args.output,
        n_items=args.items,
        config=args.config,
        overwrite=True,
        progress=not args.quiet,
        scheduler=args.scheduler,
    )
    print("\nimage-text corpus")
    _print_result(res.output, res.funnel, time.perf_counter() - t0)
    if args.no_video:
        return 0
    t1 = time.perf_counter()
    video = run_video_demo(
        args.output,
        lessons=args.lessons,
        overwrite=True,
        progress=not args.quiet,
        scheduler=args.scheduler,
    )
    print("\nvideo-text corpus (subtitle clips: mp4, flac, txt, json, frames)")
    _print_result(video.output, video.funnel, time.perf_counter() - t1)
    return 0


def _finished_run(path: str) -> Any:
    """The RunDir at `path`, or a CurateError naming what is missing (no traceback)."""
    from curate.errors import CurateError
    from curate.rundir import RunDir

    run = RunDir(path)  # a path or a store URL (credentials from the environment)
    if not run.ledger_dir.is_dir() or not any(run.ledger_dir.glob("*.parquet")):
        raise CurateError(f"{path}: no ledger/*.parquet here (not a finished curate run)")
    return run


def _cmd_inspect(args: argparse.Namespace) -> int:
    from curate.report.terminal import inspect_run

    inspect_run(str(_finished_run(args.run_dir).root))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from curate.report import build_report

    r = build_report(_finished_run(args.run_dir).root, args.output)
    print(f"report: {r.path} ({r.bytes / 1e6:.1f} MB, {r.charts} charts, {r.images} images, "
          f"{r.seconds:.1f}s)")  # fmt: skip
    return 0


def _cmd_why(args: argparse.Namespace) -> int:
    import json

    from curate.errors import CurateError
    from curate.report.lineage import find, lineage
    from curate.report.terminal import print_lineage

    run = _finished_run(args.run_dir)
    rows = find(run, args.sample)
    if rows.height == 0:
        raise CurateError(f"{args.sample}: no sample of {run.root} has this uid, url or prefix")
    for row in rows.sort("uid").iter_rows(named=True):
        info = lineage(run, row)
        if args.json:
            print(json.dumps(info, default=str, sort_keys=True))
        else:
            print_lineage(info)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """Which CLIP threshold keeps each fraction, for this run's model on this run's corpus;
    with --apply, refilter and reshard the run at that threshold (no fetching)."""
    import math

    import numpy as np
    import polars as pl

    from curate.errors import CurateError
    from curate.filters.rules import calibrate
    from curate.io.atomic import read_json
    from curate.rundir import RunDir
    from curate.tables import clip_scores, read_dedup

    run = RunDir(args.run_dir)
    if not run.is_run():
        raise CurateError(f"{run.root}: not a curate run directory (no run.json of curate's)")
    if args.apply and args.with_duplicates:
        raise CurateError("--apply filters dedup's survivors; drop --with-duplicates")
    scores = clip_scores(run)
    if scores.height == 0:
        raise CurateError(f"{run.root}: no CLIP scores (features/*.clip.parquet); enable `clip`")
    if not args.with_duplicates:
        scores = scores.filter(~pl.col("uid").is_in(read_dedup(run)["uid"].implode()))
    info = read_json(run.run_json)
    config = info["config"]
    clip = config.get("clip", {})
    s = scores["clip_score"].drop_nulls().to_numpy()
    print(f"model {clip.get('model')} / {clip.get('pretrained')} ({clip.get('precision')})")
    lo, mid, hi = (float(q) for q in np.quantile(s, [0.0, 0.5, 1.0]))
    print(f"{s.size} scored samples: min {lo:.4f}, median {mid:.4f}, max {hi:.4f}")
    print("keep    threshold   (filters.clip_min_score)")
    thresholds = calibrate(s, args.keep)
    for fraction, threshold in thresholds.items():
        print(f"{fraction:>5.0%}   {threshold:9.4f}")
    if not args.apply:
        return 0
    if len(args.keep) != 1:
        raise CurateError("--apply takes exactly one --keep fraction")
    if not info.get("finished_at"):
        raise CurateError(f"{run.root}: the run has not finished; rerun `curate run` first")
    if config.get("filters", {}).get("clip_top_fraction") is not None:
        raise CurateError(
            "this run's config sets filters.clip_top_fraction; --apply sets clip_min_score, "
            "and both would apply: remove clip_top_fraction from the config and rerun instead"
        )
    threshold = thresholds[args.keep[0]]
    if not math.isfinite(threshold):
        raise CurateError(f"--keep {args.keep[0]} keeps no sample; choose a larger fraction")
    from curate.pipeline import run as run_pipeline
    from curate.pipeline import unmasked

    config["filters"] = {**config.get("filters", {}), "clip_min_score": threshold}
    config["storage_options"] = unmasked(config.get("storage_options") or {})
    print(f"\napplying filters.clip_min_score = {threshold!r}: refilter and reshard, no fetch")
    res = run_pipeline(config, run.root, scheduler=args.scheduler, progress=not args.quiet)
    _print_result(res.output, res.funnel, res.seconds)
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """--storage-options JSON ({"s3": {"endpoint_url": ...}}), or {} (credentials and
    endpoints then come from the environment, e.g. AWS_ENDPOINT_URL)."""
    import json

    from curate.errors import CurateError

    if not args.storage_options:
        return {}
    try:
        found = json.loads(args.storage_options)
    except ValueError as err:
        raise CurateError(f"--storage-options: not JSON ({err})") from None
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise CurateError('--storage-options: expected {"PROTOCOL": {OPTION: VALUE}}')
    return found


def _cmd_validate(args: argparse.Namespace) -> int:
    from curate.io.store import location
    from curate.shards.validate import validate_shards

    notes: list[str] = []
    where = location(args.shards, _options(args))
    problems = validate_shards(where, args.labels_sample, notes)
    for p in problems:
        print(f"FAIL {p}")
    for note in notes:
        print(f"note: {note}")
    if not problems:
        print(f"ok: {args.shards}")
    return 1 if problems else 0


def _cmd_cat(args: argparse.Namespace) -> int:
    """Stream objects to stdout, for webdataset's `pipe:` URLs on any fsspec store."""
    from curate.io.store import location

    out = sys.stdout.buffer
    for url in args.urls:
        with location(url, _options(args)).open("rb") as f:
            while block := f.read(1 << 20):
                out.write(block)
    out.flush()
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train the reference model; exit 1 when a task present does not beat chance."""
    from curate.train import TrainSettings, format_metrics, train

    settings = TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        held_out=args.held_out,
        seed=args.seed,
        device=args.device,
        control=not args.no_control,
        blind=not args.no_blind,
        negatives=args.negatives,
        batch_negatives=args.batch_negatives,
        max_skipped=args.max_skipped,
        progress=not args.quiet,
        tasks=tuple(args.tasks.split(",")) if args.tasks else (),
    )
    metrics = train(Path(args.run_dir), settings)
    print(format_metrics(metrics))
    print(f"metrics: {Path(metrics['corpus']) / 'train' / 'metrics.json'}")
    if not metrics["passed"]:
        for task in metrics["failures"]:
            e = metrics["tasks"].get(task)
            if e is None:
                why = "nothing held out could be scored"
            elif not e["beats_chance"]:
                why = "held-out accuracy does not beat chance"
            else:
                why = "held-out accuracy does not beat the blind (pictures removed) baseline"
            print(f"FAIL {task}: {why}", file=sys.stderr)
        sk = metrics["skipped"]
        if sk["over_limit"]:
            first = sk["faults"][0] if sk["faults"] else None
            where = f"; first: {first['shard']}: {first['reason']}" if first else ""
            print(
                f"FAIL shards: {sk['count']} unreadable shards or samples skipped, "
                f"{sk['samples_unread']} samples of sizes.json not read{where} "
                "(`curate validate` names each fault)",
                file=sys.stderr,
            )
        for task in metrics["leaks"]:
            c = metrics["tasks"][task]["control"]
            side = "above" if c["accuracy"] >= c["range"][1] else "below"
            what = "the evaluation leaks" if side == "above" else "the scoring is biased"
            print(
                f"FAIL {task}: the random-label control is {side} chance ({what})",
                file=sys.stderr,
            )
        return 1
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from curate.schemas import check_schemas, write_schemas

    out = Path(args.out)
    if args.check:
        drift = check_schemas(out)
        for name in drift:
            print(f"schema drift: {out / name} (run `curate schema`)")
        return 1 if drift else 0
    for path in write_schemas(out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curate", description=__doc__)
    p.add_argument("--version", action="version", version="curate 0.1.0")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a pipeline YAML into an output run directory")
    r.add_argument("config", help="pipeline YAML, e.g. pipelines/image_text.yaml")
    r.add_argument("-o", "--output", required=True, help="run directory")
    r.add_argument("--scheduler", help="tcp://HOST:PORT of an existing Dask scheduler")
    r.add_argument("--overwrite", action="store_true", help="discard a run with another config")
    r.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-fetch inputs of an earlier run that failed transiently, merging them in",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=_cmd_run)

    d = sub.add_parser("demo", help="build and serve a synthetic web, then run demo.yaml on it")
    d.add_argument("-o", "--output", default="demo-out", help="folder for web/ and corpus/")
    d.add_argument("-n", "--items", type=int, default=1000, help="synthetic items to generate")
    d.add_argument(
        "--lessons", type=int, default=12, help="sweep videos of ten clips each for the video demo"
    )
    d.add_argument("--config", help="pipeline YAML (default: pipelines/demo.yaml)")
    d.add_argument("--scheduler", help="tcp://HOST:PORT of an existing Dask scheduler")
    d.add_argument("--no-video", action="store_true", help="skip the video-text corpus")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(fn=_cmd_demo)

    i = sub.add_parser("inspect", help="a run at a glance: funnel, stages, shards, training")
    i.add_argument("run_dir")
    i.set_defaults(fn=_cmd_inspect)

    rp = sub.add_parser("report", help="write OUT/report.html, one self-contained audit page")
    rp.add_argument("run_dir")
    rp.add_argument("-o", "--output", help="where to write it (default: RUN_DIR/report.html)")
    rp.set_defaults(fn=_cmd_report)

    w = sub.add_parser("why", help="one sample's lineage: every step, score and decision")
    w.add_argument("run_dir")
    w.add_argument("sample", help="a uid, a url, a source video's uid, or a uid prefix")
    w.add_argument("--json", action="store_true", help="print the lineage as JSON lines")
    w.set_defaults(fn=_cmd_why)

    c = sub.add_parser("calibrate", help="print the CLIP threshold that keeps X%% of a run")
    c.add_argument("run_dir")
    c.add_argument(
        "--keep",
        type=float,
        nargs="+",
        default=[0.9, 0.7, 0.5, 0.3, 0.1],
        help="fractions to keep (default: 0.9 0.7 0.5 0.3 0.1)",
    )
    c.add_argument("--with-duplicates", action="store_true", help="count samples dedup dropped too")
    c.add_argument(
        "--apply",
        action="store_true",
        help="set the one --keep fraction's threshold as filters.clip_min_score and rerun "
        "the stages after CLIP (no network requests)",
    )
    c.add_argument("--scheduler", help="tcp://HOST:PORT of a Dask scheduler (with --apply)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars (with --apply)")
    c.set_defaults(fn=_cmd_calibrate)

    v = sub.add_parser(
        "validate",
        help="check shards against sizes.json and manifest.json, and recompute every label",
    )
    v.add_argument(
        "shards",
        help="the shards/ folder of a run, or the run directory itself (then ITM/VSM "
        "negatives are recomputed from its text embeddings); a path or a URL: s3://...",
    )
    v.add_argument(
        "--labels-sample",
        type=int,
        default=None,
        metavar="N",
        help="recompute the labels of a seeded sample of N samples (default: every sample "
        "up to 100,000, then a sample of 100,000; 0: no label recomputation)",
    )
    v.add_argument("--storage-options", help='fsspec options as JSON: {"s3": {...}}')
    v.set_defaults(fn=_cmd_validate)

    ct = sub.add_parser(
        "cat",
        help="write objects (s3://, gs://, ...) to stdout, e.g. for "
        "WebDataset('pipe:curate cat s3://bucket/run/shards/00000.tar')",
    )
    ct.add_argument("urls", nargs="+")
    ct.add_argument("--storage-options", help='fsspec options as JSON: {"s3": {...}}')
    ct.set_defaults(fn=_cmd_cat)

    t = sub.add_parser("train", help="train the reference model on a labelled corpus")
    t.add_argument("run_dir", help="a finished run directory whose corpus carries labels")
    t.add_argument("--steps", type=int, default=1500, help="optimiser steps (default 1500)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--held-out", type=float, default=0.2, help="fraction of samples held out")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    t.add_argument("--tasks", help="comma-separated subset, e.g. mlm,itm (default: all present)")
    t.add_argument(
        "--negatives", type=int, default=1, help="stored ITM/VSM negatives per sample per step"
    )
    t.add_argument(
        "--batch-negatives",
        type=int,
        default=1,
        help="other samples' captions in the batch paired as ITM negatives per step",
    )
    t.add_argument(
        "--max-skipped",
        type=int,
        default=0,
        help="unreadable samples tolerated (skipped and counted) before exiting 1",
    )
    t.add_argument(
        "--no-control", action="store_true", help="skip the random-label control (untested)"
    )
    t.add_argument(
        "--no-blind", action="store_true", help="skip the pictures-removed baseline (untested)"
    )
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    t.set_defaults(fn=_cmd_train)

    s = sub.add_parser("schema", help="write the JSON Schemas into schemas/")
    s.add_argument("--out", default="schemas")
    s.add_argument("--check", action="store_true", help="fail if the checked-in files drifted")
    s.set_defaults(fn=_cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    args = build_parser().parse_args(argv)
    from curate.errors import CurateError

    try:
        return int(args.fn(args))
    except CurateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished partitions are kept; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
