"""Shard checks: counts against sizes.json, unique keys, one member set, checksums."""

from __future__ import annotations

import tarfile
from pathlib import Path

from curate.io.atomic import read_json
from curate.rundir import MANIFEST, SIZES
from curate.shards.final import sha256_file
from curate.shards.tar import iter_tar_samples

__all__ = ["validate_shards"]


def validate_shards(folder: Path) -> list[str]:
    """Every problem found, each naming its shard; an empty list means the corpus is sound."""
    problems: list[str] = []
    sizes_path, manifest_path = folder / SIZES, folder / MANIFEST
    if not sizes_path.exists():
        return [f"{sizes_path}: missing"]
    sizes: dict[str, int] = read_json(sizes_path)
    manifest = read_json(manifest_path) if manifest_path.exists() else None
    if manifest is None:
        problems.append(f"{manifest_path}: missing")
    sums = {s["shard"]: s["sha256"] for s in manifest["shards"]} if manifest else {}
    members = tuple(manifest["members"]) if manifest else None
    tars = sorted(p.name for p in folder.glob("*.tar"))
    owner: dict[str, str] = {}
    for name in sorted(set(tars) - set(sizes)):
        problems.append(f"{name}: not listed in sizes.json")
    for name, expected in sizes.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: listed in sizes.json but missing")
            continue
        problems += _check_tar(path, expected, members, owner)
        if name in sums and sha256_file(path) != sums[name]:
            problems.append(f"{name}: sha256 differs from manifest.json")
    return problems


def _check_tar(
    path: Path, expected: int, members: tuple[str, ...] | None, owner: dict[str, str]
) -> list[str]:
    """Check one shard; `owner` maps keys seen so far to their shard, across the corpus."""
    seen: set[str] = set()
    count = 0
    try:
        for key, group in iter_tar_samples(path):
            count += 1
            if key in seen:
                return [f"{path.name}: duplicate key {key!r}"]
            if key in owner:
                return [f"{path.name}: key {key!r} is also in {owner[key]}"]
            seen.add(key)
            owner[key] = path.name
            if members is not None and tuple(sorted(group)) != members:
                got = sorted(group)
                return [f"{path.name}: key {key!r} has members {got}, expected {list(members)}"]
    except (tarfile.TarError, OSError, EOFError) as err:
        return [f"{path.name}: unreadable or truncated tar ({err})"]
    if count != expected:
        return [f"{path.name}: {count} samples, sizes.json says {expected}"]
    return []
