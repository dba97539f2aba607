"""Hugging Face `datasets` features for a corpus's shards, so `load_dataset` reads them as
written.

datasets' webdataset loader infers an `Audio` or `Video` feature from a .flac or .mp4 member,
and storing either needs torchcodec (and a system FFmpeg), which curate's users may not have.
These features keep video and audio as their encoded bytes (decode them with PyAV, torchcodec
or a loader of your choice), pictures as images, text as text and the json member as the
struct the first sample shows (every sample of a corpus has the same fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curate.shards.tar import iter_tar_samples

__all__ = ["hf_features"]


def _no_nulls(t: Any) -> Any:
    """A type with every all-null part typed string (an empty extra seen so far)."""
    import pyarrow as pa

    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_list(t):
        return pa.list_(_no_nulls(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _no_nulls(f.type)) for f in t])
    return t


def hf_features(shards: str | Path, max_samples: int = 1000) -> Any:
    """`datasets.Features` for the shards in `shards` (a run's shards/ folder): use as
    `load_dataset(str(shards), features=hf_features(shards))`. The json member's struct is
    unified over up to `max_samples` samples; a field null in all of them is typed string."""
    import datasets
    import pyarrow as pa

    tars = sorted(Path(shards).glob("*.tar"))
    if not tars:
        raise FileNotFoundError(f"{shards}: no .tar shards")
    members: dict[str, bytes] = {}
    metas: dict[str, list[Any]] = {}
    seen = 0
    for tar in tars:
        for _, sample in iter_tar_samples(tar):
            members = members or sample
            for name, data in sample.items():
                if name.endswith(".json") or name == "json":
                    metas.setdefault(name, []).append(json.loads(data))
            seen += 1
            if seen >= max_samples:
                break
        if seen >= max_samples:
            break
    if not members:
        raise ValueError(f"{shards}: the shards hold no samples")
    out: dict[str, Any] = {
        "__key__": datasets.Value("string"),
        "__url__": datasets.Value("string"),
    }
    for name in sorted(members):
        ext = name.rsplit(".", 1)[-1]
        if ext in ("jpg", "jpeg", "png", "webp"):
            out[name] = datasets.Image()
        elif ext == "txt":
            out[name] = datasets.Value("string")
        elif ext == "json":
            t = _no_nulls(
                pa.Table.from_pylist([{"m": m} for m in metas[name]]).schema.field("m").type
            )
            out[name] = datasets.Features.from_arrow_schema(pa.schema([pa.field(name, t)]))[name]
        else:  # mp4, flac and anything else: the bytes as written
            out[name] = datasets.Value("binary")
    return datasets.Features(out)
