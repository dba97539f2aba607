"""Cut planned clips out of one source in a single streaming pass, re-encoded frame-exactly.

The source is demuxed once, in order. Each decoded video frame goes to the clip whose
bounds hold its timestamp and is encoded there (H.264 via PyAV's bundled libx264, scaled so
the shorter side is at most `side`); the K sampled frames of each clip are kept as JPEGs at
the image stage's size. Audio is resampled to 16 kHz mono and split at the exact sample of
each clip boundary, then stored as FLAC. Only the clip being written is held, never the
whole source: memory follows the longest clip, not the length of the video.

video2dataset cuts with one ffmpeg process per clip, each seeking and decoding from the
previous keyframe; here one decode of the source serves every clip.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from curate.config import ImageConfig
from curate.media.clips import ClipPlan
from curate.media.image import encode_image, resize_image

__all__ = ["CutClip", "CutSettings", "checks", "cut_clips", "iter_clips"]


@dataclass(frozen=True)
class CutSettings:
    """How clips are written: video size and rate, quality, frames sampled, audio rate."""

    side: int = 360
    fps: float | None = None
    crf: int = 23
    preset: str = "veryfast"
    frames: int = 8
    frame_rate: float | None = None  # None: frames uniform over the clip
    sample_rate: int = 16000
    video: bool = True
    audio: bool = True
    threads: int = 1  # the encoder's; 0 lets x264 choose (for fewer videos than cores)


@dataclass
class CutClip:
    """One written clip: its plan, encoded video and audio, sampled frames and what they
    span (frame timestamps are in source seconds)."""

    plan: ClipPlan
    video: bytes | None = None
    audio: bytes | None = None
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    video_frames: int = 0
    video_fps: float = 0.0
    width: int = 0
    height: int = 0
    first_frame: float | None = None
    audio_samples: int = 0
    sample_rate: int = 16000
    planned: tuple[float, float] | None = None  # cut: copy; the plan holds the true bounds
    problem: str | None = None  # why nothing was written, when the cutter knows

    @property
    def video_seconds(self) -> float:
        return self.video_frames / self.video_fps if self.video_fps else 0.0

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.sample_rate


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


class _VideoWriter:
    """One clip's H.264 encoder into an in-memory MP4."""

    def __init__(self, width: int, height: int, fps: Fraction, s: CutSettings) -> None:
        import av

        scale = min(1.0, s.side / min(width, height))
        self.size = (_even(width * scale), _even(height * scale))
        self.buf = io.BytesIO()
        self.container = av.open(self.buf, "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=fps)
        assert isinstance(self.stream, av.VideoStream)
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(s.crf), "preset": s.preset, "threads": str(s.threads)}
        self.count = 0

    def write(self, frame: Any) -> None:
        import av

        out = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        # A decoded frame keeps its source picture type (I/P/B), which x264 would obey:
        # every frame forced to the source's types, no B-frames, ~5x the bytes.
        out.pict_type = av.video.frame.PictureType.NONE
        out.pts = self.count
        out.time_base = self.stream.codec_context.time_base or Fraction(1, 1)
        self.count += 1
        for packet in self.stream.encode(out):
            self.container.mux(packet)

    def close(self) -> bytes:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        return self.buf.getvalue()


def _flac(samples: np.ndarray, rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
        for start in range(0, pcm.size, 4096):
            chunk = pcm[start : start + 4096]
            frame = av.AudioFrame.from_ndarray(chunk[np.newaxis, :], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _targets(plan: ClipPlan, k: int, rate: float | None = None) -> list[float]:
    """K sample times: uniform over the clip (the middle of K equal slices), or at `rate`
    per second from its start, the last repeated where the clip is shorter than K / rate
    (every clip keeps K frames: the corpus's members are fixed)."""
    if rate is None:
        return [plan.start + (i + 0.5) * plan.duration / k for i in range(k)]
    last = max(plan.start, plan.end - 1e-3)  # inside the last frame (WebM times are in ms)
    return [min(plan.start + (i + 0.5) / rate, last) for i in range(k)]


def cut_clips(
    path: Path, plans: Sequence[ClipPlan], settings: CutSettings, image: ImageConfig
) -> list[CutClip]:
    """Every planned clip of `path` (plans sorted and disjoint), in one pass."""
    return list(iter_clips(path, plans, settings, image))


def iter_clips(
    path: Path, plans: Sequence[ClipPlan], settings: CutSettings, image: ImageConfig
) -> Iterator[CutClip]:
    """The planned clips of `path` one by one, each as soon as the decode has passed its
    end: a caller that writes and drops them holds one clip at a time, not the video's."""
    import av

    clips: list[CutClip | None] = [CutClip(p, sample_rate=settings.sample_rate) for p in plans]
    if not clips:
        return
    ends = [p.end for p in plans]
    with av.open(str(path)) as container:
        vs = container.streams.video[0] if settings.video and container.streams.video else None
        au = container.streams.audio[0] if settings.audio and container.streams.audio else None
        streams = [s for s in (vs, au) if s is not None]
        fps = Fraction(settings.fps).limit_denominator(1001) if settings.fps else None
        slack = 0.0  # half a source frame: container timestamps are rounded (WebM: to 1 ms)
        if vs is not None:
            source_rate = vs.average_rate or vs.guessed_rate or Fraction(25)
            fps = fps or source_rate
            slack = 0.5 / float(source_rate)
            vs.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=settings.sample_rate)
        audio: list[list[np.ndarray]] = [[] for _ in clips]
        writers: list[_VideoWriter | None] = [None] * len(clips)
        targets = [_targets(p, settings.frames, settings.frame_rate) for p in plans]
        v_at = 0  # the clip video frames are being routed to (plans are in time order)
        next_out = [0.0] * len(clips)  # output frame clock when the rate is lowered
        # How far each stream has been decoded; a stream not cut is "done" from the start.
        v_time = -math.inf if vs is not None else math.inf
        a_time = -math.inf if au is not None else math.inf
        done = 0

        def finish(i: int) -> CutClip:
            c = clips[i]
            assert c is not None
            writer, pieces = writers[i], audio[i]
            if writer is not None:
                c.video_frames, c.video_fps = writer.count, float(fps or 0)
                c.width, c.height = writer.size
                c.video = writer.close()
            if au is not None:
                samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
                c.audio_samples = samples.size
                c.audio = _flac(samples, settings.sample_rate)
            clips[i], writers[i], audio[i] = None, None, []  # the caller holds it now
            return c

        for packet in container.demux(*streams):
            for frame in packet.decode():
                if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.time is None:
                    continue
                t = float(frame.time)
                if isinstance(frame, av.VideoFrame) and fps is not None:
                    v_time = t
                    while v_at < len(clips) and t >= ends[v_at]:
                        v_at += 1
                    if v_at == len(clips) or t < plans[v_at].start:
                        continue
                    c = clips[v_at]
                    assert c is not None
                    if t < c.plan.start + next_out[v_at] / float(fps) - slack:
                        continue  # dropped to reach the output rate
                    next_out[v_at] += 1
                    writer = writers[v_at]
                    if writer is None:
                        writer = _VideoWriter(frame.width, frame.height, fps, settings)
                        writers[v_at], c.first_frame = writer, t
                    writer.write(frame)
                    step = 1 / float(fps)
                    pending = targets[v_at]
                    while pending and pending[0] < t + step:
                        pending.pop(0)
                        im = frame.to_image()
                        small = resize_image(im, im.width, im.height, image)
                        c.frames.append((t, encode_image(small, image)))
                elif isinstance(frame, av.AudioFrame):
                    for out in resampler.resample(frame):
                        a_time = max(a_time, _route_audio(out, plans, audio, settings, done))
            while done < len(clips) and min(v_time, a_time) >= ends[done]:
                yield finish(done)
                done += 1
        for out in resampler.resample(None):
            _route_audio(out, plans, audio, settings, done)
    while done < len(clips):
        yield finish(done)
        done += 1


def _route_audio(
    frame: Any, plans: Sequence[ClipPlan], audio: list[list[np.ndarray]], s: CutSettings, first: int
) -> float:
    """Give each clip from `first` on the resampled samples inside its bounds, cut at the
    exact sample; returns the time the samples reach."""
    rate = s.sample_rate
    if frame.pts is None:
        return -math.inf
    samples = frame.to_ndarray().reshape(-1).astype(np.float32)
    lo_sample = int(frame.pts)  # the resampler's time base is 1 / rate
    hi_sample = lo_sample + samples.size
    for i in range(first, len(plans)):
        lo, hi = round(plans[i].start * rate), round(plans[i].end * rate)
        if lo >= hi_sample:
            break
        a, b = max(lo, lo_sample), min(hi, hi_sample)
        if a < b:
            audio[i].append(samples[a - lo_sample : b - lo_sample])
    return hi_sample / rate


def checks(clip: CutClip, tolerance_s: float | None = None) -> dict[str, bool]:
    """What a written clip must satisfy; any False makes it `misaligned`.

    Every attached cue lies inside the clip, every sampled frame's timestamp too, and the
    audio lasts as long as the video within one frame (`tolerance_s`, default 1/fps).
    """
    p = clip.plan
    eps = 1e-6
    out = {
        "cues_inside": all(p.start - eps <= c.start and c.end <= p.end + eps for c in p.cues),
        "frames_inside": all(p.start - eps <= t < p.end + eps for t, _ in clip.frames),
    }
    if clip.video is not None and clip.audio is not None:
        tol = tolerance_s if tolerance_s is not None else 1 / clip.video_fps
        out["av_durations_agree"] = math.isclose(
            clip.video_seconds, clip.audio_seconds, abs_tol=tol + eps
        )
    return out
