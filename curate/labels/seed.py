"""One random stream per (corpus seed, task, sample): labels reproducible sample by sample."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["rng_for"]


def rng_for(seed: int, task: str, uid: str) -> np.random.Generator:
    """PCG64 seeded from BLAKE2b of the three: the same draws on every machine and in any
    order of processing, and independent streams for different tasks of one sample."""
    key = hashlib.blake2b(f"{seed}\x00{task}\x00{uid}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(key, "little")))
