"""JSON Schemas of the contracts: pipeline config, ledger rows, sample and clip json, manifest.

Generated from the code; the checked-in copies in schemas/ must match (a test checks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import PipelineConfig
from curate.tables import LEDGER_SCHEMA, ClipMeta, Manifest, SampleMeta

__all__ = ["all_schemas", "check_schemas", "write_schemas"]


def _ledger_schema() -> dict[str, Any]:
    kinds = {
        pl.String: "string",
        pl.Int32: "integer",
        pl.Int64: "integer",
        pl.Float32: "number",
    }
    props: dict[str, dict[str, Any]] = {}
    for name, dtype in LEDGER_SCHEMA.items():
        kind = next(v for k, v in kinds.items() if dtype == k)
        props[name] = {"type": [kind, "null"]}
    for required in ("uid", "source", "status", "stage", "partition"):
        props[required] = {"type": "string"}
    props["status"] = {"enum": ["written", "failed", "dropped"]}
    return {
        "title": "LedgerRow",
        "description": "One row per input sample (ledger/NNNNN.parquet).",
        "type": "object",
        "properties": props,
        "required": ["uid", "source", "status", "stage", "partition"],
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    return {
        "pipeline.schema.json": PipelineConfig.model_json_schema(),
        "ledger.schema.json": _ledger_schema(),
        "sample.schema.json": SampleMeta.model_json_schema(),
        "clip.schema.json": ClipMeta.model_json_schema(),
        "manifest.schema.json": Manifest.model_json_schema(),
    }


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in all_schemas().items():
        (out / name).write_text(_dump(schema), encoding="utf-8")
        paths.append(out / name)
    return paths


def check_schemas(out: Path) -> list[str]:
    """Names of schema files that are missing or differ from the code."""
    drift = []
    for name, schema in all_schemas().items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != _dump(schema):
            drift.append(name)
    return drift
