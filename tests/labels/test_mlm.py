"""MLM masking: BERT's rates, specials untouched, labels where masked, pinned bytes."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest

from curate.labels import rng_for
from curate.labels.mlm import EOT, IGNORE, MASK_ID, SOT, mask_caption, mask_tokens, tokenize

WORDS = [
    "a",
    "red",
    "dog",
    "runs",
    "on",
    "the",
    "green",
    "grass",
    "near",
    "a",
    "blue",
    "lake",
    "under",
    "the",
    "yellow",
    "sun",
]


def _captions(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))) for _ in range(n)]


def test_tokens_are_open_clips() -> None:
    text = "a photo of two cats on a sofa"
    ours = tokenize(text)
    theirs = open_clip.get_tokenizer("ViT-B-32")([text])[0].numpy()
    assert ours.tolist() == theirs.tolist()
    assert tokenize(None)[:3].tolist() == [SOT, EOT, 0]


def test_rates_follow_the_spec_over_many_captions() -> None:
    chosen = masked = swapped = kept = ordinary = 0
    expected = 0.0  # 15 % of the ordinary tokens, or one when the draw chose none
    for i, text in enumerate(_captions(3000)):
        ids = tokenize(text)
        out = mask_caption(text, rng_for(0, "mlm", str(i)), prob=0.15)
        is_ordinary = ~np.isin(ids, [SOT, EOT, 0])
        hit = out.labels != IGNORE
        assert not (hit & ~is_ordinary).any()  # specials are never chosen
        assert (out.labels[hit] == ids[hit]).all()
        assert (out.input_ids[~hit] == ids[~hit]).all()
        ordinary += int(is_ordinary.sum())
        expected += 0.15 * is_ordinary.sum() + 0.85 ** is_ordinary.sum()
        chosen += int(hit.sum())
        masked += int((out.input_ids[hit] == MASK_ID).sum())
        kept += int((out.input_ids[hit] == ids[hit]).sum())
        swapped += int(((out.input_ids[hit] != MASK_ID) & (out.input_ids[hit] != ids[hit])).sum())
    assert chosen / ordinary == pytest.approx(expected / ordinary, abs=0.01)
    assert masked / chosen == pytest.approx(0.8, abs=0.02)
    assert swapped / chosen == pytest.approx(0.1, abs=0.015)
    assert kept / chosen == pytest.approx(0.1, abs=0.015)


def test_masking_is_pinned() -> None:
    ids = np.array([SOT, 320, 1929, 525, 320, 736, 15723, EOT, 0])
    out = mask_tokens(ids, rng_for(1, "mlm", "x"), 0.5)
    assert out.input_ids.tolist() == PINNED_IDS
    assert out.labels.tolist() == PINNED_LABELS


def test_bad_probability_is_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(np.array([SOT, 5, EOT]), rng_for(0, "mlm", "x"), 1.5)


PINNED_IDS = [49406, 320, 1929, 525, 49408, 736, 49408, 49407, 0]
PINNED_LABELS = [-100, -100, -100, -100, 320, -100, 15723, -100, -100]


def test_the_exclamation_token_is_text_and_padding_is_not() -> None:
    """CLIP's id 0 is "!" as well as padding: position, not value, tells them apart."""
    ids = tokenize("!😀")  # BPE id 0: "!" joined to what follows
    assert 0 in ids[1 : list(ids).index(EOT)].tolist()
    out = mask_tokens(ids, rng_for(0, "mlm", "x"), prob=1.0)
    end = list(ids).index(EOT)
    assert (out.labels[1:end] == ids[1:end]).all()  # every text token chosen, "!" too
    assert (out.labels[end:] == IGNORE).all() and out.labels[0] == IGNORE
