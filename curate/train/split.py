"""The held-out split, grouped by source: clips cut from one video, and pictures that share a
caption or a group the corpus records, are held out or trained on together.

A split by key alone puts crops of one photo, or clips of one video, on both sides, and a
model can then pass by remembering the training side's pairings. Groups are the connected
components of "shares a caption or a source". Groups are ranked by a hash of their
smallest key and held out in that order until they hold the fraction of samples: the same
split on every machine and for every shard layout, and close to the fraction even where a
few large groups (videos of many clips) would make a per-group coin flip swing widely.
A derived sample (a clip, a segment) is grouped by its parent alone:
subtitles repeat across videos ("thank you"), and joining on them would chain a whole
corpus of videos into one group.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["Split", "held_out", "pick_held", "sources_of", "split_groups"]

_GROUP_FIELDS = ("group", "origin")  # sample json fields that name a picture's source


def _rank(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def held_out(key: str, fraction: float) -> bool:
    """True when a hash of `key` falls under `fraction`: the same on every machine."""
    return _rank(key) < fraction * 2**64


def sources_of(key: str, members: dict[str, bytes]) -> list[str]:
    """What ties a sample to others: a derived sample's parent (the json's, or the key's
    `PARENT_0003` form); otherwise its caption and any group its json names."""
    meta: object = {}
    if "json" in members:
        try:
            meta = json.loads(members["json"])
        except ValueError:
            meta = {}
    fields = meta if isinstance(meta, dict) else {}
    if fields.get("parent") not in (None, ""):
        return [f"parent:{fields['parent']}"]
    if "_" in key:
        return ["parent:" + key.rsplit("_", 1)[0]]
    out = []
    text = members.get("txt")
    if text is not None:
        out.append("txt:" + text.decode("utf-8", "replace").strip())
    return out + [f"{f}:{fields[f]}" for f in _GROUP_FIELDS if fields.get(f) not in (None, "")]


class _Union:
    """Union-find over strings, each component remembering its smallest key."""

    def __init__(self) -> None:
        self.up: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.up.setdefault(x, x)
        root = x
        while self.up[root] != root:
            root = self.up[root]
        while self.up[x] != root:  # path compression
            self.up[x], x = root, self.up[x]
        return root

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.up[max(ra, rb)] = min(ra, rb)  # the root is the smallest name


def split_groups(samples: Iterable[tuple[str, list[str]]]) -> dict[str, str]:
    """Each key's group: the smallest key of its component under shared sources."""
    u = _Union()
    keys = []
    for key, sources in samples:
        k = "key:" + key
        keys.append(key)
        u.find(k)
        for s in sources:
            u.join(k, "src:" + s)
    # "key:" sorts before "src:", so a component's root is its smallest key
    return {key: u.find("key:" + key)[4:] for key in keys}


def pick_held(group: dict[str, str], fraction: float) -> frozenset[str]:
    """The held-out groups: in order of their hash until they hold `fraction` of the
    samples, at least one when `fraction` > 0 and never every group."""
    sizes = Counter(group.values())
    want = fraction * len(group)
    held: list[str] = []
    total = 0
    for g in sorted(sizes, key=lambda g: (_rank(g), g)):
        if total >= want or len(held) + 1 >= len(sizes):
            break
        held.append(g)
        total += sizes[g]
    return frozenset(held)


@dataclass(frozen=True)
class Split:
    """Each key's group and the held-out groups. A key the split never saw is judged by
    its own hash."""

    group: dict[str, str]
    fraction: float
    held: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, samples: Iterable[tuple[str, list[str]]], fraction: float) -> Split:
        group = split_groups(samples)
        return cls(group, fraction, pick_held(group, fraction))

    def is_held_out(self, key: str) -> bool:
        if key not in self.group:
            return held_out(key, self.fraction)
        return self.group[key] in self.held

    def groups(self, held: bool) -> set[str]:
        return {g for g in set(self.group.values()) if (g in self.held) == held}

    def keys(self, held: bool) -> Iterator[str]:
        return (k for k in self.group if self.is_held_out(k) == held)
