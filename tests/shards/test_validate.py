from __future__ import annotations

import json
from pathlib import Path

from curate.shards.final import sha256_file
from curate.shards.manifest import write_manifest
from curate.shards.tar import TarShardWriter
from curate.shards.validate import validate_shards


def make_corpus(run_dir: Path, n: int = 3) -> Path:
    """Two shards and their manifest in `run_dir/shards`, which is returned."""
    folder = run_dir / "shards"
    summaries = []
    for s in range(2):
        path = folder / f"{s:05d}.tar"
        with TarShardWriter(path) as w:
            for i in range(n):
                w.write(
                    f"s{s}k{i}", {"jpg": b"\xff\xd8\xff" + bytes([i]), "txt": b"t", "json": b"{}"}
                )
        summaries.append(
            {
                "shard": path.name,
                "samples": n,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    write_manifest(str(run_dir), summaries, ["jpg", "json", "txt"], "h")
    return folder


def test_sound_corpus_passes(tmp_path: Path) -> None:
    shards = make_corpus(tmp_path)
    assert validate_shards(shards) == []


def test_count_mismatch_names_the_shard(tmp_path: Path) -> None:
    shards = make_corpus(tmp_path)
    sizes = json.loads((shards / "sizes.json").read_text())
    sizes["00001.tar"] = 4
    (shards / "sizes.json").write_text(json.dumps(sizes))
    assert validate_shards(shards) == ["00001.tar: 3 samples, sizes.json says 4"]


def test_truncated_shard_is_named(tmp_path: Path) -> None:
    shards = make_corpus(tmp_path)
    data = (shards / "00000.tar").read_bytes()
    (shards / "00000.tar").write_bytes(data[: len(data) // 2 + 100])
    problems = validate_shards(shards)
    assert any(p.startswith("00000.tar:") for p in problems)
    assert all("00001.tar" not in p for p in problems)


def test_duplicate_key_and_missing_member(tmp_path: Path) -> None:
    shards = make_corpus(tmp_path)
    import tarfile

    # append a sample that repeats a key
    with tarfile.open(shards / "00001.tar", "a") as tar:
        for name in ("s1k0.jpg",):
            info = tarfile.TarInfo(name)
            tar.addfile(info)
    problems = validate_shards(shards)
    assert any("00001.tar: duplicate key 's1k0'" in p for p in problems)
    # a shard not listed in sizes.json
    with TarShardWriter(shards / "00002.tar") as w:
        w.write("z", {"jpg": b"1"})
    assert "00002.tar: not listed in sizes.json" in validate_shards(shards)


def test_key_in_two_shards_is_named(tmp_path: Path) -> None:
    shards = make_corpus(tmp_path)
    path = shards / "00001.tar"
    with TarShardWriter(path) as w:
        for i in range(3):
            w.write(f"s0k{i}", {"jpg": b"\xff\xd8\xff" + bytes([i]), "txt": b"t", "json": b"{}"})
    problems = validate_shards(shards)
    assert problems == ["00001.tar: key 's0k0' is also in 00000.tar (and 2 more faults)"]
