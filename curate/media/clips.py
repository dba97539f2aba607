"""Clip planning: timed text into clips between `min_s` and `max_s`, each with its cues.

A pure function of the cues and the media's duration, so every worker plans the same clips.
Cues longer than `max_s` are split at word boundaries, each word taking time in proportion
to its length. Consecutive cues are then merged while the clip stays within `max_s`. A clip
shorter than `min_s` is widened into the silence around it (never over a neighbour, never
past the media); one that still cannot reach `min_s` is dropped, and the drop recorded.
Every cue of a clip lies inside the clip's bounds by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from curate.media.timedtext import Cue, TimedText

__all__ = ["ClipPlan", "plan_clips", "split_cue"]


@dataclass(frozen=True)
class ClipPlan:
    """Clip `index` of its source: bounds in source seconds and the cues inside them."""

    index: int
    start: float
    end: float
    cues: tuple[Cue, ...]

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.cues)

    @property
    def duration(self) -> float:
        return self.end - self.start


def split_cue(cue: Cue, max_s: float) -> list[Cue]:
    """`cue` in pieces of at most `max_s`, cut between words; time follows word length."""
    if cue.end - cue.start <= max_s:
        return [cue]
    words = cue.text.split()
    weights = [len(w) + 1 for w in words]
    per_unit = (cue.end - cue.start) / sum(weights)
    pieces: list[Cue] = []
    group: list[str] = []
    t = start = cue.start
    for word, weight in zip(words, weights, strict=True):
        span = weight * per_unit
        if group and t + span - start > max_s:
            pieces.append(Cue(start, t, " ".join(group)))
            start, group = t, []
        if not group and span > max_s:  # one word longer than a clip: even slices of it
            n = math.ceil(span / max_s)
            pieces += [Cue(t + k * span / n, t + (k + 1) * span / n, word) for k in range(n)]
            t = start = t + span
            continue
        group.append(word)
        t += span
    if group:
        pieces.append(Cue(start, cue.end, " ".join(group)))
    return pieces


def plan_clips(
    tt: TimedText, duration: float, min_s: float, max_s: float
) -> tuple[list[ClipPlan], list[str]]:
    """Clips of the media from its cues, and notes on what was cut away and why."""
    notes: list[str] = []
    inside = [Cue(c.start, min(c.end, duration), c.text) for c in tt.cues if c.start < duration]
    if len(inside) < len(tt.cues):
        notes.append(f"{len(tt.cues) - len(inside)} cue(s) start after the media ends")
    pieces = [p for c in inside for p in split_cue(c, max_s)]
    groups: list[list[Cue]] = []
    for piece in pieces:
        if groups and piece.end - groups[-1][0].start <= max_s:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    clips: list[ClipPlan] = []
    dropped = 0
    for g, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        if end - start < min_s:  # widen into the silence on both sides, evenly where it can
            lo = clips[-1].end if clips else 0.0
            hi = groups[g + 1][0].start if g + 1 < len(groups) else duration
            need = min_s - (end - start)
            left = min(start - lo, max(need / 2, need - (hi - end)))
            start, end = start - left, min(hi, end + need - left)
        if end - start < min_s - 1e-9:
            dropped += 1
            continue
        clips.append(ClipPlan(len(clips), start, end, tuple(group)))
    if dropped:
        notes.append(f"{dropped} clip(s) shorter than {min_s:g} s with no room to widen")
    return clips, notes
