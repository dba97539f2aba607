"""Sabotage a finished corpus: rewrite members of its shards while keeping everything a
checksum or a count could notice consistent (sizes.json, the manifest's bytes and sha256),
so only a check of the labels themselves, `curate validate` or `curate train`, can tell.

    rewrite(shards, fn)            fn(key, members) -> members, for every sample of every tar
    SABOTAGES[name](shards, seed)  one named corruption of a whole corpus, seeded

The named sabotages are the issue 22 matrix; `frames_scrambled` and `captions_deranged` are
used with `curate train` too, so their names and signature stay as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from curate.io.atomic import read_json, write_json
from curate.media.image import is_picture
from curate.shards.tar import iter_tar_samples, ustar_header

__all__ = ["LABEL_MEMBERS", "SABOTAGES", "rewrite"]

Members = dict[str, bytes]
Fn = Callable[[str, Members], Members]
LABEL_MEMBERS = (
    "audiomask.json",
    "fom.json",
    "itm.json",
    "mlm.npz",
    "patchmask.npy",
    "regions.json",
    "vsm.json",
)
_BLOCK, _RECORD = 512, 10240


def _tar_bytes(samples: list[tuple[str, Members]]) -> bytes:
    """A tar as curate's TarShardWriter writes it (members sorted by extension, fixed
    mtime, owner and mode, the same padding), minus its one-member-set rule, so a sample
    may lose a member."""
    parts: list[bytes] = []
    for key, members in samples:
        for ext in sorted(members):
            data = members[ext]
            parts += (ustar_header(f"{key}.{ext}", len(data)), data, b"\0" * (-len(data) % _BLOCK))
    body = b"".join(parts)
    end = len(body) + 2 * _BLOCK
    return body + b"\0" * (2 * _BLOCK + -end % _RECORD)


def rewrite(shards: Path, fn: Fn) -> None:
    """Apply `fn` to every sample of every tar of `shards` (in order), then refresh
    sizes.json and manifest.json's byte counts and checksums."""
    manifest = read_json(shards / "manifest.json")
    sizes: dict[str, int] = {}
    for entry in manifest["shards"]:
        path = shards / entry["shard"]
        samples = [(key, fn(key, dict(members))) for key, members in iter_tar_samples(path)]
        data = _tar_bytes(samples)
        path.write_bytes(data)
        sizes[entry["shard"]] = len(samples)
        entry.update(samples=len(samples), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_json(shards / "sizes.json", sizes)
    write_json(shards / "manifest.json", manifest)


def _all(shards: Path) -> dict[str, Members]:
    return {k: m for p in sorted(shards.glob("*.tar")) for k, m in iter_tar_samples(p)}


def _rng(seed: int, key: str = "") -> np.random.Generator:
    """A stream per (seed, sample): a sabotage does not depend on the order it meets them."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def _savez(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, input_ids=arrays["input_ids"], labels=arrays["labels"])
    return buf.getvalue()


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) that moves every element (a random cycle)."""
    order = rng.permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.roll(order, 1)
    return out


def _regions(shards: Path, seed: int, how: Callable[[list[Any], int], list[Any]]) -> None:
    k = len(read_json(shards / "manifest.json")["labels"]["codebook"])

    def fn(key: str, m: Members) -> Members:
        doc = json.loads(m["regions.json"])
        classes = how([r["class"] for r in doc["regions"]], k)
        for r, c in zip(doc["regions"], classes, strict=True):
            r["class"] = c
        return {**m, "regions.json": _dumps(doc)}

    rewrite(shards, fn)


def random_region_classes(shards: Path, seed: int) -> None:
    """Every region's class drawn at random from the codebook's."""
    rng = _rng(seed)
    _regions(shards, seed, lambda cs, k: [int(rng.integers(k)) for _ in cs])


def renamed_region_classes(shards: Path, seed: int) -> None:
    """Every class renamed by one permutation of the codebook (no class keeps its name):
    the classes still group regions exactly as before, so only a recomputation sees it."""
    k = len(read_json(shards / "manifest.json")["labels"]["codebook"])
    perm = _derangement(k, _rng(seed))
    _regions(shards, seed, lambda cs, _: [int(perm[c]) for c in cs])


def _mlm(shards: Path, change: Callable[[str, dict[str, np.ndarray]], None]) -> None:
    def fn(key: str, m: Members) -> Members:
        arrays = _npz(m["mlm.npz"])
        change(key, arrays)
        return {**m, "mlm.npz": _savez(arrays)}

    rewrite(shards, fn)


def random_mlm_labels(shards: Path, seed: int) -> None:
    """The labels of the masked positions replaced by random ordinary ids."""

    def change(key: str, a: dict[str, np.ndarray]) -> None:
        hit = a["labels"] != -100
        a["labels"][hit] = _rng(seed, key).integers(1, 49406, int(hit.sum()))

    _mlm(shards, change)


def unmasked_mlm_input(shards: Path, seed: int) -> None:
    """The input shows the original token wherever a label is asked for."""

    def change(key: str, a: dict[str, np.ndarray]) -> None:
        hit = a["labels"] != -100
        a["input_ids"][hit] = a["labels"][hit]

    _mlm(shards, change)


def mlm_shifted(shards: Path, seed: int) -> None:
    """The labels moved one position to the right (an off-by-one in a writer)."""

    def change(key: str, a: dict[str, np.ndarray]) -> None:
        a["labels"] = np.roll(a["labels"], 1)

    _mlm(shards, change)


def patchmask_moved(shards: Path, seed: int) -> None:
    """As many patches masked, in other places."""

    def fn(key: str, m: Members) -> Members:
        mask = np.load(io.BytesIO(m["patchmask.npy"]))
        flat = mask.ravel()
        moved = flat[_rng(seed, key).permutation(flat.size)].reshape(mask.shape)
        if np.array_equal(moved, mask):
            moved = np.roll(mask, 1, axis=1)
        buf = io.BytesIO()
        np.save(buf, moved)
        return {**m, "patchmask.npy": buf.getvalue()}

    rewrite(shards, fn)


def _scramble(shards: Path, seed: int, keep_middle: bool) -> None:
    def fn(key: str, m: Members) -> Members:
        names = sorted(e for e in m if is_picture(e) and e.startswith("f"))
        moving = [i for i in range(len(names)) if not (keep_middle and i == len(names) // 2)]
        if len(moving) < 2:
            return m
        rng = _rng(seed, key)
        order = np.arange(len(names))
        while np.array_equal(order, np.arange(len(names))):  # never the true order
            order[moving] = rng.permutation(moving)
        return {**m, **{n: m[names[o]] for n, o in zip(names, order, strict=True)}}

    rewrite(shards, fn)


def frames_scrambled(shards: Path, seed: int) -> None:
    """Each clip's f*.jpg frames stored in a random order of its own (never the true one);
    fom.json, the mp4 and everything else untouched."""
    _scramble(shards, seed, keep_middle=False)


def frames_scrambled_middle_kept(shards: Path, seed: int) -> None:
    """As frames_scrambled, but the middle frame (the picture regions.json and
    patchmask.npy are made from) stays in place: only frame order is wrong, which no
    recomputation of a label can see; the trainer's FOM must."""
    _scramble(shards, seed, keep_middle=True)


def _moved(shards: Path, seed: int, names: tuple[str, ...]) -> Callable[[str, Members], Members]:
    """fn giving each sample the `names` members of another (a derangement of the keys)."""
    samples = _all(shards)
    keys = sorted(samples)
    perm = _derangement(len(keys), _rng(seed))
    source = {k: keys[int(perm[i])] for i, k in enumerate(keys)}
    return lambda key, m: {**m, **{n: samples[source[key]][n] for n in names if n in m}}


def fom_swapped_between_clips(shards: Path, seed: int) -> None:
    """Each clip's fom.json is another clip's."""
    rewrite(shards, _moved(shards, seed, ("fom.json",)))


def captions_deranged(shards: Path, seed: int) -> None:
    """Every sample's caption (txt, and json's `caption`) is another sample's; its labels,
    pictures and negatives stay, so captions no longer describe what they sit beside."""
    move = _moved(shards, seed, ("txt",))

    def fn(key: str, m: Members) -> Members:
        out = move(key, m)
        meta = json.loads(out["json"])
        meta["caption"] = out["txt"].decode()
        return {**out, "json": json.dumps(meta, sort_keys=True).encode()}

    rewrite(shards, fn)


def negatives_replaced(shards: Path, seed: int) -> None:
    """Every ITM/VSM negative swapped for another sample, named consistently (its key and
    its true txt), similarity and kind kept: well formed, just not the spec's choice."""
    texts = {k: m["txt"].decode() for k, m in _all(shards).items()}
    keys = sorted(texts)

    def fn(key: str, m: Members) -> Members:
        rng = _rng(seed, key)
        out = dict(m)
        for name, field in (("itm.json", "caption"), ("vsm.json", "text")):
            if name not in m:
                continue
            doc = json.loads(m[name])
            taken = {key} | {n["key"] for n in doc["negatives"]}
            for n in doc["negatives"]:
                other = keys[int(rng.integers(len(keys)))]
                while other in taken:
                    other = keys[int(rng.integers(len(keys)))]
                taken.add(other)
                n["key"], n[field] = other, texts[other]
            out[name] = _dumps(doc)
        return out

    rewrite(shards, fn)


def member_deleted(shards: Path, seed: int) -> None:
    """One label member removed from one sample."""
    samples = _all(shards)
    rng = _rng(seed)
    key = sorted(samples)[int(rng.integers(len(samples)))]
    present = [n for n in LABEL_MEMBERS if n in samples[key]]
    gone = present[int(rng.integers(len(present)))]
    rewrite(shards, lambda k, m: {n: d for n, d in m.items() if k != key or n != gone})


SABOTAGES: dict[str, Callable[[Path, int], None]] = {
    "random_region_classes": random_region_classes,
    "renamed_region_classes": renamed_region_classes,
    "random_mlm_labels": random_mlm_labels,
    "unmasked_mlm_input": unmasked_mlm_input,
    "mlm_shifted": mlm_shifted,
    "patchmask_moved": patchmask_moved,
    "frames_scrambled": frames_scrambled,
    "frames_scrambled_middle_kept": frames_scrambled_middle_kept,
    "fom_swapped_between_clips": fom_swapped_between_clips,
    "captions_deranged": captions_deranged,
    "negatives_replaced": negatives_replaced,
    "member_deleted": member_deleted,
}
