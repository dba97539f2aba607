"""Clip planning: merge, split, widen, drop; every cue inside its clip."""

from __future__ import annotations

import pytest

from curate.media.clips import ClipPlan, plan_clips, split_cue
from curate.media.timedtext import Cue, TimedText


def _inside(clips: list[ClipPlan]) -> bool:
    return all(c.start <= q.start <= q.end <= c.end for c in clips for q in c.cues)


def test_consecutive_cues_merge_up_to_the_maximum() -> None:
    cues = tuple(Cue(float(i), i + 0.9, f"w{i}") for i in range(10))
    clips, notes = plan_clips(TimedText(cues), 20.0, min_s=1.0, max_s=4.0)
    assert [(c.start, c.end) for c in clips] == [(0.0, 3.9), (4.0, 7.9), (8.0, 9.9)]
    assert [c.index for c in clips] == [0, 1, 2]
    assert clips[0].text == "w0 w1 w2 w3" and notes == [] and _inside(clips)
    assert all(c.duration <= 4.0 for c in clips)


def test_a_long_cue_splits_between_words_in_time_proportion() -> None:
    cue = Cue(10.0, 22.0, "aaaa bbbb cccc dddd eeee ffff")  # 6 words of equal length, 2 s each
    pieces = split_cue(cue, 5.0)
    assert [(p.start, p.end, p.text) for p in pieces] == [
        (10.0, 14.0, "aaaa bbbb"),
        (14.0, 18.0, "cccc dddd"),
        (18.0, 22.0, "eeee ffff"),
    ]
    uneven = split_cue(Cue(0.0, 10.0, "a " + "b" * 18), 9.5)  # 2 + 19 units of 10/21 s
    assert [p.text for p in uneven] == ["a", "b" * 18]
    assert uneven[0].end == pytest.approx(20 / 21) and uneven[1].end == 10.0
    word = split_cue(Cue(0.0, 9.0, "supercalifragilistic"), 4.0)  # one word: even slices
    assert [(p.start, p.end) for p in word] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]


def test_short_clips_widen_into_silence_or_are_dropped() -> None:
    cues = (Cue(5.0, 5.5, "lonely"), Cue(20.0, 20.4, "edge"), Cue(20.5, 20.9, "hemmed"))
    tt = TimedText(cues)
    clips, notes = plan_clips(tt, 21.0, min_s=2.0, max_s=0.5)
    assert [(c.start, c.end, c.text) for c in clips] == [
        (4.25, 6.25, "lonely"),  # widened evenly
        (18.5, 20.5, "edge"),  # no room after it: widened before
    ]
    assert notes == ["1 clip(s) shorter than 2 s with no room to widen"]  # "hemmed" is stuck
    assert _inside(clips)


def test_cues_past_the_media_are_cut_off_and_noted() -> None:
    tt = TimedText((Cue(0.0, 3.0, "in"), Cue(9.0, 12.0, "over the end"), Cue(15.0, 16.0, "out")))
    clips, notes = plan_clips(tt, 10.0, min_s=0.5, max_s=5.0)
    assert [(c.start, c.end) for c in clips] == [(0.0, 3.0), (9.0, 10.0)]
    assert notes == ["1 cue(s) start after the media ends"]
