"""A deterministic synthetic image–text web with planted duplicates, mismatches and faults.

Tests of the download pipeline need ground truth for every URL: what the image is, what a
caption should say, which items copy which, and which fetches must fail and why. The
whole web is rebuilt from a seed in seconds, byte for byte, and needs no network.
"""

from __future__ import annotations

import gzip
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageEnhance

from curate.testing._photos import crop_window, load_photo
from curate.testing._plan import FAULTS, Entry, plan_web
from curate.testing._scenes import draw_scene

__all__ = ["TRUTH_SCHEMA", "SyntheticWeb", "build_web"]

TRUTH_SCHEMA: dict[str, type[pl.DataType]] = {
    "item_id": pl.String,
    "route": pl.String,
    "caption": pl.String,
    "true_caption": pl.String,
    "kind": pl.String,
    "group": pl.String,
    "source": pl.String,
    "role": pl.String,
    "dup_of": pl.String,
    "transform": pl.String,
    "fault": pl.String,
    "expected_status": pl.String,
    "expected_reason": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
}
_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}


@dataclass(frozen=True, eq=False)
class SyntheticWeb:
    """A built web: image files under `root/files` and one truth row per URL-list entry."""

    root: Path
    truth: pl.DataFrame

    @property
    def files_dir(self) -> Path:
        """Folder the server serves."""
        return self.root / "files"

    @classmethod
    def load(cls, root: Path) -> SyntheticWeb:
        """Reopen a web that `build_web` wrote earlier, without regenerating images."""
        return cls(Path(root), pl.read_parquet(Path(root) / "truth.parquet"))

    def url_list(self, base_url: str) -> pl.DataFrame:
        """The URL list a user would feed the pipeline, in truth's row order. `origin` names
        the photo a picture was cropped from (null for a drawn scene), as a LAION-style list
        carries a page or collection id: the reference trainer holds out whole origins."""
        base = base_url.rstrip("/")
        origin = pl.when(pl.col("kind") == "photo").then(pl.col("source"))
        return self.truth.select(
            (pl.lit(base) + pl.col("route")).alias("url"),
            "caption",
            "item_id",
            origin.otherwise(None).alias("origin"),
        )

    def write_url_list(self, path: Path, base_url: str) -> Path:
        """Write the URL list as csv/tsv/parquet/jsonl, by suffix; `.gz` after csv/tsv/jsonl."""
        path = Path(path)
        gz = path.suffix == ".gz"
        suffix = Path(path.stem).suffix if gz else path.suffix
        fmt = _SUFFIX_FORMATS.get(suffix)
        if fmt is None or (gz and fmt == "parquet"):
            raise ValueError(f"unsupported URL-list suffix: {path.name}")
        df = self.url_list(base_url)
        buf = io.BytesIO()
        if fmt == "csv":
            df.write_csv(buf)
        elif fmt == "tsv":
            df.write_csv(buf, separator="\t")
        elif fmt == "jsonl":
            df.write_ndjson(buf)
        else:
            df.write_parquet(buf)
        data = buf.getvalue()
        if gz:  # mtime=0 keeps the bytes reproducible
            data = gzip.compress(data, compresslevel=6, mtime=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


def _encode(img: Image.Image, ext: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if ext == "jpg":
        img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    elif ext == "png":
        img.save(buf, "PNG", compress_level=3)
    else:
        img.save(buf, "WEBP", quality=quality, method=4)
    return buf.getvalue()


def _render_base(e: Entry) -> Image.Image:
    if e.scene is not None:
        return draw_scene(e.scene)
    assert e.window is not None
    return crop_window(load_photo(e.source), e.window, e.longest)


def _sin_cos(degrees: float) -> tuple[float, float]:
    """sin and cos of a small angle (|x| ≤ 5°) by Taylor series, in plain IEEE arithmetic.

    libm's sin/cos have per-CPU variants that may round the last bit apart; this does not.
    Truncation error at 5° is below 1e-13, far under a pixel.
    """
    x = degrees * 3.141592653589793 / 180.0
    x2 = x * x
    sin = x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0)))
    cos = 1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0)))
    return sin, cos


def _rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate about the centre (bicubic), then crop to the largest centred box of the same
    aspect that holds no empty corner: scale min / (min·cos + max·|sin|) per side."""
    w, h = img.size
    sin, cos = _sin_cos(degrees)
    cx, cy = w / 2.0, h / 2.0
    # inverse map, output (x, y) -> input: rotation by the angle about the centre
    matrix = (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    turned = img.transform((w, h), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC)
    keep = min(w, h) / (min(w, h) * cos + max(w, h) * abs(sin))
    kw, kh = max(1, int(w * keep) - 2), max(1, int(h * keep) - 2)
    left, top = (w - kw) // 2, (h - kh) // 2
    return turned.crop((left, top, left + kw, top + kh))


def _near(base: Image.Image, e: Entry) -> tuple[Image.Image, int]:
    """Apply a near-duplicate transform; returns the image and the JPEG quality to use."""
    w, h = base.size
    if e.transform == "resize":
        size = (max(1, round(w * e.param)), max(1, round(h * e.param)))
        return base.resize(size, Image.Resampling.BICUBIC), e.quality
    if e.transform == "recompress":
        return base, int(e.param)
    if e.transform == "rotate":
        return _rotate(base, e.param), e.quality
    if e.transform in ("crop", "wide_crop"):
        assert e.crop is not None
        box = (
            round(e.crop[0] * w),
            round(e.crop[1] * h),
            round(e.crop[2] * w),
            round(e.crop[3] * h),
        )
        return base.crop(box), e.quality
    return ImageEnhance.Brightness(base).enhance(e.param), e.quality


def _render(entries: list[Entry]) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Encoded bytes and served size per entry; bases first so copies can derive from them."""
    data: list[bytes] = [b""] * len(entries)
    sizes: list[tuple[int, int]] = [(0, 0)] * len(entries)
    for i, e in enumerate(entries):
        if e.role in ("exact_duplicate", "near_duplicate"):
            continue
        img = _render_base(e)
        data[i], sizes[i] = _encode(img, e.ext, e.quality), img.size
    for i, e in enumerate(entries):
        if e.ref is None or e.role == "hard_negative":
            continue
        if e.role == "exact_duplicate":
            e.ext = entries[e.ref].ext
            data[i], sizes[i] = data[e.ref], sizes[e.ref]
            continue
        base = Image.open(io.BytesIO(data[e.ref])).convert("RGB")
        img, quality = _near(base, e)
        data[i], sizes[i] = _encode(img, "jpg", quality), img.size
    for i, e in enumerate(entries):
        if e.fault == "cut_jpeg":
            data[i] = data[i][: len(data[i]) // 2]
    return data, sizes


def _truth_rows(entries: list[Entry], sizes: list[tuple[int, int]]) -> dict[str, list[object]]:
    ids = [f"{i:06d}" for i in range(len(entries))]
    cols: dict[str, list[object]] = {k: [] for k in TRUTH_SCHEMA}
    for i, e in enumerate(entries):
        name = f"{ids[i]}.{e.ext}"
        template, reason, complete = FAULTS[e.fault] if e.fault else ("/img/{name}", None, True)
        linked = e.role in ("exact_duplicate", "near_duplicate", "hard_negative")
        row: dict[str, object] = {
            "item_id": ids[i],
            "route": template.format(name=name),
            "caption": e.caption,
            "true_caption": e.true_caption,
            "kind": e.kind,
            "group": ids[e.ref] if linked and e.ref is not None else ids[i],
            "source": e.source,
            "role": e.role,
            "dup_of": ids[e.ref] if e.ref is not None and e.role != "hard_negative" else None,
            "transform": e.transform,
            "fault": e.fault,
            "expected_status": "failed" if reason else "ok",
            "expected_reason": reason,
            "width": sizes[i][0] if complete else None,
            "height": sizes[i][1] if complete else None,
        }
        for k, v in row.items():
            cols[k].append(v)
    return cols


def build_web(out_dir: Path, n_items: int = 300, seed: int = 0) -> SyntheticWeb:
    """Write `out_dir/files/*` and `out_dir/truth.parquet`; same arguments, same bytes."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    rng = np.random.default_rng(seed)
    planned = plan_web(n_items, rng)
    order = rng.permutation(n_items)
    position = {int(old): new for new, old in enumerate(order)}
    entries = [planned[int(old)] for old in order]
    for e in entries:
        e.ref = position[e.ref] if e.ref is not None else None
    data, sizes = _render(entries)

    root = Path(out_dir)
    files = root / "files"
    if files.exists():  # stale files from an earlier, larger build would be served too
        shutil.rmtree(files)
    files.mkdir(parents=True)
    for i, e in enumerate(entries):
        (files / f"{i:06d}.{e.ext}").write_bytes(data[i])
    truth = pl.DataFrame(_truth_rows(entries, sizes), schema=TRUTH_SCHEMA)
    truth.write_parquet(root / "truth.parquet")
    return SyntheticWeb(root, truth)
