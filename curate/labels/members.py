"""Labels as shard members: their bytes (deterministic, so a corpus is byte-identical on any
machine) and the checks `curate validate` runs on them.

Members (documented in schemas/labels.md):
  KEY.mlm.npz        input_ids, labels: int32 (text_length,); labels -100 where not masked
  KEY.patchmask.npy  bool (rows, cols): the patch grid of the stored image
  KEY.regions.json   {"method", "regions": [{box, area, mean_rgb, hist, class}], "masked"}
  KEY.itm.json       {"negatives": [{key, caption, similarity, kind}]}
  KEY.fom.json       {"order": [...]}: a permutation of the clip's frames
  KEY.vsm.json       {"negatives": [{key, text, similarity, kind}]}: other clips' subtitles
  KEY.audiomask.json {"spans": [[start, end], ...]} in seconds of the segment
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from curate.config import LabelsConfig
from curate.labels.fom import frame_order, mask_spans
from curate.labels.mlm import CLIP_VOCAB, IGNORE, MASK_ID, mask_caption
from curate.labels.negatives import Negative
from curate.labels.patchmask import block_mask, grid_for
from curate.labels.regions import (
    Region,
    assign,
    grid_regions,
    pick_masked,
    region_features,
    superpixel_regions,
)
from curate.labels.seed import rng_for
from curate.media.image import pictures

__all__ = [
    "LABELS_VERSION",
    "Expect",
    "audiomask_member",
    "check_member",
    "fom_member",
    "itm_member",
    "mlm_member",
    "patchmask_member",
    "picture",
    "regions_member",
    "sample_regions",
    "vsm_member",
]

# Bump when a label's bytes change for the same sample, seed and settings.
LABELS_VERSION = 2  # 2: negatives length-matched, indexed in uid order; codebook in manifest


def picture(members: dict[str, bytes]) -> np.ndarray | None:
    """The picture a sample's labels are made from, as RGB: its image, or a clip's middle
    frame; None without one (audio). The labels stage and `curate validate` both read it."""
    shown = pictures(members)
    if not shown:
        return None
    with Image.open(io.BytesIO(shown[len(shown) // 2])) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def mlm_member(text: str | None, uid: str, spec: LabelsConfig) -> bytes:
    m = mask_caption(text, rng_for(spec.seed, "mlm", uid), spec.mlm_prob, spec.text_length)
    buf = io.BytesIO()
    np.savez(buf, input_ids=m.input_ids, labels=m.labels)
    return buf.getvalue()


def patchmask_member(width: int, height: int, uid: str, spec: LabelsConfig) -> bytes:
    rows, cols = grid_for(width, height, spec.patch_size)
    mask = block_mask(rows, cols, spec.patch_ratio, rng_for(spec.seed, "patchmask", uid))
    buf = io.BytesIO()
    np.save(buf, mask)
    return buf.getvalue()


def sample_regions(image: np.ndarray, spec: LabelsConfig) -> list[Region]:
    """The regions of a stored image (H, W, 3 uint8) by the configured method."""
    if spec.region_method == "slic":
        return superpixel_regions(image, spec.region_grid**2)
    return grid_regions(image, spec.region_grid, spec.region_grid)


def regions_member(
    regions: list[Region], uid: str, spec: LabelsConfig, codebook: np.ndarray
) -> bytes:
    classes = assign(region_features(regions), codebook).tolist() if len(codebook) else []
    masked = pick_masked(len(regions), spec.region_ratio, rng_for(spec.seed, "regions", uid))
    out = [
        {
            "box": list(r.box),
            "area": r.area,
            "mean_rgb": list(r.mean_rgb),
            "hist": list(r.hist),
            "class": classes[i] if classes else None,
        }
        for i, r in enumerate(regions)
    ]
    return _json({"method": spec.region_method, "regions": out, "masked": masked})


def _negatives_member(
    negatives: Sequence[Negative], keys: Sequence[str], texts: Sequence[str], field: str
) -> bytes:
    return _json(
        {
            "negatives": [
                {
                    "key": keys[n.index],
                    field: texts[n.index],
                    "similarity": n.similarity,
                    "kind": n.kind,
                }
                for n in negatives
            ]
        }
    )


def itm_member(
    negatives: Sequence[Negative], keys: Sequence[str], captions: Sequence[str]
) -> bytes:
    """`keys[i]`/`captions[i]` name sample i of the corpus, as the negatives index them."""
    return _negatives_member(negatives, keys, captions, "caption")


def vsm_member(negatives: Sequence[Negative], keys: Sequence[str], texts: Sequence[str]) -> bytes:
    """Video-subtitle matching: other clips' subtitles that do not belong to this clip."""
    return _negatives_member(negatives, keys, texts, "text")


def fom_member(frames: int, uid: str, spec: LabelsConfig) -> bytes:
    return _json({"order": frame_order(frames, rng_for(spec.seed, "fom", uid)).tolist()})


def audiomask_member(duration: float, uid: str, spec: LabelsConfig) -> bytes:
    rng = rng_for(spec.seed, "audiomask", uid)
    spans = mask_spans(duration, spec.audio_ratio, spec.audio_span_s, rng)
    return _json({"spans": [list(s) for s in spans]})


@dataclass(frozen=True)
class Expect:
    """What a sample's labels must agree with: its stored image size, its frame count and
    its duration where it has them, and the keys of the corpus (for ITM)."""

    width: int = 0
    height: int = 0
    frames: int = 0
    duration: float = 0.0
    keys: frozenset[str] = frozenset()


def check_member(name: str, data: bytes, spec: LabelsConfig, expect: Expect) -> list[str]:
    """Every way the label member `name` breaks its spec; [] when it holds."""
    try:
        return _check(name, data, spec, expect)
    except Exception as err:  # a member that does not decode is a problem, not a crash
        return [f"{name} does not decode: {err!r}"[:300]]


def _check(name: str, data: bytes, spec: LabelsConfig, expect: Expect) -> list[str]:
    problems: list[str] = []
    if name == "mlm.npz":
        with np.load(io.BytesIO(data)) as z:
            ids, labels = z["input_ids"], z["labels"]
        if ids.shape != (spec.text_length,) or labels.shape != (spec.text_length,):
            problems.append(
                f"mlm.npz: shapes {ids.shape}/{labels.shape}, want ({spec.text_length},)"
            )
        elif (ids < 0).any() or (ids > MASK_ID).any():
            problems.append("mlm.npz: an input id outside the vocabulary and mask id")
        elif ((labels != IGNORE) & ((labels < 0) | (labels >= CLIP_VOCAB))).any():
            problems.append("mlm.npz: a label id outside the vocabulary")
        elif ((ids == MASK_ID) & (labels == IGNORE)).any():
            problems.append("mlm.npz: a masked position without a label")
    elif name == "patchmask.npy":
        mask = np.load(io.BytesIO(data))
        want = grid_for(expect.width, expect.height, spec.patch_size)
        if mask.dtype != bool or mask.shape != want:
            problems.append(f"patchmask.npy: {mask.dtype} {mask.shape}, want bool {want}")
        elif int(mask.sum()) != round(spec.patch_ratio * want[0] * want[1]):
            problems.append(f"patchmask.npy: {int(mask.sum())} patches masked")
    elif name == "regions.json":
        doc = json.loads(data)
        regions = doc["regions"]
        for r in regions:
            x0, y0, x1, y1 = r["box"]
            if not (0 <= x0 < x1 <= expect.width and 0 <= y0 < y1 <= expect.height):
                problems.append(f"regions.json: box {r['box']} outside the image")
            if r["class"] is not None and not 0 <= r["class"] < spec.codebook_size:
                problems.append(f"regions.json: class {r['class']} outside the codebook")
        if any(not 0 <= i < len(regions) for i in doc["masked"]):
            problems.append("regions.json: a masked index names no region")
        elif regions and len(doc["masked"]) != min(
            len(regions), max(1, round(spec.region_ratio * len(regions)))
        ):
            problems.append(f"regions.json: {len(doc['masked'])} of {len(regions)} masked")
    elif name in ("itm.json", "vsm.json"):
        for neg in json.loads(data)["negatives"]:
            if neg["key"] not in expect.keys:
                problems.append(f"{name}: negative {neg['key']} is no sample of the corpus")
    elif name == "fom.json":
        order = json.loads(data)["order"]
        if sorted(order) != list(range(expect.frames)):
            problems.append(f"fom.json: {order} is not a permutation of {expect.frames} frames")
    elif name == "audiomask.json":
        spans = json.loads(data)["spans"]
        if any(not 0 <= s < e <= expect.duration + 1e-6 for s, e in spans):
            problems.append("audiomask.json: a span outside the segment")
        elif any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
            problems.append("audiomask.json: spans overlap or are out of order")
    else:
        problems.append(f"{name}: not a label member")
    return problems
