"""`curate train OUT`: train the reference model on a labelled corpus, twice — on the labels
and on labels drawn independently of each sample (the control) — and judge every task on
held-out samples against chance.

A task passes when its held-out accuracy beats chance by a clear margin: chance is the best
a model ignoring the input could do (uniform guessing, or always the most frequent training
label, whichever scores more on the held-out set), and the margin is max(0.05, three
standard errors over held-out samples: a Bernoulli's at chance for the classifications, the
exact null variance of the ranking score for matching). The control's labels are drawn from
how often each label occurs in training and owe nothing to the sample, so it must stay under
the same bar: if it clears it, the evaluation leaks.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.labels.mlm import EOT, IGNORE, MASK_ID
from curate.train.data import (
    THUMB,
    Corpus,
    Example,
    Skipped,
    held_out,
    iter_examples,
    open_corpus,
    plain_rate,
    trainer_rate,
)

__all__ = ["TrainSettings", "chance_bar", "format_metrics", "train"]

METRICS_VERSION = 1
FIRST_PASS = 20_000  # training samples read up front for the vocabulary and label counts


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    width: int = 64
    layers: int = 1
    held_out: float = 0.2
    seed: int = 0
    device: str = "cpu"
    control: bool = True
    loader_seconds: float = 2.0
    max_eval: int = 5000
    progress: bool = True
    tasks: tuple[str, ...] = ()  # () = every task the corpus has labels for
    negatives: int = 1  # stored ITM / VSM negatives paired with each sample per step
    batch_negatives: int = 1  # other samples' captions in the batch, as ITM negatives
    max_skipped: int = 0  # unreadable shards or samples tolerated before the run fails


def _tasks(corpus: Corpus, settings: TrainSettings) -> tuple[str, ...]:
    return tuple(t for t in corpus.tasks if not settings.tasks or t in settings.tasks)


def chance_bar(chance: float, n: int, variance: float | None = None) -> float:
    """The accuracy a task must reach on n held-out samples to beat `chance` clearly: three
    standard errors of the mean of n per-sample scores whose variance, for a model that
    cannot do the task, is `variance` (a Bernoulli's at chance by default), or 5 points."""
    if n <= 0:
        return math.inf
    var = chance * (1 - chance) if variance is None else variance
    return chance + max(0.05, 3 * math.sqrt(var / n))


# ---- batches -------------------------------------------------------------------------------


def _batches(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
    it = iter(examples)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _pad_regions(batch: list[Example], regions: int, dim: int) -> dict[str, np.ndarray]:
    b = len(batch)
    feats = np.zeros((b, regions, dim), np.float32)
    valid = np.zeros((b, regions), bool)
    masked = np.zeros((b, regions), bool)
    classes = np.full((b, regions), IGNORE, np.int64)
    for i, e in enumerate(batch):
        n = min(len(e.regions), regions)
        feats[i, :n] = e.regions[:n]
        valid[i, :n] = True
        masked[i, :n] = e.region_masked[:n]
        classes[i, :n] = e.region_class[:n]
    return {"regions": feats, "valid": valid, "masked": masked, "classes": classes}


@dataclass
class _Batch:
    masked_text: np.ndarray  # compact ids (see _Vocab), trimmed to the corpus's length
    mlm_labels: np.ndarray  # CLIP ids at masked positions, IGNORE elsewhere
    text: np.ndarray  # compact ids of the caption, unmasked
    text_valid: np.ndarray
    regions: dict[str, np.ndarray]
    frames: np.ndarray
    order: np.ndarray
    examples: list[Example]


def _collate(batch: list[Example], regions: int, frames: int, vocab: _Vocab) -> _Batch:
    dim = 3 * THUMB * THUMB
    k = frames
    fr = np.zeros((len(batch), k, dim), np.float32)
    order = np.full((len(batch), k), IGNORE, np.int64)
    for i, e in enumerate(batch):
        if len(e.frames) == k and k:
            fr[i], order[i] = e.frames, e.frame_order
    text = np.stack([e.text_ids for e in batch])
    return _Batch(
        masked_text=vocab.encode(np.stack([e.input_ids for e in batch])),
        mlm_labels=np.stack([e.mlm_labels for e in batch])[:, : vocab.length],
        text=vocab.encode(text),
        text_valid=_valid(text)[:, : vocab.length],
        regions=_pad_regions(batch, regions, dim + 5),
        frames=fr,
        order=order,
        examples=batch,
    )


@dataclass(frozen=True)
class _Prior:
    """How often each label occurs in the training split: all the control may learn."""

    values: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, counts: Counter[int]) -> _Prior:
        values = np.asarray(sorted(counts), np.int64)
        p = np.asarray([counts[int(v)] for v in values], np.float64)
        return cls(values, p / p.sum() if p.sum() else p)

    def draw(self, values: np.ndarray, where: np.ndarray, rng: np.random.Generator) -> None:
        """Replace values[where] with labels drawn from the prior, in place. A shuffle
        within the batch would not do: it leaves some positions their own label, and where
        the labels are uniform (frame order) that trace alone decides the argmax."""
        if where.any() and len(self.values):
            values[where] = rng.choice(self.values, int(where.sum()), p=self.p)


@dataclass(frozen=True)
class _Vocab:
    """The token ids the training split uses, renumbered: 0 unknown, 1 mask, then each id.
    A model over CLIP's 49,409 ids would spend most of a small run updating rows it never
    sees; `length` trims the padding every caption of the corpus leaves unused."""

    lookup: np.ndarray  # CLIP id -> compact id
    ids: np.ndarray  # compact id -> CLIP id (-1 for unknown)
    length: int

    @classmethod
    def build(cls, examples: Iterable[Example]) -> _Vocab:
        seen: set[int] = set()
        length = 2
        for e in examples:
            valid = _valid(e.text_ids[None])[0]
            length = max(length, int(valid.sum()))
            seen.update(e.text_ids[valid].tolist())
            for neg in (*e.itm_negatives, *e.vsm_negatives):
                seen.update(neg[_valid(neg[None])[0]].tolist())
        ids = np.asarray([-1, MASK_ID, *sorted(seen - {MASK_ID})], np.int64)
        lookup = np.zeros(MASK_ID + 1, np.int64)
        lookup[ids[1:]] = np.arange(1, len(ids))
        return cls(lookup, ids, length)

    @property
    def size(self) -> int:
        return len(self.ids)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        return self.lookup[ids[..., : self.length]]


def _valid(ids: np.ndarray) -> np.ndarray:
    """Positions up to and including the first end token (CLIP's id 0 is both padding and
    "!", so padding is what follows the end token)."""
    ends = (ids == EOT).astype(np.int64)
    return (np.cumsum(ends, -1) - ends) == 0


# ---- the model run -------------------------------------------------------------------------


class _Runner:
    """One model, its optimiser and the forward passes every task shares."""

    def __init__(
        self,
        corpus: Corpus,
        settings: TrainSettings,
        regions: int,
        vocab: _Vocab,
        priors: dict[str, _Prior],
    ) -> None:
        import torch

        from curate.train.model import ModelConfig, Tower

        torch.manual_seed(settings.seed)
        self.torch = torch
        self.device = torch.device(settings.device)
        self.tasks = _tasks(corpus, settings)
        self.vocab = vocab
        dim = 3 * THUMB * THUMB
        cfg = ModelConfig(
            vocab=vocab.size,
            text_length=vocab.length,
            region_dim=dim,
            frame_dim=dim,
            regions=regions,
            frames=corpus.frames,
            classes=corpus.spec.codebook_size,
            width=settings.width,
            layers=settings.layers,
        )
        self.model = Tower(cfg).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=0.01)
        self.steps = settings.steps
        self.lr = settings.lr
        self.negatives = settings.negatives
        self.held_out = settings.held_out
        self.batch_negatives = settings.batch_negatives
        self.priors = priors

    def _t(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _forward(
        self, b: _Batch, text: np.ndarray, valid: np.ndarray, mask_regions: bool
    ) -> dict[str, Any]:
        r = b.regions
        masked = r["masked"] if mask_regions else np.zeros_like(r["masked"])
        return self.model(
            self._t(text), self._t(valid), self._t(r["regions"]), self._t(r["valid"]),
            self._t(masked), self._t(b.frames),
        )  # fmt: skip

    def _pairs(
        self, b: _Batch, field: str, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(CLIP ids, label, sample index): its own text and, in training (with rng),
        `negatives` of its stored negatives drawn at random (the model sees each image with
        both, so matching is learned as a comparison) plus, for ITM, `batch_negatives`
        captions of other samples in the batch (UNITER's random negatives: the stored ones
        are mostly hard, and a small corpus needs easy contrasts too). In evaluation, its
        own text and every stored negative."""
        texts, labels, owner = [], [], []
        extra = self.batch_negatives if rng is not None and field == "itm_negatives" else 0
        for i, e in enumerate(b.examples):
            negs = getattr(e, field)
            if rng is not None and negs and self.negatives < len(negs):
                pick = rng.choice(len(negs), self.negatives, replace=False)
                negs = [negs[int(j)] for j in sorted(pick)]
            if extra and rng is not None:
                others = [o for o in b.examples if not np.array_equal(o.text_ids, e.text_ids)]
                if others:
                    drawn = rng.choice(len(others), extra)
                    negs = [*negs, *(others[int(j)].text_ids for j in drawn)]
            texts += [e.text_ids, *negs]
            labels += [1] + [0] * len(negs)
            owner += [i] * (1 + len(negs))
        return np.stack(texts), np.asarray(labels, np.int64), np.asarray(owner, np.int64)

    def _pair_logits(self, b: _Batch, ids: np.ndarray, owner: np.ndarray, head: str) -> Any:
        """The head's logits for each (sample owner[j], text ids[j]) pair, in chunks."""
        outs = []
        for at in range(0, len(owner), 64):
            o, t = owner[at : at + 64], ids[at : at + 64]
            sub = _Batch(
                b.masked_text[o], b.mlm_labels[o], b.text[o], b.text_valid[o],
                {k: v[o] for k, v in b.regions.items()}, b.frames[o], b.order[o], [],
            )  # fmt: skip
            valid = _valid(t)[:, : self.vocab.length]
            out = self._forward(sub, self.vocab.encode(t), valid, mask_regions=False)
            outs.append(self.model.match(out, head))
        return self.torch.cat(outs)

    def _masked(self, b: _Batch) -> dict[str, Any]:
        return self._forward(b, b.masked_text, b.text_valid, mask_regions="mrc" in self.tasks)

    def losses(self, b: _Batch, rng: np.random.Generator, control: bool) -> dict[str, Any]:
        """Every task's loss on one batch; with `control`, labels independent of the
        sample: classes drawn from the training prior, a fresh uniform frame order per clip,
        and a random one of each sample's texts called its own."""
        f = self.torch.nn.functional
        mlm, classes, order = b.mlm_labels.copy(), b.regions["classes"].copy(), b.order.copy()
        if control:
            self.priors["mlm"].draw(mlm, mlm != IGNORE, rng)
            self.priors["mrc"].draw(classes, b.regions["masked"] & (classes != IGNORE), rng)
            for row in np.flatnonzero((order != IGNORE).all(1)):
                order[row] = rng.permutation(order.shape[1])
        out = self._masked(b)
        loss: dict[str, Any] = {}
        if "mlm" in self.tasks and (mlm != IGNORE).any():
            pick = mlm != IGNORE
            logits = self.model.mlm_logits(out["text"][self._t(pick)])
            loss["mlm"] = f.cross_entropy(logits, self._t(self.vocab.lookup[mlm[pick]]))
        target = np.where(b.regions["masked"], classes, IGNORE)
        if "mrc" in self.tasks and (target != IGNORE).any():
            pick = target != IGNORE
            logits = self.model.mrc(out["regions"][self._t(pick)])
            loss["mrc"] = f.cross_entropy(logits, self._t(target[pick]))
        if "fom" in self.tasks and (order != IGNORE).any():
            logits = self.model.fom(out["frames"])
            loss["fom"] = f.cross_entropy(logits.flatten(0, 1), self._t(order).flatten())
        for task, field in (("itm", "itm_negatives"), ("vsm", "vsm_negatives")):
            if task in self.tasks:
                ids, labels, owner = self._pairs(b, field, rng)
                if control:
                    labels = _random_own(owner, rng)
                logits = self._pair_logits(b, ids, owner, task)
                loss[task] = f.cross_entropy(logits, self._t(labels))
        return loss

    def step(
        self, b: _Batch, step: int, rng: np.random.Generator, control: bool
    ) -> dict[str, float]:
        self.model.train()
        loss = self.losses(b, rng, control)
        warm = max(1, self.steps // 10)
        if step < warm:  # linear warm-up, then cosine decay
            scale = (step + 1) / warm
        else:
            scale = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.steps - warm)))
        for g in self.opt.param_groups:
            g["lr"] = self.lr * scale
        self.opt.zero_grad(set_to_none=True)
        sum(loss.values()).backward()
        self.opt.step()
        return {k: float(v.detach()) for k, v in loss.items()}

    def predict(self, b: _Batch) -> dict[str, dict[str, np.ndarray]]:
        """Per task on one held-out batch, true labels throughout: `pred` and `true` for
        the classifications; for matching, every (sample, text) pair's `score` (logit of
        "matches"), `true`, the sample (`owner`), the negative's `kind` and which `text`
        (a CRC of its ids: a sample's negatives can repeat a caption)."""
        self.model.eval()
        res: dict[str, dict[str, np.ndarray]] = {}
        with self.torch.no_grad():
            out = self._masked(b)
            if "mlm" in self.tasks:
                pick = b.mlm_labels != IGNORE
                pred = self.model.mlm_logits(out["text"][self._t(pick)]).argmax(-1)
                res["mlm"] = {
                    "pred": self.vocab.ids[pred.cpu().numpy()],
                    "true": b.mlm_labels[pick],
                    "owner": np.nonzero(pick)[0],
                }
            target = np.where(b.regions["masked"], b.regions["classes"], IGNORE)
            if "mrc" in self.tasks:
                pick = target != IGNORE
                pred = self.model.mrc(out["regions"][self._t(pick)]).argmax(-1)
                res["mrc"] = {
                    "pred": pred.cpu().numpy(),
                    "true": target[pick],
                    "owner": np.nonzero(pick)[0],
                }
            if "fom" in self.tasks:
                keep = (b.order != IGNORE).all(1)
                pred = self.model.fom(out["frames"]).argmax(-1).cpu().numpy()
                res["fom"] = {
                    "pred": pred[keep].ravel(),
                    "true": b.order[keep].ravel(),
                    "owner": np.repeat(np.flatnonzero(keep), b.order.shape[1]),
                }
            for task, field in (("itm", "itm_negatives"), ("vsm", "vsm_negatives")):
                if task in self.tasks:
                    ids, labels, owner = self._pairs(b, field, None)
                    logits = self._pair_logits(b, ids, owner, task)
                    kinds = [
                        k for e in b.examples for k in ("positive", *getattr(e, f"{task}_kinds"))
                    ]
                    split = [
                        k
                        for e in b.examples
                        for k in (
                            "positive",
                            *(
                                "held_out" if held_out(key, self.held_out) else "train"
                                for key in getattr(e, f"{task}_keys")
                            ),
                        )
                    ]
                    res[task] = {
                        "score": (logits[:, 1] - logits[:, 0]).cpu().numpy(),
                        "true": labels,
                        "owner": owner,
                        "kind": np.asarray(kinds),
                        "split": np.asarray(split),
                        "text": np.asarray([zlib.crc32(t.tobytes()) for t in ids], np.int64),
                    }
        return res


def _random_own(owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The control's matching labels: for each sample, one of its texts picked at random
    is called its own, whichever it really is."""
    labels = np.zeros(len(owner), np.int64)
    for o in np.unique(owner):
        rows = np.flatnonzero(owner == o)
        labels[rows[rng.integers(len(rows))]] = 1
    return labels


# ---- scoring -------------------------------------------------------------------------------


def _score(
    task: str, out: dict[str, np.ndarray], prior: Counter[int], classes: int
) -> dict[str, Any]:
    """Held-out accuracy and the chance it is judged against. Matching (ITM, VSM) is
    judged by ranking: how often a sample's own text scores above one of its negatives,
    chance 0.5. `n` counts held-out samples, not predictions: a caption's masked tokens,
    an image's regions and a clip's frame slots are not independent draws, and counting
    them one by one would set the bar too low."""
    if task in ("itm", "vsm"):
        return _ranking(out)
    pred, true = out["pred"], out["true"]
    n = len(np.unique(out["owner"]))
    acc = float((pred == true).mean()) if true.size else 0.0
    uniform = 1.0 / classes
    common = prior.most_common(1)[0][0] if prior else 0
    majority = float((true == common).mean()) if true.size else 0.0
    base = {"n": n, "predictions": int(true.size), "accuracy": acc}
    if majority > uniform:
        return {**base, "chance": majority, "chance_kind": f"majority ({common})"}
    return {**base, "chance": uniform, "chance_kind": f"uniform (1/{classes})"}


def _null_variance(texts: np.ndarray) -> float:
    """The variance of one sample's ranking score (the share of its m negatives its own
    text beats) for a model that cannot tell its own text from them: the own text's rank
    among the distinct texts is then uniform. With w_g the share of negatives that are the
    g-th distinct text, each indicator has variance 1/4 and two distinct ones covariance
    1/12 (the own text is above both with probability 1/3), so Var = Σw²/6 + 1/12: 1/4
    for one negative (a coin), 1/8 for four distinct ones, more when negatives repeat."""
    _, counts = np.unique(texts, return_counts=True)
    w = counts / counts.sum()
    return float((w**2).sum() / 6 + 1 / 12)


def _ranking(out: dict[str, np.ndarray]) -> dict[str, Any]:
    score, true, owner, kind = out["score"], out["true"], out["owner"], out["kind"]
    pos = dict(zip(owner[true == 1].tolist(), score[true == 1].tolist(), strict=True))
    neg = true == 0
    above = np.asarray([pos[o] > s for o, s in zip(owner[neg], score[neg], strict=True)])
    samples = np.unique(owner[neg])
    per_sample = [float(above[owner[neg] == o].mean()) for o in samples]
    null = [_null_variance(out["text"][neg][owner[neg] == o]) for o in samples]
    by_kind = {str(k): round(float(above[kind[neg] == k].mean()), 4) for k in np.unique(kind[neg])}
    split = out.get("split", np.full(len(true), "train"))[neg]
    by_split = {str(k): round(float(above[split == k].mean()), 4) for k in np.unique(split)}
    predicted = score > 0
    balanced = 0.5 * float(predicted[true == 1].mean()) + 0.5 * float((~predicted[neg]).mean())
    return {
        "n": len(per_sample),
        "accuracy": float(np.mean(per_sample)) if per_sample else 0.0,
        "chance": 0.5,
        "chance_kind": "ranking (own text above a negative)",
        "null_variance": float(np.mean(null)) if null else 0.25,
        "ranking_by_kind": by_kind,
        # a negative whose own sample was trained on can be rejected from memory of that
        # pairing; one from a held-out sample cannot: the second is pure generalisation
        "ranking_by_negative_split": by_split,
        "balanced_accuracy": round(balanced, 4),
    }


def _classes(task: str, corpus: Corpus, vocab: _Vocab) -> int:
    sizes = {"mlm": vocab.size, "mrc": corpus.spec.codebook_size, "fom": max(corpus.frames, 1)}
    return sizes.get(task, 2)


def _prior(batches: list[_Batch], task: str) -> Counter[int]:
    """How often each label occurs in training: what the control can learn."""
    c: Counter[int] = Counter()
    for b in batches:
        if task == "mlm":
            c.update(b.mlm_labels[b.mlm_labels != IGNORE].tolist())
        elif task == "mrc":
            t = np.where(b.regions["masked"], b.regions["classes"], IGNORE)
            c.update(t[t != IGNORE].tolist())
        elif task == "fom":
            c.update(b.order[b.order != IGNORE].tolist())
    return c


def _curve(values: list[float], points: int = 50) -> list[float]:
    """A loss curve cut to at most `points` window means."""
    if not values:
        return []
    edges = np.linspace(0, len(values), min(points, len(values)) + 1).astype(int)
    return [round(float(np.mean(values[a:b])), 5) for a, b in itertools.pairwise(edges)]


def _fit(
    corpus: Corpus,
    settings: TrainSettings,
    regions: int,
    vocab: _Vocab,
    priors: dict[str, _Prior],
    train_batches: Callable[[], Iterator[_Batch]],
    eval_batches: list[_Batch],
    control: bool,
    label: str,
) -> tuple[dict[str, list[float]], dict[str, dict[str, np.ndarray]], float]:
    from tqdm import tqdm

    runner = _Runner(corpus, settings, regions, vocab, priors)
    rng = np.random.default_rng([settings.seed, int(control)])
    curves: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    stream = train_batches()
    for step in tqdm(range(settings.steps), desc=label, disable=not settings.progress, leave=False):
        for task, v in runner.step(next(stream), step, rng, control).items():
            curves.setdefault(task, []).append(v)
    seconds = time.perf_counter() - t0
    parts: dict[str, dict[str, list[np.ndarray]]] = {}
    seen = 0
    for b in eval_batches:
        for task, arrays in runner.predict(b).items():
            if "owner" in arrays:  # sample indices across batches
                arrays = {**arrays, "owner": arrays["owner"] + seen}
            for name, a in arrays.items():
                parts.setdefault(task, {}).setdefault(name, []).append(a)
        seen += len(b.examples)
    joined = {t: {k: np.concatenate(v) for k, v in d.items()} for t, d in parts.items()}
    return curves, joined, seconds


def train(out: Path, settings: TrainSettings = TrainSettings()) -> dict[str, Any]:
    """Train on the corpus in `out`, write `out/train/metrics.json`, return the metrics."""
    from curate.errors import CurateError
    from curate.io.atomic import write_json

    out = out.parent if (out / "sizes.json").exists() and out.name == "shards" else out
    corpus = open_corpus(out)
    if not _tasks(corpus, settings):
        raise CurateError(f"{out}: its labels ({', '.join(corpus.spec.tasks)}) train no task here")
    if settings.tasks and set(settings.tasks) - set(corpus.tasks):
        missing = ", ".join(sorted(set(settings.tasks) - set(corpus.tasks)))
        raise CurateError(f"{out}: no labels for {missing} (it has {', '.join(corpus.tasks)})")
    frac = settings.held_out
    skipped = Skipped()  # what the first read of the corpus could not decode
    held = list(
        itertools.islice(iter_examples(corpus, "eval", frac, skipped=skipped), settings.max_eval)
    )
    # One pass over (at most FIRST_PASS of) the training split: the vocabulary, and how
    # often each label occurs (what a model ignoring the input, like the control, can learn).
    first = list(
        itertools.islice(iter_examples(corpus, "train", frac, skipped=skipped), FIRST_PASS)
    )
    n_train = corpus.samples - len(held)  # held out is capped at max_eval, training is not
    # Samples sizes.json promises that no read produced (known when both reads were whole).
    whole_read = len(first) < FIRST_PASS and len(held) < settings.max_eval
    unread = corpus.samples - len(held) - len(first) if whole_read else None
    if len(held) < 2 or len(first) < 2:
        raise CurateError(f"{out}: {corpus.samples} samples is too few to hold some out")
    vocab = _Vocab.build(first)
    longest = max(int(_valid(e.text_ids[None]).sum()) for e in held)
    vocab = _Vocab(vocab.lookup, vocab.ids, max(vocab.length, longest))
    regions = max(len(e.regions) for e in (*held, *first))
    frames = corpus.frames
    size = settings.batch_size
    eval_batches = [_collate(b, regions, frames, vocab) for b in _batches(held, size)]
    first_pass = [_collate(b, regions, frames, vocab) for b in _batches(first, size)]
    whole = len(first) < FIRST_PASS  # the first pass read the whole training split
    kept = first if whole else []
    del first

    def train_batches() -> Iterator[_Batch]:
        """Batches forever: a split that fit in the first pass replays from memory in a new
        order each epoch; a larger one streams through webdataset's shuffle buffer."""
        if whole:
            rng = np.random.default_rng(settings.seed)
            stream: Iterator[Example] = (
                kept[i] for _ in itertools.count() for i in rng.permutation(len(kept))
            )
        else:
            stream = iter_examples(corpus, "train", frac, None, shuffle=1000, seed=settings.seed)
        for b in _batches(stream, size):
            yield _collate(b, regions, frames, vocab)

    plain, _ = plain_rate(corpus, settings.loader_seconds)
    ours, _ = trainer_rate(corpus, settings.loader_seconds)
    counts = {task: _prior(first_pass, task) for task in ("mlm", "mrc", "fom")}
    priors = {task: _Prior.of(c) for task, c in counts.items()}
    fit = functools.partial(
        _fit, corpus, settings, regions, vocab, priors, train_batches, eval_batches
    )
    real = fit(False, "train")
    ctrl = fit(True, "control") if settings.control else None
    tasks: dict[str, Any] = {}
    for task in _tasks(corpus, settings):
        if task not in real[1]:
            continue
        prior = counts.get(task, Counter())
        score = _score(task, real[1][task], prior, _classes(task, corpus, vocab))
        bar = chance_bar(score["chance"], score["n"], score.get("null_variance"))
        entry: dict[str, Any] = {
            **score,
            "bar": round(bar, 4),
            "beats_chance": score["accuracy"] >= bar,
            "loss": _curve(real[0].get(task, [])),
        }
        if ctrl is not None and task in ctrl[1]:
            c = _score(task, ctrl[1][task], prior, _classes(task, corpus, vocab))
            entry["control"] = {
                "accuracy": c["accuracy"],
                "at_chance": c["accuracy"] < bar,
                "loss": _curve(ctrl[0].get(task, [])),
            }
        tasks[task] = entry
    failures = [t for t, e in tasks.items() if not e["beats_chance"]]
    leaks = [t for t, e in tasks.items() if "control" in e and not e["control"]["at_chance"]]
    lost = unread if unread is not None else skipped.count
    unreadable = lost > settings.max_skipped
    metrics = {
        "version": METRICS_VERSION,
        "corpus": str(out),
        "samples": {"train": n_train, "held_out": len(held)},
        "settings": {k: v for k, v in settings.__dict__.items() if k != "progress"},
        "tasks": tasks,
        "loader": {
            "samples_per_s": round(ours, 1),
            "plain_webdataset_samples_per_s": round(plain, 1),
            "ratio": round(ours / plain, 3) if plain else None,
        },
        "train_seconds": round(real[2], 2),
        "control_seconds": round(ctrl[2], 2) if ctrl else None,
        "skipped": {**skipped.as_dict(), "samples_unread": unread, "over_limit": unreadable},
        "passed": not failures and not leaks and not unreadable,
        "failures": failures,
        "leaks": leaks,
    }
    write_json(out / "train" / "metrics.json", metrics)
    return metrics


def format_metrics(m: dict[str, Any]) -> str:
    """The metrics as the table `curate train` prints."""
    lines = [
        f"held-out {m['samples']['held_out']} of {m['samples']['train'] + m['samples']['held_out']}"
        f" samples; {m['settings']['steps']} steps in {m['train_seconds']} s",
        f"{'task':<5} {'n':>6} {'accuracy':>9} {'chance':>7} {'bar':>7} {'control':>8}  result",
    ]
    for task, e in m["tasks"].items():
        ctrl = e.get("control", {}).get("accuracy")
        verdict = "beats chance" if e["beats_chance"] else "NOT above chance"
        if "control" in e and not e["control"]["at_chance"]:
            verdict += "; control above chance (leak?)"
        lines.append(
            f"{task:<5} {e['n']:>6} {e['accuracy']:>9.3f} {e['chance']:>7.3f} {e['bar']:>7.3f} "
            f"{'' if ctrl is None else f'{ctrl:.3f}':>8}  {verdict} [{e['chance_kind']}]"
        )
    sk = m["skipped"]
    if sk["count"] or sk["samples_unread"]:
        where = ", ".join(f"{f['shard']}:{f['key'] or '-'} {f['reason']}" for f in sk["faults"][:3])
        lines.append(
            f"skipped {sk['count']} unreadable shards or samples "
            f"({'?' if sk['samples_unread'] is None else sk['samples_unread']} samples of "
            f"sizes.json not read): {where}"
        )
    ld = m["loader"]
    lines.append(
        f"loader {ld['samples_per_s']} samples/s; plain webdataset decoding "
        f"{ld['plain_webdataset_samples_per_s']} samples/s; ratio {ld['ratio']}"
    )
    return "\n".join(lines)
