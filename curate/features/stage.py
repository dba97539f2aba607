"""The features stage: one task per partition, redone when its raw records change.

The raw records' digest comes from the fetch task's summary (it hashed the bytes it wrote),
so planning reads one small marker per partition, not the raw tables.
"""

from __future__ import annotations

import hashlib

from curate.engine.stage import Plan, Stage, Task, read_marker
from curate.features.rows import features_inputs, features_partition
from curate.rundir import RunDir

__all__ = ["FEATURES"]


def _raw_sha256(run: RunDir, part: str) -> str:
    marker = read_marker(run, "fetch", part)
    sha = marker["summary"].get("raw_sha256") if marker else None
    return sha or hashlib.sha256(run.raw_table(part).read_bytes()).hexdigest()


def _plan(p: Plan) -> list[Task]:
    run = p.run
    return [
        Task(
            part,
            features_partition,
            (run.root, part),
            features_inputs(_raw_sha256(run, part)),
            (run.features(part),),
        )
        for part in run.partitions()
    ]


FEATURES = Stage("features", _plan)
