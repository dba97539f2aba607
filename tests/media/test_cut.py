"""Cutting real encoded videos: every written clip's frames and audio belong to its own
segment, bounds within one frame, audio within 20 ms of the cue times."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from curate.config import ImageConfig
from curate.media.clips import ClipPlan, plan_clips
from curate.media.cut import CutClip, CutSettings, checks, cut_clips
from curate.media.timedtext import Cue, parse_subtitles
from curate.testing.media import Segment, make_video, segments_for, timed_text

SEGMENTS = segments_for([2.0, 1.5, 2.5, 1.0])
IMAGE = ImageConfig(size=64, resize_mode="keep_ratio")


def _segment(t: float) -> Segment:
    return next(s for s in SEGMENTS if s.start <= t < s.end)


def _pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def _colour(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    return pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)


def _decode(clip: CutClip) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, int]:
    assert clip.video is not None and clip.audio is not None
    with av.open(io.BytesIO(clip.video)) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(io.BytesIO(clip.audio)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio.astype(np.float64) / 32768, rate


@pytest.fixture(scope="module", params=[".mp4", ".webm"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cut")
    return make_video(folder / f"src{request.param}", SEGMENTS, size=(320, 240), fps=24)


def test_subtitle_clips_hold_only_their_own_segment(source: Path) -> None:
    tt = parse_subtitles(timed_text(SEGMENTS, "srt"), "srt")
    plans, _ = plan_clips(tt, 7.0, 0.5, 3.0)
    clips = cut_clips(source, plans, CutSettings(side=120, frames=4), IMAGE)
    assert [(c.plan.start, c.plan.end) for c in clips] == [(s.start, s.end) for s in SEGMENTS]
    for clip, seg in zip(clips, SEGMENTS, strict=True):
        assert checks(clip) == dict.fromkeys(
            ("cues_inside", "frames_inside", "av_durations_agree"), True
        )
        frames, audio, rate = _decode(clip)
        assert (frames[0][1].shape[1], frames[0][1].shape[0]) == (160, 120)
        assert abs(len(frames) / 24 - clip.plan.duration) <= 1 / 24  # bounds within one frame
        assert all(np.abs(_colour(px) - seg.color).max() < 16 for _, px in frames)
        assert rate == 16000 and abs(audio.size / rate - clip.plan.duration) <= 0.02
        assert abs(_pitch(audio, rate) - seg.tone_hz) < 10
        assert len(clip.frames) == 4 and all(seg.start <= t < seg.end for t, _ in clip.frames)
        for _, jpeg in clip.frames:
            im = Image.open(io.BytesIO(jpeg))
            assert min(im.size) == 64
            assert np.abs(_colour(np.asarray(im.convert("RGB"))) - seg.color).max() < 16


def test_a_clip_across_a_scene_change_is_cut_on_the_frame(source: Path) -> None:
    plan = ClipPlan(0, 1.5, 2.5, (Cue(1.5, 2.5, "across"),))
    (clip,) = cut_clips(source, [plan], CutSettings(side=120, frames=2), IMAGE)
    frames, audio, rate = _decode(clip)
    assert len(frames) == 24
    for i, (_, px) in enumerate(frames):  # output frame i shows source time 1.5 + i / 24
        assert np.abs(_colour(px) - _segment(1.5 + (i + 0.5) / 24).color).max() < 16, i
    half = audio.size // 2
    assert abs(_pitch(audio[: half - 800], rate) - SEGMENTS[0].tone_hz) < 10
    assert abs(_pitch(audio[half + 800 :], rate) - SEGMENTS[1].tone_hz) < 10


def test_a_lower_output_rate_keeps_every_other_frame(source: Path) -> None:
    plan = ClipPlan(0, 2.0, 3.5, (Cue(2.0, 3.5, "green"),))
    (clip,) = cut_clips(source, [plan], CutSettings(side=120, fps=12, frames=3), IMAGE)
    assert clip.video_frames == 18 and clip.video_fps == 12
    assert checks(clip)["av_durations_agree"]


def test_frames_at_a_rate_are_capped_and_a_short_clip_repeats_its_last(source: Path) -> None:
    plans = [
        ClipPlan(0, 0.0, 2.0, (Cue(0.0, 2.0, "red"),)),  # 4 frames at 2/s: 0.25 ... 1.75
        ClipPlan(1, 2.0, 3.0, (Cue(2.0, 3.0, "green"),)),  # room for 2 at 2/s
    ]
    settings = CutSettings(side=120, frames=4, frame_rate=2.0)
    long, short = cut_clips(source, plans, settings, IMAGE)
    assert [round(t * 4) / 4 for t, _ in long.frames] == [0.25, 0.75, 1.25, 1.75]
    times = [t for t, _ in short.frames]
    assert len(times) == 4 and times[0] == pytest.approx(2.25, abs=0.05)
    assert times[1] == pytest.approx(2.75, abs=0.05)
    assert times[2] == times[3] and 2.9 < times[3] < 3.0  # the clip's last frame, twice
    assert all(checks(c)["frames_inside"] for c in (long, short))


def test_checks_name_what_is_out_of_line() -> None:
    plan = ClipPlan(0, 1.0, 2.0, (Cue(0.5, 1.5, "starts before the clip"),))
    clip = CutClip(plan, video=b"v", audio=b"a", frames=[(2.5, b"")], video_frames=24)
    clip.video_fps, clip.audio_samples = 24.0, 8000  # 1 s of video, 0.5 s of audio
    assert checks(clip) == {
        "cues_inside": False,
        "frames_inside": False,
        "av_durations_agree": False,
    }


def test_clips_are_encoded_with_their_own_frame_types(tmp_path: Path) -> None:
    """Decoded frames keep the source's picture types; passed on, x264 obeys them (no
    B-frames from an ultrafast source, ~5x the bytes). The cutter must clear them."""
    src = make_video(tmp_path / "u.mp4", SEGMENTS[:2], (320, 240), 24, preset="ultrafast")
    with av.open(str(src)) as c:
        assert {av.video.frame.PictureType(f.pict_type).name for f in c.decode(video=0)} <= {
            "I",
            "P",
        }
    plan = ClipPlan(0, 0.0, 3.5, (Cue(0.0, 3.5, "x"),))
    (clip,) = cut_clips(src, [plan], CutSettings(side=120, frames=1), IMAGE)
    assert clip.video is not None
    with av.open(io.BytesIO(clip.video)) as c:
        assert "B" in {av.video.frame.PictureType(f.pict_type).name for f in c.decode(video=0)}


def test_clips_come_one_by_one_and_whole(source: Path) -> None:
    """iter_clips hands over each clip complete (video, audio, frames) as soon as the decode
    has passed its end, so a writer holds one clip at a time."""
    from curate.media.cut import iter_clips

    tt = parse_subtitles(timed_text(SEGMENTS, "srt"), "srt")
    plans, _ = plan_clips(tt, 7.0, 0.5, 3.0)
    clips = iter_clips(source, plans, CutSettings(side=120, frames=2), IMAGE)
    first = next(clips)
    assert first.plan.index == 0 and first.video and first.audio and len(first.frames) == 2
    assert all(checks(first).values())
    rest = list(clips)
    assert [c.plan.index for c in rest] == [1, 2, 3] and all(all(checks(c).values()) for c in rest)
