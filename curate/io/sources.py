"""Source readers: URL lists (via polars), image folders, saved Hugging Face datasets.

Every reader returns the same ingest table, so later stages never care where a row came from.
Each row gets a uid derived only from the source name, the row's position and its content, so
the same input gives the same uid on any machine.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from curate.config import FolderSource, HFSource, TableSource
from curate.errors import IngestError
from curate.io.store import StorageOptions, is_url, location
from curate.tables import INGEST_SCHEMA

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "ingest",
    "iter_source",
    "make_uid",
    "read_source",
    "source_name",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".m4v", ".avi")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
TIMED_TEXT_SUFFIXES = (".srt", ".vtt", ".json")
_FOLDER_SUFFIXES = {"images": IMAGE_SUFFIXES, "videos": VIDEO_SUFFIXES, "audio": AUDIO_SUFFIXES}


def make_uid(source: str, index: int, locator: str, caption: str | None) -> str:
    """20 hex chars of sha256: no dots or slashes, so it doubles as a WebDataset key."""
    h = hashlib.sha256(f"{source}\x1f{index}\x1f{locator}\x1f{caption or ''}".encode())
    return h.hexdigest()[:20]


def _finish(df: pl.DataFrame, source: str, locator_col: str, start: int = 0) -> pl.DataFrame:
    """Add source and uid columns and order columns as INGEST_SCHEMA; `start` is the row
    number of the frame's first row within its source (uids count rows across files)."""
    locators = df[locator_col].to_list() if locator_col in df.columns else [""] * df.height
    captions = df["caption"].to_list()
    uids = [
        make_uid(source, i, loc or "", cap)
        for i, (loc, cap) in enumerate(zip(locators, captions, strict=True), start)
    ]
    df = df.with_columns(pl.Series("uid", uids, pl.String()), pl.lit(source).alias("source"))
    for name, dtype in INGEST_SCHEMA.items():
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype).alias(name))
    return df.select([pl.col(n).cast(t) for n, t in INGEST_SCHEMA.items()])


def _extra_json(df: pl.DataFrame, columns: list[str]) -> pl.Expr:
    if not columns:
        return pl.lit("{}").alias("extra")
    return pl.struct([pl.col(c) for c in columns]).struct.json_encode().alias("extra")


def _table_format(path: str, declared: str) -> tuple[str, bool]:
    gz = path.endswith(".gz")
    if declared != "auto":
        return declared, gz
    stem = path[:-3] if gz else path
    for fmt, suffixes in {
        "csv": (".csv",),
        "tsv": (".tsv", ".tab"),
        "parquet": (".parquet", ".pq"),
        "jsonl": (".jsonl", ".ndjson", ".json"),
    }.items():
        if stem.endswith(suffixes):
            return fmt, gz
    raise IngestError(f"{path}: cannot tell the format from the suffix; set `format`")


def _read_one_table(
    path: str, fmt: str, gz: bool, options: StorageOptions | None = None
) -> pl.DataFrame:
    raw: bytes | str = path
    if is_url(path):  # a store object: read its bytes once through fsspec
        raw = location(path, options).read_bytes()
        if gz:
            raw = gzip.decompress(raw)
    elif gz:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    src = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        return pl.read_csv(src, separator=sep, infer_schema=False, quote_char='"')
    if fmt == "parquet":
        return pl.read_parquet(src)
    return pl.read_ndjson(src)


def _expand(path: str, options: StorageOptions | None = None) -> list[str]:
    if is_url(path) and glob.has_magic(path):
        where = location(path, options)
        protocol = path.split("://", 1)[0]
        paths = sorted(f"{protocol}://{p}" for p in where.fs.glob(where.path))
    else:
        paths = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not paths:
        raise IngestError(f"{path}: no file matches this pattern")
    return paths


def _select_columns(
    df: pl.DataFrame,
    origin: str,
    required: list[str],
    extra: list[str] | None,
) -> list[str]:
    """Check required columns exist; return the extra columns to carry."""
    missing = [c for c in required + (extra or []) if c not in df.columns]
    if missing:
        raise IngestError(
            f"{origin}: column {missing[0]!r} not found; available columns: "
            + ", ".join(df.columns)
        )
    if extra is not None:
        return extra
    return [c for c in df.columns if c not in required]


def _read_file(path: str, src: TableSource, options: StorageOptions | None) -> pl.DataFrame:
    fmt, gz = _table_format(path, src.format)
    try:
        return _read_one_table(path, fmt, gz, options)
    except (OSError, pl.exceptions.PolarsError, EOFError) as err:
        raise IngestError(f"{path}: cannot read as {fmt}{' (gzip)' if gz else ''}: {err}") from None


def _schema_of(path: str, src: TableSource, options: StorageOptions | None) -> pl.DataFrame:
    """An empty frame with the file's columns: from the footer for a local parquet file,
    else by reading it (csv columns are all strings; json types come from the data)."""
    fmt, gz = _table_format(path, src.format)
    if fmt == "parquet" and not gz and not is_url(path):
        try:
            return pl.DataFrame(schema=pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError):
            pass  # let _read_file name the problem
    return _read_file(path, src, options).clear()


def _ingest_rows(df: pl.DataFrame, src: TableSource, start: int) -> pl.DataFrame:
    required = [src.url_column] + ([src.caption_column] if src.caption_column else [])
    extra = _select_columns(df, src.path, required, src.extra_columns)
    caption = (
        pl.col(src.caption_column).cast(pl.String)
        if src.caption_column
        else pl.lit(None, pl.String)
    )
    out = df.select(
        pl.col(src.url_column).cast(pl.String).alias("url"),
        caption.alias("caption"),
        _extra_json(df, extra),
    )
    return _finish(out, src.name or Path(src.path).name, "url", start)


def read_table(src: TableSource, options: StorageOptions | None = None) -> pl.DataFrame:
    """Read a URL list (csv/tsv/parquet/jsonl, .gz too) into the ingest table."""
    frames = [_read_file(path, src, options) for path in _expand(src.path, options)]
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return _ingest_rows(df, src, 0)


def iter_table(src: TableSource, options: StorageOptions | None = None) -> Iterator[pl.DataFrame]:
    """`read_table` one file at a time, with the same rows, uids and extra columns: every
    file is first conformed to the union of all files' columns and types, exactly as
    concatenating them would (a column one file lacks is null; an int beside a float is a
    float). Holds one file, plus the schemas, at a time."""
    paths = _expand(src.path, options)
    if len(paths) == 1:
        yield read_table(src, options)
        return
    schemas = [_schema_of(p, src, options) for p in paths]
    target = pl.concat(schemas, how="diagonal_relaxed")
    start = 0
    for path in paths:
        df = pl.concat([target, _read_file(path, src, options)], how="diagonal_relaxed")
        yield _ingest_rows(df, src, start)
        start += df.height


def _sidecar(p: Path) -> str | None:
    """A medium's same-stem timed text (.srt, then .vtt, then .json), if there is one."""
    found = next(
        (p.with_suffix(s) for s in TIMED_TEXT_SUFFIXES if p.with_suffix(s).is_file()), None
    )
    return str(found) if found else None


def read_folder(src: FolderSource) -> pl.DataFrame:
    """Media under a folder (recursively, sorted) with same-stem `.txt` captions; videos and
    recordings carry their same-stem transcript as the `subtitles` column."""
    root = Path(src.path)
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    suffixes = _FOLDER_SUFFIXES[src.files]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    rel = [p.relative_to(root).as_posix() for p in files]
    captions = []
    for p in files:
        txt = p.with_suffix(".txt")
        captions.append(
            txt.read_text(encoding="utf-8", errors="replace").strip() if txt.exists() else None
        )
    df = pl.DataFrame(
        {
            "path": [str(p) for p in files],
            "locator": rel,
            "caption": captions,
            "extra": [
                json.dumps({"file": r} if src.files == "images" else {"file": r, "subtitles": s})
                for r, s in zip(rel, [_sidecar(p) for p in files], strict=True)
            ],
        },
        schema={"path": pl.String, "locator": pl.String, "caption": pl.String, "extra": pl.String},
    )
    return _finish(df, src.name or root.name, "locator")


def read_hf(src: HFSource) -> pl.DataFrame:
    """A dataset written by `datasets.save_to_disk`; image bytes or URLs, plus captions."""
    import datasets

    try:
        ds = datasets.load_from_disk(src.path)
    except (FileNotFoundError, OSError, ValueError) as err:
        raise IngestError(f"{src.path}: cannot load a saved Hugging Face dataset: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        split = src.split or ("train" if "train" in ds else next(iter(ds)))
        if split not in ds:
            raise IngestError(f"{src.path}: split {split!r} not found; splits: {', '.join(ds)}")
        ds = ds[split]
    if src.image_column:
        ds = ds.cast_column(src.image_column, datasets.Image(decode=False))
    df = pl.from_arrow(ds.data.table)
    assert isinstance(df, pl.DataFrame)
    main = src.image_column or src.url_column
    if main is None:
        raise IngestError(f"{src.path}: set url_column or image_column")
    required = [main] + ([src.caption_column] if src.caption_column else [])
    extra = _select_columns(df, src.path, required, src.extra_columns)
    caption = (
        pl.col(src.caption_column).cast(pl.String)
        if src.caption_column
        else pl.lit(None, pl.String)
    )
    cols = [caption.alias("caption"), _extra_json(df, extra)]
    if src.image_column:
        cols.append(pl.col(src.image_column).struct.field("bytes").alias("image"))
        cols.append(pl.int_range(pl.len()).cast(pl.String).alias("locator"))
        out = df.select(cols)
        return _finish(out, src.name or Path(src.path).name, "locator")
    cols.append(pl.col(main).cast(pl.String).alias("url"))
    return _finish(df.select(cols), src.name or Path(src.path).name, "url")


def read_source(
    src: TableSource | FolderSource | HFSource, options: StorageOptions | None = None
) -> pl.DataFrame:
    if isinstance(src, TableSource):
        return read_table(src, options)
    if is_url(src.path):
        raise IngestError(
            f"{src.path}: {src.kind} sources are read from a local path; copy it down, or "
            "list its files in a table source (table sources may be URLs)"
        )
    if isinstance(src, FolderSource):
        return read_folder(src)
    return read_hf(src)


def iter_source(
    src: TableSource | FolderSource | HFSource, options: StorageOptions | None = None
) -> Iterator[pl.DataFrame]:
    """A source's ingest rows in order, a file at a time where the source has files."""
    if isinstance(src, TableSource):
        yield from iter_table(src, options)
    else:
        yield read_source(src, options)


def source_name(src: TableSource | FolderSource | HFSource) -> str:
    """The name a source's uids are derived from: `name`, else its file or folder name."""
    return src.name or Path(src.path).name


def ingest(
    sources: list[TableSource | FolderSource | HFSource], options: StorageOptions | None = None
) -> pl.DataFrame:
    """All sources, in config order; raises IngestError before any work starts. Table
    sources may be store URLs (s3://, gs://, hf://), read with `options` for their protocol."""
    frames = [read_source(s, options) for s in sources]
    df = pl.concat(frames) if len(frames) > 1 else frames[0]
    dup = df.filter(pl.col("uid").is_duplicated())
    if dup.height:
        raise IngestError(
            "two sources give the same uid (source names must differ): "
            + ", ".join(sorted(dup["source"].unique().to_list()))
        )
    return df
