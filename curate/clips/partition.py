"""The clips stage over one partition: input videos in, clip samples in the raw tar out.

Per input row: the video is streamed to a file under the run directory (the same guarded,
polite fetcher as images, with its own byte cap), passed through the probe gate, its timed
text fetched and parsed (or its caption used for the whole video), clips planned and cut in
one pass, each clip checked. Every clip that passes is a sample with a derived uid
(`<input uid>_<kkkkk>`); a clip that fails a check is a `misaligned` row; an input that fails
earlier is one row with its reason. The media file is removed once its clips are written.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import MediaConfig, PipelineConfig
from curate.engine.threads import bounded_map
from curate.errors import SampleFailure
from curate.features.rows import feature_row, features_inputs, write_features
from curate.fetch import platform
from curate.fetch.http import Fetcher, get_fetcher
from curate.fetch.partition import row_budget
from curate.fetch.platform import is_platform_url
from curate.io.store import read_parquet
from curate.media.clips import plan_clips
from curate.media.copy import iter_copied_clips
from curate.media.cut import CutClip, CutSettings, checks, iter_clips
from curate.media.probe import MediaInfo, ProbeLimits, probe
from curate.media.timedtext import TimedText, parse_json_transcript, parse_subtitles, whole
from curate.rundir import RunDir, RunRoot
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.tables import RAW_SCHEMA, derived_uid, sample_json, write_table

__all__ = ["clip_members", "clips_partition"]

# A clip's raw record, whether its members were written, and its features row (None for a
# failed clip or an audio segment, which has no picture).
Sample = tuple[dict[str, Any], bool, dict[str, Any] | None]


def clip_members(cfg: MediaConfig) -> tuple[str, ...]:
    """Every clip's tar members: video, audio, text, json and the sampled frames; an audio
    segment's: audio, text and json."""
    if cfg.kind == "audio":
        return ("flac", "txt", "json")
    return ("mp4", "flac", "txt", "json", *(f"f{k:02d}.jpg" for k in range(cfg.frames)))


def _record(row: dict[str, Any]) -> dict[str, Any]:
    record = {k: row[k] for k in ("uid", "source", "url", "path", "caption")}
    record.update(status="ok", reason=None, detail=None, stage="clips")
    return {**dict.fromkeys(RAW_SCHEMA), **record}


def _media(row: dict[str, Any], dest: Path, v: MediaConfig, fetcher: Fetcher) -> Path:
    """The input's video as a local file: streamed from its URL, or its own path."""
    if row["path"] is not None:
        path = Path(row["path"])
        size = path.stat().st_size if path.is_file() else -1
        if size < 0:
            raise SampleFailure("read_error", f"{path}: no such file")
        if size > v.max_bytes:
            raise SampleFailure("too_large", f"{size} bytes > video.max_bytes={v.max_bytes}")
        return path
    if row["image"] is not None:  # in-source bytes
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(bytes(row["image"]))
        return dest
    url = (row["url"] or "").strip()
    if not url:
        raise SampleFailure("bad_url", "no URL")
    if is_platform_url(url, v.platform_hosts):
        if v.platform_fetcher != "yt-dlp":
            raise SampleFailure("platform_url", f"{url}: set media.platform_fetcher: yt-dlp")
        fetcher.check_url(url)
        timeout = fetcher.cfg.total_timeout_s
        return platform.download(url, dest, v.max_bytes, v.platform_max_height, timeout)
    fetcher.fetch_to(url, dest, v.max_bytes)
    return dest


def _timed_text(
    row: dict[str, Any], info: MediaInfo, v: MediaConfig, fetcher: Fetcher
) -> TimedText:
    """The row's cues from its text column's file, else its caption over the whole video."""
    extra = json.loads(row["extra"] or "{}")
    locator = extra.get(v.text_column) if v.text_column else None
    if not locator:
        return whole(row["caption"], info.duration)
    locator = str(locator).strip()
    if locator.startswith(("http://", "https://")):
        data = fetcher.fetch(locator, v.max_text_bytes)  # the cap stops the download
    else:
        p = Path(locator)
        if not p.is_file():
            raise SampleFailure("subtitles_missing", f"{locator}: no such file")
        data = p.read_bytes()
    if len(data) > v.max_text_bytes:
        raise SampleFailure("too_large", f"timed text of {len(data)} bytes")
    suffix = locator.lower().rsplit(".", 1)[-1].split("?")[0]
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:6]
    if suffix == "json" or head.startswith(b"["):
        return parse_json_transcript(data)
    return parse_subtitles(data, "vtt" if suffix == "vtt" or head == b"WEBVTT" else "srt")


def _clip_json(
    row: dict[str, Any], rec: dict[str, Any], clip: CutClip, ok: dict[str, bool]
) -> bytes:
    """The clip's json member: SampleMeta's fields, then where it came from and its checks."""
    p = clip.plan
    extra = {
        **json.loads(row["extra"] or "{}"),
        "parent": row["uid"],
        "clip": p.index,
        "start": round(p.start, 6),
        "end": round(p.end, 6),
        "cues": [{"start": c.start, "end": c.end, "text": c.text} for c in p.cues],
        "frame_times": [round(t, 6) for t, _ in clip.frames],
        "checks": ok,
    }
    if clip.planned is not None:  # copied: start/end are the true bounds, these were asked
        extra["planned"] = [round(clip.planned[0], 6), round(clip.planned[1], 6)]
    return sample_json({"extra": json.dumps(extra)}, rec)


def _live(closed: threading.Event) -> None:
    """Stop a thread the partition abandoned before it writes into a finished partition
    (checked before each write: a thread past the check still finishes that one clip)."""
    if closed.is_set():
        raise SampleFailure("timeout", "abandoned: the partition finished without this row")


@dataclass(frozen=True)
class _Task:
    """What every row of one partition's task shares."""

    cfg: PipelineConfig
    v: MediaConfig
    run: RunDir
    part: str
    fetcher: Fetcher
    closed: threading.Event  # set when the task is done with its rows


def _clips(row: dict[str, Any], task: _Task) -> list[Sample]:
    """One input row to its clips, written one by one into the row's own tar as the decode
    passes each (or raise SampleFailure for the whole input)."""
    v, run, part, f, closed = task.v, task.run, task.part, task.fetcher, task.closed
    dest = Path(str(run.media(part, row["uid"])))  # media pipelines run on a local disk
    samples: list[Sample] = []
    try:
        _live(closed)
        path = _media(row, dest, v, f)
        limits = ProbeLimits(max_duration_s=v.max_duration_s, timeout_s=v.probe_timeout_s)
        video = v.kind == "video"
        info = probe(path, need_video=video, need_audio=True, limits=limits)
        tt = _timed_text(row, info, v, f)
        plans, notes = plan_clips(tt, info.duration, v.min_clip_s, v.max_clip_s)
        if not plans:
            raise SampleFailure("no_clips", "; ".join(notes) or "no timed text inside the video")
        settings = CutSettings(
            side=v.side,
            fps=v.fps,
            crf=v.crf,
            preset=v.preset,
            frames=v.frames if video else 0,
            frame_rate=v.frame_rate,
            sample_rate=v.sample_rate,
            video=video,
        )
        _live(closed)
        with TarShardWriter(_row_tar(run, part, row["uid"])) as tar:
            cut = iter_copied_clips if video and v.cut == "copy" else iter_clips
            for clip in cut(path, plans, settings, task.cfg.image):
                _live(closed)
                samples.append(_sample(row, clip, info, video, tar))
    finally:
        dest.unlink(missing_ok=True)
    return samples


def _row_tar(run: RunDir, part: str, uid: str) -> Path:
    return Path(str(run.media_dir(part) / f"{uid}.tar"))


def _sample(
    row: dict[str, Any], clip: CutClip, info: MediaInfo, video: bool, tar: TarShardWriter
) -> Sample:
    """The clip's record; when it passes its checks, its members go into `tar` now."""
    rec = _record(row)
    rec.update(uid=derived_uid(row["uid"], clip.plan.index), caption=clip.plan.text)
    ok = checks(clip)
    if not all(ok.values()) or (video and clip.video is None) or clip.audio is None:
        failed = sorted(k for k, good in ok.items() if not good)
        failed = failed or [clip.problem or "no video or audio"]
        rec.update(status="failed", reason="misaligned", detail=", ".join(failed))
        return rec, False, None
    source = info.video
    rec.update(  # an audio segment has no picture: its sizes are 0
        width=clip.width,
        height=clip.height,
        original_width=source.width if source else 0,
        original_height=source.height if source else 0,
        bytes=len(clip.video or clip.audio),
    )
    members = {"flac": clip.audio, "txt": clip.plan.text.encode()}
    if clip.video is not None:
        members["mp4"] = clip.video
    members["json"] = _clip_json(row, rec, clip, ok)
    members.update({f"f{k:02d}.jpg": jpg for k, (_, jpg) in enumerate(clip.frames)})
    tar.write(rec["uid"], members)
    return rec, True, feature_row(rec, members)


def _stuck(row: dict[str, Any], budget: float) -> Sample:
    rec = _record(row)
    detail = f"no result within {budget:g}s; the stuck download/probe/cut thread was abandoned"
    rec.update(status="failed", reason="timeout", detail=detail)
    return rec, False, None


def _row(row: dict[str, Any], task: _Task) -> list[Sample]:
    """The row's clips, or one failed row; a failure discards the clips already written."""
    failure: SampleFailure
    try:
        return _clips(row, task)
    except SampleFailure as err:
        failure = err
    except Exception as err:  # a decoder bug must not fail the partition
        failure = SampleFailure("decode_error", repr(err))
    _row_tar(task.run, task.part, row["uid"]).unlink(missing_ok=True)
    rec = _record(row)
    rec.update(status="failed", reason=failure.reason, detail=failure.detail[:500])
    return [(rec, False, None)]


def clips_partition(
    cfg: PipelineConfig, run_dir: RunRoot, part: str, share: float = 1.0
) -> dict[str, Any]:
    """The clips stage's task: raw/NNNNN.{tar,parquet} of clip samples and failed inputs,
    plus the partition's features (its frames' pHashes, thumbnail of the middle one)."""
    v = cfg.media
    assert v is not None, "the clips stage runs for video pipelines only"
    run = RunDir(run_dir)
    rows = read_parquet(run.ingest(part)).to_dicts()
    fetcher = get_fetcher(cfg.fetch, share)
    # Generous on purpose: a download at its deadlines, the probe, then cutting at no less
    # than half real time. It catches wedged threads, not slow videos.
    budget = row_budget(cfg, share) + v.probe_timeout_s + 2 * v.max_duration_s
    threads = max(1, min(cfg.fetch.threads, 4))
    closed = threading.Event()
    task = _Task(cfg, v, run, part, fetcher, closed)
    work = bounded_map(lambda r: _row(r, task), rows, threads, budget)
    records, features = [], []
    try:
        # Rows finish in any order but are copied in input order, each from its own tar, so the
        # partition never holds more than one clip's bytes.
        with TarShardWriter(run.raw_tar(part)) as tar:
            for row, samples in zip(rows, work, strict=True):
                row_tar = _row_tar(run, part, row["uid"])
                if samples is None:  # the thread was abandoned: its tar, if any, is not trusted
                    samples = [_stuck(row, budget)]
                elif any(written for _, written, _ in samples):
                    for key, members in iter_tar_samples(row_tar):
                        tar.write(key, members)
                row_tar.unlink(missing_ok=True)
                for rec, _, feats in samples:
                    records.append(rec)
                    if feats is not None:
                        features.append(feats)
    finally:  # threads still running (abandoned rows) must not write into the next attempt
        closed.set()
    shutil.rmtree(str(run.media_dir(part)), ignore_errors=True)
    table = pl.DataFrame(records, schema=RAW_SCHEMA)
    raw_sha256 = write_table(run.raw_table(part), table)
    feats = write_features(run, part, features)
    counts = table.group_by("reason").len().sort("reason", nulls_last=True)
    return {
        "partition": part,
        "inputs": len(rows),
        "ok": int((table["status"] == "ok").sum()),
        "failed": {r: int(n) for r, n in counts.iter_rows() if r is not None},
        "raw_sha256": raw_sha256,
        "completes": {"features": {"inputs": features_inputs(raw_sha256), "summary": feats}},
    }
