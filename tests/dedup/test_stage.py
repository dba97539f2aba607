"""The dedup stage inside real runs: eval sets, caption MinHash, stored embeddings, reruns."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import pipeline_yaml
from PIL import Image

import curate
from curate.config import SemanticDedup, load_config
from curate.dedup.captions import normalise_caption
from curate.dedup.stage import run_dedup
from curate.errors import CurateError
from curate.pipeline import RunResult
from curate.rundir import RunDir
from curate.testing import SyntheticWeb, WebServer


def _shingles(text: str, k: int = 5) -> set[str]:
    t = normalise_caption(text)
    return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}


def test_eval_sets_and_caption_dedup_in_a_run(
    web: SyntheticWeb, server: WebServer, urls: Path, tmp_path: Path
) -> None:
    truth = web.truth.filter((pl.col("role") == "original") & (pl.col("kind") == "photo"))
    target = truth.row(0, named=True)
    leaked = truth.row(1, named=True)
    evals = tmp_path / "eval"
    evals.mkdir()
    # the eval copy is a smaller, recompressed version of a training photo
    src = Image.open(web.files_dir / target["route"].rsplit("/", 1)[-1]).convert("RGB")
    buf = io.BytesIO()
    src.resize((src.width * 2 // 3, src.height * 2 // 3)).save(buf, "JPEG", quality=70)
    (evals / "copy.jpg").write_bytes(buf.getvalue())
    (tmp_path / "eval.txt").write_text(f"{leaked['caption'].upper()}!\nnothing like it\n")
    dedup = {
        "captions": {"enabled": True, "threshold": 0.9},
        "eval_sets": [{"name": "bench", "images": "eval", "captions": "eval.txt"}],
    }
    cfg = pipeline_yaml(tmp_path, urls, dedup=dedup)
    cfg.rename(tmp_path / "p.yaml")  # eval paths are relative to the config file
    res = curate.run(tmp_path / "p.yaml", tmp_path / "out", progress=False)
    led = (
        curate.open_ledger(res.output)
        .collect()
        .join(
            web.truth.with_columns(url=pl.lit(server.base_url) + pl.col("route")).select(
                "url", "item_id", "group", "role"
            ),
            on="url",
        )
    )
    image_hits = led.filter(pl.col("dedup_method") == "eval_image")
    assert target["item_id"] in image_hits["item_id"].to_list()
    assert set(image_hits["group"]) == {target["group"]}  # only copies of that photo
    assert set(image_hits["dup_of"]) == {"eval:bench/0"}
    caption_hits = led.filter(pl.col("dedup_method") == "eval_caption")
    assert caption_hits.height >= 1 and set(caption_hits["dup_of"]) == {"eval:bench/0"}
    assert all(
        normalise_caption(c) == normalise_caption(leaked["caption"])
        for c in caption_hits["caption"]
    )
    assert (led.filter(pl.col("dedup_method").is_not_null())["status"] == "dropped").all()
    assert (led.filter(pl.col("dedup_method").is_not_null())["reason"] == "duplicate").all()
    by_uid = dict(zip(led["uid"], led["caption"], strict=True))
    for row in led.filter(pl.col("dedup_method") == "caption").iter_rows(named=True):
        a, b = _shingles(row["caption"]), _shingles(by_uid[row["dup_of"]])
        assert len(a & b) / len(a | b) >= 0.9
    assert res.funnel["duplicates"]["eval_image"] == image_hits.height
    assert sum(res.funnel["duplicates"].values()) == res.funnel["dropped"]["duplicate"]

    # A rerun with unchanged inputs reuses the decision; a changed eval set redoes it.
    marker = RunDir(res.output).marker("dedup", "all")
    before = marker.stat().st_mtime_ns
    curate.run(tmp_path / "p.yaml", res.output, progress=False)
    assert marker.stat().st_mtime_ns == before
    (evals / "copy.jpg").unlink()
    again = curate.run(tmp_path / "p.yaml", res.output, progress=False)
    assert "eval_image" not in again.funnel["duplicates"]
    assert marker.stat().st_mtime_ns != before
    assert json.loads(marker.read_text())["summary"]["dropped"] == again.funnel["duplicates"]


def test_semantic_dedup_uses_stored_embeddings(
    finished: RunResult, config_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished.output, out)
    cfg = load_config(config_path)
    cfg = cfg.model_copy(
        update={"dedup": cfg.dedup.model_copy(update={"semantic": SemanticDedup(enabled=True)})}
    )
    run = RunDir(out)
    feats = [run.features(p) for p in run.partitions()]
    with pytest.raises(CurateError, match=r"emb\.npy: missing"):
        run_dedup(str(out), cfg)
    rng = np.random.default_rng(0)
    uids: list[str] = []
    for f in feats:  # random directions, except that two distinct photos share one
        uids += pl.read_parquet(f)["uid"].to_list()
    emb = rng.standard_normal((len(uids), 32)).astype(np.float32)
    kept = set(pl.read_parquet(run.decision("dedup"))["uid"])
    a, b = [u for u in uids if u not in kept][:2]
    emb[uids.index(b)] = emb[uids.index(a)] * 2.0  # same direction, other length
    start = 0
    for f in feats:
        n = pl.read_parquet(f).height
        np.save(run.image_embeddings(f.stem), emb[start : start + n])
        start += n
    summary = run_dedup(str(out), cfg)
    assert summary["dropped"]["semantic"] == 1
    dups = pl.read_parquet(run.decision("dedup"))
    row = dups.filter(pl.col("dedup_method") == "semantic").row(0, named=True)
    assert {row["uid"], row["dup_of"]} == {a, b}
