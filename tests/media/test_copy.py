"""`cut: copy` on real H.264 and VP9: each clip is the source's own packets from the keyframe
at or before its planned start, its true bounds recorded, its audio and frames cut at them."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from curate.config import ImageConfig
from curate.media.clips import ClipPlan
from curate.media.copy import copy_spans, iter_copied_clips
from curate.media.cut import CutSettings, checks
from curate.media.timedtext import Cue
from curate.testing.media import make_video, segments_for

SEGMENTS = segments_for([2.0, 2.0, 2.0, 2.0])
FPS, GOP = 12, 9  # a keyframe every 0.75 s; clip starts fall between them
IMAGE = ImageConfig(size=48, resize_mode="keep_ratio")


def _plans() -> list[ClipPlan]:
    # 0.72: just before the keyframe at 0.75, which must not be taken (it would cut a cue)
    spans = [(0.72, 1.9), (2.5, 3.9), (4.3, 7.1)]
    return [ClipPlan(i, s, e, (Cue(s, e, f"clip {i}"),)) for i, (s, e) in enumerate(spans)]


def _source_packets(path: Path) -> list[tuple[float, bool, bytes]]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [
            (float(p.pts * p.time_base), bool(p.is_keyframe), bytes(p))
            for p in c.demux(vs)
            if p.pts is not None and p.size
        ]


def _colour_at(t: float) -> np.ndarray:
    return np.array(next(s for s in SEGMENTS if s.start <= t < s.end).color, float)


@pytest.fixture(scope="module", params=["mp4", "webm"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("copy") / f"src.{request.param}"
    return make_video(path, SEGMENTS, size=(160, 120), fps=FPS, gop=GOP)


def test_a_copy_starts_on_the_last_keyframe_at_or_before_the_plan(source: Path) -> None:
    packets = _source_packets(source)
    keys = [t for t, key, _ in packets if key]
    assert len(keys) >= 8, keys  # the premise: keyframes between the clip starts
    for plan, span in zip(_plans(), copy_spans(source, _plans()), strict=True):
        assert span is not None
        assert span.start == pytest.approx(max(k for k in keys if k <= plan.start + 1e-6))
        assert span.start <= plan.start < plan.end <= span.end + 1e-6


def test_copied_clips_hold_the_source_packets_and_their_own_pictures(source: Path) -> None:
    packets = _source_packets(source)
    settings = CutSettings(frames=3)
    clips = list(iter_copied_clips(source, _plans(), settings, IMAGE))
    assert [c.plan.index for c in clips] == [0, 1, 2]
    for clip, planned in zip(clips, _plans(), strict=True):
        assert clip.planned == (planned.start, planned.end)
        assert all(checks(clip).values()), checks(clip)
        assert clip.video is not None and clip.audio is not None
        with av.open(io.BytesIO(clip.video)) as c:
            vs = c.streams.video[0]
            got = [bytes(p) for p in c.demux(vs) if p.size]
            c.seek(0)
            frames = list(c.decode(video=0))
            decoded = [f.to_ndarray(format="rgb24") for f in frames]
        # The first picture shows at 0, where the clip's audio starts.
        assert frames[0].time == pytest.approx(0.0, abs=1e-6)
        # Byte for byte the source's packets from the keyframe on: nothing re-encoded.
        at = next(i for i, (t, _, _) in enumerate(packets) if abs(t - clip.plan.start) < 1e-6)
        assert got == [p[2] for p in packets[at : at + len(got)]]
        assert len(decoded) == clip.video_frames == len(got)
        assert np.abs(decoded[0].mean((0, 1)) - _colour_at(clip.plan.start)).max() < 12
        # Audio follows the true bounds, within a frame of the video.
        assert abs(clip.audio_seconds - (clip.plan.end - clip.plan.start)) <= 1 / FPS + 1e-6
        assert len(clip.frames) == 3
        for t, jpg in clip.frames:
            from PIL import Image

            mean = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"), float).mean((0, 1))
            assert np.abs(mean - _colour_at(t)).max() < 12, (t, mean)


def test_a_clip_at_the_start_copies_from_the_first_frame(tmp_path: Path) -> None:
    from curate.media.copy import Span

    plans = [ClipPlan(0, 0.0, 1.0, (Cue(0.0, 1.0, "x"),))]
    src = make_video(tmp_path / "v.mp4", segments_for([2.0]), size=(64, 48), fps=FPS, gop=GOP)
    spans = copy_spans(src, plans)
    assert isinstance(spans[0], Span)  # the first frame is a keyframe: copyable
    clip = next(iter_copied_clips(src, plans, CutSettings(frames=2), IMAGE))
    assert all(checks(clip).values())


def test_a_clip_before_the_first_keyframe_says_why_it_has_nothing(tmp_path: Path) -> None:
    src = make_video(tmp_path / "v.mp4", segments_for([2.0]), size=(64, 48), fps=FPS, gop=GOP)
    plans = [ClipPlan(0, -0.5, 1.0, (Cue(-0.5, 1.0, "x"),)), ClipPlan(1, 1.0, 2.0, ())]
    assert copy_spans(src, plans)[0] is None
    clips = {c.plan.index: c for c in iter_copied_clips(src, plans, CutSettings(), IMAGE)}
    assert clips[0].video is None and "no keyframe" in (clips[0].problem or "")
    assert clips[1].video is not None and clips[1].problem is None
