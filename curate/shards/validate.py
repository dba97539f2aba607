"""Shard checks: counts against sizes.json, unique keys, one member set, checksums, and, in
a labelled corpus, every label member recomputed from its sample (`curate.labels.verify`).

Two passes. The first reads every shard whole: its structure, and what the label checks
need to know of every sample (its shard, its txt, whether negatives carry similarities). A
broken shard is reported once, with its first fault and a count of the rest, and its keys
are still registered, so other samples' negatives into it do not each fail. The second
recomputes the labels of every sample of the sound shards, or of a seeded sample of them.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field

import numpy as np

from curate.io.atomic import read_json
from curate.io.store import AnyPath, load_npy
from curate.labels.corpus import build_corpus, text_embeddings
from curate.labels.verify import (
    LabelSpec,
    choose_sample,
    codebook_problems,
    read_label_spec,
    sample_problems,
)
from curate.labels.verify_negatives import NegativeChecks, has_similarity
from curate.rundir import MANIFEST, SIZES, RunDir
from curate.shards.final import sha256_file
from curate.shards.tar import iter_tar_samples, read_keys

__all__ = ["LABELS_SAMPLE", "validate_shards"]

LABELS_SAMPLE = 100_000  # samples whose labels are recomputed by default; all up to this
_NEGATIVES = ("itm.json", "vsm.json")


@dataclass
class _Scan:
    """What the first pass learnt: each key's shard and txt, the shards in order with their
    keys, the broken ones, and whether any negative carries a similarity."""

    owner: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    embedded: bool = False


def validate_shards(
    folder: AnyPath, labels_sample: int | None = None, notes: list[str] | None = None
) -> list[str]:
    """Every problem found, each naming its shard (and key and member); [] means the corpus
    is sound. `folder` is a shards folder or a run directory (whose text embeddings then
    let the ITM/VSM negatives be recomputed). `labels_sample`: how many samples' labels to
    recompute (None: all up to LABELS_SAMPLE, else a seeded sample of that many). `notes`
    receives what was and was not checked."""
    run = None
    if not (folder / SIZES).exists() and (folder / "shards" / SIZES).exists():
        run, folder = RunDir(folder), folder / "shards"
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
    ls, why = read_label_spec(manifest.get("labels")) if manifest else (None, "")
    if why:
        problems.append(f"{MANIFEST}: {why}")
    scan = _Scan()
    for name in sorted({p.name for p in folder.glob("*.tar")} - set(sizes)):
        problems.append(f"{name}: not listed in sizes.json")
    for name, expected in sizes.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: listed in sizes.json but missing")
            scan.broken.add(name)
            continue
        found = _scan_tar(path, expected, members, scan)
        if not found and name in sums and sha256_file(path) != sums[name]:
            found = [f"{name}: sha256 differs from manifest.json"]
        problems += found
    if ls is not None and labels_sample != 0:
        problems += _check_labels(folder, scan, ls, labels_sample, run, notes)
    return problems


def _scan_tar(
    path: AnyPath, expected: int, members: tuple[str, ...] | None, scan: _Scan
) -> list[str]:
    """One shard's structure; [] when sound, else one line: its first fault, and how many
    more it has. Keys are registered all the same, as far as the tar can be read."""
    faults: list[str] = []
    keys = scan.keys.setdefault(path.name, [])
    count = 0
    try:
        for key, group in iter_tar_samples(path):
            count += 1
            if key in keys:
                faults.append(f"duplicate key {key!r}")
                continue
            if scan.owner.get(key, path.name) != path.name:
                faults.append(f"key {key!r} is also in {scan.owner[key]}")
                continue
            keys.append(key)
            scan.owner[key] = path.name
            if "txt" in group:
                scan.texts[key] = group["txt"].decode("utf-8", "replace")
            if members is not None and tuple(sorted(group)) != members:
                faults.append(_member_fault(key, set(group), set(members)))
            scan.embedded = scan.embedded or any(
                has_similarity(group[n]) for n in _NEGATIVES if n in group
            )
    except (tarfile.TarError, OSError, EOFError) as err:
        faults.insert(0, f"unreadable or truncated tar ({err})")
    if not faults and count != expected:
        return [f"{path.name}: {count} samples, sizes.json says {expected}"]
    if not faults:
        return []
    scan.broken.add(path.name)
    more = f" (and {len(faults) - 1} more faults)" if len(faults) > 1 else ""
    return [f"{path.name}: {faults[0]}{more}"]


def _member_fault(key: str, got: set[str], want: set[str]) -> str:
    parts = []
    if want - got:
        parts.append(f"lacks {sorted(want - got)}")
    if got - want:
        parts.append(f"has {sorted(got - want)} beyond the corpus's members")
    return f"key {key!r} " + " and ".join(parts)


def _check_labels(
    folder: AnyPath,
    scan: _Scan,
    ls: LabelSpec,
    limit: int | None,
    run: RunDir | None,
    notes: list[str] | None,
) -> list[str]:
    """Every chosen sample's labels recomputed, its negatives checked, and (when every
    sample is checked) the codebook against all region features."""
    sound = [k for shard, keys in scan.keys.items() if shard not in scan.broken for k in keys]
    chosen = choose_sample(sound, LABELS_SAMPLE if limit is None else limit, ls.spec.seed)
    complete = not scan.broken
    matched = bool({"itm", "vsm"} & set(ls.spec.tasks))
    emb = text_embeddings(run, sorted(scan.texts)) if run and scan.embedded else None
    exact = matched and complete and (not scan.embedded or emb is not None)
    texts = scan.texts if matched else {}  # each is tokenized: only when negatives need it
    corpus = build_corpus(texts, ls.spec.text_length, emb)
    negatives = NegativeChecks(ls.spec, corpus, scan.owner, scan.broken, scan.embedded, exact)
    problems, feats = [], []
    for shard, keys in scan.keys.items():
        if shard in scan.broken:
            continue
        path = folder / shard
        if chosen is None:
            samples = iter_tar_samples(path)
        else:
            samples = iter(read_keys(path, [k for k in keys if k in chosen]).items())
        for key, group in samples:
            found, regions = sample_problems(key, group, ls)
            problems += [f"{shard}: key {key!r}: {p}" for p in found]
            if regions is not None:
                feats.append(regions)
            for name in _NEGATIVES:
                if name in group:
                    negatives.check(shard, key, name, group[name])
    negatives.flush()
    problems += negatives.problems
    whole = chosen is None and complete
    if whole and feats:
        problems += [f"{MANIFEST}: {p}" for p in codebook_problems(np.concatenate(feats), ls)]
    stored = load_npy(run.codebook) if run is not None and run.codebook.exists() else None
    if stored is not None and not np.array_equal(stored, ls.codebook):
        problems.append(f"{MANIFEST}: its codebook is not the run's decisions/codebook.npy")
    if notes is not None:
        checked = len(sound) if chosen is None else len(chosen)
        notes += _notes(checked, len(scan.owner), whole, scan.embedded and matched, exact)
        if negatives.unchecked:  # the broken shard is the problem, reported once
            notes.append(f"{negatives.unchecked} negatives name samples of broken shards")
    return problems


def _notes(checked: int, total: int, whole: bool, embedded: bool, exact: bool) -> list[str]:
    """What was checked: how many samples, the codebook, how the negatives were."""
    how = "every sample" if whole else f"{checked} of {total} samples"
    out = [f"labels recomputed for {how}" + ("; codebook checked" if whole else "")]
    if embedded and not exact:
        out.append(
            "negatives checked by their rules; give the run directory (with features/) to "
            "recompute them"
        )
    elif exact:
        out.append("negatives recomputed exactly")
    return out
