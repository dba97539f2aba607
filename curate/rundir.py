"""The run directory: every file of a run named in one place, and run.json's lifecycle.

Layout (LAYOUT = 2):

    run.json                     config, its hashes, package versions, funnel when finished
    ingest/NNNNN.parquet         input rows, one file per partition
    raw/NNNNN.{tar,parquet}      fetched samples and one record per input row
    features/NNNNN.parquet       per-sample features; NNNNN.clip.parquet, NNNNN.{emb,txt}.npy
    decisions/dedup.parquet      corpus-wide dedup decisions (dropped uids and why)
    decisions/filter/NNNNN.parquet   the filter rules' decisions, per partition
    decisions/plan/NNNNN.parquet     each final shard's members; plan.json lists the shards
    decisions/placement/NNNNN.parquet   where each partition's kept samples go
    state/<stage>/<key>.json     the engine's markers: what a finished task read, its summary
    shards/NNNNN.tar, sizes.json, manifest.json, README.md
    ledger/NNNNN.parquet         one row per input row (or derived sample), per partition
    report.html

Nothing else in curate builds a path inside a run directory. The root may be a store URL
(`s3://bucket/run`): every path here is then a `UPath` on that store, and the lifecycle below
holds there too (uploads are whole-or-absent puts, so no `*.tmp` is ever left in a store).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from upath import UPath

from curate.errors import ConfigMismatchError, CurateError
from curate.io.atomic import read_json, write_json
from curate.io.store import is_local, location, remove_tree

__all__ = ["CARD", "LAYOUT", "MANIFEST", "SIZES", "RunDir", "RunRoot", "partition_name"]

LAYOUT = 2
# Files of a shards folder beside the tars; a corpus keeps them when copied out of its run.
SIZES, MANIFEST, CARD = "sizes.json", "manifest.json", "README.md"
_FOLDERS = ("ingest", "raw", "features", "decisions", "labels", "ledger", "shards", "state")
# What the atomic writers leave at the top of a run killed before run.json was renamed into
# place (report.html comes later, but a `.tmp` of curate's own file is curate's all the same).
_TOP_LEFTOVERS = ("run.json.tmp", "report.html.tmp")
_PACKAGES = (
    "curate",
    "dask",
    "distributed",
    "polars",
    "pyarrow",
    "pillow",
    "urllib3",
    "webdataset",
)


# What a task is given to name its run: a UPath (which carries its store's options to the
# worker), a local path, or a string.
RunRoot = str | os.PathLike[str] | UPath


def _is_leftover(path: UPath) -> bool:
    """A folder or an atomic writer's `*.tmp` file: what a killed run leaves in its folders
    (a symlink is never one: curate writes none, so it is someone else's)."""
    if path.is_symlink():
        return False
    return path.is_dir() or (path.is_file() and path.name.endswith(".tmp"))


def partition_name(index: int) -> str:
    return f"{index:05d}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True, init=False)
class RunDir:
    """Paths of one run directory. Pure naming: only the lifecycle methods write."""

    root: UPath

    def __init__(self, root: RunRoot) -> None:
        object.__setattr__(self, "root", location(root))

    @property
    def local(self) -> bool:
        """Whether the run is on this machine's disk (else on an object store)."""
        return is_local(self.root)

    # -- top level ------------------------------------------------------------------------
    @property
    def run_json(self) -> UPath:
        return self.root / "run.json"

    @property
    def report(self) -> UPath:
        return self.root / "report.html"

    # -- per partition --------------------------------------------------------------------
    def ingest(self, part: str) -> UPath:
        return self.root / "ingest" / f"{part}.parquet"

    def raw_tar(self, part: str) -> UPath:
        return self.root / "raw" / f"{part}.tar"

    def raw_table(self, part: str) -> UPath:
        return self.root / "raw" / f"{part}.parquet"

    def features(self, part: str) -> UPath:
        return self.root / "features" / f"{part}.parquet"

    def clip_scores(self, part: str) -> UPath:
        return self.root / "features" / f"{part}.clip.parquet"

    def image_embeddings(self, part: str) -> UPath:
        return self.root / "features" / f"{part}.emb.npy"

    def text_embeddings(self, part: str) -> UPath:
        return self.root / "features" / f"{part}.txt.npy"

    def media_dir(self, part: str) -> UPath:
        """Where a partition's media files are streamed while their clips are cut."""
        return self.root / "raw" / f"{part}.media"

    def media(self, part: str, uid: str) -> UPath:
        return self.media_dir(part) / uid

    def labels_tar(self, part: str) -> UPath:
        """A partition's label members, keyed by uid, merged into the final shards."""
        return self.root / "labels" / f"{part}.tar"

    @property
    def codebook(self) -> UPath:
        """The region codebook fitted on the corpus (k-means centres, float64 .npy)."""
        return self.root / "decisions" / "codebook.npy"

    def ledger(self, part: str) -> UPath:
        return self.root / "ledger" / f"{part}.parquet"

    def partitions(self) -> list[str]:
        """Names of the ingest partitions, in order (the unit of every per-partition stage)."""
        folder = self.root / "ingest"
        return sorted((p.stem for p in folder.glob("*.parquet") if p.stem.isdigit()), key=int)

    # -- corpus-wide ----------------------------------------------------------------------
    def decision(self, name: str) -> UPath:
        """A corpus-wide decision table, e.g. `dedup` or `filter`."""
        return self.root / "decisions" / f"{name}.parquet"

    def filter_decisions(self, part: str) -> UPath:
        """The filter rules' decisions on one partition (dropped uids and why)."""
        return self.root / "decisions" / "filter" / f"{part}.parquet"

    def shard_plan(self, name: str) -> UPath:
        """The members (partition, uid) of final shard `name`, in order."""
        return self.root / "decisions" / "plan" / f"{name}.parquet"

    def shard_plans(self) -> list[UPath]:
        return sorted((self.root / "decisions" / "plan").glob("*.parquet"), key=lambda p: p.name)

    @property
    def plan_index(self) -> UPath:
        """Every planned shard's name, plan digest and size."""
        return self.root / "decisions" / "plan.json"

    def placement(self, part: str) -> UPath:
        """Where a partition's kept samples are placed: uid, shard, key."""
        return self.root / "decisions" / "placement" / f"{part}.parquet"

    @property
    def clip_cut(self) -> UPath:
        """The (score, uid) of the last sample a CLIP top fraction keeps, corpus-wide."""
        return self.root / "decisions" / "clip_cut.json"

    @property
    def ledger_dir(self) -> UPath:
        return self.root / "ledger"

    @property
    def shards_dir(self) -> UPath:
        return self.root / "shards"

    def shard(self, name: str) -> UPath:
        return self.root / "shards" / f"{name}.tar"

    def shard_files(self) -> list[UPath]:
        return sorted((self.root / "shards").glob("*.tar"))

    @property
    def sizes(self) -> UPath:
        return self.shards_dir / SIZES

    @property
    def manifest(self) -> UPath:
        return self.shards_dir / MANIFEST

    @property
    def card(self) -> UPath:
        return self.shards_dir / CARD

    # -- the engine's markers -------------------------------------------------------------
    def marker(self, stage: str, key: str) -> UPath:
        return self.root / "state" / stage / f"{key}.json"

    @property
    def timings(self) -> UPath:
        """Wall seconds of every stage task, one JSON line each (not a marker: no digest)."""
        return self.root / "state" / "timings.jsonl"

    def markers(self, stage: str) -> list[UPath]:
        """A stage's markers in key order (numeric keys by number: 99999 before 100000)."""
        found = (self.root / "state" / stage).glob("*.json")
        return sorted(found, key=lambda p: (not p.stem.isdigit(), len(p.stem), p.stem))

    # -- lifecycle ------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether run.json is curate's (a foreign run.json does not make a folder ours)."""
        try:
            info = read_json(self.run_json)
        except (OSError, ValueError):
            return False
        return isinstance(info, dict) and {"config", "config_hash", "started_at"} <= info.keys()

    def holds_only_leftovers(self) -> bool:
        """Whether a local folder without run.json holds nothing but what a run of curate
        killed before run.json existed leaves: `run.json.tmp` (its first write, cut before
        the rename), curate's own folders holding only folders and `*.tmp` (the atomic
        writers' unfinished files). Such a folder is resumed, not refused: a user who kills a
        run in its first second must be able to rerun it; anything else is someone's data."""
        for entry in self.root.iterdir():
            if entry.name in _TOP_LEFTOVERS and _is_leftover(entry) and entry.is_file():
                continue
            ours = entry.name in _FOLDERS and _is_leftover(entry) and entry.is_dir()
            if not ours or not all(_is_leftover(p) for p in entry.rglob("*")):
                return False
        return True

    def check_location(self) -> None:
        """Refuse, before any work, an output that cannot hold a run: a file, a folder that
        is not writable, or a non-empty folder that is not a curate run (nor only the
        leftovers of one killed before run.json existed: see `holds_only_leftovers`)."""
        root = self.root
        if not self.local:
            if root.is_file():
                raise CurateError(f"{root}: is an object, not a prefix; choose a prefix")
            if root.exists() and not self.is_run() and any(root.iterdir()):
                raise CurateError(
                    f"{root}: is not empty and is not a curate run directory; "
                    "choose an empty prefix"
                )
            return
        if root.exists() and not root.is_dir():
            raise CurateError(f"{root}: is a file, not a folder; choose a folder for the run")
        probe = root if root.exists() else next(p for p in root.parents if p.exists())
        if not probe.is_dir():
            raise CurateError(f"{probe}: is a file, so {root} cannot be created")
        if not os.access(str(probe), os.W_OK | os.X_OK):
            raise CurateError(f"{probe}: not writable; choose another output")
        if root.exists() and not self.is_run() and not self.holds_only_leftovers():
            raise CurateError(
                f"{root}: is not empty and is not a curate run directory; choose an empty output"
            )

    def start(
        self, cfg_json: dict[str, Any], name: str, hashes: dict[str, str], overwrite: bool
    ) -> dict[str, Any]:
        """Create or resume the run; refuse one whose fetched bytes would differ.

        `hashes["fetch"]` covers what changes fetched bytes (inputs, ingest, fetch, image): a
        run with another is refused unless `overwrite`. Any other change is an incremental
        rerun: the stages whose inputs changed redo their tasks.
        """
        if self.is_run():
            previous = read_json(self.run_json)
            if previous.get("layout") != LAYOUT:
                if not overwrite:
                    raise ConfigMismatchError(
                        f"{self.root}: was written by an older curate (layout "
                        f"{previous.get('layout', 1)}, now {LAYOUT}); rerun with --overwrite"
                    )
                self.clear()
            elif previous.get("fetch_hash") != hashes["fetch"]:
                if not overwrite:
                    raise ConfigMismatchError(
                        f"{self.root}: holds a run with other inputs or fetch settings "
                        f"(config hash {str(previous.get('fetch_hash'))[:12]} != "
                        f"{hashes['fetch'][:12]}; sources, ingest, fetch and image decide "
                        "what is fetched); rerun with --overwrite to discard it, or choose "
                        "another output"
                    )
                self.clear()
            elif overwrite:
                self.clear()
        else:
            self.check_location()
            if overwrite:
                self.clear()
        if self.local:
            self.root.mkdir(parents=True, exist_ok=True)
            # Left by a killed run (run.json.tmp too: the check took such a folder as ours);
            # nothing but curate writes here.
            for tmp in self.root.rglob("*.tmp"):
                if not tmp.is_dir():
                    tmp.unlink(missing_ok=True)
        info: dict[str, Any] = {
            "layout": LAYOUT,
            "name": name,
            "config": cfg_json,
            "config_hash": hashes["config"],
            "fetch_hash": hashes["fetch"],
            "versions": _versions(),
            "started_at": _now(),
            "finished_at": None,
        }
        write_json(self.run_json, info)
        return info

    def clear(self) -> None:
        """Remove everything a run writes (and nothing else: the check refused strangers)."""
        for name in _FOLDERS:
            remove_tree(self.root / name)
        for f in (self.report, self.run_json):  # run.json last: a kill mid-way leaves a run
            if self.local or f.exists():
                f.unlink(missing_ok=True)

    def finish(self, info: dict[str, Any], funnel: dict[str, Any]) -> None:
        write_json(self.run_json, {**info, "finished_at": _now(), "funnel": funnel})
