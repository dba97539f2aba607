"""The pretraining tasks the reference trainer judges, one object each: which label member it
reads, its loss, its held-out predictions, its control labels and how it is scored. A new
task is one class here and an entry in `TASKS`.

What a task reads from a batch is chosen so that no token gives its answer away: MLM is
scored only where the input shows the mask id (a kept or swapped token could be copied);
masked regions are hidden in every frame token too (`curate.train.data`); frame order is
predicted from a forward without region tokens, which come from one frame and would mark
its slot.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from curate.labels.mlm import IGNORE
from curate.train.batch import Batch, Vocab, valid_positions
from curate.train.data import Corpus
from curate.train.stats import classification, ranking

if TYPE_CHECKING:
    from curate.train.loop import Runner

__all__ = ["FOM", "ITM", "MLM", "MRC", "TASKS", "UNTESTED", "VSM", "Task", "untested_members"]

# Label members the reference model has no head for: named in metrics.json, never "passed".
UNTESTED = {
    "patchmask.npy": "no masked-patch head in the reference model",
    "audiomask.json": "no audio stream in the reference model",
}


class Task:
    """One pretraining task. Classifications fill `targets`; matching tasks override
    `loss`, `predict` and `score`."""

    name: ClassVar[str]
    member: ClassVar[str]  # the label member it judges
    view: ClassVar[str] = "masked"  # which forward it reads (see Runner.view)

    def applies(self, corpus: Corpus) -> bool:
        return self.member in corpus.members

    def classes(self, corpus: Corpus, vocab: Vocab) -> int:
        raise NotImplementedError

    def targets(self, b: Batch) -> np.ndarray:
        """The label per position of the task's output, IGNORE where none."""
        raise NotImplementedError

    def scored(self, b: Batch) -> np.ndarray:
        """Where held-out predictions are scored (default: every labelled position)."""
        return self.targets(b) != IGNORE

    def logits(self, r: Runner, out: dict[str, Any], where: np.ndarray) -> Any:
        raise NotImplementedError

    def encode(self, r: Runner, labels: np.ndarray) -> np.ndarray:
        """Labels as the head's class indices."""
        return labels

    def decode(self, r: Runner, pred: np.ndarray) -> np.ndarray:
        return pred

    def control(self, labels: np.ndarray, prior: Counter[int], rng: np.random.Generator) -> None:
        """Replace the labels in place by ones drawn from the training prior: a shuffle
        within the batch would leave some their own label, and where labels are uniform
        (frame order) that trace alone decides the argmax."""
        where = labels != IGNORE
        if where.any() and prior:
            values = np.asarray(sorted(prior), np.int64)
            p = np.asarray([prior[int(v)] for v in values], np.float64)
            labels[where] = rng.choice(values, int(where.sum()), p=p / p.sum())

    def count(self, b: Batch, into: Counter[int]) -> None:
        """Add the batch's labels to the training prior."""
        t = self.targets(b)
        into.update(t[t != IGNORE].tolist())

    def loss(
        self, r: Runner, b: Batch, rng: np.random.Generator, prior: Counter[int] | None
    ) -> Any:
        """The task's loss on a training batch; with `prior`, on control labels."""
        labels = self.targets(b).copy()
        if prior is not None:
            self.control(labels, prior, rng)
        where = labels != IGNORE
        if not where.any():
            return None
        logits = self.logits(r, r.view(b, self.view), where)
        target = r.t(self.encode(r, labels[where]))
        return r.torch.nn.functional.cross_entropy(logits, target)

    def predict(self, r: Runner, b: Batch) -> dict[str, np.ndarray] | None:
        labels, where = self.targets(b), self.scored(b)
        if not where.any():
            return None
        pred = self.logits(r, r.view(b, self.view), where).argmax(-1).cpu().numpy()
        return {"pred": self.decode(r, pred), "true": labels[where], "owner": np.nonzero(where)[0]}

    def score(
        self, out: dict[str, np.ndarray], prior: Counter[int], classes: int
    ) -> dict[str, Any]:
        return classification(out, prior, classes)


class MLM(Task):
    """Masked tokens from the caption and the whole picture (no region masked for MRC
    hides what a word names)."""

    name, member, view = "mlm", "mlm.npz", "shown"

    def classes(self, corpus: Corpus, vocab: Vocab) -> int:
        return vocab.size

    def targets(self, b: Batch) -> np.ndarray:
        return b.mlm_labels

    def scored(self, b: Batch) -> np.ndarray:
        return (b.mlm_labels != IGNORE) & b.shows_mask

    def logits(self, r: Runner, out: dict[str, Any], where: np.ndarray) -> Any:
        return r.model.mlm_logits(out["text"][r.t(where)])

    def encode(self, r: Runner, labels: np.ndarray) -> np.ndarray:
        return r.vocab.lookup[labels]

    def decode(self, r: Runner, pred: np.ndarray) -> np.ndarray:
        return r.vocab.ids[pred]


class MRC(Task):
    name, member = "mrc", "regions.json"

    def classes(self, corpus: Corpus, vocab: Vocab) -> int:
        return corpus.spec.codebook_size

    def targets(self, b: Batch) -> np.ndarray:
        return np.where(b.region_masked, b.region_class, IGNORE)

    def logits(self, r: Runner, out: dict[str, Any], where: np.ndarray) -> Any:
        return r.model.mrc(out["regions"][r.t(where)])


class FOM(Task):
    name, member, view = "fom", "fom.json", "frames"

    def applies(self, corpus: Corpus) -> bool:
        return super().applies(corpus) and corpus.frames > 1

    def classes(self, corpus: Corpus, vocab: Vocab) -> int:
        return max(corpus.frames, 1)

    def targets(self, b: Batch) -> np.ndarray:
        whole = (b.order != IGNORE).all(1, keepdims=True)
        return np.where(whole, b.order, IGNORE)

    def logits(self, r: Runner, out: dict[str, Any], where: np.ndarray) -> Any:
        return r.model.fom(out["frames"][r.t(where)])

    def control(self, labels: np.ndarray, prior: Counter[int], rng: np.random.Generator) -> None:
        """A fresh uniform order per clip: a permutation, as the real labels are."""
        for row in np.flatnonzero((labels != IGNORE).all(1)):
            labels[row] = rng.permutation(labels.shape[1])


HELD_OUT_NEGATIVES = 4


def _held_out_others(r: Runner, b: Batch, e: Any) -> list[Any]:
    """Other held-out samples of the batch, of other groups and with other texts, in the
    order of a hash of the two keys: the same choice on every run."""
    mine = r.split.group.get(e.key, e.key)
    others = [
        o
        for o in b.examples
        if r.split.group.get(o.key, o.key) != mine and not np.array_equal(o.text_ids, e.text_ids)
    ]
    others.sort(key=lambda o: zlib.crc32(f"{e.key}\x00{o.key}".encode()))
    return others[:HELD_OUT_NEGATIVES]


class Matching(Task):
    """Is this text the sample's own? Trained on the own text and stored negatives (plus,
    for ITM, other captions of the batch: UNITER's random negatives). Judged by ranking the
    own text above the texts of other held-out samples: every one of them unseen in
    training, so neither a memory of training captions nor a prior over texts can rank
    them (a stored negative is mostly a training caption, whose remembered score sets it
    apart from an unseen own text in either direction: reported by kind, not judged)."""

    field: ClassVar[str]
    batch_negatives: ClassVar[bool] = False

    def classes(self, corpus: Corpus, vocab: Vocab) -> int:
        return 2

    def count(self, b: Batch, into: Counter[int]) -> None:
        return None

    def pairs(
        self, r: Runner, b: Batch, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
        """(CLIP ids, label, sample index, kind, source key) of every (sample, text) pair.
        In training (with rng): `negatives` stored negatives drawn at random and, for ITM,
        `batch_negatives` other captions of the batch. In evaluation: every stored
        negative, and the texts of up to HELD_OUT_NEGATIVES other held-out samples of other
        groups in the batch (kind "held_out"), picked by a hash of the two keys."""
        texts, labels, owner, kinds, keys = [], [], [], [], []
        extra = r.settings.batch_negatives if rng is not None and self.batch_negatives else 0
        for i, e in enumerate(b.examples):
            stored = (getattr(e, self.field), getattr(e, self.kinds), getattr(e, self.keys))
            negs = list(zip(*stored, strict=True))
            if rng is not None and negs and r.settings.negatives < len(negs):
                pick = rng.choice(len(negs), r.settings.negatives, replace=False)
                negs = [negs[int(j)] for j in sorted(pick)]
            if extra and rng is not None:
                others = [o for o in b.examples if not np.array_equal(o.text_ids, e.text_ids)]
                if others:
                    drawn = [others[int(j)] for j in rng.choice(len(others), extra)]
                    negs += [(o.text_ids, "batch", o.key) for o in drawn]
            if rng is None:
                negs += [(o.text_ids, "held_out", o.key) for o in _held_out_others(r, b, e)]
            texts += [e.text_ids, *(n[0] for n in negs)]
            labels += [1] + [0] * len(negs)
            owner += [i] * (1 + len(negs))
            kinds += ["positive", *(n[1] for n in negs)]
            keys += [e.key, *(n[2] for n in negs)]
        ids = np.stack(texts)
        return ids, np.asarray(labels, np.int64), np.asarray(owner, np.int64), kinds, keys

    def pair_logits(self, r: Runner, b: Batch, ids: np.ndarray, owner: np.ndarray) -> Any:
        """The head's logits for each (sample owner[j], text ids[j]) pair, in chunks."""
        outs = []
        for at in range(0, len(owner), 64):
            o, t = owner[at : at + 64], ids[at : at + 64]
            valid = valid_positions(t)[:, : r.vocab.length]
            out = r.forward(b.rows(o), r.vocab.encode(t), valid, regions="shown")
            outs.append(r.model.match(out, self.name))
        return r.torch.cat(outs)

    def loss(
        self, r: Runner, b: Batch, rng: np.random.Generator, prior: Counter[int] | None
    ) -> Any:
        ids, labels, owner, _, _ = self.pairs(r, b, rng)
        if prior is not None:  # the control: one of each sample's texts, at random, is "own"
            labels = np.zeros(len(owner), np.int64)
            for o in np.unique(owner):
                rows = np.flatnonzero(owner == o)
                labels[rows[rng.integers(len(rows))]] = 1
        logits = self.pair_logits(r, b, ids, owner)
        return r.torch.nn.functional.cross_entropy(logits, r.t(labels))

    def predict(self, r: Runner, b: Batch) -> dict[str, np.ndarray] | None:
        ids, labels, owner, kinds, keys = self.pairs(r, b, None)
        if (labels == 0).sum() == 0:
            return None
        logits = self.pair_logits(r, b, ids, owner)
        unseen = [r.split.is_held_out(k) for k in keys]
        return {
            "score": (logits[:, 1] - logits[:, 0]).cpu().numpy(),
            "true": labels,
            "owner": owner,
            "kind": np.asarray(kinds),
            "unseen": np.asarray(unseen),
            "text": np.asarray([zlib.crc32(t.tobytes()) for t in ids], np.int64),
        }

    @property
    def kinds(self) -> str:
        return f"{self.name}_kinds"

    @property
    def keys(self) -> str:
        return f"{self.name}_keys"

    def score(
        self, out: dict[str, np.ndarray], prior: Counter[int], classes: int
    ) -> dict[str, Any]:
        return ranking(out, judged="held_out")


class ITM(Matching):
    name, member, field, batch_negatives = "itm", "itm.json", "itm_negatives", True

    def applies(self, corpus: Corpus) -> bool:
        return super().applies(corpus) and corpus.pictured


class VSM(Matching):
    name, member, field = "vsm", "vsm.json", "vsm_negatives"

    def applies(self, corpus: Corpus) -> bool:
        return super().applies(corpus) and corpus.frames > 0


TASKS: tuple[Task, ...] = (MLM(), ITM(), MRC(), FOM(), VSM())
_JUDGEABLE = {t.member for t in TASKS}


def untested_members(corpus: Corpus) -> dict[str, str]:
    """Label members of the corpus no task judges, with the reason."""
    judged = {t.member for t in TASKS if t.applies(corpus)}
    out = {}
    for member in corpus.members:
        if member in UNTESTED:
            out[member] = UNTESTED[member]
        elif member in _JUDGEABLE and member not in judged:
            out[member] = "the corpus lacks what its task needs"
    return out
