"""The label stages, between `filter` and `shards`, when a pipeline has a `labels:` section.

`labelset` (one task over the corpus): fits the region codebook on the kept samples'
pictures (decisions/codebook.npy) and picks every kept sample's ITM negatives among the
kept samples, hard ones from the CLIP text embeddings when the CLIP stage ran
(decisions/itm.parquet). `labels` (one task per partition): each kept sample's label
members into labels/NNNNN.tar, keyed by uid; the shards stage merges them in. Without a
`labels:` section one task removes what an earlier run wrote.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from curate.config import LabelsConfig, PipelineConfig
from curate.engine.stage import Plan, Stage, Task, digest, stage_digest
from curate.io.atomic import atomic_open
from curate.io.store import load_npy, read_parquet, remove_tree
from curate.labels.corpus import build_corpus, negatives_for, text_embeddings
from curate.labels.members import (
    LABELS_VERSION,
    audiomask_member,
    fom_member,
    itm_member,
    mlm_member,
    patchmask_member,
    picture,
    regions_member,
    sample_regions,
    vsm_member,
)
from curate.labels.regions import fit_codebook, region_features
from curate.labels.seed import rng_for
from curate.media.image import pictures
from curate.rundir import RunDir, RunRoot
from curate.shards.final import kept_samples
from curate.shards.tar import TarShardWriter, iter_tar_samples
from curate.tables import raw_table, read_placement, write_table

__all__ = ["LABELS", "LABELSET", "label_members"]

_ITM_SCHEMA = {"uid": pl.String(), "itm": pl.String(), "vsm": pl.String()}


def label_members(cfg: PipelineConfig) -> tuple[str, ...]:
    """The label members every sample of this corpus carries."""
    spec = cfg.labels
    if spec is None:
        return ()
    kind = "image" if cfg.media is None else cfg.media.kind
    pictured = kind in ("image", "video")
    out = []
    for task in spec.tasks:
        if task == "mlm" or task == "itm":
            out.append(f"{task}.{'npz' if task == 'mlm' else 'json'}")
        elif task == "patchmask" and pictured:
            out.append("patchmask.npy")
        elif task == "regions" and pictured:
            out.append("regions.json")
        elif task in ("fom", "vsm") and kind == "video":
            out.append(f"{task}.json")
        elif task == "audiomask" and kind == "audio":
            out.append("audiomask.json")
    return tuple(out)


def _kept(run: RunDir) -> pl.DataFrame:
    """Kept samples in corpus order with their captions."""
    kept = kept_samples(run)
    captions = raw_table(run).select("uid", "caption")
    return kept.join(captions, on="uid", how="left", maintain_order="left")


def labelset_task(run_dir: RunRoot, spec: LabelsConfig) -> dict[str, Any]:
    """The corpus-wide parts: region codebook, ITM and VSM negatives."""
    run = RunDir(run_dir)
    kept = _kept(run)
    uids, captions = kept["uid"].to_list(), kept["caption"].fill_null("").to_list()
    feats = []
    if "regions" in spec.tasks:
        wanted = set(uids)
        for part in kept["partition"].unique().sort().to_list():
            for key, members in iter_tar_samples(run.raw_tar(part)):
                image = picture(members) if key in wanted else None
                if image is not None:
                    feats.append(region_features(sample_regions(image, spec)))
    all_feats = np.concatenate(feats) if feats else np.zeros((0, 11))
    book = fit_codebook(all_feats, spec.codebook_size, rng_for(spec.seed, "codebook", "corpus"))
    with atomic_open(run.codebook) as f:
        np.save(f, book)
    tasks = [t for t in ("itm", "vsm") if t in spec.tasks] if uids else []
    emb = text_embeddings(run, uids) if tasks else None
    corpus = build_corpus(dict(zip(uids, captions, strict=True)), spec.text_length, emb)
    docs: dict[str, list[str | None]] = {"itm": [None] * len(uids), "vsm": [None] * len(uids)}
    hard = 0
    for task in tasks:
        member = itm_member if task == "itm" else vsm_member
        for i, negs in negatives_for(corpus, range(len(corpus.uids)), task, spec):
            docs[task][i] = member(negs, corpus.uids, corpus.texts).decode()
            hard += sum(n.kind == "hard" for n in negs)
    rows = len(uids) if tasks else 0
    table = pl.DataFrame(
        {"uid": corpus.uids[:rows], "itm": docs["itm"][:rows], "vsm": docs["vsm"][:rows]},
        schema=_ITM_SCHEMA,
    )
    write_table(run.decision("itm"), table)
    return {"samples": len(uids), "codebook": len(book), "hard_negatives": hard}


def labels_partition(run_dir: RunRoot, part: str, cfg: PipelineConfig) -> dict[str, Any]:
    """Label members of the partition's kept samples into labels/NNNNN.tar."""
    spec = cfg.labels
    assert spec is not None
    run = RunDir(run_dir)
    placed = read_placement(run, part)["uid"].implode()  # this partition's kept samples
    raw = read_parquet(run.raw_table(part), columns=["uid", "caption"])
    kept = raw.filter(pl.col("uid").is_in(placed))
    captions = dict(zip(kept["uid"], kept["caption"], strict=True))
    itm = read_parquet(run.decision("itm"))
    negatives = dict(zip(itm["uid"], itm["itm"], strict=True))
    subtitles = dict(zip(itm["uid"], itm["vsm"], strict=True))
    book = load_npy(run.codebook)
    names = set(label_members(cfg))
    n = 0
    with TarShardWriter(run.labels_tar(part)) as tar:
        for key, members in iter_tar_samples(run.raw_tar(part)):
            if key not in captions:
                continue
            out: dict[str, bytes] = {}
            if "mlm.npz" in names:
                out["mlm.npz"] = mlm_member(captions[key], key, spec)
            image = picture(members) if names & {"patchmask.npy", "regions.json"} else None
            if image is not None and "patchmask.npy" in names:
                out["patchmask.npy"] = patchmask_member(image.shape[1], image.shape[0], key, spec)
            if image is not None and "regions.json" in names:
                out["regions.json"] = regions_member(sample_regions(image, spec), key, spec, book)
            if "itm.json" in names:
                out["itm.json"] = negatives[key].encode()
            meta = json.loads(members.get("json", b"{}"))
            if "vsm.json" in names:
                out["vsm.json"] = subtitles[key].encode()
            if "fom.json" in names:
                out["fom.json"] = fom_member(len(pictures(members)), key, spec)
            if "audiomask.json" in names:
                out["audiomask.json"] = audiomask_member(meta["end"] - meta["start"], key, spec)
            tar.write(key, out)
            n += 1
    return {"partition": part, "samples": n}


def clear_labels(run_dir: RunRoot) -> dict[str, Any]:
    """No labels: remove what an earlier run with them left."""
    run = RunDir(run_dir)
    removed = run.codebook.exists() + run.decision("itm").exists()
    run.codebook.unlink(missing_ok=True)
    run.decision("itm").unlink(missing_ok=True)
    remove_tree(run.root / "labels")
    return {"removed": removed}


def _versions() -> str:
    """Packages whose releases could change label bytes: the tokenizer and its text
    cleaning, numpy's generators, the JPEG decoder behind region colours."""
    from importlib import metadata

    names = ("open_clip_torch", "ftfy", "numpy", "pillow")
    found = []
    for name in names:
        try:
            found.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}=none")
    return ",".join(found)


def _inputs(p: Plan) -> str:
    run = p.run
    return digest(
        str(LABELS_VERSION),
        _versions(),
        p.cfg.labels,
        p.cfg.media,
        stage_digest(run, "dedup"),
        stage_digest(run, "filter"),
        stage_digest(run, "clip"),
    )


def _labelset(p: Plan) -> list[Task]:
    run, spec = p.run, p.cfg.labels
    root = run.root
    if spec is None:
        return [Task("off", clear_labels, (root,), digest("off"))]
    outputs = (run.codebook, run.decision("itm"))
    return [Task("all", labelset_task, (root, spec), _inputs(p), outputs)]


def _labels(p: Plan) -> list[Task]:
    run = p.run
    if p.cfg.labels is None:
        return []
    inputs = digest(_inputs(p), stage_digest(run, "labelset"))
    return [
        Task(part, labels_partition, (run.root, part, p.cfg), inputs, (run.labels_tar(part),))
        for part in run.partitions()
    ]


LABELSET = Stage("labelset", _labelset)
LABELS = Stage("labels", _labels, members=label_members)
