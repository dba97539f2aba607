"""Terminal views with rich: `curate inspect OUT` (the run at a glance) and `curate why`
(one sample's lineage). Same numbers as the HTML report: both read `curate.report.views`."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import polars as pl

from curate.engine.stage import read_timings
from curate.io.atomic import read_json
from curate.ledger import funnel, funnel_rows
from curate.report import views as V
from curate.rundir import RunDir
from curate.tables import open_ledger

__all__ = ["inspect_run", "print_lineage"]


def _console(width: int | None = None) -> Any:
    from rich.console import Console

    return Console(width=width, highlight=False)


def inspect_run(out: str, width: int | None = None) -> None:
    """Print the funnel, stage tasks and their time, shards, labels and trainer metrics."""
    from rich.table import Table

    run = RunDir(out)
    con = _console(width)
    ledger = open_ledger(run.root)
    f = funnel(ledger)
    style = {"failed": "red", "dropped": "yellow", "written": "green"}
    t = Table(title=f"funnel: {run.root}", title_justify="left")
    t.add_column("step")
    t.add_column("samples", justify="right")
    status = ""
    for depth, label, n in funnel_rows(f):
        status = label if depth == 0 else status  # a reason takes its status's colour
        t.add_row("  " * depth + label, str(n), style=style.get(status, ""))
    con.print(t)

    timings = read_timings(run)
    per: dict[str, list[float]] = defaultdict(list)
    for (stage, key), rec in timings.items():
        if run.marker(stage, key).exists():  # a task a later plan dropped no longer counts
            per[stage].append(float(rec["seconds"]))
    stages = Table(title="stages", title_justify="left")
    for col in ("stage", "tasks", "task seconds (sum)", "slowest task s"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    state = run.root / "state"
    for folder in sorted(p for p in state.iterdir() if p.is_dir()) if state.is_dir() else []:
        secs = per.get(folder.name, [])
        stages.add_row(
            folder.name,
            str(len(run.markers(folder.name))),
            f"{sum(secs):.1f}" if secs else "-",
            f"{max(secs):.1f}" if secs else "-",
        )
    con.print(stages)

    if run.sizes.exists():
        sizes = read_json(run.sizes)
        manifest = read_json(run.manifest) if run.manifest.exists() else {}
        total = sum(int(s.get("bytes", 0)) for s in manifest.get("shards", []))
        sh = Table(title="shards", title_justify="left")
        for col in ("shards", "samples", "MB", "members"):
            sh.add_column(col)
        sh.add_row(
            str(len(sizes)),
            str(sum(sizes.values())),
            f"{total / 1e6:.1f}",
            " ".join(manifest.get("members", [])),
        )
        con.print(sh)
        spec = (manifest.get("labels") or {}).get("spec")
        if spec:
            con.print(f"labels: tasks {', '.join(spec.get('tasks', []))}; seed {spec.get('seed')}")

    reasons = V.funnel_by_stage(ledger).filter(pl.col("status") != "written")
    if reasons.height:
        r = Table(title="not written, by stage", title_justify="left")
        for col in ("status", "stage", "reason", "samples"):
            r.add_column(col)
        for status, stage, reason, n in reasons.iter_rows():
            r.add_row(status, stage, str(reason), str(n), style=style.get(status, ""))
        con.print(r)

    metrics = run.root / "train" / "metrics.json"
    if metrics.exists():
        m = read_json(metrics)
        tr = Table(title="reference trainer (held-out)", title_justify="left")
        for col in ("task", "n", "accuracy", "chance", "bar", "blind", "control", "result"):
            tr.add_column(col)
        for task, v in (m.get("tasks") or {}).items():
            ok = v.get("passed", v.get("beats_chance"))
            tr.add_row(
                task,
                str(v.get("n")),
                f"{v.get('accuracy', 0):.3f}",
                f"{v.get('chance', 0):.3f}",
                f"{v.get('bar', 0):.3f}",
                f"{(v.get('blind') or {}).get('accuracy', 0):.3f}",
                f"{(v.get('control') or {}).get('accuracy', 0):.3f}",
                "passes" if ok else "FAILS",
                style="green" if ok else "red",
            )
        con.print(tr)


def _fmt(v: Any) -> str:
    """A value from the run, as literal text: captions may hold [brackets] rich would read
    as markup."""
    from rich.markup import escape

    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list):
        return escape(json.dumps(v, default=str))
    return escape(str(v))


def print_lineage(info: dict[str, Any], width: int | None = None) -> None:
    """One sample's lineage as a tree: verdict first, then each step in order."""
    from rich.tree import Tree

    con = _console(width)
    colour = {"written": "green", "dropped": "yellow", "failed": "red"}.get(info["status"], "")
    verdict = info["status"] + (f": {info['reason']}" if info.get("reason") else "")
    tree = Tree(
        f"[bold]{_fmt(info['uid'])}[/bold]  [{colour}]{_fmt(verdict)}[/{colour}]"
        f"  (decided by {_fmt(info.get('decided_by'))})"
    )
    if info.get("detail"):
        tree.add(f"detail: {_fmt(info['detail'])}")

    def branch(title: str, data: dict[str, Any] | None) -> None:
        if not data:
            return
        node = tree.add(f"[bold]{title}[/bold]")
        for k, v in data.items():
            if v is not None and v != [] and v != {}:
                node.add(f"{k}: {_fmt(v)}")

    branch("source row", info.get("source"))
    branch("fetch", info.get("fetch"))
    branch("features", info.get("features"))
    branch("sample json (raw tar)", info.get("sample_json"))
    branch("scores", info.get("scores"))
    dedup = dict(info.get("dedup") or {})
    kept = dedup.pop("kept_copy", None)
    if dedup.get("method"):
        node = tree.add("[bold]dedup[/bold]")
        node.add(f"dropped as a {_fmt(dedup['method'])} copy of {_fmt(dedup['dup_of'])}")
        if kept:
            node.add(
                f"kept copy: {_fmt(kept['uid'])} {_fmt(kept['url'])} ({_fmt(kept['status'])}, "
                f"{_fmt(kept.get('shard'))} {_fmt(kept.get('key'))})"
            )
    branch("filter", info.get("filter"))
    branch("placement", info.get("placement"))
    branch("labels", info.get("labels"))
    stages = tree.add("[bold]stages[/bold] (task, seconds, summary)")
    for s in info.get("stages") or []:
        secs = "-" if s.get("seconds") is None else f"{s['seconds']:.2f}s"
        summary = _fmt(json.dumps(s["summary"], default=str)[:160]) if s.get("summary") else ""
        stages.add(f"{_fmt(s['stage'])}: {_fmt(s['task'])} {secs} {summary}")
    con.print(tree)
