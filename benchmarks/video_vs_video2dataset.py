"""Clip cutting: curate's clips stage against video2dataset, same videos, same clips.

What it measures. --minutes of synthetic 720p30 H.264/AAC video (default 10, in 2-minute
files; textured frames whose colour and tone change at random times between 2 and 10 s, an
SRT per file; made once with PyAV and cached in --workdir) are cut into the same subtitle
clips (360p H.264 at CRF 23 and --preset, 16 kHz mono FLAC) by three tools, each with 2
cores, each timed as a whole process:

  video2dataset  the package, 1.3.0, in a venv of its own (--no-deps plus its light
                 dependencies; its unused torch/opencv modules' imports stubbed, two bugs
                 that fail every sample patched): ClippingSubsampler at precision "exact",
                 ResolutionSubsampler to 360p, AudioRateSubsampler to 16 kHz mono FLAC;
                 2 processes, one video per shard; ffmpeg is imageio-ffmpeg's static build
                 on PATH, ffprobe a PyAV shim (it only counts streams).
  ffmpeg-lines   the same clips by hand-written ffmpeg command lines: per video one
                 segment-muxer run (scale and encode in one pass, forced keyframes), one
                 for the audio, one per clip for its 8 JPEG frames; 2 videos at a time.
  curate         `python -m curate run` with a media: section (local paths, dedup and CLIP
                 off): one decode per video, every clip re-encoded frame-exactly, FLAC,
                 8 JPEG frames per clip, shards, ledger.

All get the clip spans curate plans from the subtitles, and the count of clip videos in
each tool's tars is checked. Printed per tool: wall, clips/s, realtime factor (source
seconds per wall second), CPU seconds and peak RSS of the process tree; then curate's speed
ratio to each. --long also cuts one 1-hour 720p video with curate's cutter alone and prints
its peak RSS (goal: under 1 GB per worker). Left out: downloads (all read local files),
copy-mode cutting, real footage (synthetic grain stands in for texture and motion).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS, SIZE, SIDE, FRAMES, CRF = 30, (1280, 720), 360, 8, 23


def ffmpeg_exe(work: Path) -> str:
    """imageio-ffmpeg's static ffmpeg, in a venv of its own (never curate's)."""
    venv = work / "ffvenv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "imageio-ffmpeg"]
        subprocess.run(pip, check=True)
    code = "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return out.stdout.strip()


V2D_STUB = '''"""Stubs for video2dataset's heavy imports that this run never calls.

video2dataset imports its captioning, optical-flow, cut-detection and dataloader modules at
start-up; they need torch 2.1.2 (a multi-GB CUDA wheel), transformers, opencv and
scenedetect. The benchmark uses its download worker with the clipping, resolution and
audio-rate subsamplers only, which call ffmpeg.
"""
import importlib.abc
import importlib.machinery
import sys
import types

HEAVY = {"torch", "transformers", "cv2", "scenedetect", "decord", "torchaudio", "torchdata"}


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Meta(name, (), {})

    def __getitem__(cls, item):
        return cls

    def __call__(cls, *args, **kwargs):
        return _Meta(cls.__name__, (), {})


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Meta(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HEAVY:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _Stub(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
'''

# video2dataset only counts a file's streams with ffprobe; imageio-ffmpeg ships no ffprobe.
FFPROBE_SHIM = """#!{python}
import json, sys
import av
with av.open(sys.argv[-1]) as c:
    print(json.dumps({{"streams": [{{"codec_type": s.type}} for s in c.streams]}}))
"""

V2D_RUN = r"""
import json, sys
from video2dataset.subsamplers import AudioRateSubsampler, ResolutionSubsampler
# 1.3.0's download worker reads .encode_formats from these two, which define only
# .encode_format: every shard fails with an AttributeError. Patched here, nothing else.
AudioRateSubsampler.encode_formats = property(lambda s: {"audio": s.encode_format})
ResolutionSubsampler.encode_formats = property(lambda s: {"video": s.encode_format})
# AudioRateSubsampler pops "audio" and puts it back while the worker iterates over the same
# dict: "dictionary keys changed during iteration" fails every sample after all the work.
# Patched to replace the value in place.
_audio_rate = AudioRateSubsampler.__call__


def _in_place(self, streams, metadata=None):
    out, meta, err = _audio_rate(self, dict(streams), metadata)
    if err is None:
        streams["audio"] = out["audio"]
    return streams, meta, err


AudioRateSubsampler.__call__ = _in_place
from video2dataset import video2dataset

if __name__ == "__main__":  # its worker processes are spawned and re-import this file
    parquet, out, side, procs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = {
        "subsampling": {
            "ClippingSubsampler": {"args": {"precision": "exact", "min_length": 0.0}},
            "ResolutionSubsampler": {"args": {"resize_mode": "scale", "height": side}},
            "AudioRateSubsampler": {
                "args": {"sample_rate": 16000, "encode_format": "flac", "n_audio_channels": 1}
            },
        },
        "reading": {"yt_args": {}, "timeout": 60, "sampler": None},
        "storage": {"number_sample_per_shard": 1, "oom_shard_count": 5,
                    "captions_are_subtitles": False},
        "distribution": {"processes_count": procs, "thread_count": 1, "subjob_size": 1000,
                         "distributor": "multiprocessing"},
    }
    video2dataset(url_list=parquet, output_folder=out, output_format="webdataset",
                  input_format="parquet", encode_formats={"video": "mp4", "audio": "flac"},
                  url_col="url", caption_col="caption", clip_col="clips", config=config,
                  tmp_dir=out + "/tmp")
"""


def v2d_env(work: Path) -> tuple[list[str], dict[str, str]]:
    """video2dataset 1.3.0 (its last release) in a venv of its own, with the light part of
    its dependencies; ffmpeg on PATH is imageio-ffmpeg's static build."""
    import os

    venv = work / "v2dvenv"
    py = venv / "bin" / "python"
    if not (venv / ".ok").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet"]
        no_deps = [*pip, "--no-deps", "video2dataset==1.3.0"]
        subprocess.run(no_deps, check=True, stderr=subprocess.DEVNULL)
        light = ["numpy<2", "pyarrow<18", "fire<0.6", "requests", "ffmpeg-python", "fsspec"]
        light += ["webdataset", "webvtt-py", "pandas", "tqdm", "omegaconf", "braceexpand"]
        light += ["pyyaml", "yt-dlp", "wandb", "timeout-decorator", "einops", "langdetect"]
        light += ["soundfile", "scipy", "imageio-ffmpeg", "av", "pillow"]
        subprocess.run([*pip, *light], check=True, stderr=subprocess.DEVNULL)
        (venv / ".ok").touch()
    stub, bin_dir = work / "v2dstub", work / "v2dbin"
    stub.mkdir(exist_ok=True)
    bin_dir.mkdir(exist_ok=True)
    (stub / "sitecustomize.py").write_text(V2D_STUB)
    code = "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"
    exe = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    link = bin_dir / "ffmpeg"
    link.unlink(missing_ok=True)
    link.symlink_to(exe.stdout.strip())
    probe = bin_dir / "ffprobe"
    probe.write_text(FFPROBE_SHIM.format(python=py))
    probe.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(stub), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env["WANDB_MODE"] = "disabled"
    return [str(py)], env


def make_inputs(work: Path, minutes: float) -> list[tuple[Path, Path]]:
    from curate.testing.media import Segment, make_video, segments_for, timed_text

    folder = work / f"src-{minutes:g}min"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pairs = []
    for k in range(max(1, round(minutes / 2))):
        video, srt = folder / f"v{k}.mp4", folder / f"v{k}.srt"
        if not video.exists():
            lengths, total = [], 0.0
            while total < 120 - 10:
                lengths.append(round(rng.uniform(2, 10), 2))
                total += lengths[-1]
            lengths.append(round(120 - total, 2))
            segs: list[Segment] = segments_for(lengths, offset=k)
            srt.write_bytes(timed_text(segs, "srt"))
            tmp = video.with_suffix(".tmp.mp4")
            make_video(tmp, segs, SIZE, FPS, texture=True, preset="ultrafast", threads=2)
            tmp.rename(video)
        pairs.append((video, srt))
    return pairs


def spans(srt: Path, duration: float) -> list[tuple[float, float]]:
    from curate.media.clips import plan_clips
    from curate.media.timedtext import parse_subtitles

    plans, _ = plan_clips(parse_subtitles(srt.read_bytes(), "srt"), duration, 2.0, 20.0)
    return [(p.start, p.end) for p in plans]


def collate(clip_spans: list[tuple[float, float]]) -> tuple[str, list[int]]:
    """video2dataset's segment times: a clip starting where the last ended adds only its end;
    otherwise its start and end, and the segment between is skipped (its index too)."""
    times: list[float] = []
    idxs: list[int] = []
    prev, n = 0.0, 0
    for s, e in clip_spans:
        if s == prev:
            times.append(e)
            idxs.append(n)
            n += 1
        else:
            times += [s, e]
            idxs.append(n + 1)
            n += 2
        prev = e
    return ",".join(str(t) for t in times), idxs


def measure(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall, CPU and peak RSS of a process tree (RSS summed over it, sampled every 0.1 s)."""
    import psutil

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, t0 = 0, time.perf_counter()
    with log.open("w") as fh:
        proc = psutil.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while proc.poll() is None:
            rss = 0
            with contextlib.suppress(psutil.Error):
                for p in [proc, *proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
            peak = max(peak, rss)
            time.sleep(0.1)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return {
        "wall": time.perf_counter() - t0,
        "cpu": cpu,
        "rss": peak / 2**20,
        "rc": proc.returncode,
    }


def curate_cmd(
    pairs: list[tuple[Path, Path]], out: Path, preset: str, cut: str = "reencode"
) -> list[str]:
    """`curate run` over the source folder: videos paired with their same-stem .srt."""
    import yaml

    cfg = {
        "name": "bench-video",
        "sources": [{"kind": "folder", "path": str(pairs[0][0].parent), "files": "videos"}],
        "ingest": {"samples_per_partition": 1},
        "media": {
            "kind": "video",
            "side": SIDE,
            "crf": CRF,
            "preset": preset,
            "cut": cut,
            "frames": FRAMES,
            "min_clip_s": 2.0,
            "max_clip_s": 20.0,
        },
        "image": {"size": 224, "resize_mode": "keep_ratio", "encode_quality": 90},
        "dedup": {"enabled": False},
        "shards": {"samples_per_shard": 200},
        "engine": {"n_workers": 2, "threads_per_worker": 1},
    }
    (out / "p.yaml").write_text(yaml.safe_dump(cfg))
    run = out / "run"
    return [sys.executable, "-m", "curate", "run", str(out / "p.yaml"), "-o", str(run), "-q"]


ANCHOR = r"""
import json, subprocess, sys, tarfile, tempfile, io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
ff, jobs, out = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
SIDE, CRF, FRAMES, PRESET = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
q = ["-hide_banner", "-loglevel", "error", "-y"]

def one(job):
    video, spans, k, times, idxs = job["video"], job["spans"], job["k"], job["times"], job["idxs"]
    with tempfile.TemporaryDirectory() as tmp:
        seg = ["-f", "segment", "-segment_times", times, "-reset_timestamps", "1"]
        subprocess.run([ff, *q, "-i", video, "-map", "0:v:0", "-vf", f"scale=-2:{SIDE}",
                        "-c:v", "libx264", "-crf", str(CRF), "-preset", PRESET,
                        "-force_key_frames", times, *seg, f"{tmp}/v_%d.mp4"], check=True)
        subprocess.run([ff, *q, "-i", video, "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                        "-c:a", "flac", *seg, f"{tmp}/a_%d.flac"], check=True)
        with tarfile.open(out / f"{k:05d}.tar", "w") as tar:
            for i, (s, e) in enumerate(spans):
                idx = idxs[i]
                vid = f"{tmp}/v_{idx}.mp4"
                subprocess.run([ff, *q, "-i", vid, "-vf",
                                f"fps={FRAMES}/{e - s},scale=-2:224", "-frames:v", str(FRAMES),
                                "-q:v", "3", f"{tmp}/f{i}_%02d.jpg"], check=True)
                frames = [f"{tmp}/f{i}_{j:02d}.jpg" for j in range(1, FRAMES + 1)]
                names = [vid, f"{tmp}/a_{idx}.flac", *frames]
                for n, name in enumerate(names):
                    if Path(name).exists():
                        tar.add(name, arcname=f"{k}_{i}.{n}{Path(name).suffix}")
    return len(spans)

with ThreadPoolExecutor(2) as pool:  # two ffmpeg pipelines at a time: the 2 cores
    print(sum(pool.map(one, jobs)))
"""


def write_v2d_input(path: Path, jobs: list[dict[str, Any]]) -> None:
    """video2dataset's input: one row per video with its clip spans (curate's plan)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {
        "url": [j["video"] for j in jobs],
        "caption": [Path(j["video"]).stem for j in jobs],
        "clips": [[list(span) for span in j["spans"]] for j in jobs],
    }
    pq.write_table(pa.table(rows), path)


def count_clips(out: Path) -> int:
    """Clip videos written, counted in the output tars (every tool writes .mp4 members)."""
    import tarfile

    n = 0
    final = out / "run" / "shards"  # curate's; its raw/ tars hold the same clips
    for tar in (final if final.exists() else out).rglob("*.tar"):
        with tarfile.open(tar) as t:
            n += sum(1 for m in t.getmembers() if m.name.endswith(".mp4"))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench" / "video"
    )
    ap.add_argument("--long", action="store_true", help="also the 1-hour streaming memory check")
    ap.add_argument(
        "--preset",
        default="medium",
        help="x264 preset of the 360p clips, for curate and the ffmpeg lines; medium is "
        "x264's default, which video2dataset's resolution pass uses",
    )
    ap.add_argument("--tools", default="video2dataset,ffmpeg-lines,curate")
    ap.add_argument(
        "--cut",
        default="reencode",
        choices=["reencode", "copy"],
        help="curate's media.cut; copy writes the source's packets (720p, no encode), so it "
        "is not the same output as the others",
    )
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    import av

    ff = ffmpeg_exe(work)
    t0 = time.perf_counter()
    pairs = make_inputs(work, args.minutes)
    seconds = 0.0
    jobs = []
    for k, (video, srt) in enumerate(pairs):
        with av.open(str(video)) as c:
            duration = c.duration / 1e6
        seconds += duration
        clip_spans = spans(srt, duration)
        times, idxs = collate(clip_spans)
        jobs.append(
            {"video": str(video), "spans": clip_spans, "k": k, "times": times, "idxs": idxs}
        )
    n_clips = sum(len(j["spans"]) for j in jobs)
    print(
        f"inputs: {len(pairs)} videos, {seconds / 60:.1f} min of {SIZE[0]}x{SIZE[1]}@{FPS}, "
        f"{n_clips} clips (made or checked in {time.perf_counter() - t0:.0f} s); ffmpeg {ff}"
    )
    runs = work / "runs"
    results: dict[str, dict[str, Any]] = {}
    for tool in args.tools.split(","):
        out = runs / tool
        subprocess.run(["rm", "-rf", str(out)], check=True)
        out.mkdir(parents=True)
        env = None
        if tool == "curate":
            cmd = curate_cmd(pairs, out, args.preset, args.cut)
        elif tool == "video2dataset":
            cmd, env = v2d_env(work)
            write_v2d_input(out / "input.parquet", jobs)
            (out / "run.py").write_text(V2D_RUN)
            cmd += [str(out / "run.py"), str(out / "input.parquet"), str(out / "ds"), str(SIDE)]
            cmd += ["2"]
            (out / "ds" / "tmp").mkdir(parents=True)
        else:  # ffmpeg-lines
            (out / "jobs.json").write_text(json.dumps(jobs))
            (out / "anchor.py").write_text(ANCHOR)
            cmd = [sys.executable, str(out / "anchor.py"), ff, str(out / "jobs.json"), str(out)]
            cmd += [str(SIDE), str(CRF), str(FRAMES), args.preset]
        results[tool] = r = measure(cmd, out / "log.txt", env)
        written = count_clips(out)
        ok = r["rc"] == 0 and written == n_clips
        print(
            f"  {tool:<13} wall {r['wall']:7.1f} s  clips/s {n_clips / r['wall']:6.2f}  "
            f"realtime x{seconds / r['wall']:5.1f}  cpu {r['cpu']:7.1f} s  "
            f"peak {r['rss']:7.0f} MiB  clips {written}  "
            f"{'ok' if ok else 'FAILED: see ' + str(out / 'log.txt')}"
        )
    if "curate" in results:
        c = results["curate"]["wall"]
        for tool, r in results.items():
            if tool != "curate":
                ratio = r["wall"] / c
                met = "met" if ratio >= 1.5 else "NOT MET"
                goal = f" (goal >= 1.5: {met})" if tool == "video2dataset" else ""
                print(f"curate / {tool} speed: {ratio:.2f}x{goal}")
    if args.long:
        long_check(work)


LONG = """
import resource, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from curate.config import ImageConfig
from curate.media.clips import plan_clips
from curate.media.cut import CutSettings, iter_clips
from curate.media.timedtext import parse_subtitles
plans, _ = plan_clips(parse_subtitles(Path(sys.argv[2]).read_bytes(), "srt"), 3600, 2, 20)
t = time.perf_counter()
image = ImageConfig(size=224, resize_mode="keep_ratio")
n = 0
for clip in iter_clips(Path(sys.argv[3]), plans, CutSettings(side=360, frames=8), image):
    n += 1  # written and dropped, as the clips stage does

print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def long_check(work: Path) -> None:
    """curate's cutter alone on one 1-hour 720p video: peak RSS of the process."""
    from curate.testing.media import make_video, segments_for, timed_text

    video, srt = work / "long-60min.mp4", work / "long-60min.srt"
    if not video.exists():
        segs = segments_for([10.0] * 360)
        srt.write_bytes(timed_text(segs, "srt"))
        make_video(
            video.with_suffix(".tmp.mp4"),
            segs,
            SIZE,
            FPS,
            texture=True,
            preset="ultrafast",
            threads=2,
        )
        video.with_suffix(".tmp.mp4").rename(video)
    out = subprocess.run(
        [sys.executable, "-c", LONG, str(ROOT), str(srt), str(video)],
        capture_output=True,
        text=True,
        check=True,
    )
    n, wall, rss_kb = out.stdout.split()
    print(
        f"1-hour 720p video: {n} clips in {float(wall):.0f} s, peak RSS "
        f"{int(rss_kb) / 1024:.0f} MiB (goal < 1024 MiB per worker)"
    )


if __name__ == "__main__":
    main()
