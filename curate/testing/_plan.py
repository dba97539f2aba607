"""Plan a synthetic web: decide every item's role, content and fault before drawing anything.

All randomness happens here, from one generator, so a seed fully fixes the web.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.testing._photos import PHOTO_SOURCES, PhotoSource, Window, iou
from curate.testing._scenes import Scene, random_scene, scene_hash

__all__ = ["FAULTS", "NEAR_TRANSFORMS", "Entry", "plan_web"]

# fault -> (route template, expected_reason or None when the fetch should succeed,
#           whether the client ends up with the complete image)
FAULTS: dict[str, tuple[str, str | None, bool]] = {
    "404": ("/fault/404/{name}", "http_404", False),
    "cut_jpeg": ("/img/{name}", "decode_error", False),
    "500": ("/fault/500/{name}", "http_500", False),
    "truncated": ("/fault/truncated/{name}", "truncated", False),
    "429": ("/fault/429/{name}", None, True),
    "html": ("/fault/html/{name}", "not_image", False),
    "redirect": ("/fault/redirect/3/{name}", None, True),
    "empty": ("/fault/empty/{name}", "empty", False),
    "optout": ("/fault/optout/{name}", "optout", True),
    "410": ("/fault/410/{name}", "http_410", False),
    "redirect-loop": ("/fault/redirect-loop/{name}", "too_many_redirects", False),
    "optout-other": ("/fault/optout-other/{name}", None, True),
    "big": ("/fault/big/{name}", "too_large", False),
    "big-chunked": ("/fault/big-chunked/{name}", "too_large", False),
    "slow": ("/fault/slow/{name}", "timeout", False),
}
NEAR_TRANSFORMS: tuple[str, ...] = (
    "resize",
    "recompress",
    "crop",
    "brightness",
    "wide_crop",
    "rotate",
)
"""Near-duplicate edits. The last two are the hard family: 7–9 % crops, and 1–3° rotations
cropped clear of their corners; default dedup settings find them only in part."""
_SOURCES = {s.name: s for s in PHOTO_SOURCES}
_STRAY_CAPTION = "a bowl of fruit on a kitchen table"


@dataclass
class Entry:
    """One URL-list row as planned; `ref` points at the planned original it derives from."""

    role: str
    kind: str
    source: str
    ext: str
    quality: int
    true_caption: str
    caption: str = ""
    window: Window | None = None
    longest: int = 0
    scene: Scene | None = None
    ref: int | None = None
    transform: str | None = None
    param: float = 0.0
    crop: Window | None = None
    fault: str | None = None


def _counts(n: int) -> dict[str, int]:
    """Role counts: fixed shares, but every planted kind at least once from 40 items."""
    full = n >= 40
    reps = max(1, round(0.1 * n / len(FAULTS)))
    counts = {
        "fault": len(FAULTS) * reps if full else round(0.1 * n),
        "exact_duplicate": max(int(full), round(0.04 * n)),
        "near_duplicate": max(len(NEAR_TRANSFORMS) if full else 0, round(0.08 * n)),
        "hard_negative": max(int(full), round(0.03 * n)),
        "mismatched_caption": max(int(full), round(0.05 * n)),
    }
    counts["original"] = n - sum(counts.values())
    return counts


def _pick_format(rng: np.random.Generator, kind: str) -> tuple[str, int]:
    p = [0.75, 0.12, 0.13] if kind == "photo" else [0.7, 0.25, 0.05]
    ext = str(rng.choice(["jpg", "png", "webp"], p=p))
    quality = int(rng.integers(85, 93)) if ext == "jpg" else 85
    return ext, quality


_MAX_IOU = 0.5  # same-source crops that are not duplicates overlap at most this much
_HARD_IOU = 0.15  # a hard negative and its original overlap at most this much
_TRIES = 200  # random draws before a source counts as used up
_MIN_SCENE_BITS = 16  # unrelated scenes differ in at least this many of 63 pHash bits


class _Crops:
    """Hands out crop windows so that no two non-duplicate crops of a source look alike."""

    def __init__(self, rng: np.random.Generator, order: list[PhotoSource]) -> None:
        self.rng = rng
        self.order = order
        self.next = 0
        self.taken: dict[str, list[Window]] = {s.name: [] for s in order}
        self.full: set[str] = set()

    def _free(self, src: PhotoSource, w: Window) -> bool:
        return all(iou(w, t) <= _MAX_IOU for t in self.taken[src.name])

    def window(self, src: PhotoSource) -> Window | None:
        """A random crop of src clear of its earlier crops, or None when src is used up."""
        if src.name in self.full:
            return None
        for _ in range(_TRIES):
            fw, fh = self.rng.uniform(src.min_frac, min(0.95, src.min_frac + 0.3), size=2)
            x0, y0 = self.rng.uniform(0.0, 1.0 - fw), self.rng.uniform(0.0, 1.0 - fh)
            w = (float(x0), float(y0), float(x0 + fw), float(y0 + fh))
            if self._free(src, w):
                self.taken[src.name].append(w)
                return w
        self.full.add(src.name)
        return None

    def any(self) -> tuple[PhotoSource, Window] | None:
        """A crop of the next source in turn with room; None once every source is used up."""
        n = len(self.order)
        for i in range(n):
            src = self.order[(self.next + i) % n]
            w = self.window(src)
            if w is not None:
                self.next = (self.next + i + 1) % n
                return src, w
        return None

    def pair_any(self, sources: list[PhotoSource]) -> tuple[PhotoSource, Window, Window] | None:
        """A far-apart pair from the first source with room for one."""
        for src in sources:
            found = self.pair(src)
            if found is not None:
                return src, *found
        return None

    def pair(self, src: PhotoSource) -> tuple[Window, Window] | None:
        """Two crops from opposite sides of src that barely overlap: original + hard negative."""
        for _ in range(_TRIES):
            f = float(self.rng.uniform(0.5, 0.58))
            span = float(self.rng.uniform(0.8, 1.0))
            off = float(self.rng.uniform(0.0, 1.0 - span))
            a: Window = (0.0, off, f, off + span)
            b: Window = (1.0 - f, off, 1.0, off + span)
            if self.rng.uniform() < 0.5:  # split top/bottom instead of left/right
                a, b = (a[1], a[0], a[3], a[2]), (b[1], b[0], b[3], b[2])
            if iou(a, b) <= _HARD_IOU and self._free(src, a) and self._free(src, b):
                self.taken[src.name] += [a, b]
                return a, b
        return None


def _photo(rng: np.random.Generator, role: str, src: PhotoSource, window: Window) -> Entry:
    ext, quality = _pick_format(rng, "photo")
    caption = str(rng.choice(src.captions))
    longest = int(rng.integers(300, 901))
    return Entry(role, "photo", src.name, ext, quality, caption, window=window, longest=longest)


class _Scenes:
    """Draws scenes whose grayscale hashes stay clear of every earlier scene's."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.hashes = np.zeros(0, dtype=np.uint64)

    def entry(self, role: str, ext: str | None = None) -> Entry:
        fmt, quality = _pick_format(self.rng, "scene")
        best, best_dist = None, -1
        for _ in range(_TRIES // 10):
            scene = random_scene(self.rng)
            h = scene_hash(scene)
            dist = int(np.bitwise_count(self.hashes ^ h).min()) if self.hashes.size else 64
            if dist > best_dist:
                best, best_dist, best_hash = scene, dist, h
            if dist >= _MIN_SCENE_BITS:
                break
        assert best is not None
        self.hashes = np.append(self.hashes, best_hash)
        return Entry(role, "scene", "scene", ext or fmt, quality, best.caption, scene=best)


def _choose(rng: np.random.Generator, pool: list[int], k: int) -> list[int]:
    """k picks from pool, distinct while the pool lasts."""
    if not pool or k == 0:
        return []
    picks = [int(i) for i in rng.permutation(pool)[: min(k, len(pool))]]
    picks += [int(rng.choice(pool)) for _ in range(k - len(picks))]
    return picks


def _unrelated(a: Entry, b: Entry) -> bool:
    """True when b's caption cannot describe a's image."""
    if a.kind == "photo" and b.kind == "photo":
        return a.source != b.source
    if a.scene is not None and b.scene is not None:
        return not (a.scene.objects & b.scene.objects)
    return True


def plan_web(n_items: int, rng: np.random.Generator) -> list[Entry]:
    """All entries in list order; refs index into the returned list."""
    counts = _counts(n_items)
    entries: list[Entry] = []
    distinct = [s for s in PHOTO_SOURCES if s.distinct_regions]
    others = [s for s in PHOTO_SOURCES if not s.distinct_regions]
    distinct = [distinct[i] for i in rng.permutation(len(distinct))]
    crops = _Crops(rng, distinct + [others[i] for i in rng.permutation(len(others))])
    scenes = _Scenes(rng)

    # Photo crops are finite (about 200 stay apart); past that, drawn scenes take the slots.
    hard: list[Entry] = []
    for k in range(counts["hard_negative"]):
        got = crops.pair_any(distinct[k % len(distinct) :] + distinct[: k % len(distinct)])
        if got is None:
            break
        entries.append(_photo(rng, "original", got[0], got[1]))
        e = _photo(rng, "hard_negative", got[0], got[2])
        e.ref, e.transform = len(entries) - 1, "crop_distinct"
        hard.append(e)
    n_original = counts["original"] + counts["hard_negative"] - len(hard)
    n_photo = max(len(hard), (n_original + 1) // 2)
    while len(entries) < n_photo and (crop := crops.any()) is not None:
        entries.append(_photo(rng, "original", *crop))
    while len(entries) < n_original:
        entries.append(scenes.entry("original"))
    originals = list(range(len(entries)))
    photos = [i for i in originals if entries[i].kind == "photo"]
    bases = [i for i in photos if _SOURCES[entries[i].source].distinct_regions] or photos
    entries += hard

    for k, t in enumerate(_choose(rng, bases, counts["near_duplicate"])):
        base = entries[t]
        base.ext = "jpg"
        transform = NEAR_TRANSFORMS[k % len(NEAR_TRANSFORMS)]
        param = {
            "resize": float(rng.uniform(0.6, 0.85)),
            "recompress": float(rng.integers(55, 76)),
            "crop": float(rng.uniform(0.02, 0.05)),
            "brightness": float(rng.choice([0.9, 1.1])),
            "wide_crop": float(rng.uniform(0.07, 0.09)),
            "rotate": float(rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0])),
        }[transform]
        lx, ty = rng.uniform(0.0, 1.0, size=2)
        caption = str(rng.choice(_SOURCES[base.source].captions))
        e = Entry("near_duplicate", "photo", base.source, "jpg", base.quality, caption, ref=t)
        e.transform, e.param = transform, param
        if transform in ("crop", "wide_crop"):
            left, top = float(lx) * param, float(ty) * param
            e.crop = (left, top, 1.0 - (param - left), 1.0 - (param - top))
        entries.append(e)

    for t in _choose(rng, originals, counts["exact_duplicate"]):
        base = entries[t]
        caption = base.true_caption
        if base.kind == "photo":
            caption = str(rng.choice(_SOURCES[base.source].captions))
        entries.append(
            Entry("exact_duplicate", base.kind, base.source, base.ext, 0, caption, ref=t)
        )

    for k in range(counts["mismatched_caption"]):
        crop = crops.any() if k % 2 == 0 and photos else None
        e = _photo(rng, "mismatched_caption", *crop) if crop else scenes.entry("mismatched_caption")
        donors = [i for i in originals if _unrelated(e, entries[i])]
        donors = donors or [i for i in originals if entries[i].true_caption != e.true_caption]
        e.caption = entries[int(rng.choice(donors))].true_caption if donors else _STRAY_CAPTION
        entries.append(e)

    fault_kinds = list(FAULTS)
    for k in range(counts["fault"]):
        fault = fault_kinds[k % len(fault_kinds)]
        crop = crops.any() if fault == "cut_jpeg" else None
        e = _photo(rng, "fault", *crop) if crop else scenes.entry("fault", ext="jpg")
        e.ext, e.quality = "jpg", 90
        e.fault = fault
        entries.append(e)

    for e in entries:
        e.caption = e.caption or e.true_caption
    assert len(entries) == n_items, (len(entries), n_items)
    return entries
