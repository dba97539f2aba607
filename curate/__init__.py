"""curate: build sharded multimodal pretraining corpora with Dask.

Heavy modules load on first use, so `import curate` and `curate --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "clip_score",
    "filters",
    "load_config",
    "near_duplicates",
    "open_ledger",
    "phash",
    "run",
    "semantic_duplicates",
]

if TYPE_CHECKING:
    from curate import filters
    from curate.config import load_config
    from curate.dedup.lsh import near_duplicates
    from curate.dedup.semantic import semantic_duplicates
    from curate.features.clip import clip_score
    from curate.features.hashes import phash
    from curate.pipeline import run
    from curate.tables import open_ledger

_LAZY = {
    "run": "curate.pipeline",
    "open_ledger": "curate.tables",
    "load_config": "curate.config",
    "phash": "curate.features.hashes",
    "clip_score": "curate.features.clip",
    "near_duplicates": "curate.dedup.lsh",
    "semantic_duplicates": "curate.dedup.semantic",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "filters":
        return importlib.import_module("curate.filters")
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
