"""End to end over the local fault server: ledger, shards, real readers, resume, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import pipeline_yaml

import curate
from curate.errors import ConfigMismatchError
from curate.pipeline import RunResult
from curate.shards.validate import validate_shards
from curate.testing import SyntheticWeb, WebServer


def test_every_input_has_a_ledger_row_with_the_planted_reason(
    finished: RunResult, web: SyntheticWeb, server: WebServer
) -> None:
    ledger = curate.open_ledger(finished.output).collect()
    truth = web.truth.with_columns(url=pl.lit(server.base_url) + pl.col("route"))
    assert ledger.height == truth.height
    assert ledger["uid"].n_unique() == ledger.height
    joined = truth.join(ledger, on="url", how="left", validate="1:1")
    expected_ok = joined.filter(pl.col("expected_status") == "ok").with_columns(
        copies=pl.when(pl.col("role") == "hard_negative")
        .then(pl.col("item_id"))
        .otherwise(pl.col("group"))
    )
    # The hard edit family (7–9 % crops, rotations) is found only in part: each such copy is
    # written or dropped as a duplicate of its own group, nothing else.
    hard_edit = pl.col("transform").is_in(["wide_crop", "rotate"])
    hard = expected_ok.filter(hard_edit)
    assert hard.height > 0
    assert (
        (hard["status"] == "written")
        | ((hard["status"] == "dropped") & (hard["reason"] == "duplicate"))
    ).all(), hard.select("item_id", "status", "reason")
    # Each planted copy group keeps one member (plus any hard copies not found); the rest are
    # dropped as duplicates.
    per_group = expected_ok.group_by("copies").agg(
        written=(pl.col("status") == "written").sum(),
        dropped=((pl.col("status") == "dropped") & (pl.col("reason") == "duplicate")).sum(),
        n=pl.len(),
        n_hard=hard_edit.sum(),
    )
    wrong = per_group.filter(
        (pl.col("written") < 1) | (pl.col("dropped") != pl.col("n") - pl.col("written"))
    )
    # misses: the hard family's, plus at most one easy copy (tests/dedup/test_quality.py
    # measures easy recall at 0.99–1.0 and bounds it there)
    easy_missed = (per_group["written"] - 1 - per_group["n_hard"]).clip(lower_bound=0).sum()
    assert easy_missed <= 1, per_group.filter(pl.col("written") > 1 + pl.col("n_hard"))
    assert wrong.height == 0, wrong.join(expected_ok, on="copies").select(
        "item_id", "role", "transform", "status", "detail"
    )
    assert per_group["dropped"].sum() > 0
    failed = joined.filter(pl.col("expected_status") == "failed")
    assert failed.height > 0
    mismatch = failed.filter(pl.col("reason") != pl.col("expected_reason"))
    assert mismatch.height == 0, mismatch.select("route", "reason", "expected_reason", "detail")
    written = ledger.filter(pl.col("status") == "written")
    assert written["shard"].null_count() == 0 and (written["key"] == written["uid"]).all()
    assert (
        ledger.filter(pl.col("status") != "written")["shard"].null_count()
        == ledger.height - written.height
    )
    assert finished.funnel["written"] == written.height
    assert finished.funnel["inputs"] == truth.height
    assert sum(finished.funnel["failed"].values()) == failed.height
    assert sum(finished.funnel["duplicates"].values()) == finished.funnel["dropped"]["duplicate"]


def test_shards_are_sound_and_match_the_ledger(finished: RunResult) -> None:
    shards = finished.output / "shards"
    assert validate_shards(shards) == []
    sizes = json.loads((shards / "sizes.json").read_text())
    manifest = json.loads((shards / "manifest.json").read_text())
    assert sum(sizes.values()) == finished.funnel["written"] == manifest["total_samples"]
    assert sorted(sizes) == sorted(p.name for p in shards.glob("*.tar"))
    assert list(sizes.values())[:-1] == [20] * (len(sizes) - 1)
    assert manifest["members"] == ["jpg", "json", "txt"]
    run_json = json.loads((finished.output / "run.json").read_text())
    assert run_json["config_hash"] == manifest["config_hash"]
    assert run_json["finished_at"] and run_json["funnel"] == finished.funnel
    assert not list(finished.output.rglob("*.tmp"))


def test_webdataset_reads_the_shards_unchanged(finished: RunResult) -> None:
    import webdataset as wds

    shards = finished.output / "shards"
    sizes = json.loads((shards / "sizes.json").read_text())
    urls = [str(shards / name) for name in sorted(sizes)]
    ledger = curate.open_ledger(finished.output).collect()
    captions = dict(zip(ledger["uid"], ledger["caption"], strict=True))
    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        n += 1
        assert sample["jpg"].size == (96, 96)
        assert sample["txt"] == (captions[sample["__key__"]] or "")
        assert sample["json"]["uid"] == sample["__key__"]
    assert n == sum(sizes.values())


def test_hugging_face_datasets_reads_the_shards(finished: RunResult, tmp_path: Path) -> None:
    import datasets

    shards = finished.output / "shards"
    sizes = json.loads((shards / "sizes.json").read_text())
    ds = datasets.load_dataset(str(shards), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == sum(sizes.values())
    row = ds[0]
    assert row["jpg"].size == (96, 96) and isinstance(row["txt"], str)
    assert "--" not in row["__key__"] and "." not in row["__key__"]


def test_rerun_of_a_finished_run_is_a_no_op_with_same_bytes(
    finished: RunResult, config_path: Path
) -> None:
    before = {p: p.read_bytes() for p in sorted((finished.output / "shards").iterdir())}
    again = curate.run(config_path, finished.output, progress=False)
    assert again.funnel == finished.funnel
    assert {p: p.read_bytes() for p in sorted((finished.output / "shards").iterdir())} == before


def test_changed_config_is_refused_with_the_hash(
    finished: RunResult, urls: Path, tmp_path: Path
) -> None:
    changed = pipeline_yaml(tmp_path, urls, image={"size": 64})
    with pytest.raises(ConfigMismatchError, match="config hash"):
        curate.run(changed, finished.output, progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "curate", "run", str(changed), "-o", str(finished.output), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr and "config hash" in proc.stderr


def test_overwrite_replaces_a_run_with_another_config(
    web: SyntheticWeb, server: WebServer, tmp_path: Path
) -> None:
    good = web.truth.filter((pl.col("expected_status") == "ok") & (pl.col("role") == "original"))
    small = web.url_list(server.base_url).filter(pl.col("item_id").is_in(good["item_id"])).head(6)
    small.write_parquet(tmp_path / "small.parquet")
    out = tmp_path / "out"
    first = curate.run(
        pipeline_yaml(tmp_path, tmp_path / "small.parquet", engine={"n_workers": 1}),
        out,
        progress=False,
    )
    assert first.funnel["written"] == 6
    other = pipeline_yaml(
        tmp_path, tmp_path / "small.parquet", image={"size": 48}, engine={"n_workers": 1}
    )
    second = curate.run(other, out, progress=False, overwrite=True)
    assert second.funnel["written"] == 6
    import webdataset as wds

    sample = next(
        iter(wds.WebDataset(str(out / "shards" / "00000.tar"), shardshuffle=False).decode("pil"))
    )
    assert sample["jpg"].size == (48, 48)


def test_real_dask_scheduler_and_worker(
    web: SyntheticWeb, server: WebServer, tmp_path: Path, dask_cluster: Callable[[int], str]
) -> None:
    address = dask_cluster(1)
    assert address.startswith("tcp://127.0.0.1:")
    small = web.url_list(server.base_url).head(12)
    small.write_parquet(tmp_path / "small.parquet")
    cfg = pipeline_yaml(tmp_path, tmp_path / "small.parquet")
    res = curate.run(cfg, tmp_path / "out", scheduler=address, progress=False)
    assert res.funnel["inputs"] == 12
    assert validate_shards(tmp_path / "out" / "shards") == []
    from distributed import Client

    with Client(address, timeout="20s") as client:
        assert len(client.scheduler_info()["workers"]) == 1  # the subprocess worker did the work


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "curate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_cli_errors_are_clear_and_mark_nothing_done(urls: Path, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("sources: [\n")
    proc = cli("run", str(bad_yaml), "-o", str(tmp_path / "o1"), cwd=tmp_path)
    assert proc.returncode == 2 and "bad.yaml: not valid YAML" in proc.stderr

    typo = tmp_path / "typo.yaml"
    typo.write_text(f"sources:\n  - path: {urls}\nimage:\n  sise: 3\n")
    proc = cli("run", str(typo), "-o", str(tmp_path / "o2"), cwd=tmp_path)
    assert proc.returncode == 2 and "image.sise: unknown key" in proc.stderr

    missing = pipeline_yaml(tmp_path, urls, **{})
    text = missing.read_text().replace("caption_column: caption", "caption_column: alt_text")
    missing.write_text(text)
    proc = cli("run", str(missing), "-o", str(tmp_path / "o3"), cwd=tmp_path)
    assert proc.returncode == 2 and "column 'alt_text' not found" in proc.stderr

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 nope")
    unreadable = pipeline_yaml(tmp_path, garbage)
    proc = cli("run", str(unreadable), "-o", str(tmp_path / "o4"), cwd=tmp_path)
    assert proc.returncode == 2 and "garbage.parquet: cannot read as parquet" in proc.stderr

    for name in ("o1", "o2", "o3", "o4"):
        assert not list((tmp_path / name).glob("state/*/*.json"))


def test_changed_input_is_refused(web: SyntheticWeb, server: WebServer, tmp_path: Path) -> None:
    good = web.truth.filter((pl.col("expected_status") == "ok") & (pl.col("role") == "original"))
    listing = web.url_list(server.base_url).filter(pl.col("item_id").is_in(good["item_id"]))
    listing.head(3).write_parquet(tmp_path / "u.parquet")
    cfg = pipeline_yaml(tmp_path, tmp_path / "u.parquet", engine={"n_workers": 1})
    curate.run(cfg, tmp_path / "out", progress=False)
    listing.head(4).write_parquet(tmp_path / "u.parquet")  # same path, same config text
    with pytest.raises(ConfigMismatchError, match="other inputs or fetch settings"):
        curate.run(cfg, tmp_path / "out", progress=False)


def test_unsafe_urls_are_ledger_rows_and_lose_nothing(
    web: SyntheticWeb, server: WebServer, tmp_path: Path
) -> None:
    good = web.truth.filter((pl.col("expected_status") == "ok") & (pl.col("role") == "original"))
    urls = [server.base_url + r for r in good["route"].head(4)]
    port = server.base_url.rsplit(":", 1)[1]
    bad = {
        "file:///etc/passwd": "bad_scheme",
        "ftp://example.com/a.jpg": "bad_scheme",
        "data:image/png;base64,iVBORw0KGgo=": "bad_scheme",
        "/etc/hosts": "bad_scheme",
        "http://169.254.169.254/latest/meta-data/": "private_address",
        f"http://2130706434:{port}/img/x.jpg": "private_address",
        f"http://[::1]:{port}/img/x.jpg": "private_address",
        f"http://0x7f.0.0.2:{port}/img/x.jpg": "private_address",
        "http://no-such-host.invalid/a.jpg": "dns_error",
    }
    all_urls = urls[:2] + list(bad) + urls[2:]
    pl.DataFrame({"url": all_urls, "caption": ["c"] * len(all_urls)}).write_parquet(
        tmp_path / "u.parquet"
    )
    cfg = pipeline_yaml(tmp_path, tmp_path / "u.parquet", engine={"n_workers": 1})
    res = curate.run(cfg, tmp_path / "out", progress=False)
    ledger = curate.open_ledger(tmp_path / "out").collect()
    got = dict(zip(ledger["url"], ledger["reason"], strict=True))
    assert {u: got[u] for u in bad} == bad
    assert all(got[u] is None for u in urls)
    assert res.funnel["written"] == 4
