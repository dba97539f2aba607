from __future__ import annotations

import json
from pathlib import Path

from curate.shards.final import sha256_file
from curate.shards.manifest import write_manifest
from curate.shards.tar import TarShardWriter
from curate.shards.validate import validate_shards


def make_corpus(folder: Path, n: int = 3) -> None:
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
    write_manifest(folder, summaries, ["jpg", "json", "txt"], "h")


def test_sound_corpus_passes(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    assert validate_shards(tmp_path) == []


def test_count_mismatch_names_the_shard(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    sizes["00001.tar"] = 4
    (tmp_path / "sizes.json").write_text(json.dumps(sizes))
    assert validate_shards(tmp_path) == ["00001.tar: 3 samples, sizes.json says 4"]


def test_truncated_shard_is_named(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    data = (tmp_path / "00000.tar").read_bytes()
    (tmp_path / "00000.tar").write_bytes(data[: len(data) // 2 + 100])
    problems = validate_shards(tmp_path)
    assert any(p.startswith("00000.tar:") for p in problems)
    assert all("00001.tar" not in p for p in problems)


def test_duplicate_key_and_missing_member(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    import tarfile

    # append a sample that repeats a key
    with tarfile.open(tmp_path / "00001.tar", "a") as tar:
        for name in ("s1k0.jpg",):
            info = tarfile.TarInfo(name)
            tar.addfile(info)
    problems = validate_shards(tmp_path)
    assert any("00001.tar: duplicate key 's1k0'" in p for p in problems)
    # a shard not listed in sizes.json
    with TarShardWriter(tmp_path / "00002.tar") as w:
        w.write("z", {"jpg": b"1"})
    assert "00002.tar: not listed in sizes.json" in validate_shards(tmp_path)


def test_key_in_two_shards_is_named(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    path = tmp_path / "00001.tar"
    with TarShardWriter(path) as w:
        for i in range(3):
            w.write(f"s0k{i}", {"jpg": b"\xff\xd8\xff" + bytes([i]), "txt": b"t", "json": b"{}"})
    problems = validate_shards(tmp_path)
    assert "00001.tar: key 's0k0' is also in 00000.tar" in problems
