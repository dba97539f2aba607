"""`curate why` and `curate inspect` on the demo runs: a sample's lineage agrees with every
table that recorded it, whichever way it ended (written, a duplicate, a fetch failure)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import curate


def curate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich tables at a fixed width
    cmd = [sys.executable, "-m", "curate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def why(run: Path, ident: str) -> list[dict[str, Any]]:
    proc = curate_cli("why", str(run), ident, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_a_duplicate_names_its_kept_copy_and_stops_at_dedup(demo_runs: Path) -> None:
    run = demo_runs / "corpus"
    ledger = curate.open_ledger(run).collect()
    row = ledger.filter(pl.col("dedup_method") == "perceptual").sort("uid").row(0, named=True)
    (info,) = why(run, row["uid"])
    assert info["status"] == "dropped" and info["reason"] == "duplicate"
    kept = ledger.filter(pl.col("uid") == row["dup_of"]).row(0, named=True)
    assert info["dedup"]["kept_copy"]["url"] == kept["url"]
    assert info["dedup"]["kept_copy"]["status"] == kept["status"]
    assert [s["stage"] for s in info["stages"]] == ["fetch", "features", "clip", "dedup", "ledger"]
    fetch = info["stages"][0]
    assert fetch["task"] == row["partition"] and fetch["seconds"] > 0
    assert fetch["summary"]["partition"] == row["partition"]
    assert info["source"]["url"] == row["url"] and info["fetch"]["status"] == "ok"
    assert info["placement"] == {"shard": None, "key": None} and info["labels"] == {}
    text = curate_cli("why", str(run), row["uid"]).stdout
    assert f"dropped as a perceptual copy of {row['dup_of']}" in text and kept["url"] in text


def test_a_written_sample_shows_its_shard_key_and_labels(demo_runs: Path) -> None:
    run = demo_runs / "corpus"
    ledger = curate.open_ledger(run).collect()
    row = ledger.filter(pl.col("status") == "written").sort("uid").row(0, named=True)
    (info,) = why(run, row["uid"][:12])  # a unique prefix is enough
    assert info["uid"] == row["uid"]
    assert info["placement"] == {"shard": row["shard"], "key": row["key"]}
    assert info["scores"]["clip_score"] == row["clip_score"]
    with tarfile.open(run / "shards" / row["shard"]) as tar:
        data = tar.extractfile(f"{row['key']}.mlm.npz").read()  # type: ignore[union-attr]
    masked = int((np.load(io.BytesIO(data))["labels"] >= 0).sum())
    assert info["labels"]["mlm"] == {"masked_tokens": masked}
    assert {"mlm.npz", "itm.json", "regions.json", "jpg"} <= set(info["labels"]["members"])
    stages = [s["stage"] for s in info["stages"]]
    assert stages[:4] == ["fetch", "features", "clip", "dedup"] and "shards" in stages
    shards = next(s for s in info["stages"] if s["stage"] == "shards")
    assert shards["task"] == row["shard"].removesuffix(".tar")


def test_a_fetch_failure_found_by_url_and_the_clips_of_a_video(demo_runs: Path) -> None:
    run = demo_runs / "corpus"
    ledger = curate.open_ledger(run).collect()
    row = ledger.filter(pl.col("status") == "failed").sort("uid").row(0, named=True)
    (info,) = why(run, row["url"])
    assert (info["uid"], info["reason"]) == (row["uid"], row["reason"])
    assert [s["stage"] for s in info["stages"]] == ["fetch", "ledger"]
    videos = demo_runs / "video-corpus"
    clips = curate.open_ledger(videos).collect()
    parent = clips["uid"].filter(clips["uid"].str.contains("_"))[0].split("_")[0]
    found = why(videos, parent)
    assert sorted(i["uid"] for i in found) == sorted(
        clips.filter(pl.col("uid").str.starts_with(parent + "_"))["uid"]
    )
    assert all(i["sample_json"]["parent"] == parent for i in found)
    assert len(why(videos, parent[:8])) == len(found)  # a prefix of the video's uid too
    missing = curate_cli("why", str(run), "no-such-sample")
    assert missing.returncode == 2 and "no sample of" in missing.stderr
    for cmd in ("why", "inspect", "report"):  # not a run: one line naming it, no traceback
        proc = curate_cli(cmd, str(run / "shards"), *(["x"] if cmd == "why" else []))
        assert proc.returncode == 2 and "not a finished curate run" in proc.stderr, cmd
        assert "Traceback" not in proc.stderr


def test_inspect_prints_the_funnel_stages_and_training_as_tables(demo_runs: Path) -> None:
    run = demo_runs / "corpus"
    proc = curate_cli("inspect", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    funnel = json.loads((run / "run.json").read_text())["funnel"]
    lines = proc.stdout.splitlines()
    written = next(line for line in lines if line.strip("│ ").startswith("written "))
    assert written.split("│")[2].strip() == str(funnel["written"])
    fetch = next(line for line in lines if line.startswith("│ fetch "))
    cells = [c.strip() for c in fetch.split("│")[1:-1]]
    assert cells[1] == str(len(list((run / "state" / "fetch").glob("*.json"))))
    assert float(cells[2]) > 0  # summed task seconds from state/timings.jsonl
    assert "reference trainer (held-out)" in proc.stdout
