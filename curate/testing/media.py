"""Synthetic videos and recordings with ground truth, made with PyAV's bundled encoders.

Each segment of a medium is one flat colour and one sine tone over a known time span, with
its own text, so a test can decode any written clip and tell from the pixels and the
spectrum which segment each frame and each stretch of audio came from. Timed text comes as
SRT, WebVTT or a JSON transcript of the same segments. Broken variants reproduce what the
probe gate must refuse: an MP4 cut before its moov atom, random bytes named .mp4, an
audio-only file where video is required, a WAV with no samples, an MP4 whose header claims
ten hours.
"""

from __future__ import annotations

import io
import json
import struct
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Segment",
    "build_video_web",
    "claim_duration",
    "cut_before_moov",
    "make_audio",
    "make_video",
    "segments_for",
    "timed_text",
]

_CODECS = {".mp4": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus")}
_AUDIO = {".flac": "flac", ".m4a": "aac", ".ogg": "libopus"}


@dataclass(frozen=True)
class Segment:
    """A stretch of a medium: [start, end) seconds, its colour, its tone and its words."""

    start: float
    end: float
    color: tuple[int, int, int]
    tone_hz: float
    text: str


_COLORS = [(220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40), (160, 60, 200)]
_TONES = [440.0, 660.0, 880.0, 1100.0, 1320.0]
_WORDS = ["red sky", "green field", "blue water", "yellow sun", "purple flower"]


def segments_for(
    durations: Sequence[float], offset: int = 0, nouns: int | None = None
) -> list[Segment]:
    """Consecutive segments of the given lengths; colours, tones and words cycle. With
    `nouns` (a seed) each segment's noun is drawn apart from its colour ("a blue sun"), so
    the colour word can be read only off the picture, never guessed from the noun."""
    out, t = [], 0.0
    for i, d in enumerate(durations):
        k = (i + offset) % len(_COLORS)
        words = _WORDS[k]
        if nouns is not None:
            drawn = int(np.random.default_rng([nouns, i]).integers(len(_WORDS)))
            words = f"{words.split()[0]} {_WORDS[drawn].split()[1]}"
        out.append(Segment(t, t + d, _COLORS[k], _TONES[k], f"segment {i}: a {words}"))
        t += d
    return out


def _at(segments: Sequence[Segment], t: float) -> Segment:
    return next((s for s in segments if s.start <= t < s.end), segments[-1])


def _tone(segments: Sequence[Segment], sample_rate: int) -> np.ndarray:
    n = round(segments[-1].end * sample_rate)
    t = np.arange(n) / sample_rate
    freq = np.array([_at(segments, x).tone_hz for x in t[:: sample_rate // 100]])
    freq = np.repeat(freq, sample_rate // 100)[:n]
    freq = np.pad(freq, (0, n - freq.size), mode="edge")
    return (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / sample_rate)).astype(np.float32)


def _write_audio_stream(container: Any, stream: Any, samples: np.ndarray, sr: int) -> None:
    import av

    frame_size = getattr(stream, "frame_size", 0) or 1024
    for start in range(0, samples.size, frame_size):
        chunk = samples[start : start + frame_size]
        frame = av.AudioFrame.from_ndarray(chunk[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_video(
    path: Path,
    segments: Sequence[Segment],
    size: tuple[int, int] = (160, 120),
    fps: int = 12,
    sample_rate: int = 16000,
    audio: bool = True,
    texture: bool = False,
    preset: str = "medium",
    threads: int = 1,
    pattern: int | None = None,
    gop: int | None = None,
    sweep: bool = False,
    thing: bool = False,
) -> Path:
    """An MP4 (H.264/AAC) or WebM (VP9/Opus), by suffix: each segment's colour and tone.

    `texture` lays a drifting grain over the colour (what a benchmark needs: flat frames
    cost a codec almost nothing); the segment's colour stays its mean. `pattern` (a seed)
    gives each segment its own still 8x8 block layout, so pHashes tell footage apart: the
    same seed makes the same pictures at any size or quality. `gop` caps the frames between
    keyframes (what `cut: copy` starts clips on). `sweep` draws a white bar that crosses the
    frame from left to right during each segment: within a segment's clip, the frames' order
    can be seen (what frame order modelling learns). `thing` (with `pattern`) puts two still
    rectangles of colours no subtitle names, each half the frame's width and height,
    somewhere on each segment: a masked part of one can be told only from the rest of it,
    not from the text (what masked region modelling must show it learns)."""
    import av

    vcodec, acodec = _CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 48000 if acodec == "libopus" else sample_rate  # Opus encodes at 48 kHz only
    with av.open(str(path), "w") as container:
        video = container.add_stream(vcodec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"threads": str(threads)}
        if gop is not None:
            video.codec_context.gop_size = gop
        if vcodec == "libx264":
            video.options |= {"crf": "30", "preset": preset}
        sound = container.add_stream(acodec, rate=rate, layout="mono") if audio else None
        n = round(segments[-1].end * fps)
        grain = _grain(size) if texture else None
        for i in range(n):
            pixels = np.empty((size[1], size[0], 3), np.uint8)
            seg = _at(segments, (i + 0.5) / fps)
            pixels[:] = seg.color
            if pattern is not None:
                layout = _blocks(size, pattern, segments.index(seg))
                pixels = np.clip(pixels.astype(np.int16) + layout[..., None], 0, 255)
                pixels = pixels.astype(np.uint8)
            if thing and pattern is not None:
                for x0, y0, x1, y1, colour in _things(size, pattern, segments.index(seg)):
                    pixels[y0:y1, x0:x1] = colour
            if sweep:
                where = (i + 0.5) / fps - seg.start
                x = int(where / (seg.end - seg.start) * size[0] * 0.9)
                pixels[:, x : x + max(2, size[0] // 10)] = 255
            if grain is not None:
                shifted = np.roll(grain, (i * 3, i * 5), axis=(0, 1))
                pixels = np.clip(pixels.astype(np.int16) + shifted[..., None], 0, 255)
                pixels = pixels.astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            _write_audio_stream(container, sound, _tone(segments, rate), rate)
    return path


def _blocks(size: tuple[int, int], seed: int, segment: int) -> np.ndarray:
    """An 8x8 grid of blocks, each brighter or darker by up to 30 with zero mean (the mean
    colour stays), laid out by (seed, segment): structure at every low frequency, as a
    pHash needs."""
    rng = np.random.default_rng([seed, segment])
    grid = rng.uniform(-30, 30, (8, 8))
    grid = np.round(grid - grid.mean()).astype(np.int16)
    ys = np.minimum(np.arange(size[1]) * 8 // size[1], 7)
    xs = np.minimum(np.arange(size[0]) * 8 // size[0], 7)
    return grid[ys[:, None], xs[None, :]]


# never white: the sweeping bar is, and frame order is read off it
_THING_COLOURS = [
    (20, 20, 20),
    (250, 140, 0),
    (0, 200, 200),
    (250, 100, 180),
    (110, 60, 20),
]


def _things(size: tuple[int, int], seed: int, segment: int) -> list[tuple[int, int, int, int, Any]]:
    """A segment's two rectangles: (x0, y0, x1, y1, colour) each, half the frame's width and
    height on a quarter-frame grid, so each covers whole cells of a 4x4 region grid; two
    different colours and places drawn from (seed, segment)."""
    rng = np.random.default_rng([seed, segment, 1])
    w, h = size[0] // 2, size[1] // 2
    colours = rng.choice(len(_THING_COLOURS), 2, replace=False)
    out = []
    for c in colours:
        x0 = int(rng.integers(0, 3)) * size[0] // 4
        y0 = int(rng.integers(0, 3)) * size[1] // 4
        out.append((x0, y0, x0 + w, y0 + h, _THING_COLOURS[int(c)]))
    return out


def _grain(size: tuple[int, int]) -> np.ndarray:
    """A smooth random field in -40..40: blobs and edges that move, as in real footage."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(-40, 41, (size[1] // 16 + 2, size[0] // 16 + 2)).astype(np.int16)
    fine = np.kron(coarse, np.ones((16, 16), np.int16))[: size[1], : size[0]]
    return fine + rng.integers(-6, 7, fine.shape).astype(np.int16)


def make_audio(path: Path, segments: Sequence[Segment], sample_rate: int = 16000) -> Path:
    """A recording of the segments' tones: WAV (PCM), FLAC, M4A (AAC) or Ogg (Opus)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = _tone(segments, sample_rate) if segments else np.zeros(0, np.float32)
    if path.suffix == ".wav":
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes((samples * 32767).astype("<i2").tobytes())
        return path
    import av

    rate = 48000 if path.suffix == ".ogg" else sample_rate
    samples = _tone(segments, rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_AUDIO[path.suffix], rate=rate, layout="mono")
        _write_audio_stream(container, stream, samples, rate)
    return path


def timed_text(segments: Sequence[Segment], fmt: str) -> bytes:
    """The segments' words as SRT, WebVTT or a JSON transcript."""
    if fmt == "json":
        items = [{"start": s.start, "end": s.end, "text": s.text} for s in segments]
        return json.dumps(items).encode()

    def stamp(t: float, sep: str) -> str:
        ms = round(t * 1000)
        return (
            f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"
        )

    out = io.StringIO()
    if fmt == "vtt":
        out.write("WEBVTT\n\n")
    sep = "," if fmt == "srt" else "."
    for i, s in enumerate(segments, 1):
        if fmt == "srt":
            out.write(f"{i}\n")
        out.write(f"{stamp(s.start, sep)} --> {stamp(s.end, sep)}\n{s.text}\n\n")
    return out.getvalue().encode()


def cut_before_moov(path: Path, out: Path) -> Path:
    """The MP4 without its moov atom (written at the end): what a cut download looks like."""
    data = path.read_bytes()
    at = data.rfind(b"moov")
    if at < 4:
        raise ValueError(f"{path}: no moov atom at the end to cut")
    out.write_bytes(data[: at - 4])
    return out


def claim_duration(path: Path, out: Path, seconds: float) -> Path:
    """The MP4 with every track's sample durations (stts) stretched so that it claims
    `seconds`, over the same few frames and samples: the headers a demuxer trusts lie."""
    data = bytearray(path.read_bytes())
    scale, found, at = 0, 0, 0
    while True:
        mdhd, stts = data.find(b"mdhd", at), data.find(b"stts", at)
        if stts < 0:
            break
        if 0 <= mdhd < stts:  # this track's timescale comes first
            scale = struct.unpack(">I", data[mdhd + 16 : mdhd + 20])[0]
        entries = struct.unpack(">I", data[stts + 8 : stts + 12])[0]
        counts = [
            struct.unpack(">I", data[stts + 12 + 8 * k : stts + 16 + 8 * k])[0]
            for k in range(entries)
        ]
        delta = min(2**32 - 1, round(seconds * scale / max(1, sum(counts))))
        for k in range(entries):
            data[stts + 16 + 8 * k : stts + 20 + 8 * k] = struct.pack(">I", delta)
        found += 1
        at = stts + 4
    if not found or not scale:
        raise ValueError(f"{path}: no sample tables to stretch")
    _claim_in_headers(data, seconds)
    out.write_bytes(bytes(data))
    return out


def _claim_in_headers(data: bytearray, seconds: float) -> None:
    """mvhd, mdhd (duration at +20 in their own timescale) and tkhd (at +24, movie scale)."""
    mvhd = data.find(b"mvhd")
    movie = struct.unpack(">I", data[mvhd + 16 : mvhd + 20])[0]
    for box, own_scale, offset in ((b"mvhd", True, 20), (b"mdhd", True, 20), (b"tkhd", False, 24)):
        at = data.find(box)
        while at >= 0:
            if data[at + 4] == 0:  # version 0: 32-bit fields
                scale = struct.unpack(">I", data[at + 16 : at + 20])[0] if own_scale else movie
                value = min(2**32 - 1, round(seconds * scale))
                data[at + offset : at + offset + 4] = struct.pack(">I", value)
            at = data.find(box, at + 4)
    at = data.find(b"elst")
    while at >= 0:  # edit lists: each entry's segment duration, in the movie timescale
        if data[at + 4] == 0:
            for k in range(struct.unpack(">I", data[at + 8 : at + 12])[0]):
                entry = at + 12 + 12 * k
                data[entry : entry + 4] = struct.pack(">I", min(2**32 - 1, round(seconds * movie)))
        at = data.find(b"elst", at + 4)


# (file name, segment lengths, colour offset, timed text format or None for a whole caption)
_DEMO = [
    ("cooking.mp4", [2.0, 2.5, 1.5], 0, "srt"),
    ("garden.webm", [3.0, 2.0], 2, "vtt"),
    ("workshop.mp4", [1.5, 1.5, 2.0, 2.5], 1, "json"),
    ("sunset.mp4", [4.0], 3, None),
]


def build_video_web(root: Path, lessons: int = 0) -> list[dict[str, str | None]]:
    """A small video web under root/files: good videos with SRT, WebVTT or JSON timings (or a
    whole-video caption), one of them again at half the size, broken ones (an MP4 cut
    before its moov atom, random bytes, an audio-only file), and `lessons` longer videos of
    ten 2.5-second segments (one clip each) whose white bar sweeps across each one: clips
    enough for the reference trainer to learn frame order and subtitle matching. Returns
    rows of `route`, `caption`, `subtitles` (a route or None)."""
    files = root / "files"
    rows: list[dict[str, str | None]] = []
    for k in range(lessons):
        segs = segments_for([2.5] * 10, offset=k, nouns=100 + k)
        name = f"lesson{k}"
        make_video(
            files / f"{name}.mp4", segs, (160, 120), fps=12, pattern=10 + k, sweep=True, thing=True
        )
        (files / f"{name}.srt").write_bytes(timed_text(segs, "srt"))
        rows.append(
            {
                "route": f"/img/{name}.mp4",
                "caption": f"{name} video",
                "subtitles": f"/img/{name}.srt",
            }
        )
    for seed, (name, lengths, offset, fmt) in enumerate(_DEMO):
        segs = segments_for(lengths, offset)
        make_video(files / name, segs, size=(320, 240), fps=12, pattern=seed)
        subtitles = None
        if fmt is not None:
            subtitles = f"/img/{Path(name).stem}.{fmt}"
            (files / f"{Path(name).stem}.{fmt}").write_bytes(timed_text(segs, fmt))
        caption = segs[0].text if fmt is None else f"{Path(name).stem} video"
        rows.append({"route": f"/img/{name}", "caption": caption, "subtitles": subtitles})
    # The same footage uploaded again at half the size: its clips are near duplicates.
    make_video(
        files / "cooking_small.mp4", segments_for(_DEMO[0][1]), size=(160, 120), fps=12, pattern=0
    )
    rows.append(
        {
            "route": "/img/cooking_small.mp4",
            "caption": "cooking again",
            "subtitles": "/img/cooking.srt",
        }
    )
    cut_before_moov(files / "cooking.mp4", files / "cut.mp4")
    (files / "noise.mp4").write_bytes(bytes(range(256)) * 64)
    make_audio(files / "podcast.m4a", segments_for([3.0]))
    for name, caption in (
        ("cut.mp4", "a download cut before its moov atom"),
        ("noise.mp4", "random bytes named .mp4"),
        ("podcast.m4a", "audio only, in a video corpus"),
    ):
        rows.append({"route": f"/img/{name}", "caption": caption, "subtitles": "/img/cooking.srt"})
    return rows
