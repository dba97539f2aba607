"""Incremental reruns: a change after the fetch redoes exactly the stages that read it, and
never sends a request. The server counts every request it admits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import pipeline_yaml

import curate
from curate.errors import ConfigMismatchError
from curate.features.clip_model import TINY_MODEL
from curate.io.atomic import read_json, write_json
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.shards.validate import validate_shards
from curate.tables import clip_scores, read_dedup
from curate.testing import WebServer

CLIP = {"enabled": True, "model": TINY_MODEL, "pretrained": None, "batch_size": 16}


@pytest.fixture(scope="module")
def config_for(urls: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("incremental")
    return pipeline_yaml(folder, urls, clip=CLIP, filters={"clip_min_score": 0.5})


@pytest.fixture(scope="module")
def clip_run(config_for: Path) -> RunResult:
    return curate.run(config_for, config_for.parent / "out", progress=False)


def _copy(res: RunResult, tmp_path: Path) -> RunDir:
    shutil.copytree(res.output, tmp_path / "out")
    return RunDir(tmp_path / "out")


def _markers(run: RunDir) -> dict[str, bytes]:
    return {str(p.relative_to(run.root)): p.read_bytes() for p in run.root.glob("state/*/*.json")}


def _named(path: Path, name: str) -> Path:
    cfg = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**cfg, "name": name}))
    return path


def _redone(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    """Stages with a marker that changed, appeared or went away."""
    keys = set(before) | set(after)
    return {k.split("/")[1] for k in keys if before.get(k) != after.get(k)}


def test_calibrate_apply_refilters_and_reshards_without_a_request(
    clip_run: RunResult, server: WebServer, tmp_path: Path
) -> None:
    run = _copy(clip_run, tmp_path)
    raw = {p.name: p.read_bytes() for p in (run.root / "raw").iterdir()}
    markers = _markers(run)
    requests = server.requests_served
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "calibrate", str(run.root), "--keep", "0.3", "--apply"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert server.requests_served == requests, "calibrate --apply sent requests"
    assert {p.name: p.read_bytes() for p in (run.root / "raw").iterdir()} == raw
    redone = {"filter", "plan", "shards", "manifest", "ledger", "card"}
    assert _redone(markers, _markers(run)) == redone
    parts = len(run.partitions())
    assert f"filter: inputs changed for {parts} of {parts} task(s); redoing them" in proc.stderr

    threshold = read_json(run.run_json)["config"]["filters"]["clip_min_score"]
    assert f"applying filters.clip_min_score = {threshold!r}" in proc.stdout
    scores = clip_scores(run).filter(~pl.col("uid").is_in(read_dedup(run)["uid"].implode()))
    kept = int(scores.height * 0.3)
    led = curate.open_ledger(run.root).collect()
    written = led.filter(pl.col("status") == "written")
    assert written.height == kept and (written["clip_score"] >= threshold).all()
    assert led.filter(pl.col("reason") == "clip_score_low")["clip_score"].max() < threshold
    assert validate_shards(run.shards_dir) == []
    assert read_json(run.manifest)["total_samples"] == kept
    assert len(run.shard_files()) == -(-kept // 20)


def test_each_change_redoes_only_the_stages_that_read_it(
    clip_run: RunResult, server: WebServer, urls: Path, tmp_path: Path
) -> None:
    run = _copy(clip_run, tmp_path)
    requests = server.requests_served

    def rerun(name: str = "e2e", **overrides: dict[str, object]) -> set[str]:
        before = _markers(run)
        cfg = _named(pipeline_yaml(tmp_path, urls, clip=CLIP, **overrides), name)
        curate.run(cfg, run.root, progress=False)
        return _redone(before, _markers(run))

    base = {"filters": {"clip_min_score": 0.5}}
    assert rerun(**base) == set()  # the same config: nothing at all
    resharded = {"plan", "shards", "manifest", "ledger", "card"}
    assert rerun(**base, shards={"samples_per_shard": 7}) == resharded
    sizes = read_json(run.sizes)
    assert max(sizes.values()) == 7 and validate_shards(run.shards_dir) == []
    assert rerun(
        **base, shards={"samples_per_shard": 7}, dedup={"captions": {"enabled": True}}
    ) >= {"dedup", "filter", "ledger"}
    redone = rerun(filters={"clip_min_score": 0.5}, name="renamed")
    assert "fetch" not in redone and "card" in redone
    assert "# renamed" in run.card.read_text()

    off = _named(pipeline_yaml(tmp_path, urls), "renamed")  # CLIP off: its outputs go too
    res = curate.run(off, run.root, progress=False)
    assert not list((run.root / "features").glob("*.clip.parquet"))
    assert not list((run.root / "features").glob("*.npy"))
    led = curate.open_ledger(run.root).collect()
    assert led["clip_score"].null_count() == led.height and "clip_score_low" not in led["reason"]
    assert res.funnel["written"] > clip_run.funnel["written"]
    assert server.requests_served == requests, "a rerun after the fetch sent requests"


def test_a_reshard_cut_short_leaves_no_manifest_claiming_completeness(
    clip_run: RunResult, config_for: Path, tmp_path: Path
) -> None:
    from curate.shards.final import write_final_shard

    run = _copy(clip_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.shards_dir.iterdir()}
    write_final_shard(str(run.root), "00000")  # as a shard task does, then the "kill"
    assert not run.manifest.exists()
    curate.run(config_for, run.root, progress=False)  # the manifest task redoes it
    assert {p.name: p.read_bytes() for p in run.shards_dir.iterdir()} == before


def test_a_change_to_what_is_fetched_is_still_refused(
    clip_run: RunResult, urls: Path, tmp_path: Path
) -> None:
    run = _copy(clip_run, tmp_path)
    cfg = pipeline_yaml(tmp_path, urls, clip=CLIP, image={"size": 64})
    with pytest.raises(ConfigMismatchError, match="sources, ingest, fetch and image"):
        curate.run(cfg, run.root, progress=False)


def test_calibrate_apply_refuses_what_it_cannot_do_without_fetching(
    clip_run: RunResult, tmp_path: Path
) -> None:
    run = _copy(clip_run, tmp_path)

    def calibrate(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "curate", "calibrate", str(run.root), "--apply", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    proc = calibrate("--keep", "0.3", "0.5")
    assert proc.returncode == 2 and "exactly one --keep" in proc.stderr
    proc = calibrate("--keep", "0.3", "--with-duplicates")
    assert proc.returncode == 2 and "drop --with-duplicates" in proc.stderr
    info = read_json(run.run_json)
    write_json(run.run_json, {**info, "finished_at": None})
    proc = calibrate("--keep", "0.3")
    assert proc.returncode == 2 and "has not finished" in proc.stderr
    markers = _markers(run)
    assert markers == _markers(_copy(clip_run, tmp_path / "again"))  # nothing was redone


def test_top_fraction_by_partition_keeps_what_the_global_rule_keeps(
    clip_run: RunResult, urls: Path, tmp_path: Path
) -> None:
    """The cut stage finds the last kept (score, uid); each partition's filter task applies
    it. The run keeps exactly the rows `clip_top_fraction` keeps over all survivors."""
    from curate.filters.reasons import REASONS, apply_rules, keep
    from curate.filters.rules import clip_top_fraction

    run = _copy(clip_run, tmp_path)
    cfg = pipeline_yaml(tmp_path, urls, clip=CLIP, filters={"clip_top_fraction": 0.45})
    res = curate.run(cfg, run.root, progress=False)
    survivors = clip_scores(run).filter(~pl.col("uid").is_in(read_dedup(run)["uid"].implode()))
    expected = set(keep(apply_rules(survivors, [partial(clip_top_fraction, fraction=0.45)]))["uid"])
    led = curate.open_ledger(run.root).collect()
    assert set(led.filter(pl.col("status") == "written")["uid"]) == expected
    assert res.funnel["written"] == len(expected) == int(survivors.height * 0.45)
    cut = read_json(run.clip_cut)
    assert cut["fraction"] == 0.45 and cut["cut"][1] in expected
    assert len(run.markers("filter")) == len(run.partitions()) > 1
    assert REASONS not in led.columns
    # turned off again: the cut stage plans nothing and its marker goes
    curate.run(pipeline_yaml(tmp_path, urls, clip=CLIP), run.root, progress=False)
    assert run.markers("cut") == []
