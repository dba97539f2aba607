"""ITM and VSM negatives checked from the shards, and recomputed exactly where possible.

From the shards alone, every anchor's negatives obey the rules: each names another sample
whose txt is the negative's text, within `LENGTH_TOLERANCE` tokens of the anchor's, never a
neighbouring clip (VSM), hard ones first in descending similarity under the ceiling, no more
than the spec asks. The negatives themselves are recomputed with the labelset stage's own
function (`curate.labels.corpus.negatives_for`) when the corpus has no similarities (random
negatives only: the shards name every input of the draw) or when the run directory's text
embeddings are at hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from curate.config import LabelsConfig
from curate.labels.corpus import Corpus, near_clips, negatives_for, task_counts
from curate.labels.members import itm_member, vsm_member
from curate.labels.negatives import LENGTH_TOLERANCE

__all__ = ["NegativeChecks", "has_similarity"]

_SIMILARITY = re.compile(rb'"similarity":\s*-?[0-9]')
_FLUSH = 1024  # anchors recomputed together: one similarity block


def has_similarity(data: bytes) -> bool:
    """Whether a stored itm.json / vsm.json gives a negative a similarity (the stage had
    text embeddings); a byte search, cheap enough for every sample."""
    return _SIMILARITY.search(data) is not None


@dataclass
class NegativeChecks:
    """The negatives of sampled anchors against `corpus` (every sample of the shards, with
    embeddings when the run's are known). `owner` maps each key read to its shard; keys of
    `broken` shards, and unknown keys while any shard is broken, are counted in `unchecked`
    rather than reported one by one. `embedded`: the corpus's negatives carry similarities.
    `exact`: recompute the negatives (needs the whole corpus, and embeddings if embedded)."""

    spec: LabelsConfig
    corpus: Corpus
    owner: dict[str, str]
    broken: set[str]
    embedded: bool
    exact: bool
    unchecked: int = 0
    problems: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _pending: dict[str, list[tuple[int, str, bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = self.corpus.index()

    def check(self, shard: str, key: str, name: str, data: bytes) -> None:
        """One anchor's stored negatives (member `name`), by the rules; queued for the exact
        recomputation."""
        task = name.split(".")[0]
        where = f"{shard}: key {key!r}: {name}"
        try:
            negs = json.loads(data)["negatives"]
            found = self._rules(key, task, negs)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            found = [f"does not decode: {err!r}"[:300]]
        self.problems += [f"{where}: {p}" for p in found]
        if self.exact and not found and key in self._index:
            queue = self._pending.setdefault(task, [])
            queue.append((self._index[key], where, data))
            if len(queue) >= _FLUSH:
                self.flush(task)

    def _rules(self, key: str, task: str, negs: list[dict[str, object]]) -> list[str]:
        text = "caption" if task == "itm" else "text"
        k_hard, k_random = task_counts(task, self.spec)
        kinds = [n["kind"] for n in negs]
        hard = kinds.count("hard")
        out = []
        if kinds != ["hard"] * hard + ["random"] * (len(kinds) - hard):
            out.append(f"kinds {kinds}: hard ones first, then random ones")
        if not self.embedded and hard:
            out.append("hard negatives in a corpus without similarities")
        if self.embedded and (hard > k_hard or len(kinds) - hard > k_random):
            out.append(f"{hard} hard and {len(kinds) - hard} random, the spec asks at most "
                       f"{k_hard} and {k_random}")  # fmt: skip
        if self.embedded and hard < k_hard and len(kinds) > hard:
            out.append(f"{hard} hard negatives of {k_hard}, yet random ones")
        if len(negs) > k_hard + k_random:
            out.append(f"{len(negs)} negatives, the spec asks {k_hard + k_random}")
        sims = [n["similarity"] for n in negs]
        if any((s is None) == self.embedded for s in sims):
            out.append(f"similarities {sims}: {'all' if self.embedded else 'none'} expected")
        elif self.embedded:
            floats = [float(s) for s in sims]  # type: ignore[arg-type]
            if any(s > self.spec.itm_ceiling for s in floats):
                out.append(f"a similarity above the ceiling {self.spec.itm_ceiling}")
            if floats[:hard] != sorted(floats[:hard], reverse=True):
                out.append(f"hard negatives not in descending similarity: {floats[:hard]}")
        seen: set[str] = set()
        for n in negs:
            out += self._one(key, task, str(n["key"]), n[text], seen)
        return out

    def _one(self, key: str, task: str, target: str, text: object, seen: set[str]) -> list[str]:
        """The rules one negative `target` of anchor `key` must keep."""
        if target == key:
            return ["the sample is its own negative"]
        if target in seen:
            return [f"negative {target!r} twice"]
        seen.add(target)
        shard = self.owner.get(target)
        if shard in self.broken or (shard is None and self.broken):
            self.unchecked += 1  # the broken shard is reported once, not once per negative
            return []
        if shard is None or target not in self._index:
            return [f"negative {target!r} is no sample"]
        i, j = self._index[key], self._index[target]
        out = []
        if text != self.corpus.texts[j]:
            out.append(f"negative {target!r}: its text is not that sample's txt")
        a, b = int(self.corpus.lengths[i]), int(self.corpus.lengths[j])
        if abs(a - b) > LENGTH_TOLERANCE:
            out.append(
                f"negative {target!r} has {b} tokens, the sample {a} (more than "
                f"±{LENGTH_TOLERANCE})"
            )
        if task == "vsm" and near_clips(self.corpus, i, self.spec.vsm_neighbours)[j]:
            out.append(f"negative {target!r} is a clip within {self.spec.vsm_neighbours} of it")
        return out

    def flush(self, task: str | None = None) -> None:
        """Recompute the queued anchors' negatives and compare them byte for byte."""
        for name in [task] if task else list(self._pending):
            queue = self._pending.pop(name, [])
            if not queue:
                continue
            member = itm_member if name == "itm" else vsm_member
            anchors = [i for i, _, _ in queue]
            found = negatives_for(self.corpus, anchors, name, self.spec)
            for (_, where, data), (_, negs) in zip(queue, found, strict=True):
                want = member(negs, self.corpus.uids, self.corpus.texts)
                if data != want:
                    got = [n["key"] for n in json.loads(data)["negatives"]]
                    ref = [n["key"] for n in json.loads(want)["negatives"]]
                    self.problems.append(
                        f"{where}: negatives are not the spec's: {got} stored, {ref} recomputed"
                    )
