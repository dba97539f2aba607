"""The package structure as drawn in docs/architecture.md, checked on every import statement.

Function-level (lazy) imports count: a cycle hidden in a function body is still a cycle, and
production code reaching into `curate.testing` from inside a worker is what this forbids.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "curate"

# The lowest layer: naming, schemas, config, I/O. Imports nothing that does a stage's work.
FOUNDATION = ("curate.errors", "curate.config", "curate.io", "curate.rundir", "curate.tables")
STAGE_PACKAGES = (
    "curate.fetch",
    "curate.features",
    "curate.dedup",
    "curate.filters",
    "curate.shards",
    "curate.ledger",
    "curate.clips",
    "curate.labels",
)
DRIVERS = ("curate.pipeline", "curate.cli", "curate.demo", "curate.__main__")
STAGE_MODULES = (
    "curate.fetch.stage",
    "curate.features.stage",
    "curate.features.clip_stage",
    "curate.dedup.stage",
    "curate.filters.stage",
    "curate.shards.stage",
    "curate.clips.stage",
    "curate.labels.stage",
)


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """curate modules imported anywhere in the file, resolved to module names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("curate")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("curate"):
            assert node.module is not None
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                sub = PACKAGE.parent / Path(*full.split("."))
                found.add(full if sub.with_suffix(".py").exists() or sub.is_dir() else node.module)
    return found


GRAPH: dict[str, set[str]] = {
    _module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py")) if "models" not in p.parts
}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, dsts in GRAPH.items()
        if _under(src, sources)
        for dst in dsts
        if _under(dst, forbidden) and not _under(dst, sources)
    )


def test_the_graph_sees_the_package() -> None:
    assert "curate.engine.runner" in GRAPH and "curate.rundir" in GRAPH["curate.engine.runner"]
    assert "curate.features.rows" in GRAPH["curate.fetch.partition"]


def test_foundation_imports_no_stage_engine_or_driver() -> None:
    higher = (*STAGE_PACKAGES, "curate.engine", "curate.media", *DRIVERS, "curate.testing")
    assert _violations(FOUNDATION, higher) == []


def test_engine_imports_no_stage() -> None:
    assert _violations(("curate.engine",), (*STAGE_PACKAGES, *DRIVERS, "curate.testing")) == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("curate.features", ("curate.dedup", "curate.filters", "curate.fetch", "curate.ledger")),
        ("curate.shards", ("curate.fetch", "curate.features", "curate.dedup", "curate.filters")),
        ("curate.filters", ("curate.fetch", "curate.dedup", "curate.shards", "curate.ledger")),
        ("curate.fetch", ("curate.dedup", "curate.filters", "curate.ledger")),
        ("curate.media", (*STAGE_PACKAGES, "curate.engine")),
        ("curate.labels", ("curate.fetch", "curate.dedup", "curate.filters", "curate.ledger")),
        # the trainer reads finished shards with webdataset: label constants, never a stage
        ("curate.train", (*(p for p in STAGE_PACKAGES if p != "curate.labels"), "curate.engine")),
        # audits read the run directory (tables, markers, shards), never run a stage
        (
            # the report reads the tar format and counts as the filter rules do; no stage
            "curate.report",
            (
                *(
                    p
                    for p in STAGE_PACKAGES
                    if p
                    not in ("curate.ledger", "curate.labels", "curate.shards", "curate.filters")
                ),
                "curate.filters.stage",
                "curate.shards.stage",
                "curate.shards.final",
                "curate.engine.runner",
                "curate.engine.cluster",
                "curate.train",
            ),
        ),
        # the ledger reads every stage's output through curate.tables, never stage code
        ("curate.ledger", tuple(p for p in STAGE_PACKAGES if p != "curate.ledger")),
    ],
)
def test_stage_packages_do_not_reach_sideways(package: str, forbidden: tuple[str, ...]) -> None:
    assert _violations((package,), (*forbidden, *DRIVERS)) == []


def test_only_the_pipeline_imports_stage_declarations() -> None:
    bad = sorted(
        f"{src} imports {dst}"
        for src, dsts in GRAPH.items()
        for dst in dsts
        if dst in STAGE_MODULES and src != "curate.pipeline"
    )
    assert bad == []


def test_production_code_never_imports_the_test_helpers() -> None:
    allowed = ("curate.testing", "curate.demo")
    bad = sorted(
        f"{src} imports {dst}"
        for src, dsts in GRAPH.items()
        if not _under(src, allowed)
        for dst in dsts
        if _under(dst, ("curate.testing",))
    )
    assert bad == []


def test_no_import_cycles() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: finished
    cycles: list[str] = []

    def visit(mod: str, path: list[str]) -> None:
        seen[mod] = 1
        for dst in sorted(GRAPH.get(mod, ())):
            dst = dst if dst in GRAPH else dst.rsplit(".", 1)[0]
            if seen.get(dst) == 1:
                cycles.append(" -> ".join([*path[path.index(dst) :], dst]))
            elif dst in GRAPH and dst not in seen:
                visit(dst, [*path, dst])
        seen[mod] = 2

    for mod in sorted(GRAPH):
        if mod not in seen:
            visit(mod, [mod])
    # A package's __init__ re-exporting its own modules is not a cycle between layers.
    real = [c for c in cycles if len({m.split(".")[1] for m in c.split(" -> ")}) > 1]
    assert real == []


def test_test_modules_outside_packages_have_unique_names() -> None:
    """pytest imports a test file from a folder without __init__.py by its bare name, so two
    such files named alike fail collection on a fresh clone (a stale cache hides it)."""
    tests = Path(__file__).resolve().parent
    bare: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            bare.setdefault(path.name, []).append(str(path.relative_to(tests)))
    clashes = {name: paths for name, paths in bare.items() if len(paths) > 1}
    assert clashes == {}
