"""The reference trainer on several seeds: does a pass hold up, and do the baselines stay put?

    .venv/bin/python benchmarks/train_seeds.py demo-out/corpus --seeds 10
    .venv/bin/python benchmarks/train_seeds.py demo-out/video-corpus --seeds 10 --steps 400 \
        --held-out 0.3 --tasks itm,fom,vsm

For each seed (model init, batch order, control draws; the held-out split is the corpus's
own and stays), `curate train` runs the real model, its blind baseline and the control, and
this prints per task and seed real / blind / control / chance / bar and the verdicts, then a
summary: how often the real model passed (want every seed), how often the control cleared
chance's bar or fell below it (want never), and how often the blind baseline cleared chance's
bar (it may: the text alone teaches MLM a lot; that is why the real model is held to it).
`--json` writes every seed's metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _row(task: str, seed: int, e: dict[str, Any]) -> str:
    ctrl = (e.get("control") or {}).get("accuracy")
    blind = (e.get("blind") or {}).get("accuracy")
    return (
        f"{task:<5} {seed:>4} {e['accuracy']:>7.3f} "
        f"{'' if blind is None else f'{blind:.3f}':>7} {'' if ctrl is None else f'{ctrl:.3f}':>8} "
        f"{e['chance']:>7.3f} {e['bar']:>7.3f}  {'pass' if e['passed'] else 'FAIL'}"
        f"{'' if (e.get('control') or {}).get('at_chance', True) else ' control-out'}"
    )


def main() -> int:
    from curate.train import TrainSettings, train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--held-out", type=float, default=0.2)
    ap.add_argument("--tasks", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--json", type=Path, help="write every seed's metrics here")
    args = ap.parse_args()

    # train writes OUT/train/metrics.json: work on a copy of the shards, not the user's run
    work = Path(tempfile.mkdtemp(prefix="train-seeds-"))
    shutil.copytree(args.corpus / "shards", work / "shards")
    runs: list[dict[str, Any]] = []
    print(f"{'task':<5} {'seed':>4} {'real':>7} {'blind':>7} {'control':>8} {'chance':>7} "
          f"{'bar':>7}  verdict")  # fmt: skip
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.perf_counter()
        settings = TrainSettings(
            steps=args.steps,
            seed=seed,
            held_out=args.held_out,
            tasks=tuple(t for t in args.tasks.split(",") if t),
            progress=False,
            loader_seconds=0.2,
        )
        m = train(work, settings)
        runs.append(m)
        for task, e in m["tasks"].items():
            print(_row(task, seed, e), flush=True)
        print(f"# seed {seed}: {'passed' if m['passed'] else 'FAILED'} "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    shutil.rmtree(work)
    n = len(runs)
    print(f"\n{args.corpus}: {n} seeds, {args.steps} steps; held out "
          f"{runs[0]['samples']['held_out']} samples in "
          f"{runs[0]['samples']['held_out_groups']} groups")  # fmt: skip
    print(f"whole run passed: {sum(m['passed'] for m in runs)}/{n}")
    for task in runs[0]["tasks"]:
        es = [m["tasks"][task] for m in runs]
        real = sum(e["passed"] for e in es)
        above = sum(e["control"]["accuracy"] >= e["control"]["range"][1] for e in es)
        below = sum(e["control"]["accuracy"] <= e["control"]["range"][0] for e in es)
        blind = sum(e["blind"]["accuracy"] >= e["chance_bar"] for e in es)
        mean = sum(e["accuracy"] for e in es) / n
        print(
            f"{task:<5} real passes {real}/{n} (mean {mean:.3f}); control above chance's bar "
            f"{above}/{n}, below chance's margin {below}/{n}; blind clears chance's bar {blind}/{n}"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0 if all(m["passed"] for m in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
