"""Cut clips by stream copy (`cut: copy`): the source's compressed video packets, no
re-encode, so a clip costs a read, not an encode.

A copied clip can only start on a keyframe: it starts at the last keyframe at or before its
planned start, and ends after the last packet decoded before its planned end (with B-frames
a few frames past it, the references those frames need). Those true bounds are what the clip
records, and its audio (16 kHz mono FLAC, cut at the exact sample) and sampled frames follow
them, so the checks hold for what was written. The bounds come from a first pass over the
packets' timestamps alone (no decode); the second pass copies the packets, decodes the video
(only when frames are sampled) and resamples the audio, finishing one clip at a time. A copy
keeps the source's timestamps, so a variable-rate source stays variable-rate.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from curate.config import ImageConfig
from curate.media.clips import ClipPlan
from curate.media.cut import CutClip, CutSettings, _flac, _route_audio, _targets
from curate.media.image import encode_image, resize_image

__all__ = ["Span", "copy_spans", "iter_copied_clips"]


@dataclass(frozen=True)
class Span:
    """A copied clip: its video packets [first, stop) in decode order, true bounds in
    source seconds."""

    first: int
    stop: int
    start: float
    end: float


def _packets(path: Path) -> tuple[list[tuple[float, float, float, bool]], float]:
    """(pts, dts, duration, keyframe) of every video packet in decode order, in seconds,
    and the stream's frame duration; read without decoding."""
    import av

    out: list[tuple[float, float, float, bool]] = []
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        frame = 1 / float(rate)
        for packet in container.demux(vs):
            if packet.pts is None or packet.size == 0 or packet.time_base is None:
                continue
            tb = float(packet.time_base)
            dts = packet.dts if packet.dts is not None else packet.pts
            dur = packet.duration * tb if packet.duration else frame
            out.append((packet.pts * tb, dts * tb, dur, bool(packet.is_keyframe)))
    return out, frame


def copy_spans(path: Path, plans: Sequence[ClipPlan]) -> list[Span | None]:
    """Where each planned clip's copy begins and ends; None where the source has no
    keyframe at or before the clip's start (or nothing shown after it)."""
    packets, frame = _packets(path)
    slack = frame / 2  # container timestamps are rounded
    keys = [i for i, p in enumerate(packets) if p[3]]
    spans: list[Span | None] = []
    for plan in plans:
        # Never a keyframe after the planned start: the clip must hold all its cues.
        before = [i for i in keys if packets[i][0] <= plan.start + 1e-6]
        if not before:
            spans.append(None)
            continue
        first = before[-1]
        stop = first
        while stop < len(packets) and packets[stop][1] < plan.end - 1e-6:
            stop += 1
        start = packets[first][0]
        held = [p for p in packets[first:stop] if p[0] >= start - slack]
        if not held:
            spans.append(None)
            continue
        end = max(p[0] + p[2] for p in held)
        # With B-frames the last packets decoded before the end are references shown after
        # it; the frames shown between come next in decode order and belong to the clip.
        while stop < len(packets) and packets[stop][0] < end - slack:
            end = max(end, packets[stop][0] + packets[stop][2])
            stop += 1
        spans.append(Span(first, stop, start, end))
    return spans


class _Copier:
    """One clip's MP4 holding the source's own video packets, timestamps moved to 0."""

    def __init__(self, template: Any, offset: int) -> None:
        import av

        self.buf = io.BytesIO()
        self.container = av.open(self.buf, "w", format="mp4")
        self.stream = self.container.add_stream_from_template(template)
        # The keyframe's pts, in the source's time base: the clip's first picture shows at
        # 0, as its audio starts (B-frames make the first dts negative; the muxer writes an
        # edit list).
        self.offset = offset
        self.count = 0

    def write(self, packet: Any, start_pts: int) -> None:
        if packet.pts is None or packet.pts < start_pts:
            return  # a leading picture that refers to the previous group: undecodable here
        packet.stream = self.stream
        packet.pts -= self.offset
        packet.dts = (packet.dts if packet.dts is not None else packet.pts) - self.offset
        self.count += 1
        self.container.mux(packet)

    def close(self) -> bytes:
        self.container.close()
        return self.buf.getvalue()


def iter_copied_clips(
    path: Path, plans: Sequence[ClipPlan], settings: CutSettings, image: ImageConfig
) -> Iterator[CutClip]:
    """The planned clips of `path`, copied, one by one as the pass leaves each behind.
    Each clip's plan carries its true bounds; `planned` keeps the asked-for ones."""
    import av

    spans = copy_spans(path, plans)
    for plan, span in zip(plans, spans, strict=True):
        if span is None:  # nothing to copy: yielded empty, a misaligned row
            yield CutClip(
                plan,
                sample_rate=settings.sample_rate,
                planned=(plan.start, plan.end),
                problem="cut: copy found no keyframe at or before the clip's start",
            )
    todo = [(p, s) for p, s in zip(plans, spans, strict=True) if s is not None]
    if not todo:
        return
    true = [replace(p, start=s.start, end=s.end) for p, s in todo]
    clips = [
        CutClip(t, sample_rate=settings.sample_rate, planned=(p.start, p.end))
        for (p, _), t in zip(todo, true, strict=True)
    ]
    first = [s.first for _, s in todo]
    stop = [s.stop for _, s in todo]
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        au = container.streams.audio[0] if settings.audio and container.streams.audio else None
        fps = vs.average_rate or vs.guessed_rate or Fraction(25)
        step = float(1 / fps)
        vs.thread_type = "AUTO"
        tb = vs.time_base or Fraction(1, 90000)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=settings.sample_rate)
        audio: list[list[np.ndarray]] = [[] for _ in clips]
        copiers: list[_Copier | None] = [None] * len(clips)
        start_pts = [round(c.plan.start / tb) for c in clips]
        targets = [_targets(c.plan, settings.frames, settings.frame_rate) for c in clips]
        index = -1  # decode-order number of the last video packet read
        # How far decoded frames and audio have come; frames are decoded only to sample.
        f_time = -math.inf if settings.frames else math.inf
        a_time = -math.inf if au is not None else math.inf
        done = 0

        def finish(i: int) -> CutClip:
            c, copier = clips[i], copiers[i]
            if copier is not None:
                # The frames' own mean rate, so a variable-rate copy's length is its span.
                span = c.plan.end - c.plan.start
                c.video_frames = copier.count
                c.video_fps = copier.count / span if span > 0 else float(fps)
                c.width, c.height = vs.codec_context.width, vs.codec_context.height
                c.video = copier.close()
            if au is not None:
                pieces = audio[i]
                samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
                c.audio_samples = samples.size
                c.audio = _flac(samples, settings.sample_rate)
            copiers[i], audio[i] = None, []
            return c

        streams = [s for s in (vs, au) if s is not None]
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                if packet.pts is not None and packet.size:
                    index += 1
                    for i in range(done, len(clips)):
                        if first[i] > index:
                            break
                        if index < stop[i]:
                            if copiers[i] is None:
                                copiers[i] = _Copier(vs, start_pts[i])
                            copier = copiers[i]
                            assert copier is not None
                            copier.write(_clone(packet), start_pts[i])
                if settings.frames:  # every packet, the final empty one flushes
                    for frame in packet.decode():
                        if isinstance(frame, av.VideoFrame) and frame.time is not None:
                            f_time = max(f_time, float(frame.time))
                            _sample(frame, clips, range(done, len(clips)), targets, image, step)
            else:
                for frame in packet.decode():
                    if not isinstance(frame, av.AudioFrame):
                        continue
                    for out in resampler.resample(frame):
                        a_time = max(a_time, _route_audio(out, true, audio, settings, done))
            while (
                done < len(clips)
                and index >= stop[done]
                and f_time >= clips[done].plan.end - step / 2
                and a_time >= clips[done].plan.end
            ):
                yield finish(done)
                done += 1
        for out in resampler.resample(None):
            _route_audio(out, true, audio, settings, done)
    while done < len(clips):
        yield finish(done)
        done += 1


def _clone(packet: Any) -> Any:
    """A copy of the packet for one clip (a packet can belong to two overlapping clips)."""
    import av

    out = av.Packet(bytes(packet))
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    out.time_base = packet.time_base
    out.is_keyframe = packet.is_keyframe
    return out


def _sample(
    frame: Any,
    clips: list[CutClip],
    candidates: range,
    targets: list[list[float]],
    image: ImageConfig,
    step: float,
) -> None:
    """Keep a decoded frame for each clip that holds it and has a target time inside it."""
    t = float(frame.time)
    jpg: bytes | None = None
    for i in candidates:
        c, pending = clips[i], targets[i]
        if c.plan.start > t + 1e-9:
            break
        if t >= c.plan.end:
            continue
        while pending and pending[0] < t + step:
            pending.pop(0)
            if jpg is None:
                im = frame.to_image()
                jpg = encode_image(resize_image(im, im.width, im.height, image), image)
            c.frames.append((t, jpg))
