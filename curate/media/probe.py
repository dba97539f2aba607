"""The probe gate: what a media file is, checked before any clip is cut from it.

PyAV opens the container with bounded probing, the first frame of each needed stream is
decoded, and the whole probe runs against a deadline. Each way a file can be unusable is
its own ledger reason: `not_media` (no known container signature), `media_unreadable` (a
known container that will not open or decode, e.g. an MP4 cut before its moov atom),
`no_video_stream` / `no_audio_stream`, `bad_duration` (zero, or past `max_duration_s`, as
in a header claiming ten hours), `bad_resolution`, `bad_frame_rate`, `bad_sample_rate`, and
`probe_timeout`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import SampleFailure

__all__ = ["AudioInfo", "MediaInfo", "ProbeLimits", "VideoInfo", "container_signature", "probe"]


@dataclass(frozen=True)
class ProbeLimits:
    """What a usable medium looks like; the defaults admit any real web video or podcast."""

    min_duration_s: float = 0.1
    max_duration_s: float = 4 * 3600
    max_side: int = 8192
    min_fps: float = 1.0
    max_fps: float = 240.0
    min_sample_rate: int = 4000
    max_sample_rate: int = 384000
    timeout_s: float = 20.0


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    video: VideoInfo | None
    audio: AudioInfo | None


def container_signature(head: bytes) -> str | None:
    """The container a file's first bytes announce, or None."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"free", b"wide"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"AVI "):
        return "riff"
    signatures = {
        b"fLaC": "flac",
        b"OggS": "ogg",
        b"ID3": "mp3",
        b"\xff\xfb": "mp3",
        b"\xff\xf3": "mp3",
        b"\xff\xf1": "aac",
        b"\xff\xf9": "aac",
        b"FLV": "flv",
        b"\x00\x00\x01\xba": "mpeg-ps",
        b"G": "mpeg-ts",
    }
    return next((name for sig, name in signatures.items() if head.startswith(sig)), None)


def _check_deadline(t0: float, limits: ProbeLimits, what: str) -> None:
    if time.monotonic() - t0 > limits.timeout_s:
        raise SampleFailure("probe_timeout", f"{what} past {limits.timeout_s:g}s")


def _first_frames(container: Any, streams: Sequence[Any], t0: float, lim: ProbeLimits) -> None:
    """Decode until each stream has given one frame: a header alone proves nothing."""
    pending = {id(s) for s in streams}
    for packet in container.demux(*streams):
        _check_deadline(t0, lim, "decoding the first frames")
        if id(packet.stream) in pending and packet.decode():
            pending.discard(id(packet.stream))
        if not pending:
            return
    kinds = sorted({s.type for s in streams if id(s) in pending})
    raise SampleFailure("media_unreadable", f"no decodable {'/'.join(kinds)} frame")


def probe(
    path: Path, need_video: bool, need_audio: bool, limits: ProbeLimits | None = None
) -> MediaInfo:
    """MediaInfo of a usable file, or a SampleFailure naming why it is not."""
    import av

    lim = limits or ProbeLimits()
    t0 = time.monotonic()
    with open(path, "rb") as f:
        head = f.read(16)
    signature = container_signature(head)
    if signature is None:
        raise SampleFailure("not_media", f"no known container signature ({head[:8].hex()})")
    options = {"probesize": str(5 << 20), "analyzeduration": str(5_000_000)}
    try:
        container = av.open(str(path), options=options, timeout=lim.timeout_s)
    except (av.FFmpegError, OSError, ValueError) as err:
        _check_deadline(t0, lim, "opening")  # an open cut short by the deadline
        raise SampleFailure("media_unreadable", f"{signature}: {err}"[:300]) from None
    with container:
        _check_deadline(t0, lim, "opening")
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if need_video and video is None:
            raise SampleFailure(
                "no_video_stream", f"{signature} with {len(container.streams)} streams"
            )
        if need_audio and audio is None:
            raise SampleFailure(
                "no_audio_stream", f"{signature} with {len(container.streams)} streams"
            )
        duration = container.duration / 1e6 if container.duration else 0.0
        if not lim.min_duration_s <= duration <= lim.max_duration_s:
            raise SampleFailure("bad_duration", f"{duration:g}s")
        vinfo = ainfo = None
        if video is not None:
            width, height = video.codec_context.width, video.codec_context.height
            if not (0 < width <= lim.max_side and 0 < height <= lim.max_side):
                raise SampleFailure("bad_resolution", f"{width}x{height}")
            rate = video.average_rate or video.guessed_rate
            fps = float(rate) if rate else 0.0
            if not lim.min_fps <= fps <= lim.max_fps:
                raise SampleFailure("bad_frame_rate", f"{fps:g} fps")
            vinfo = VideoInfo(video.codec_context.name, width, height, fps)
        if audio is not None:
            rate_hz = audio.codec_context.sample_rate or 0
            if not lim.min_sample_rate <= rate_hz <= lim.max_sample_rate:
                raise SampleFailure("bad_sample_rate", f"{rate_hz} Hz")
            ainfo = AudioInfo(audio.codec_context.name, rate_hz, audio.codec_context.channels)
        needed = [s for s, want in ((video, need_video), (audio, need_audio)) if s and want]
        try:
            _first_frames(container, needed, t0, lim)
        except av.FFmpegError as err:
            raise SampleFailure("media_unreadable", f"decoding: {err}"[:300]) from None
    return MediaInfo(duration, vinfo, ainfo)
