"""Each task reads only what cannot give its answer away: MLM is scored where the input
shows the mask id, frame order is predicted without region tokens, a blind run sees no
pixels; and the vocabulary and batches the tasks share."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from curate.config import LabelsConfig
from curate.labels.mlm import EOT, IGNORE, MASK_ID, SOT
from curate.train.batch import Vocab, collate, valid_positions
from curate.train.data import THUMB, Corpus, Example, _blank
from curate.train.loop import Runner, TrainSettings
from curate.train.split import Split
from curate.train.tasks import FOM, MLM, MRC, untested_members

DIM = 3 * THUMB * THUMB


def _example(
    ids: list[int],
    negatives: list[list[int]] = (),
    masked_at: tuple[int, ...] = (),  # type: ignore[assignment]
) -> Example:
    text = np.zeros(12, np.int64)
    text[: len(ids)] = ids
    inputs, labels = text.copy(), np.full(12, IGNORE, np.int64)
    for i in masked_at:
        labels[i] = text[i]
    inputs[list(masked_at[:1])] = MASK_ID  # the first is masked, the rest kept or swapped
    rng = np.random.default_rng(len(ids))
    return Example(
        "k", inputs, labels, text, rng.random((16, DIM + 5)).astype(np.float32),
        np.arange(16) < 4, np.arange(16) % 5, rng.random((4, DIM)).astype(np.float32),
        rng.permutation(4), [np.pad(np.asarray(n), (0, 12 - len(n))) for n in negatives],
    )  # fmt: skip


def test_the_vocabulary_holds_the_training_texts_and_trims_the_padding() -> None:
    # CLIP's id 0 is "!" inside a text and padding after the end token
    vocab = Vocab.build([_example([SOT, 320, 0, EOT]), _example([SOT, 7, EOT], [[SOT, 99, EOT]])])
    assert vocab.length == 4
    assert set(vocab.ids[2:].tolist()) == {SOT, EOT, 320, 0, 7, 99}
    assert vocab.ids[vocab.lookup[MASK_ID]] == MASK_ID
    ids = np.array([[SOT, 320, 5555, EOT, 0, 0]])
    assert vocab.ids[vocab.encode(ids)].tolist() == [[SOT, 320, -1, EOT]]  # unknown -> -1
    assert valid_positions(np.array([SOT, 0, EOT, 0, 0])).tolist() == [True] * 3 + [False] * 2
    longer = vocab.covering([_example([SOT, 1, 2, 3, 4, EOT])])
    assert longer.length == 6 and longer.size == vocab.size


def test_mlm_trains_on_every_chosen_token_but_is_scored_only_where_the_input_shows_the_mask() -> (
    None
):
    # a kept (unmasked) chosen token can be copied from the input: never scored
    e = _example([SOT, 320, 321, 322, EOT], masked_at=(1, 2, 3))
    vocab = Vocab.build([e])
    b = collate([e], 16, 4, vocab)
    mlm = MLM()
    assert (mlm.targets(b) != IGNORE).sum() == 3
    assert mlm.scored(b).tolist() == [[False, True, False, False, False]]


def _runner(mode: str) -> tuple[Runner, object]:
    corpus = Corpus(
        shards=(), spec=LabelsConfig(codebook_size=5), samples=2, frames=4,
        members=("f00.jpg", "f01.jpg", "f02.jpg", "f03.jpg", "fom.json", "mlm.npz",
                 "patchmask.npy", "regions.json", "txt"),
    )  # fmt: skip
    examples = [_example([SOT, 5, 6, EOT], masked_at=(1,)), _example([SOT, 7, EOT])]
    vocab = Vocab.build(examples)
    settings = TrainSettings(steps=2, progress=False)
    runner = Runner(corpus, settings, 16, vocab, Split({}, 0.2), mode)
    return runner, collate(examples, 16, 4, vocab)


def test_frame_order_reads_a_forward_without_region_tokens() -> None:
    # regions come from one frame: a region token would mark that frame's slot
    runner, b = _runner("real")
    masked = runner.view(b, "masked")  # type: ignore[arg-type]
    frames = runner.view(b, "frames")  # type: ignore[arg-type]
    assert masked["regions"].shape[1] == 16 and frames["regions"].shape[1] == 0
    assert frames["frames"].shape[1] == 4
    assert FOM.view == "frames" and MLM.view == "shown" and MRC.view == "masked"


def test_a_blind_run_sees_the_text_and_the_boxes_but_no_pixels() -> None:
    runner, b = _runner("blind")
    seen: list[np.ndarray] = []
    model = runner.model

    def spy(*args: object) -> object:
        seen.extend(np.asarray(a.cpu()) for a in args)  # type: ignore[attr-defined]
        return {"text": None}

    runner.model = spy  # type: ignore[assignment]
    runner.forward(b, b.text, b.text_valid, "shown")  # type: ignore[attr-defined]
    runner.model = model
    text, _, regions, _, _, frames = seen
    assert (text == runner.vocab.encode(np.stack([e.text_ids for e in b.examples]))).all()  # type: ignore[attr-defined]
    assert (regions[..., :-5] == 0).all() and (regions[..., -5:] != 0).any()
    assert (frames == 0).all()


def test_the_control_draws_from_the_prior_at_the_same_positions_and_orders_uniformly() -> None:
    labels = np.full((400, 6), IGNORE)
    labels[:, 2] = 10
    labels[::2, 4] = 11
    before = labels.copy()
    MLM().control(labels, Counter({10: 3, 11: 1}), np.random.default_rng(0))
    assert ((labels == IGNORE) == (before == IGNORE)).all()
    drawn = labels[labels != IGNORE]
    assert (drawn == 10).mean() == pytest.approx(0.75, abs=0.05)
    assert (labels[:, 2] == 11).mean() == pytest.approx(0.25, abs=0.06)  # owes the sample nothing
    order = np.tile(np.arange(4), (2000, 1))
    FOM().control(order, Counter(), np.random.default_rng(0))
    assert (np.sort(order, 1) == np.arange(4)).all()  # still permutations
    assert (order[:, 0] == 0).mean() == pytest.approx(0.25, abs=0.03)


def test_frame_cells_of_masked_regions_are_blanked_in_every_frame() -> None:
    # a 4x4 thumbnail of a 160x120 frame samples cell centres; a box over the top-left
    # quarter covers the thumbnail's top-left 2x2 samples, in all three channels
    hidden = _blank(160, 120, np.array([[0.0, 0.0, 80.0, 60.0]]))
    cells = hidden.reshape(THUMB, THUMB, 3)
    assert cells[:2, :2].all() and not cells[2:].any() and not cells[:, 2:].any()
    assert not _blank(160, 120, np.zeros((0, 4))).any()


def test_members_no_task_judges_are_named_untested() -> None:
    corpus = Corpus(
        shards=(), spec=LabelsConfig(), samples=0, frames=0,
        members=("audiomask.json", "flac", "itm.json", "json", "mlm.npz", "txt"),
    )  # fmt: skip
    # an audio corpus: ITM has no picture to match against
    got = untested_members(corpus)
    assert set(got) == {"audiomask.json", "itm.json"}
    assert corpus.tasks == ("mlm",)
