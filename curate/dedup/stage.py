"""The dedup stage: one whole-corpus task writing decisions/dedup.parquet (dropped uid,
method, dup_of).

Duplicates cross partitions, so the task sees every sample, but only the columns the
searches need: hashes, sizes, CLIP score (and captions when a caption method runs). The
thumbnails (1.7 kB a sample) and embeddings stay in the feature files: candidate pairs are
verified, and semantic clusters compared, by sub-tasks on the workers that read just the
rows they need (`curate.dedup.stored`); the Hamming searches fan out the same way. It
reruns when features, CLIP scores, eval sets or `dedup` change.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from curate.config import DedupConfig, PipelineConfig
from curate.dedup.evalset import eval_digest, load_eval
from curate.dedup.find import find_duplicates
from curate.dedup.stored import Locator, StoredThumbs, stored_semantic
from curate.engine.stage import Plan, Stage, Task, cluster_client, digest, stage_digest
from curate.errors import CurateError
from curate.io.store import npy_shape, read_parquet
from curate.rundir import RunDir, RunRoot
from curate.tables import DEDUP_SCHEMA, write_table

__all__ = ["DEDUP", "run_dedup"]

# Bump when the dedup code changes its decisions.
DEDUP_VERSION = "1"


_EXACT = {"bytes": "sha256", "url_caption": "url_caption_hash", "caption": "caption_hash"}
_RANK = ("uid", "width", "height", "original_width", "original_height")


def search_columns(d: DedupConfig) -> list[str]:
    """The feature columns the configured finders and the keep policy read."""
    columns = [*_RANK, *(_EXACT[m] for m in d.exact), "frame_phash"]  # frames: which are clips
    if d.perceptual.enabled or any(ev.images for ev in d.eval_sets):
        columns.append("phash")
    return columns


def search_table(
    run: RunDir, captions: bool, columns: list[str] | None = None
) -> tuple[pl.DataFrame, Locator]:
    """What the searches read of every partition with features: `columns` of the features
    (all but the thumbnails by default), captions only when asked, the CLIP score when
    scored; and where each row's partition starts."""
    frames, parts, heights = [], [], []
    for part in run.partitions():
        if not run.features(part).exists():
            continue
        if columns is None:
            frame = read_parquet(run.features(part)).drop("thumb")
        else:
            frame = read_parquet(run.features(part), columns=columns)
        if captions:
            raw = read_parquet(run.raw_table(part), columns=["uid", "caption"])
            frame = frame.join(raw, on="uid", how="left", maintain_order="left")
        if run.clip_scores(part).exists():
            scores = read_parquet(run.clip_scores(part), columns=["uid", "clip_score"])
            frame = frame.join(scores, on="uid", how="left", maintain_order="left")
        frames.append(frame)
        parts.append(part)
        heights.append(frame.height)
    table = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return table, Locator.from_heights(parts, heights)


def _check_embeddings(run: RunDir, loc: Locator) -> None:
    for k, part in enumerate(loc.parts):
        emb = run.image_embeddings(part)
        if not emb.exists():
            raise CurateError(
                f"{emb}: missing; semantic dedup uses stored CLIP image embeddings, so run a "
                "pipeline with the CLIP stage or set dedup.semantic.enabled: false"
            )
        rows = int(loc.offsets[k + 1] - loc.offsets[k])
        shape = npy_shape(emb)
        if shape[0] != rows:
            raise CurateError(f"{emb}: {shape[0]} embeddings for {rows} samples")


def run_dedup(run_dir: RunRoot, cfg: PipelineConfig) -> dict[str, Any]:
    """The task: find duplicates across the corpus and write the decision table."""
    run = RunDir(run_dir)
    d = cfg.dedup
    captions = d.captions.enabled or any(ev.captions for ev in d.eval_sets)
    table, loc = search_table(run, captions, search_columns(d))
    if d.enabled and table.height:
        opts = cfg.storage_options
        evals = tuple(load_eval(ev, cfg.image, opts) for ev in d.eval_sets)
        if d.semantic.enabled:
            _check_embeddings(run, loc)
        with cluster_client() as client:
            dropped = find_duplicates(
                table,
                d,
                evals=evals,
                client=client,
                thumbs=StoredThumbs(run.root, loc, client),
                semantic=stored_semantic(run.root, loc, client),
            )
    else:
        dropped = pl.DataFrame(schema=DEDUP_SCHEMA)
    write_table(run.decision("dedup"), dropped)
    counts = dropped.group_by("dedup_method").len().sort("dedup_method")
    return {"samples": table.height, "dropped": {m: int(n) for m, n in counts.iter_rows()}}


def _plan(p: Plan) -> list[Task]:
    run, cfg = p.run, p.cfg
    inputs = digest(
        DEDUP_VERSION,
        stage_digest(run, "features"),
        stage_digest(run, "clip"),
        eval_digest(cfg.dedup.eval_sets, cfg.storage_options),
        cfg.dedup,
        cfg.image,
    )
    return [Task("all", run_dedup, (run.root, cfg), inputs, (run.decision("dedup"),))]


DEDUP = Stage("dedup", _plan)
