"""Masked language modelling: BERT-style masking of a caption's tokens.

Tokens come from open_clip's bundled tokenizer (CLIP BPE, 49,408 ids; start 49406, end
49407, pad 0). CLIP's vocabulary has no mask token, so the mask id is 49408, one past it: a
model reading these labels needs vocab_size + 1 embeddings. Of the non-special positions,
`prob` are chosen; of those 80 % become the mask id, 10 % a random ordinary token and 10 %
stay; `labels` hold the original id there and -100 elsewhere (PyTorch's ignore index).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CLIP_VOCAB",
    "IGNORE",
    "MASK_ID",
    "Masked",
    "mask_caption",
    "mask_tokens",
    "token_length",
    "tokenize",
]

CLIP_VOCAB = 49408
SOT, EOT, PAD = 49406, 49407, 0
MASK_ID = CLIP_VOCAB  # one past CLIP's vocabulary
IGNORE = -100


@dataclass(frozen=True)
class Masked:
    """`input_ids` with some tokens masked and `labels` (original ids there, -100 elsewhere)."""

    input_ids: NDArray[np.int32]
    labels: NDArray[np.int32]


@functools.cache
def _tokenizer() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenize(text: str | None, length: int = 77) -> NDArray[np.int32]:
    """The caption as CLIP token ids: start, BPE ids (cut to fit), end, zero padding."""
    ids = _tokenizer().encode(text or "")[: length - 2]
    out = np.zeros(length, np.int32)
    out[: len(ids) + 2] = [SOT, *ids, EOT]
    return out


def token_length(text: str | None, length: int = 77) -> int:
    """How many ordinary tokens the caption has as `tokenize` cuts it: what the length rule
    of ITM/VSM negatives compares."""
    return min(len(_tokenizer().encode(text or "")), length - 2)


def _ordinary(ids: NDArray[np.int32], sot: int, eot: int) -> NDArray[np.bool_]:
    """The text's own tokens: after the start token and before the first end token, by
    position (CLIP's id 0 is both padding and a real token, "!")."""
    n = ids.size
    ends = np.flatnonzero(ids == eot)
    stop = int(ends[0]) if ends.size else n
    start = 1 if n and ids[0] == sot else 0
    out = np.zeros(n, dtype=bool)
    out[start:stop] = True
    return out


def mask_tokens(
    ids: NDArray[np.integer],
    rng: np.random.Generator,
    prob: float = 0.15,
    mask_id: int = MASK_ID,
    vocab_size: int = CLIP_VOCAB,
    special: tuple[int, ...] = (SOT, EOT),
) -> Masked:
    """BERT masking of `ids` (start token, text, end token, padding): each text token chosen
    with probability `prob` (at least one when any exists), then 80 % mask id, 10 % a
    random token (never start or end), 10 % kept."""
    if not 0 <= prob <= 1:
        raise ValueError(f"mask probability {prob} is not in [0, 1]")
    ids32: NDArray[np.int32] = np.asarray(ids, np.int32)
    ordinary = _ordinary(ids32, special[0], special[1])
    u = rng.random(ids32.shape)  # drawn for every position: the stream does not depend on text
    chosen = ordinary & (u < prob)
    if prob > 0 and ordinary.any() and not chosen.any():
        where = np.flatnonzero(ordinary)
        chosen[where[int(np.argmin(u[where]))]] = True
    action = rng.random(ids32.shape)
    random_ids = rng.integers(0, vocab_size, ids32.shape)
    random_ids = np.where(np.isin(random_ids, special), random_ids % 1000, random_ids)
    out = ids32.copy()
    out[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    out[swap] = random_ids[swap]
    labels = np.full(ids32.shape, IGNORE, np.int32)
    labels[chosen] = ids32[chosen]
    return Masked(out.astype(np.int32), labels)


def mask_caption(
    text: str | None, rng: np.random.Generator, prob: float = 0.15, length: int = 77
) -> Masked:
    """Tokenize a caption with CLIP's tokenizer and mask it."""
    return mask_tokens(tokenize(text, length), rng, prob)
