"""`curate train OUT`: train the reference model on a labelled corpus three times — on the
labels, blind (the pictures removed) and on labels drawn independently of each sample (the
control) — and judge every task on held-out groups of samples (`curate.train.stats`).

A pass means each judged task learned from its labels what neither chance nor the text alone
explains, and that the evaluation does not reward labels that owe nothing to the sample.
Members the model cannot judge, and runs left out (`--tasks`, `--no-control`, `--no-blind`),
are named under `untested` in metrics.json.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.train.batch import Batch, Vocab, batches, collate
from curate.train.data import (
    THUMB,
    Corpus,
    Example,
    Skipped,
    corpus_split,
    iter_examples,
    open_corpus,
    plain_rate,
    trainer_rate,
)
from curate.train.split import Split
from curate.train.stats import judge
from curate.train.tasks import TASKS, Task, untested_members

__all__ = ["MODES", "Runner", "TrainSettings", "train"]

METRICS_VERSION = 2
FIRST_PASS = 20_000  # training samples read up front for the vocabulary and label counts
MODES = ("real", "blind", "control")


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
    blind: bool = True
    loader_seconds: float = 2.0
    max_eval: int = 5000
    progress: bool = True
    tasks: tuple[str, ...] = ()  # () = every task the corpus has labels for
    negatives: int = 1  # stored ITM / VSM negatives paired with each sample per step
    batch_negatives: int = 1  # other samples' captions in the batch, as ITM negatives
    max_skipped: int = 0  # unreadable shards or samples tolerated before the run fails


def _tasks(corpus: Corpus, settings: TrainSettings) -> tuple[Task, ...]:
    return tuple(
        t for t in TASKS if t.applies(corpus) and (not settings.tasks or t.name in settings.tasks)
    )


class Runner:
    """One model in one mode, its optimiser and the forward passes its tasks read."""

    def __init__(
        self,
        corpus: Corpus,
        settings: TrainSettings,
        regions: int,
        vocab: Vocab,
        split: Split,
        mode: str,
    ) -> None:
        import torch

        from curate.train.model import ModelConfig, Tower

        torch.manual_seed(settings.seed)
        self.torch = torch
        self.device = torch.device(settings.device)
        self.settings = settings
        self.tasks = _tasks(corpus, settings)
        self.vocab = vocab
        self.split = split
        self.mode = mode
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
        self._views: dict[str, Any] = {}
        self._viewed: Batch | None = None

    def t(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def forward(self, b: Batch, text: np.ndarray, valid: np.ndarray, regions: str) -> Any:
        """The model over `text` and the batch's pictures; `regions` is "masked" (masked
        regions replaced by the mask token), "shown" or "none" (no region tokens). Blind,
        every picture's pixels are zero: only the text and the regions' boxes remain."""
        feats, frames = b.regions, b.frames
        if self.mode == "blind":
            feats = feats.copy()
            feats[..., :-5] = 0.0
            frames = np.zeros_like(frames)
        r_valid, masked = b.region_valid, b.region_masked
        if regions == "none":
            feats, r_valid, masked = feats[:, :0], r_valid[:, :0], masked[:, :0]
        elif regions == "shown":
            masked = np.zeros_like(masked)
        return self.model(
            self.t(text), self.t(valid), self.t(feats), self.t(r_valid), self.t(masked),
            self.t(frames),
        )  # fmt: skip

    def view(self, b: Batch, name: str) -> Any:
        """A forward that several tasks read, once per batch, over the masked text: "masked"
        (masked regions replaced by the mask token when MRC is trained), "shown" (every
        region shown) or "frames" (frames, no region tokens)."""
        if self._viewed is not b:
            self._views, self._viewed = {}, b
        if name not in self._views:
            mrc = any(t.name == "mrc" for t in self.tasks)
            if name == "shown" and not mrc:
                return self.view(b, "masked")  # the same forward
            regions = {"masked": "masked" if mrc else "shown", "shown": "shown", "frames": "none"}[
                name
            ]
            self._views[name] = self.forward(b, b.masked_text, b.text_valid, regions)
        return self._views[name]

    def step(
        self, b: Batch, step: int, rng: np.random.Generator, priors: dict[str, Any]
    ) -> dict[str, float]:
        """One optimiser step over every task's loss; the control trains on labels drawn
        from `priors`, independent of the sample."""
        self.model.train()
        control = self.mode == "control"
        losses = {}
        for task in self.tasks:
            loss = task.loss(self, b, rng, priors.get(task.name, Counter()) if control else None)
            if loss is not None:
                losses[task.name] = loss
        self._views, self._viewed = {}, None
        steps = self.settings.steps
        warm = max(1, steps // 10)
        if step < warm:  # linear warm-up, then cosine decay
            scale = (step + 1) / warm
        else:
            scale = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g in self.opt.param_groups:
            g["lr"] = self.settings.lr * scale
        self.opt.zero_grad(set_to_none=True)
        if losses:
            sum(losses.values()).backward()
            self.opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def predict(self, b: Batch) -> dict[str, dict[str, np.ndarray]]:
        """Every task's held-out predictions on one batch, true labels throughout."""
        self.model.eval()
        res = {}
        with self.torch.no_grad():
            for task in self.tasks:
                out = task.predict(self, b)
                if out is not None:
                    res[task.name] = out
        self._views, self._viewed = {}, None
        return res


def _curve(values: list[float], points: int = 50) -> list[float]:
    """A loss curve cut to at most `points` window means."""
    if not values:
        return []
    edges = np.linspace(0, len(values), min(points, len(values)) + 1).astype(int)
    return [round(float(np.mean(values[a:b])), 5) for a, b in itertools.pairwise(edges)]


@dataclass
class _Fit:
    curves: dict[str, list[float]]
    predictions: dict[str, dict[str, np.ndarray]]
    seconds: float


def _fit(
    runner: Runner,
    priors: dict[str, Counter[int]],
    train_batches: Callable[[], Iterator[Batch]],
    eval_batches: list[Batch],
) -> _Fit:
    """Train one runner, then predict every held-out batch (sample ids made global)."""
    from tqdm import tqdm

    s = runner.settings
    rng = np.random.default_rng([s.seed, MODES.index(runner.mode)])
    curves: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    stream = train_batches()
    for step in tqdm(range(s.steps), desc=runner.mode, disable=not s.progress, leave=False):
        for task, v in runner.step(next(stream), step, rng, priors).items():
            curves.setdefault(task, []).append(v)
    seconds = time.perf_counter() - t0
    parts: dict[str, dict[str, list[np.ndarray]]] = {}
    seen = 0
    for b in eval_batches:
        for task, arrays in runner.predict(b).items():
            arrays = {**arrays, "owner": arrays["owner"] + seen}
            for name, a in arrays.items():
                parts.setdefault(task, {}).setdefault(name, []).append(a)
        seen += len(b.examples)
    joined = {t: {k: np.concatenate(v) for k, v in d.items()} for t, d in parts.items()}
    return _Fit(curves, joined, seconds)


@dataclass
class _Data:
    """What every run of one corpus shares: the split, the batches and the label priors."""

    corpus: Corpus
    split: Split
    vocab: Vocab
    regions: int
    eval_batches: list[Batch]
    train_batches: Callable[[], Iterator[Batch]]
    n_train: int
    held: int
    unread: int | None
    skipped: Skipped
    priors: dict[str, Counter[int]]


def _read(out: Path, corpus: Corpus, settings: TrainSettings, tasks: tuple[Task, ...]) -> _Data:
    """The grouped split, the held-out batches and one pass over (at most FIRST_PASS of) the
    training split: the vocabulary, and how often each label occurs (what a model ignoring
    the input, like the control, can learn)."""
    from curate.errors import CurateError

    skipped = Skipped()
    split = corpus_split(corpus, settings.held_out, skipped)
    held = list(
        itertools.islice(iter_examples(corpus, "eval", split, skipped=skipped), settings.max_eval)
    )
    first = list(
        itertools.islice(iter_examples(corpus, "train", split, skipped=skipped), FIRST_PASS)
    )
    if len(held) < 2 or len(first) < 2:
        raise CurateError(f"{out}: {corpus.samples} samples is too few to hold some out")
    whole_read = len(first) < FIRST_PASS and len(held) < settings.max_eval
    vocab = Vocab.build(first).covering(held)
    regions = max(len(e.regions) for e in (*held, *first))
    size, frames = settings.batch_size, corpus.frames
    eval_batches = [collate(b, regions, frames, vocab) for b in batches(held, size)]
    priors: dict[str, Counter[int]] = {t.name: Counter() for t in tasks}
    for chunk in batches(first, size):
        b = collate(chunk, regions, frames, vocab)
        for t in tasks:
            t.count(b, priors[t.name])
    whole = len(first) < FIRST_PASS  # the first pass read the whole training split
    kept: list[Example] = first if whole else []

    def train_batches() -> Iterator[Batch]:
        """Batches forever: a split that fit in the first pass replays from memory in a new
        order each epoch; a larger one streams through webdataset's shuffle buffer, its
        skips counted with the rest."""
        if whole:
            rng = np.random.default_rng(settings.seed)
            stream: Iterator[Example] = (
                kept[i] for _ in itertools.count() for i in rng.permutation(len(kept))
            )
        else:
            stream = iter_examples(
                corpus, "train", split, None, shuffle=1000, seed=settings.seed, skipped=skipped
            )
        for b in batches(stream, size):
            yield collate(b, regions, frames, vocab)

    return _Data(
        corpus=corpus,
        split=split,
        vocab=vocab,
        regions=regions,
        eval_batches=eval_batches,
        train_batches=train_batches,
        n_train=corpus.samples - len(held),
        held=len(held),
        unread=corpus.samples - len(held) - len(first) if whole_read else None,
        skipped=skipped,
        priors=priors,
    )


def _untested(corpus: Corpus, settings: TrainSettings, tasks: tuple[Task, ...]) -> dict[str, str]:
    """Everything a pass of this run does not cover, with the reason."""
    out = untested_members(corpus)
    for t in TASKS:
        if t.applies(corpus) and t not in tasks:
            out[t.name] = "left out by --tasks"
    if not settings.control:
        out["control"] = "left out by --no-control"
    if not settings.blind:
        out["blind"] = "left out by --no-blind"
    return out


def train(out: Path, settings: TrainSettings = TrainSettings()) -> dict[str, Any]:
    """Train on the corpus in `out`, write `out/train/metrics.json`, return the metrics."""
    from curate.errors import CurateError
    from curate.io.atomic import write_json

    out = out.parent if (out / "sizes.json").exists() and out.name == "shards" else out
    corpus = open_corpus(out)
    tasks = _tasks(corpus, settings)
    if settings.tasks and set(settings.tasks) - set(corpus.tasks):
        missing = ", ".join(sorted(set(settings.tasks) - set(corpus.tasks)))
        raise CurateError(f"{out}: no labels for {missing} (it has {', '.join(corpus.tasks)})")
    if not tasks:
        raise CurateError(f"{out}: its labels ({', '.join(corpus.spec.tasks)}) train no task here")
    data = _read(out, corpus, settings, tasks)
    plain, _ = plain_rate(corpus, settings.loader_seconds)
    ours, _ = trainer_rate(corpus, settings.loader_seconds)
    modes = [m for m in MODES if m == "real" or getattr(settings, m)]
    fits = {
        m: _fit(
            Runner(corpus, settings, data.regions, data.vocab, data.split, m),
            data.priors,
            data.train_batches,
            data.eval_batches,
        )
        for m in modes
    }
    entries: dict[str, Any] = {}
    for task in tasks:
        if task.name not in fits["real"].predictions:
            continue
        classes = task.classes(corpus, data.vocab)
        prior = data.priors[task.name]
        scores = {
            m: task.score(f.predictions[task.name], prior, classes)
            for m, f in fits.items()
            if task.name in f.predictions
        }
        entry = judge(scores["real"], scores.get("blind"), scores.get("control"))
        entry["loss"] = _curve(fits["real"].curves.get(task.name, []))
        for m in ("blind", "control"):
            if m in entry:
                entry[m]["loss"] = _curve(fits[m].curves.get(task.name, []))
        entries[task.name] = entry
    failures = [t for t, e in entries.items() if not e["passed"]]
    leaks = [t for t, e in entries.items() if "control" in e and not e["control"]["at_chance"]]
    lost = data.unread if data.unread is not None else data.skipped.count
    unreadable = lost > settings.max_skipped
    not_judged = [t.name for t in tasks if t.name not in entries]
    metrics = {
        "version": METRICS_VERSION,
        "corpus": str(out),
        "samples": {
            "train": data.n_train,
            "held_out": data.held,
            "held_out_groups": len(data.split.groups(True)),
        },
        "settings": {k: v for k, v in settings.__dict__.items() if k != "progress"},
        "tasks": entries,
        "untested": _untested(corpus, settings, tasks),
        "skipped": {
            **data.skipped.as_dict(),
            "samples_unread": data.unread,
            "over_limit": unreadable,
        },
        "passed": not failures and not leaks and not unreadable and not not_judged,
        "failures": failures + not_judged,
        "leaks": leaks,
    }
    timings = {
        "loader": {
            "samples_per_s": round(ours, 1),
            "plain_webdataset_samples_per_s": round(plain, 1),
            "ratio": round(ours / plain, 3) if plain else None,
        },
        "seconds": {m: round(f.seconds, 2) for m, f in fits.items()},
    }
    # metrics.json holds only what the corpus and settings decide (the same file on every
    # rerun); what the machine decides goes beside it
    write_json(out / "train" / "timings.json", timings)
    write_json(out / "train" / "metrics.json", metrics)
    return {**metrics, **timings}
