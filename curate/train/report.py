"""The metrics of `curate train` as the table it prints."""

from __future__ import annotations

from typing import Any

__all__ = ["format_metrics"]


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.3f}"


def format_metrics(m: dict[str, Any]) -> str:
    """Per task: held-out accuracy, the blind baseline, the control, chance and the bar."""
    s = m["samples"]
    lines = [
        f"held-out {s['held_out']} of {s['train'] + s['held_out']} samples "
        f"({s.get('held_out_groups', '?')} source groups); {m['settings']['steps']} steps; "
        + ", ".join(f"{k} {v} s" for k, v in m.get("seconds", {}).items()),
        f"{'task':<5} {'n':>6} {'real':>7} {'blind':>7} {'control':>8} {'chance':>7} "
        f"{'bar':>7}  result",
    ]
    for task, e in m["tasks"].items():
        ctrl = e.get("control") or {}
        if e["passed"]:
            verdict = f"passes (beats {e['bar_from']})"
        elif not e["beats_chance"]:
            verdict = "NOT above chance"
        else:
            verdict = "NOT above the blind baseline"
        if ctrl and not ctrl["at_chance"]:
            verdict += "; control outside chance (leak or bias)"
        lines.append(
            f"{task:<5} {e['n']:>6} {e['accuracy']:>7.3f} "
            f"{_num((e.get('blind') or {}).get('accuracy')):>7} {_num(ctrl.get('accuracy')):>8} "
            f"{e['chance']:>7.3f} {e['bar']:>7.3f}  {verdict} [{e['chance_kind']}]"
        )
    for name, why in (m.get("untested") or {}).items():
        lines.append(f"untested: {name} ({why})")
    sk = m["skipped"]
    if sk["count"] or sk["samples_unread"]:
        where = ", ".join(f"{f['shard']}:{f['key'] or '-'} {f['reason']}" for f in sk["faults"][:3])
        lines.append(
            f"skipped {sk['count']} unreadable shards or samples "
            f"({'?' if sk['samples_unread'] is None else sk['samples_unread']} samples of "
            f"sizes.json not read): {where}"
        )
    ld = m["loader"]
    lines.append(
        f"loader {ld['samples_per_s']} samples/s; plain webdataset decoding "
        f"{ld['plain_webdataset_samples_per_s']} samples/s; ratio {ld['ratio']}"
    )
    return "\n".join(lines)
