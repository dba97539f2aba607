"""Timed text: SRT, WebVTT and JSON transcripts into clean cues, repaired only where the
meaning is clear.

pysubs2 parses SRT and WebVTT (cue settings, NOTE/STYLE blocks and identifiers skipped);
styling tags are stripped and HTML entities decoded here. Repairs are recorded, never
silent: empty cues are dropped, a cue running into the next is cut at the next one's start,
cues listed out of order are put in time order. What has no clear meaning is a failure
with a reason: bytes that are not text, input with no parsable cue, a cue that ends before
it starts or at a negative time.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from curate.errors import SampleFailure

__all__ = ["Cue", "TimedText", "decode_text", "parse_json_transcript", "parse_subtitles", "whole"]

_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # WebVTT/SRT tags; ASS overrides pysubs2 makes of <i>
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Cue:
    """One piece of timed text, in seconds from the start of the media."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TimedText:
    """Cues in time order, never overlapping, each with text; what was repaired, if anything."""

    cues: tuple[Cue, ...]
    repairs: tuple[str, ...] = ()


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM optional) or BOM-marked UTF-16; anything else is not text."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SampleFailure("subtitles_not_text", f"not UTF-8 or UTF-16 text: {err}") from None
    controls = len(_CONTROL.findall(text))
    if controls > max(2, len(text) // 100):
        raise SampleFailure("subtitles_not_text", f"{controls} control characters")
    return text


def _clean(text: str) -> str:
    """Tags out, entities decoded, lines joined, whitespace collapsed."""
    text = _TAG.sub("", text.replace("\\N", " ").replace("\\n", " "))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def _tidy(raw: Sequence[Cue]) -> TimedText:
    """The repairs with a clear meaning; failures for what has none."""
    repairs = []
    for i, c in enumerate(raw):
        if not (math.isfinite(c.start) and math.isfinite(c.end)) or c.start < 0:
            raise SampleFailure("subtitles_backwards", f"cue {i} at {c.start}..{c.end} s")
        if c.end < c.start:
            raise SampleFailure("subtitles_backwards", f"cue {i} ends ({c.end} s) before it starts")
    kept = [c for c in raw if c.text and c.end > c.start]
    if len(kept) < len(raw):
        repairs.append(f"dropped {len(raw) - len(kept)} empty or zero-length cue(s)")
    ordered = sorted(kept, key=lambda c: (c.start, c.end))
    if ordered != kept:
        repairs.append("put cues in time order")
    cues: list[Cue] = []
    clipped = 0
    for c in ordered:
        if cues and cues[-1].end > c.start:
            prev = cues.pop()
            clipped += 1
            if c.start > prev.start:
                cues.append(Cue(prev.start, c.start, prev.text))
            else:  # same start: the two are one stretch of speech
                c = Cue(c.start, max(c.end, prev.end), f"{prev.text} {c.text}")
        cues.append(c)
    if clipped:
        repairs.append(f"clipped {clipped} overlapping cue(s)")
    return TimedText(tuple(cues), tuple(repairs))


def parse_subtitles(data: bytes, fmt: str) -> TimedText:
    """`fmt` is "srt" or "vtt"."""
    import pysubs2

    text = decode_text(data)
    if not text.strip():
        return TimedText(())
    try:
        subs = pysubs2.SSAFile.from_string(text, format_="srt" if fmt == "srt" else "vtt")
    except Exception as err:  # pysubs2 raises several types for malformed input
        raise SampleFailure("subtitles_unparsable", f"{fmt}: {err}"[:300]) from None
    raw = [Cue(e.start / 1000, e.end / 1000, _clean(e.text)) for e in subs if not e.is_comment]
    if not raw:
        if "-->" not in text and (fmt == "srt" or text.lstrip().startswith("WEBVTT")):
            return TimedText(())  # a valid file with no cue in it
        raise SampleFailure("subtitles_unparsable", f"{fmt}: no cue found in {len(data)} bytes")
    return _tidy(raw)


def parse_json_transcript(data: bytes) -> TimedText:
    """`[{"start": s, "end": s, "text": "..."}, ...]`, times in seconds."""
    try:
        items: Any = json.loads(decode_text(data))
    except ValueError as err:
        raise SampleFailure("subtitles_unparsable", f"json: {err}") from None
    if not isinstance(items, list):
        raise SampleFailure("subtitles_unparsable", "json: expected a list of cues")
    raw = []
    for i, item in enumerate(items):
        ok = isinstance(item, dict) and isinstance(item.get("text"), str)
        times = [item.get(k) for k in ("start", "end")] if ok else []
        if not ok or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            raise SampleFailure("subtitles_unparsable", f"json: cue {i} needs start, end, text")
        raw.append(Cue(float(times[0]), float(times[1]), _clean(item["text"])))
    return _tidy(raw)


def whole(caption: str | None, duration: float) -> TimedText:
    """A whole-file caption as one cue over the media's duration."""
    text = _clean(caption or "")
    return TimedText((Cue(0.0, duration, text),) if text and duration > 0 else ())
