"""The synthetic media say what they were made of: each frame's colour and each stretch of
audio's pitch match the segment of its timestamp, and the timed text parses back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from curate.media.timedtext import Cue, parse_json_transcript, parse_subtitles
from curate.testing.media import Segment, make_audio, make_video, segments_for, timed_text

SEGMENTS = segments_for([1.0, 1.5, 1.0])


def _segment(t: float) -> Segment:
    return next(s for s in SEGMENTS if s.start <= t < s.end)


def _pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_frames_and_audio_belong_to_their_segments(tmp_path: Path, suffix: str) -> None:
    path = make_video(tmp_path / f"v{suffix}", SEGMENTS)
    with av.open(str(path)) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert len(frames) == 42  # 3.5 s at 12 fps
    for t, pixels in frames:
        centre = pixels[40:80, 60:100].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - _segment(t + 1 / 24).color).max() < 12, (t, centre)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(stream)])
    for s in SEGMENTS:  # the middle 0.5 s of each segment, away from the edges
        mid = (s.start + s.end) / 2
        chunk = audio[int((mid - 0.25) * rate) : int((mid + 0.25) * rate)]
        assert abs(_pitch(chunk, rate) - s.tone_hz) < 10


def test_recordings_hold_the_tones(tmp_path: Path) -> None:
    for suffix in (".wav", ".flac", ".m4a"):
        with av.open(str(make_audio(tmp_path / f"a{suffix}", SEGMENTS))) as c:
            rate = c.streams.audio[0].codec_context.sample_rate
            audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
        assert audio.size == pytest.approx(3.5 * rate, abs=rate * 0.05)
        s = SEGMENTS[1]
        chunk = audio[int((s.start + 0.5) * rate) : int((s.start + 1.0) * rate)]
        assert abs(_pitch(chunk.astype(np.float64), rate) - s.tone_hz) < 10


def test_timed_text_parses_back_to_the_segments() -> None:
    want = tuple(Cue(s.start, s.end, s.text) for s in SEGMENTS)
    assert parse_subtitles(timed_text(SEGMENTS, "srt"), "srt").cues == want
    assert parse_subtitles(timed_text(SEGMENTS, "vtt"), "vtt").cues == want
    assert parse_json_transcript(timed_text(SEGMENTS, "json")).cues == want
