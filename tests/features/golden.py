"""Golden values: what curate computes from fixed bytes, to compare across machines.

`python tests/features/golden.py` prints the current values as JSON; with `--write` it
refreshes `tests/data/golden/values.json` (only after a deliberate change of algorithm or a
locked dependency, saying why in the commit). The test compares against the file, in this
process and in subprocesses that force other CPU kernels.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "golden"
VALUES = DATA / "values.json"
WEB_SEED, WEB_ITEMS = 5, 120


def _web_digest() -> str:
    from curate.testing import build_web

    with tempfile.TemporaryDirectory() as tmp:
        web = build_web(Path(tmp), n_items=WEB_ITEMS, seed=WEB_SEED)
        h = hashlib.sha256()
        for f in sorted(web.files_dir.iterdir()):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        h.update(web.truth.write_csv().encode())
        return h.hexdigest()


def compute() -> dict[str, Any]:
    """Every CPU-sensitive output on the fixed images, plus the synthetic web's digest."""
    from curate.config import ImageConfig
    from curate.features.hashes import DCT_LOW, signature, thumb_distance
    from curate.media.image import process_image

    images = sorted(p for p in DATA.iterdir() if p.suffix in (".jpg", ".png"))
    out: dict[str, Any] = {"dct_matrix": hashlib.sha256(DCT_LOW.tobytes()).hexdigest()}
    thumbs = {}
    for p in images:
        data = p.read_bytes()
        entry: dict[str, Any] = {}
        for mode in ("border", "keep_ratio", "center_crop"):
            stored = process_image(data, ImageConfig(size=128, resize_mode=mode)).data
            ph, thumb = signature(stored)
            entry[mode] = {
                "stored_sha256": hashlib.sha256(stored).hexdigest(),
                "phash": f"{ph:016x}",
                "thumb_sha256": hashlib.sha256(thumb.tobytes()).hexdigest(),
            }
            thumbs[f"{p.name}/{mode}"] = thumb
        out[p.name] = entry
    names = sorted(thumbs)
    pairs = list(itertools.combinations(names, 2))
    a = np.stack([thumbs[x] for x, _ in pairs])
    b = np.stack([thumbs[y] for _, y in pairs])
    dist = thumb_distance(a, b)
    out["thumb_distances"] = {f"{x} ~ {y}": float(d) for (x, y), d in zip(pairs, dist, strict=True)}
    out["web_sha256"] = _web_digest()
    return out


if __name__ == "__main__":
    values = compute()
    text = json.dumps(values, indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        VALUES.write_text(text)
    else:
        sys.stdout.write(text)
