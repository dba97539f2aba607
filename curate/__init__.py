"""curate: build sharded multimodal pretraining corpora with Dask.

Heavy modules load on first use, so `import curate` and `curate --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "load_config",
    "near_duplicates",
    "open_ledger",
    "phash",
    "run",
    "semantic_duplicates",
]

if TYPE_CHECKING:
    from curate.config import load_config
    from curate.dedup.lsh import near_duplicates
    from curate.dedup.semantic import semantic_duplicates
    from curate.features.hashes import phash
    from curate.ledger import open_ledger
    from curate.pipeline import run

_LAZY = {
    "run": "curate.pipeline",
    "open_ledger": "curate.ledger",
    "load_config": "curate.config",
    "phash": "curate.features.hashes",
    "near_duplicates": "curate.dedup.lsh",
    "semantic_duplicates": "curate.dedup.semantic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
