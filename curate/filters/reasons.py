"""The `reasons` column: rules append why a row fails instead of dropping it, so one pass over
the feature table yields both the kept rows and a ledger saying why every other row went."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

import polars as pl

__all__ = [
    "REASONS",
    "Frame",
    "MissingColumnError",
    "add_reason",
    "apply_rules",
    "dropped",
    "first_reason",
    "keep",
    "require",
]

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)
REASONS = "reasons"
_NEW = "__new_reason"
_EMPTY = pl.lit([], dtype=pl.List(pl.String))


class MissingColumnError(KeyError, ValueError):
    """A rule's input lacks a column it needs; the message names the column and the rule."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def require(frame: pl.DataFrame | pl.LazyFrame, rule: str, *columns: str) -> None:
    """Fail fast, before any work, if `frame` lacks a column `rule` reads."""
    present = frame.collect_schema().names()
    for column in columns:
        if column not in present:
            raise MissingColumnError(f"{rule}: missing required column {column!r}")


def _reasons(frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    """The current reasons, empty for rows (or frames) that have none yet."""
    if REASONS in frame.collect_schema().names():
        return pl.col(REASONS).fill_null(_EMPTY)
    return _EMPTY


def add_reason(frame: Frame, reason: pl.Expr) -> Frame:
    """Append `reason` (a String expression, null = passes) to each row's reasons, once: two
    rules giving the same reason (e.g. a missing score) record it a single time."""
    current, new = _reasons(frame), pl.col(_NEW)  # a column, so `reason` is evaluated once
    known = new.is_null() | current.list.contains(new)
    updated = pl.when(known).then(current).otherwise(pl.concat_list(current, new))
    return frame.with_columns(reason.alias(_NEW)).with_columns(updated.alias(REASONS)).drop(_NEW)


def apply_rules(frame: Frame, rules: Sequence[Callable[[Frame], Frame]]) -> Frame:
    """Run `rules` in order; bind parameters with functools.partial, e.g.
    ``apply_rules(lf, [partial(clip_threshold, min_score=0.28), partial(min_side, pixels=64)])``."""
    return functools.reduce(lambda acc, rule: rule(acc), rules, frame)


def keep(frame: Frame) -> Frame:
    """Rows no rule rejected (a frame no rule touched keeps everything)."""
    return frame.filter(_reasons(frame).list.len() == 0)


def dropped(frame: Frame) -> Frame:
    """Rows at least one rule rejected; the complement of `keep`."""
    return frame.filter(_reasons(frame).list.len() > 0)


def first_reason(column: str = REASONS) -> pl.Expr:
    """The first recorded reason (null if kept): the one-word `reason` a ledger row carries."""
    return pl.col(column).list.first()
