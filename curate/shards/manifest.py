"""sizes.json, manifest.json and the dataset card, written after every shard is done.

sizes.json is what open_clip's loader reads beside the tars; the card's `configs` make
`datasets.load_dataset(<shards folder>)` read only the tars, and the folder a valid Hub repo.
"""

from __future__ import annotations

from typing import Any

from curate.io.atomic import write_bytes, write_json
from curate.rundir import RunDir
from curate.tables import MANIFEST_VERSION, Manifest

__all__ = ["write_card", "write_manifest"]


def write_manifest(
    run_dir: str, summaries: list[dict[str, Any]], members: list[str], config_hash: str
) -> dict[str, Any]:
    """Remove tars no shard task wrote (an earlier, larger plan's), write sizes.json, then
    manifest.json (last: its presence means the corpus is complete)."""
    run = RunDir(run_dir)
    planned = {s["shard"] for s in summaries}
    for stale in run.shard_files():
        if stale.name not in planned:
            stale.unlink()
    run.manifest.unlink(missing_ok=True)
    sizes = {s["shard"]: s["samples"] for s in summaries}
    write_json(run.sizes, sizes)
    manifest = Manifest.model_validate(
        {
            "version": MANIFEST_VERSION,
            "config_hash": config_hash,
            "members": members,
            "total_samples": sum(sizes.values()),
            "shards": summaries,
        }
    ).model_dump(mode="json")
    write_json(run.manifest, manifest)
    return {"shards": len(summaries), "total_samples": manifest["total_samples"]}


def write_card(run: RunDir, name: str, manifest: dict[str, Any], funnel: dict[str, Any]) -> None:
    """A Hugging Face dataset card whose YAML points data_files at the tars."""
    failed = funnel.get("failed") or {}
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "*.tar"',
        "tags:",
        "- webdataset",
        "- curate",
        "---",
        "",
        f"# {name}",
        "",
        "WebDataset shards built by curate. Each sample has the members "
        + ", ".join(f"`{m}`" for m in manifest["members"])
        + "; `sizes.json` gives each shard's sample count and `manifest.json` its checksum.",
        "",
        "| inputs | written | shards |",
        "|---:|---:|---:|",
        f"| {funnel.get('inputs', 0)} | {manifest['total_samples']} | {len(manifest['shards'])} |",
        "",
    ]
    if isinstance(failed, dict) and failed:
        lines += ["Failed inputs by reason:", ""]
        lines += [f"- `{reason}`: {n}" for reason, n in failed.items()]
        lines.append("")
    write_bytes(run.card, "\n".join(lines).encode())
