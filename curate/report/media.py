"""Sample bytes for the audit: thumbnails and frame strips out of the run's raw tars (which
keep every fetched sample, dropped ones too), clip metadata, and audio durations read from
FLAC headers. Only the tars that hold a requested uid are opened, and only the requested
members are read, so a gallery of 200 costs 200 small reads on any size of run."""

from __future__ import annotations

import base64
import io
import json
import struct
import tarfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from PIL import Image, ImageDraw

from curate.io.store import AnyPath
from curate.media.image import pictures
from curate.shards.tar import read_keys

__all__ = [
    "data_uri",
    "flac_seconds",
    "picture",
    "read_members",
    "sample_meta",
    "thumbnail",
]


def read_members(
    tars: Mapping[AnyPath, Iterable[str]],
    want: Callable[[str], bool],
    head: Mapping[str, int] | None = None,
) -> dict[str, dict[str, bytes]]:
    """For each tar, the members of the listed keys whose suffix `want` accepts:
    {key: {suffix: bytes}}, only the first `head[suffix]` bytes of those suffixes. A
    missing or unreadable tar yields nothing for its keys (the report shows a placeholder)
    rather than failing the whole report."""
    out: dict[str, dict[str, bytes]] = {}
    for path, keys in tars.items():
        if not path.exists():
            continue
        try:
            out.update(read_keys(path, keys, want, head))
        except (OSError, tarfile.TarError):
            continue
    return out


def thumbnail(
    data: bytes,
    size: int = 128,
    boxes: Iterable[tuple[tuple[float, float, float, float], str]] = (),
    grid: Any = None,
) -> bytes | None:
    """A JPEG of at most size x size pixels, or None when the bytes do not decode. `boxes`
    ((x0, y0, x1, y1) in the image's pixels, colour) are outlined; `grid`, a 2-D boolean
    array over the image (a patch mask), shades its True cells."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size, size))
            img = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    w, h = img.size
    if grid is not None:
        rows, cols = len(grid), len(grid[0])
        shade = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(shade)
        for r in range(rows):
            for c in range(cols):
                if grid[r][c]:
                    box = (
                        c * w / cols,
                        r * h / rows,
                        (c + 1) * w / cols - 1,
                        (r + 1) * h / rows - 1,
                    )
                    draw.rectangle(box, fill=(20, 20, 20, 150))
        img = Image.alpha_composite(img.convert("RGBA"), shade).convert("RGB")
    boxes = list(boxes)
    if boxes:
        draw = ImageDraw.Draw(img)
        for (x0, y0, x1, y1), colour in boxes:
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=2)
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def data_uri(jpeg: bytes | None) -> str:
    """An inline image for a self-contained page ("" for a missing one)."""
    if not jpeg:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def picture(members: Mapping[str, bytes]) -> bytes | None:
    """A sample's image, or its middle sampled frame for a clip (`curate.media.image.pictures`
    decides which members are pictures, as features, labels and validate do)."""
    found = pictures(dict(members))
    return found[len(found) // 2] if found else None


def sample_meta(members: Mapping[str, bytes]) -> dict[str, Any]:
    """The sample's json member ({} when absent or not json)."""
    try:
        meta = json.loads(members.get("json", b"{}"))
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def flac_seconds(data: bytes) -> float | None:
    """Duration from a FLAC file's STREAMINFO (the first metadata block, which every FLAC
    stream must have): total samples / sample rate; None when not FLAC or not stated."""
    if len(data) < 42 or data[:4] != b"fLaC" or data[4] & 0x7F != 0:
        return None
    info = data[8:42]
    rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
    (low,) = struct.unpack(">I", info[14:18])
    total = ((info[13] & 0x0F) << 32) | low
    if rate == 0 or total == 0:
        return None
    return total / rate
