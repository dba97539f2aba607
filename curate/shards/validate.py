"""Shard checks: counts against sizes.json, unique keys, one member set, checksums, and, in
a labelled corpus, every label member against the spec in manifest.json."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from PIL import Image

from curate.config import LabelsConfig
from curate.io.atomic import read_json
from curate.io.store import AnyPath
from curate.labels.members import LABELS_VERSION, Expect, check_member
from curate.media.image import IMAGE_EXTS, pictures
from curate.rundir import MANIFEST, SIZES
from curate.shards.final import sha256_file
from curate.shards.tar import iter_tar_samples

__all__ = ["validate_shards"]


def validate_shards(folder: AnyPath) -> list[str]:
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
    spec = (
        LabelsConfig.model_validate(manifest["labels"]["spec"])
        if manifest and manifest.get("labels")
        else None
    )
    refs: list[tuple[str, str, str]] = []  # (shard, key, the key an ITM/VSM negative names)
    for name in sorted(set(tars) - set(sizes)):
        problems.append(f"{name}: not listed in sizes.json")
    for name, expected in sizes.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: listed in sizes.json but missing")
            continue
        problems += _check_tar(path, expected, members, owner, spec, refs)
        if name in sums and sha256_file(path) != sums[name]:
            problems.append(f"{name}: sha256 differs from manifest.json")
    for shard, key, target in refs:
        if target not in owner:
            problems.append(f"{shard}: key {key!r}: negative {target!r} is no sample")
    return problems


def _label_spec(manifest: dict[str, Any] | None) -> tuple[LabelsConfig | None, str]:
    """The manifest's label spec, or why it is unusable."""
    if not manifest or not manifest.get("labels"):
        return None, ""
    labels = manifest["labels"]
    try:
        if labels.get("version") != LABELS_VERSION:
            return (
                None,
                f"labels version {labels.get('version')!r}, this curate reads {LABELS_VERSION}",
            )
        return LabelsConfig.model_validate(labels["spec"]), ""
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        return None, f"labels spec unusable: {err}"[:300]


_LABELS = (
    "mlm.npz",
    "patchmask.npy",
    "regions.json",
    "itm.json",
    "vsm.json",
    "fom.json",
    "audiomask.json",
)


def _check_labels(
    shard: str, key: str, group: dict[str, bytes], spec: LabelsConfig, refs: list[Any]
) -> list[str]:
    """The sample's label members against the spec; ITM targets are checked at the end."""
    try:
        expect = _expect(group)
    except Exception as err:  # a broken picture or json is named, never raised
        return [f"{shard}: key {key!r}: its picture or json does not decode: {err!r}"[:300]]
    problems = []
    for name in _LABELS:
        if name not in group:
            continue
        if name in ("itm.json", "vsm.json"):
            try:
                targets = [str(n["key"]) for n in json.loads(group[name])["negatives"]]
            except (ValueError, KeyError, TypeError) as err:
                problems.append(f"{name} does not decode: {err!r}")
                continue
            if key in targets:
                problems.append(f"{name}: the sample is its own negative")
            refs += [(shard, key, t) for t in targets]
            continue
        problems += check_member(name, group[name], spec, expect)
    return [f"{shard}: key {key!r}: {p}" for p in problems]


def _expect(group: dict[str, bytes]) -> Expect:
    width = height = 0
    shown = pictures(group)
    if shown:  # the picture labels were made from: the image, or a clip's middle frame
        with Image.open(io.BytesIO(shown[len(shown) // 2])) as im:
            width, height = im.size
    duration = 0.0
    if "json" in group:
        meta = json.loads(group["json"])
        if isinstance(meta, dict) and "start" in meta and "end" in meta:
            duration = float(meta["end"]) - float(meta["start"])
    frames = len(shown) if not any(e in group for e in IMAGE_EXTS) else 0
    return Expect(width=width, height=height, frames=frames, duration=duration)


def _check_tar(
    path: AnyPath,
    expected: int,
    members: tuple[str, ...] | None,
    owner: dict[str, str],
    spec: LabelsConfig | None = None,
    refs: list[Any] | None = None,
) -> list[str]:
    """Check one shard; `owner` maps keys seen so far to their shard, across the corpus."""
    seen: set[str] = set()
    count = 0
    labels: list[str] = []  # every broken label of the shard, not just the first
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
            if spec is not None:
                labels += _check_labels(
                    path.name, key, group, spec, refs if refs is not None else []
                )
    except (tarfile.TarError, OSError, EOFError) as err:
        return [f"{path.name}: unreadable or truncated tar ({err})"]
    if count != expected:
        return [*labels, f"{path.name}: {count} samples, sizes.json says {expected}"]
    return labels
