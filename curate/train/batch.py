"""Examples to padded arrays: the corpus vocabulary, and one batch as numpy arrays every task
reads its fields from."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.labels.mlm import EOT, IGNORE, MASK_ID
from curate.train.data import THUMB, Example

__all__ = ["Batch", "Vocab", "batches", "collate", "valid_positions"]


def valid_positions(ids: np.ndarray) -> np.ndarray:
    """Positions up to and including the first end token (CLIP's id 0 is both padding and
    "!", so padding is what follows the end token)."""
    ends = (ids == EOT).astype(np.int64)
    return (np.cumsum(ends, -1) - ends) == 0


@dataclass(frozen=True)
class Vocab:
    """The token ids the training split uses, renumbered: 0 unknown, 1 mask, then each id.
    A model over CLIP's 49,409 ids would spend most of a small run updating rows it never
    sees; `length` trims the padding every caption of the corpus leaves unused."""

    lookup: np.ndarray  # CLIP id -> compact id
    ids: np.ndarray  # compact id -> CLIP id (-1 for unknown)
    length: int

    @classmethod
    def build(cls, examples: Iterable[Example]) -> Vocab:
        seen: set[int] = set()
        length = 2
        for e in examples:
            valid = valid_positions(e.text_ids[None])[0]
            length = max(length, int(valid.sum()))
            seen.update(e.text_ids[valid].tolist())
            for neg in (*e.itm_negatives, *e.vsm_negatives):
                seen.update(neg[valid_positions(neg[None])[0]].tolist())
        ids = np.asarray([-1, MASK_ID, *sorted(seen - {MASK_ID})], np.int64)
        lookup = np.zeros(MASK_ID + 1, np.int64)
        lookup[ids[1:]] = np.arange(1, len(ids))
        return cls(lookup, ids, length)

    def covering(self, examples: Iterable[Example]) -> Vocab:
        """The same ids, `length` long enough for every caption of `examples` too."""
        longest = max((int(valid_positions(e.text_ids[None]).sum()) for e in examples), default=0)
        return Vocab(self.lookup, self.ids, max(self.length, longest))

    @property
    def size(self) -> int:
        return len(self.ids)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        return self.lookup[ids[..., : self.length]]


@dataclass
class Batch:
    """One batch: compact ids (see `Vocab`), trimmed to the corpus's caption length."""

    masked_text: np.ndarray  # the MLM input
    mlm_labels: np.ndarray  # CLIP ids at masked positions, IGNORE elsewhere
    shows_mask: np.ndarray  # positions whose input is the mask id: where MLM is scored
    text: np.ndarray  # the caption, unmasked
    text_valid: np.ndarray
    regions: np.ndarray  # (B, R, picture dims + 5): thumbnail, box, area
    region_valid: np.ndarray
    region_masked: np.ndarray
    region_class: np.ndarray  # IGNORE where none
    frames: np.ndarray  # (B, K, picture dims), in the shown order
    order: np.ndarray  # (B, K): the true index of the frame in each slot; IGNORE: no clip
    examples: list[Example]

    def rows(self, index: np.ndarray) -> Batch:
        """The batch's rows `index` (repeats allowed): one per (sample, text) pair."""
        fields: dict[str, Any] = {f: getattr(self, f)[index] for f in _ARRAYS}
        return Batch(**fields, examples=[self.examples[i] for i in index])


_ARRAYS = (
    "masked_text", "mlm_labels", "shows_mask", "text", "text_valid", "regions",
    "region_valid", "region_masked", "region_class", "frames", "order",
)  # fmt: skip


def batches(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
    it = iter(examples)
    while batch := list(itertools.islice(it, size)):
        yield batch


def collate(batch: list[Example], regions: int, frames: int, vocab: Vocab) -> Batch:
    """Examples as one padded batch with `regions` region slots and `frames` frame slots."""
    b, dim = len(batch), 3 * THUMB * THUMB
    feats = np.zeros((b, regions, dim + 5), np.float32)
    r_valid = np.zeros((b, regions), bool)
    r_masked = np.zeros((b, regions), bool)
    classes = np.full((b, regions), IGNORE, np.int64)
    fr = np.zeros((b, frames, dim), np.float32)
    order = np.full((b, frames), IGNORE, np.int64)
    for i, e in enumerate(batch):
        n = min(len(e.regions), regions)
        feats[i, :n] = e.regions[:n]
        r_valid[i, :n] = True
        r_masked[i, :n] = e.region_masked[:n]
        classes[i, :n] = e.region_class[:n]
        if frames and len(e.frames) == frames:
            fr[i], order[i] = e.frames, e.frame_order
    text = np.stack([e.text_ids for e in batch])
    masked = np.stack([e.input_ids for e in batch])[:, : vocab.length]
    return Batch(
        masked_text=vocab.encode(masked),
        mlm_labels=np.stack([e.mlm_labels for e in batch])[:, : vocab.length],
        shows_mask=masked == MASK_ID,
        text=vocab.encode(text),
        text_valid=valid_positions(text)[:, : vocab.length],
        regions=feats,
        region_valid=r_valid,
        region_masked=r_masked,
        region_class=classes,
        frames=fr,
        order=order,
        examples=batch,
    )
