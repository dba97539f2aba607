"""The features stage: one task per partition, redone when its raw records change."""

from __future__ import annotations

from curate.engine.stage import Plan, Stage, Task
from curate.features.rows import features_inputs, features_partition

__all__ = ["FEATURES"]


def _plan(p: Plan) -> list[Task]:
    run = p.run
    return [
        Task(
            part,
            features_partition,
            (str(run.root), part),
            features_inputs(run, part),
            (run.features(part),),
        )
        for part in run.partitions()
    ]


FEATURES = Stage("features", _plan)
