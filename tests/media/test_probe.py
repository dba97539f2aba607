"""The probe gate on real encoded files and the broken variants the web serves."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from curate.errors import SampleFailure
from curate.media.probe import ProbeLimits, probe
from curate.testing.media import (
    claim_duration,
    cut_before_moov,
    make_audio,
    make_video,
    segments_for,
)

SEGMENTS = segments_for([1.0, 1.5, 1.0])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_video(root / "ok.mp4", SEGMENTS)
    make_video(root / "ok.webm", SEGMENTS)
    make_video(root / "silent.mp4", SEGMENTS, audio=False)
    make_audio(root / "ok.m4a", SEGMENTS)
    make_audio(root / "ok.flac", SEGMENTS)
    make_audio(root / "ok.wav", SEGMENTS)
    cut_before_moov(root / "ok.mp4", root / "cut.mp4")
    claim_duration(root / "ok.mp4", root / "ten_hours.mp4", 36000)
    (root / "random.mp4").write_bytes(bytes(range(256)) * 64)
    with wave.open(str(root / "empty.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return root


def test_real_videos_and_recordings_pass_with_their_facts(media: Path) -> None:
    for name in ("ok.mp4", "ok.webm"):
        info = probe(media / name, need_video=True, need_audio=True)
        assert info.duration == pytest.approx(3.5, abs=0.05)
        assert info.video is not None and (info.video.width, info.video.height) == (160, 120)
        assert info.video.fps == pytest.approx(12.0)
        assert info.audio is not None and info.audio.channels == 1
    assert probe(media / "ok.mp4", True, True).video.codec == "h264"  # type: ignore[union-attr]
    for name in ("ok.m4a", "ok.flac", "ok.wav"):
        info = probe(media / name, need_video=False, need_audio=True)
        assert info.video is None and info.audio is not None
        assert info.audio.sample_rate == 16000 and info.duration == pytest.approx(3.5, abs=0.05)


@pytest.mark.parametrize(
    ("name", "need_video", "need_audio", "reason"),
    [
        ("random.mp4", True, False, "not_media"),
        ("cut.mp4", True, False, "media_unreadable"),
        ("ok.m4a", True, False, "no_video_stream"),
        ("silent.mp4", True, True, "no_audio_stream"),
        ("empty.wav", False, True, "bad_duration"),
        ("ten_hours.mp4", True, True, "bad_duration"),
    ],
)
def test_each_broken_file_gets_its_reason(
    media: Path, name: str, need_video: bool, need_audio: bool, reason: str
) -> None:
    with pytest.raises(SampleFailure) as info:
        probe(media / name, need_video, need_audio)
    assert info.value.reason == reason, info.value


def test_limits_name_what_is_out_of_range(media: Path) -> None:
    cases = [
        (ProbeLimits(max_side=100), "bad_resolution"),
        (ProbeLimits(min_fps=24), "bad_frame_rate"),
        (ProbeLimits(min_sample_rate=44100), "bad_sample_rate"),
        (ProbeLimits(max_duration_s=2.0), "bad_duration"),
        (ProbeLimits(timeout_s=0.0), "probe_timeout"),
    ]
    for limits, reason in cases:
        with pytest.raises(SampleFailure) as info:
            probe(media / "ok.mp4", True, True, limits)
        assert info.value.reason == reason
    stretched = ProbeLimits(max_duration_s=10 * 3600)  # admitted duration: the rate gives it away
    with pytest.raises(SampleFailure, match="bad_frame_rate"):
        probe(media / "ten_hours.mp4", True, True, stretched)
