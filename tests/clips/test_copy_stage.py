"""`media.cut: copy` through the pipeline: the clip json records the true bounds and the
planned ones, and passes the clip schema."""

from __future__ import annotations

import json
from pathlib import Path

import curate
from curate.rundir import RunDir
from curate.shards.tar import iter_tar_samples
from curate.tables import ClipMeta
from curate.testing.media import make_video, segments_for, timed_text


def test_copied_clips_record_true_and_planned_bounds(tmp_path: Path) -> None:
    segs = segments_for([1.5, 1.5, 1.5])
    files = tmp_path / "files"
    make_video(files / "v.mp4", segs, size=(160, 120), fps=12, gop=8)
    (files / "v.srt").write_bytes(timed_text(segs, "srt"))
    cfg = {
        "sources": [{"kind": "folder", "path": str(files), "files": "videos"}],
        "media": {"cut": "copy", "min_clip_s": 1.0, "max_clip_s": 2.0, "frames": 2},
        "image": {"size": 48},
        "dedup": {"enabled": False},
        "engine": {"n_workers": 1},
    }
    res = curate.run(cfg, tmp_path / "out", progress=False)
    assert res.funnel["written"] == 3, res.funnel
    metas = []
    for shard in RunDir(res.output).shard_files():
        for _, members in iter_tar_samples(shard):
            meta = ClipMeta.model_validate(json.loads(members["json"]))
            metas.append(meta)
            assert len(members["mp4"]) > 0 and len(members["flac"]) > 0
    assert len(metas) == 3
    for meta in metas:
        assert meta.planned is not None
        assert meta.start <= meta.planned[0] < meta.planned[1] <= meta.end + 1e-6
        assert all(meta.checks.values())
    assert any(m.start < m.planned[0] - 1e-6 for m in metas if m.planned), "all on keyframes"
