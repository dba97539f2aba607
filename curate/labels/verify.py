"""Labels recomputed: `curate validate`'s proof that each label member is *the* label of its
sample, not merely a well-formed one.

Every label is a pure function of (sample, corpus seed, spec), so each member is made again
from the sample's own members (txt for mlm.npz; the stored picture, or a clip's middle
frame, for patchmask.npy and regions.json; the frame count for fom.json; json start/end for
audiomask.json) with the manifest's spec and codebook, and compared exactly. A difference is
described (shifted, moved, renamed, unmasked...) so the message says what went wrong. The
codebook itself is checked against the features it was fitted on: a fixed point of one
Lloyd step over every sample's region features, of size min(codebook_size, distinct rows).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curate.config import LabelsConfig
from curate.labels.members import (
    LABELS_VERSION,
    Expect,
    audiomask_member,
    check_member,
    fom_member,
    mlm_member,
    patchmask_member,
    picture,
    regions_member,
    sample_regions,
)
from curate.labels.mlm import IGNORE, MASK_ID
from curate.labels.regions import FEATURES, lloyd_step, region_features
from curate.media.image import IMAGE_EXTS, pictures

__all__ = [
    "RECOMPUTED",
    "LabelSpec",
    "choose_sample",
    "codebook_problems",
    "read_label_spec",
    "sample_problems",
]

RECOMPUTED = ("mlm.npz", "patchmask.npy", "regions.json", "fom.json", "audiomask.json")


@dataclass(frozen=True)
class LabelSpec:
    """What a corpus's labels were made with: the settings and the region codebook."""

    spec: LabelsConfig
    codebook: NDArray[np.float64]


def read_label_spec(labels: Any) -> tuple[LabelSpec | None, str]:
    """The manifest's `labels` section, or why it cannot be checked against."""
    if not labels:
        return None, ""
    try:
        if labels.get("version") != LABELS_VERSION:
            got = labels.get("version")
            return None, f"labels version {got!r}; this curate checks version {LABELS_VERSION}"
        spec = LabelsConfig.model_validate(labels["spec"])
        book = np.asarray(labels.get("codebook", []), np.float64).reshape(-1, FEATURES)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        return None, f"labels section unusable: {err}"[:300]
    if "codebook" not in labels and "regions" in spec.tasks:
        return None, "labels section has no codebook: region classes cannot be recomputed"
    return LabelSpec(spec, book), ""


def choose_sample(keys: Sequence[str], n: int, seed: int) -> set[str] | None:
    """The keys whose labels are recomputed: None (all) when n covers them, else the n with
    the smallest BLAKE2b of (seed, key): the same choice whatever the shard layout."""
    if n >= len(keys):
        return None

    def rank(key: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x00validate\x00{key}".encode(), digest_size=8).digest()

    return set(sorted(keys, key=rank)[:n])


def sample_problems(
    key: str, members: dict[str, bytes], ls: LabelSpec
) -> tuple[list[str], NDArray[np.float64] | None]:
    """Each recomputable label member of the sample against its recomputation ("member:
    what" strings), and the sample's region features (for the codebook check) when it has
    regions.json."""
    try:
        image = picture(members)
        meta = json.loads(members["json"]) if "json" in members else {}
    except Exception as err:  # a broken picture or json is named, never raised
        return [f"its picture or json does not decode: {err!r}"[:300]], None
    spec, problems, feats = ls.spec, [], None
    shown = pictures(members)
    expect = Expect(
        width=0 if image is None else image.shape[1],
        height=0 if image is None else image.shape[0],
        frames=0 if any(e in members for e in IMAGE_EXTS) else len(shown),
        duration=float(meta["end"]) - float(meta["start"]) if "end" in meta else 0.0,
    )
    for name in RECOMPUTED:
        if name not in members:
            continue
        if name == "mlm.npz":
            want = mlm_member(members.get("txt", b"").decode("utf-8", "replace"), key, spec)
        elif name == "fom.json":
            want = fom_member(len(shown), key, spec)
        elif name == "audiomask.json":
            want = audiomask_member(expect.duration, key, spec)
        elif image is None:
            problems.append(f"{name}: the sample has no picture to label")
            continue
        elif name == "patchmask.npy":
            want = patchmask_member(image.shape[1], image.shape[0], key, spec)
        else:
            regions = sample_regions(image, spec)
            feats = region_features(regions)
            want = regions_member(regions, key, spec, ls.codebook)
        if members[name] != want:  # what differs, and which of the spec's rules break
            rules = check_member(name, members[name], spec, expect)
            broken = [p.removeprefix(f"{name}: ") for p in rules]
            try:
                what = _describe(name, members[name], want)
            except Exception:  # does not decode, or not to the right shape: the rules say
                what = "" if broken else "differs from its recomputation"
            problems.append(f"{name}: " + "; ".join(x for x in (what, *broken) if x))
    return problems, feats


def _describe(name: str, got: bytes, want: bytes) -> str:
    """What differs between a stored member and its recomputation, in words; raises when
    the stored one does not decode to the recomputation's shape."""
    if name == "mlm.npz":
        return _mlm_diff(got, want)
    if name == "patchmask.npy":
        a, b = _same_shape(np.load(io.BytesIO(got)), np.load(io.BytesIO(want)))
        n = int((a != b).sum())
        moved = " (the right count in the wrong place)" if a.sum() == b.sum() else ""
        return f"{n} of {a.size} patches differ from the spec's mask{moved}"
    doc, ref = json.loads(got), json.loads(want)
    if name == "regions.json":
        return _regions_diff(doc, ref)
    if doc == ref:
        return "its bytes are not the canonical ones (same content)"
    if name == "fom.json":
        return f"order {doc['order']} is not the spec's {ref['order']}"
    return f"spans {doc['spans']} are not the spec's {ref['spans']}"


def _same_shape(a: NDArray[Any], b: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"{a.dtype} {a.shape}, want {b.dtype} {b.shape}")
    return a, b


def _mlm_diff(got: bytes, want: bytes) -> str:
    with np.load(io.BytesIO(got)) as z, np.load(io.BytesIO(want)) as w:
        ids, w_ids = _same_shape(z["input_ids"], w["input_ids"])
        labels, w_labels = _same_shape(z["labels"], w["labels"])
    if not np.array_equal(labels, w_labels):
        for shift in (1, -1, 2, -2):
            if np.array_equal(np.roll(w_labels, shift), labels):
                return f"labels are shifted by {shift} position(s) from its txt's"
        n = int((labels != w_labels).sum())
        return f"labels differ from its txt's masking at {n} of {labels.size} positions"
    if not np.array_equal(ids, w_ids):
        chosen = labels != IGNORE
        if not (ids == MASK_ID).any() and np.array_equal(ids[chosen], labels[chosen]):
            return "the input is never masked: it shows every label"
        n = int((ids != w_ids).sum())
        return f"input_ids differ from its txt's masking at {n} positions"
    return "its bytes are not the canonical ones (same arrays)"


def _regions_diff(doc: dict[str, Any], ref: dict[str, Any]) -> str:
    got, want = doc["regions"], ref["regions"]
    if doc.get("method") != ref["method"] or len(got) != len(want):
        return f"{len(got)} {doc.get('method')} regions, its picture has {len(want)}"
    out = []
    shape = ("box", "area", "mean_rgb", "hist")
    moved = sum(any(g.get(f) != w[f] for f in shape) for g, w in zip(got, want, strict=True))
    if moved:
        out.append(f"{moved} of {len(want)} regions differ from its picture's")
    classes = [(g.get("class"), w["class"]) for g, w in zip(got, want, strict=True)]
    wrong = sum(g != w for g, w in classes)
    if wrong:
        renamed = len({w for _, w in classes}) == len(set(classes))  # one name per class
        how = " (consistently renamed)" if renamed else ""
        out.append(f"classes differ from the codebook's at {wrong} of {len(want)} regions{how}")
    if doc.get("masked") != ref["masked"]:
        out.append(f"masked {doc.get('masked')} are not the spec's {ref['masked']}")
    return "; ".join(out) or "its bytes are not the canonical ones (same content)"


def codebook_problems(features: NDArray[np.float64], ls: LabelSpec) -> list[str]:
    """The manifest's codebook against every sample's region features: its size, and that
    one Lloyd step (as `fit_codebook` takes them) leaves it where it is."""
    book, k = ls.codebook, ls.spec.codebook_size
    distinct = len(np.unique(features, axis=0)) if len(features) else 0
    if len(book) != min(k, distinct):
        return [f"{len(book)} codebook entries, want min({k}, {distinct} distinct features)"]
    if not len(book):
        return []
    moved = lloyd_step(features, book)
    n = int((moved != book).any(axis=1).sum())
    if n:
        return [f"the codebook is not fitted on these regions: {n} of {len(book)} centres move"]
    return []
