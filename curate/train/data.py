"""From a labelled corpus's shards to training examples, through webdataset's loader.

A sample becomes one `Example`: the caption's token ids (masked and original, from
`KEY.mlm.npz`), one token per region of its picture (a THUMBxTHUMB colour thumbnail of the region's
box plus the box itself, as UNITER feeds a detector's regions), the masked regions and their
codebook classes (`KEY.regions.json`), ITM / VSM negative texts, and for a clip its frames
as thumbnails with the drawn order (`KEY.fom.json`). A clip's regions come from its middle
frame, so the cells of its masked regions are blanked in every frame token: the model cannot
read a masked region off a frame. Held-out samples are whole groups (`curate.train.split`).

A shard that ends early or a sample that does not decode is skipped and counted (`Skipped`),
never a crash an hour into a run: `curate validate` names the fault, the trainer carries on
with what it can read and reports what it could not.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from curate.config import LabelsConfig
from curate.labels.mlm import IGNORE, tokenize
from curate.media.image import IMAGE_EXTS, pictures
from curate.train.split import Split, held_out, sources_of

__all__ = [
    "THUMB",
    "Corpus",
    "Example",
    "Skipped",
    "corpus_split",
    "decode_sample",
    "held_out",
    "iter_examples",
    "open_corpus",
    "plain_rate",
    "trainer_rate",
]

THUMB = 4  # a region or frame token is a 4x4 RGB thumbnail: 48 numbers


@dataclass(frozen=True)
class Corpus:
    """A labelled corpus: its shard files and the label spec from manifest.json."""

    shards: tuple[Path, ...]
    spec: LabelsConfig
    members: tuple[str, ...]
    samples: int
    frames: int  # frames per clip; 0 for images and audio

    @property
    def pictured(self) -> bool:
        """Whether samples carry a picture: an image, or a clip's frames."""
        return self.frames > 0 or any(m in IMAGE_EXTS for m in self.members)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The trainable tasks whose labels this corpus carries."""
        from curate.train.tasks import TASKS

        return tuple(t.name for t in TASKS if t.applies(self))


def open_corpus(folder: Path) -> Corpus:
    """The shards of `folder` (a run directory or its shards/ folder) and their label spec;
    a clear error when they carry no labels."""
    from curate.errors import CurateError
    from curate.io.atomic import read_json
    from curate.rundir import MANIFEST, SIZES

    shards = folder / "shards" if (folder / "shards" / MANIFEST).exists() else folder
    manifest_path = shards / MANIFEST
    if not manifest_path.exists():
        raise CurateError(f"{folder}: no {MANIFEST} (pass a finished run directory)")
    manifest = read_json(manifest_path)
    if not manifest.get("labels"):
        raise CurateError(f"{manifest_path}: the corpus carries no labels (enable `labels:`)")
    sizes: dict[str, int] = read_json(shards / SIZES)
    members = tuple(manifest["members"])
    frames = sum(1 for m in members if m.startswith("f") and m.endswith(".jpg"))
    return Corpus(
        shards=tuple(shards / name for name in sorted(sizes)),
        spec=LabelsConfig.model_validate(manifest["labels"]["spec"]),
        members=members,
        samples=sum(sizes.values()),
        frames=frames,
    )


@dataclass
class Example:
    """One sample as arrays; fields a corpus lacks stay empty."""

    key: str
    input_ids: NDArray[np.int64]  # masked caption ids (L,)
    mlm_labels: NDArray[np.int64]  # original id at masked positions, -100 elsewhere (L,)
    text_ids: NDArray[np.int64]  # the caption unmasked (L,)
    regions: NDArray[np.float32]  # (R, 3*THUMB*THUMB + 5): thumbnail, box, area
    region_masked: NDArray[np.bool_]  # (R,)
    region_class: NDArray[np.int64]  # (R,), -100 where no class
    frames: NDArray[np.float32]  # (K, 3*THUMB*THUMB) in the drawn (shown) order
    frame_order: NDArray[np.int64]  # (K,): the true index of the frame shown at each slot
    itm_negatives: list[NDArray[np.int64]] = field(default_factory=list)
    vsm_negatives: list[NDArray[np.int64]] = field(default_factory=list)
    itm_kinds: list[str] = field(default_factory=list)  # "hard" or "random", per negative
    vsm_kinds: list[str] = field(default_factory=list)
    itm_keys: list[str] = field(default_factory=list)  # the sample each negative comes from
    vsm_keys: list[str] = field(default_factory=list)


def _thumbs(image: NDArray[np.uint8], boxes: NDArray[np.float64]) -> NDArray[np.float32]:
    """Each box's pixels sampled on a THUMBxTHUMB grid of cell centres, in [-1, 1]:
    (N, 3*THUMB*THUMB).
    `boxes` are (x0, y0, x1, y1) in the image's own pixels."""
    cells = (np.arange(THUMB) + 0.5) / THUMB
    ys = (boxes[:, 1:2] + cells * (boxes[:, 3:4] - boxes[:, 1:2])).astype(np.int64)
    xs = (boxes[:, 0:1] + cells * (boxes[:, 2:3] - boxes[:, 0:1])).astype(np.int64)
    ys = np.minimum(ys, image.shape[0] - 1)
    xs = np.minimum(xs, image.shape[1] - 1)
    picked = image[ys[:, :, None], xs[:, None, :]]  # (N, THUMB, THUMB, 3)
    return picked.reshape(len(boxes), -1).astype(np.float32) / 127.5 - 1.0


def _rgb(data: bytes, at_least: int) -> tuple[NDArray[np.uint8], float, float]:
    """The picture decoded at the smallest JPEG scale (1/2..1/8) that keeps `at_least`
    pixels per side, and its x and y scale from the stored size."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("RGB", (at_least, at_least))
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return rgb, rgb.shape[1] / w, rgb.shape[0] / h


@functools.lru_cache(maxsize=65536)
def _tokens(text: str, length: int) -> NDArray[np.int64]:
    """A negative's text as token ids: captions recur across a corpus, so cache them."""
    return tokenize(text, length).astype(np.int64)


def _text(sample: dict[str, Any], length: int) -> tuple[NDArray[np.int64], ...]:
    """(masked input ids, MLM labels, caption ids): from `mlm.npz`, or the caption (`txt`)
    unmasked where the corpus has no MLM labels."""
    if "mlm.npz" in sample:
        with np.load(io.BytesIO(sample["mlm.npz"])) as z:
            ids = z["input_ids"].astype(np.int64)
            labels = z["labels"].astype(np.int64)
        return ids, labels, np.where(labels != IGNORE, labels, ids)
    text = bytes(sample.get("txt", b"")).decode("utf-8", "replace")
    ids = _tokens(text, length)
    return ids, np.full(length, IGNORE, np.int64), ids


def _grid(w: int, h: int, n: int) -> list[dict[str, Any]]:
    """An n x n grid of boxes over a w x h picture, as regions.json lists them: the picture
    tokens of a corpus that carries no regions (ITM needs a picture all the same)."""
    ys = [round(i * h / n) for i in range(n + 1)]
    xs = [round(j * w / n) for j in range(n + 1)]
    return [
        {
            "box": [xs[j], ys[i], xs[j + 1], ys[i + 1]],
            "area": (xs[j + 1] - xs[j]) * (ys[i + 1] - ys[i]),
            "class": None,
        }
        for i in range(n)
        for j in range(n)
        if xs[j + 1] > xs[j] and ys[i + 1] > ys[i]
    ]


def _blank(w: int, h: int, boxes: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which cells of a frame thumbnail (THUMB x THUMB samples at cell centres of a w x h
    frame, channels last, flattened like `_thumbs`) fall inside any of `boxes`."""
    centre = (np.arange(THUMB) + 0.5) / THUMB
    ys, xs = (centre * h)[:, None], (centre * w)[None, :]
    inside = np.zeros((THUMB, THUMB), bool)
    for x0, y0, x1, y1 in boxes:
        inside |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return np.repeat(inside.ravel(), 3)


def decode_sample(sample: dict[str, Any], spec: LabelsConfig) -> Example:
    """A webdataset sample (members as bytes) as an `Example`."""
    key = str(sample["__key__"])
    ids, labels, text = _text(sample, spec.text_length)
    members = {k: v for k, v in sample.items() if isinstance(v, bytes)}
    shown = pictures(members)
    width = 3 * THUMB * THUMB
    regions = np.zeros((0, width + 5), np.float32)
    masked = np.zeros(0, bool)
    classes = np.zeros(0, np.int64)
    hidden = np.zeros((0, 4), np.float64)  # boxes of masked regions, in stored pixels
    if shown:
        middle = shown[len(shown) // 2]  # the picture labels were made from
        with Image.open(io.BytesIO(middle)) as im:
            w, h = im.size
        if "regions.json" in sample:
            doc = json.loads(sample["regions.json"])
            listed, picked = doc["regions"], list(doc["masked"])
        else:
            listed, picked = _grid(w, h, spec.region_grid), []
        image, sx, sy = _rgb(middle, THUMB * spec.region_grid)
        if listed:
            boxes = np.asarray([r["box"] for r in listed], np.float64)
            area = np.asarray([r["area"] for r in listed], np.float64)[:, None]
            geo = np.concatenate([boxes / [w, h, w, h], area / (w * h)], 1)
            thumbs = _thumbs(image, boxes * [sx, sy, sx, sy])
            regions = np.concatenate([thumbs, geo.astype(np.float32)], 1)
            hidden = boxes[picked]
        masked = np.zeros(len(listed), bool)
        masked[picked] = True
        classes = np.asarray(
            [IGNORE if r["class"] is None else r["class"] for r in listed], np.int64
        )
    frames = np.zeros((0, width), np.float32)
    order = np.zeros(0, np.int64)
    if "fom.json" in sample and len(shown) > 1:
        order = np.asarray(json.loads(sample["fom.json"])["order"], np.int64)
        shots: list[NDArray[np.float32]] = []
        for data in shown:
            image, _, _ = _rgb(data, THUMB)
            whole = np.asarray([[0, 0, image.shape[1], image.shape[0]]], np.float64)
            shots.append(_thumbs(image, whole)[0])
        stack = np.stack(shots)
        stack[:, _blank(w, h, hidden)] = 0.0  # no frame shows a masked region's cells
        frames = stack[order]  # slot i shows frame order[i]
    itm = json.loads(sample.get("itm.json", b'{"negatives":[]}'))["negatives"]
    vsm = json.loads(sample.get("vsm.json", b'{"negatives":[]}'))["negatives"]
    length = spec.text_length
    return Example(
        key, ids, labels, text, regions, masked, classes, frames, order,
        [_tokens(n["caption"], length) for n in itm], [_tokens(n["text"], length) for n in vsm],
        [n["kind"] for n in itm], [n["kind"] for n in vsm],
        [n["key"] for n in itm], [n["key"] for n in vsm],
    )  # fmt: skip


def _urls(shards: Sequence[Path]) -> list[str]:
    return [str(p) for p in shards]


class Skipped:
    """What a loader could not read: a count, and the first few faults by shard and key.
    Its `tar` and `sample` methods are webdataset exception handlers that record and go on."""

    KEEP = 20

    def __init__(self) -> None:
        self.count = 0
        self.faults: list[dict[str, str | None]] = []
        self._seen: set[tuple[str | None, str | None]] = set()

    def _add(self, shard: str | None, key: str | None, exn: BaseException) -> None:
        """Count each (shard, key) once: a cut-off shard raises more than once per read,
        and the trainer reads a shard once per split."""
        if (shard, key) in self._seen:
            return
        self._seen.add((shard, key))
        self.count += 1
        if len(self.faults) < self.KEEP:
            message = str(exn.args[0]) if exn.args else str(exn)
            reason = f"{type(exn).__name__}: {message.split(' @ ')[0]}"
            self.faults.append({"shard": shard, "key": key, "reason": reason})

    def tar(self, exn: BaseException) -> bool:
        """A shard that cannot be opened or read to its end. webdataset appends the URL to
        the exception's arguments, or its reader's repr to the message."""
        url = next((a for a in reversed(exn.args[1:]) if isinstance(a, str)), None)
        if url is None and exn.args:
            found = re.search(r"name='([^']+)'", str(exn.args[0]))
            url = found.group(1) if found else None
        self._add(Path(url).name if url else None, None, exn)
        return True

    def decoding(self, spec: LabelsConfig) -> Any:
        """decode_sample, recording a sample that fails and dropping it (None)."""

        def decode(sample: dict[str, Any]) -> Example | None:
            try:
                return decode_sample(sample, spec)
            except Exception as exn:  # any member that does not decode: count, go on
                shard = Path(str(sample.get("__url__", ""))).name or None
                self._add(shard, str(sample.get("__key__")), exn)
                return None

        return decode

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "faults": self.faults}


def corpus_split(corpus: Corpus, fraction: float, skipped: Skipped | None = None) -> Split:
    """The grouped held-out split of the corpus: one pass reading each sample's caption and
    json (`curate.train.split`)."""
    skipped = skipped if skipped is not None else Skipped()
    rows = (
        (str(s["__key__"]), sources_of(str(s["__key__"]), s)) for s in _dataset(corpus, skipped)
    )
    return Split.of(rows, fraction)


def iter_examples(
    corpus: Corpus,
    split: str,
    held: float | Split,
    epochs: int | None = 1,
    shuffle: int = 0,
    seed: int = 0,
    skipped: Skipped | None = None,
) -> Iterator[Example]:
    """The corpus's examples of one split ("train" or "eval") through webdataset's loader;
    `held` is the held-out fraction (grouped by source: one extra pass over captions) or a
    `Split`; `epochs=None` repeats forever, `shuffle` is the size of webdataset's shuffle
    buffer. Unreadable shards and samples are counted in `skipped` (a fresh one when None)."""
    import random

    skipped = skipped if skipped is not None else Skipped()
    chosen = held if isinstance(held, Split) else corpus_split(corpus, held, Skipped())
    want = split == "eval"
    epoch = 0
    while epochs is None or epoch < epochs:
        ds = _dataset(corpus, skipped)
        ds = ds.select(lambda s, want=want: chosen.is_held_out(str(s["__key__"])) == want)
        if shuffle:
            ds = ds.shuffle(shuffle, rng=random.Random(seed * 1_000_003 + epoch))
        yield from (e for e in ds.map(skipped.decoding(corpus.spec)) if e is not None)
        epoch += 1


def _dataset(corpus: Corpus, skipped: Skipped) -> Any:
    import webdataset as wds

    return wds.WebDataset(
        _urls(corpus.shards), shardshuffle=False, empty_check=False, handler=skipped.tar
    )


def _timed_rate(make: Any, min_seconds: float) -> tuple[float, int]:
    """Samples/s over whole passes until `min_seconds` have gone by, after a warm-up."""
    import time

    for _ in itertools.islice(make(), 64):  # imports and caches are not the loader's speed
        pass
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in make():
            n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return n / elapsed, n


def plain_rate(corpus: Corpus, min_seconds: float = 2.0) -> tuple[float, int]:
    """Samples/s of plain webdataset decoding of the same shards (every member decoded by
    webdataset's own handlers, images to PIL): the anchor the trainer's loader is held to."""
    skipped = Skipped()

    def make() -> Any:
        return _dataset(corpus, skipped).decode("pil", handler=skipped.tar)

    return _timed_rate(make, min_seconds)


def trainer_rate(corpus: Corpus, min_seconds: float = 2.0) -> tuple[float, int]:
    """Samples/s of the trainer's loader over every sample (both splits), labels decoded."""
    skipped = Skipped()

    def make() -> Any:
        return _dataset(corpus, skipped).map(skipped.decoding(corpus.spec))

    return _timed_rate(make, min_seconds)
