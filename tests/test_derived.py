"""Many samples from one input: a stage that cuts each fetched image into two halves (as the
video stage will cut clips) runs through features, dedup, filters, shards and the ledger.
The ledger has one row per half plus one per failed input, and each traces to its input."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import polars as pl
import pytest
from conftest import pipeline_yaml
from PIL import Image

import curate
import curate.pipeline as pipeline
from curate.engine.stage import Plan, Stage
from curate.features.rows import features_inputs, features_partition
from curate.fetch.partition import fetch_partition
from curate.fetch.stage import FETCH
from curate.ledger import untraceable
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.shards.validate import validate_shards
from curate.tables import (
    INGEST_SCHEMA,
    RAW_SCHEMA,
    SampleMeta,
    derived_uid,
    parent_expr,
    parent_uid,
    read_table,
    sample_json,
    write_table,
)


def _halves(data: bytes) -> list[bytes]:
    img = Image.open(io.BytesIO(data))
    img.load()
    w = img.width // 2
    out = []
    for box in ((0, 0, w, img.height), (w, 0, img.width, img.height)):
        buf = io.BytesIO()
        img.crop(box).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def split_fetch(cfg: Any, run_dir: str, part: str, share: float = 1.0) -> dict[str, Any]:
    """The real fetch, then each ok input becomes two derived samples; failures stay rows."""
    summary = fetch_partition(cfg, run_dir, part, share)
    run = RunDir(run_dir)
    stored = dict(iter_tar_samples(run.raw_tar(part)))
    records = []
    with TarShardWriter(run.raw_tar(part)) as tar:
        for rec in pl.read_parquet(run.raw_table(part)).to_dicts():
            if rec["status"] != "ok":
                records.append(rec)
                continue
            for k, data in enumerate(_halves(stored[rec["uid"]]["jpg"])):
                half = Image.open(io.BytesIO(data))
                child = {**rec, "uid": derived_uid(rec["uid"], k), "bytes": len(data)}
                child.update(width=half.width, height=half.height)
                extra = {"extra": json.dumps({"parent": rec["uid"]})}
                members = {"jpg": data, "txt": (rec["caption"] or "").encode()}
                members["json"] = sample_json(extra, child)
                tar.write(child["uid"], members)
                records.append(child)
    sha = write_table(run.raw_table(part), pl.DataFrame(records, schema=RAW_SCHEMA))
    feats = features_partition(run_dir, part)
    summary["raw_sha256"] = sha
    summary["completes"] = {"features": {"inputs": features_inputs(sha), "summary": feats}}
    return summary


def _split_plan(p: Plan) -> list[Any]:
    return [dataclasses.replace(t, fn=split_fetch) for t in FETCH.plan(p)]


@pytest.fixture(scope="module")
def split_run(urls: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    folder = tmp_path_factory.mktemp("derived")
    stages = [Stage("fetch", _split_plan, members=FETCH.members), *pipeline.STAGES[1:]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "STAGES", stages)
        cfg = pipeline_yaml(folder, urls, image={"size": 96, "resize_mode": "keep_ratio"})
        return curate.run(cfg, folder / "out", progress=False)


def test_the_ledger_is_one_row_per_sample_plus_one_per_failed_input(split_run: RunResult) -> None:
    run = RunDir(split_run.output)
    inputs = pl.concat([read_table(run.ingest(p), INGEST_SCHEMA) for p in run.partitions()])
    led = curate.open_ledger(run.root).collect().with_columns(parent=parent_expr())
    assert set(led["parent"]) == set(inputs["uid"])  # every input is traceable, none extra
    own = led.filter(pl.col("uid") == pl.col("parent"))
    assert (own["status"] == "failed").all() and own.height > 0
    derived = led.filter(pl.col("uid") != pl.col("parent"))
    assert (derived.group_by("parent").len()["len"] == 2).all()
    assert set(own["uid"]).isdisjoint(derived["parent"])
    assert split_run.funnel["inputs"] == inputs.height
    assert split_run.funnel["fetched"] == inputs.height - own.height
    assert split_run.funnel["written"] == (led["status"] == "written").sum()
    assert derived.height == 2 * split_run.funnel["fetched"]
    # the planted exact copies' halves are found as duplicates of the original's halves
    dups = derived.filter(pl.col("dedup_method") == "exact_bytes")
    assert dups.height > 0
    assert all(u[-6:] == d[-6:] for u, d in dups.select("uid", "dup_of").iter_rows())


def test_derived_samples_are_valid_shard_keys_naming_their_parent(split_run: RunResult) -> None:
    import webdataset as wds

    run = RunDir(split_run.output)
    assert validate_shards(run.shards_dir) == []
    urls = [str(p) for p in run.shard_files()]
    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        meta = SampleMeta.model_validate(json.loads(sample["json"]))
        assert "." not in key and meta.uid == key
        assert meta.model_extra == {"parent": parent_uid(key)} and key != parent_uid(key)
        n += 1
    assert n == split_run.funnel["written"]


def test_broken_rows_are_named() -> None:
    inputs = pl.Series(["a" * 20, "b" * 20])
    ok = pl.Series(["a" * 20, derived_uid("b" * 20, 0), derived_uid("b" * 20, 1)])
    assert untraceable(inputs, ok) == []
    bad = pl.Series(["a" * 20, derived_uid("a" * 20, 0), derived_uid("c" * 20, 0), "a" * 20])
    problems = untraceable(inputs, bad)
    assert f"{'c' * 20}_00000: no input row {'c' * 20}" in problems
    assert f"{'a' * 20}: listed twice" in problems
    assert f"{'a' * 20}: both a row and the parent of derived samples" in problems
    with pytest.raises(ValueError, match="cannot derive"):
        derived_uid(derived_uid("a" * 20, 0), 1)
