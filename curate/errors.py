"""Exceptions for bad configs and bad inputs; bad samples are ledger rows, never exceptions."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigMismatchError",
    "CurateError",
    "IngestError",
    "SampleFailure",
]


class CurateError(Exception):
    """Base class: the CLI prints these as one clear message and exits non-zero."""


class ConfigError(CurateError):
    """The pipeline config is malformed; the message names the file and key path."""


class IngestError(CurateError):
    """An input is unreadable or lacks a required column; raised before any work starts."""


class ConfigMismatchError(CurateError):
    """An output directory holds a run with another config or input; use overwrite."""


class SampleFailure(Exception):
    """One sample failed for `reason`; caught at the sample boundary and kept as a ledger row.

    Never escapes a partition: per-sample code raises it, the partition loop records it.
    """

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
