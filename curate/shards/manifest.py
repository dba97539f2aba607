"""sizes.json, manifest.json and the dataset card, written after every shard is done.

sizes.json is what open_clip's loader reads beside the tars; the card's `configs` make
`datasets.load_dataset(<shards folder>)` read only the tars, and the folder a valid Hub repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.io.atomic import write_bytes, write_json

__all__ = ["write_card", "write_manifest"]

MANIFEST_VERSION = 1


def write_manifest(
    shards_dir: Path, summaries: list[dict[str, Any]], members: list[str], config_hash: str
) -> dict[str, Any]:
    """Write sizes.json then manifest.json (last: its presence means the corpus is complete)."""
    sizes = {s["shard"]: s["samples"] for s in summaries}
    write_json(shards_dir / "sizes.json", sizes)
    manifest = {
        "version": MANIFEST_VERSION,
        "config_hash": config_hash,
        "members": members,
        "total_samples": sum(sizes.values()),
        "shards": [{k: s[k] for k in ("shard", "samples", "bytes", "sha256")} for s in summaries],
    }
    write_json(shards_dir / "manifest.json", manifest)
    return manifest


def write_card(
    shards_dir: Path, name: str, manifest: dict[str, Any], funnel: dict[str, Any]
) -> None:
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
    write_bytes(shards_dir / "README.md", "\n".join(lines).encode())
