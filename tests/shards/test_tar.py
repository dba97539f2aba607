from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from curate.shards.tar import TarShardWriter, check_key, iter_tar_samples

SAMPLES = {
    "b2": {"jpg": b"\xff\xd8\xffB", "txt": b"second", "json": b"{}"},
    "a1": {"txt": b"first", "jpg": b"\xff\xd8\xffA", "json": b"{}"},
}


def write(path: Path) -> bytes:
    with TarShardWriter(path) as w:
        for key, members in SAMPLES.items():
            w.write(key, members)
    return path.read_bytes()


def test_same_samples_give_same_bytes(tmp_path: Path) -> None:
    assert write(tmp_path / "a.tar") == write(tmp_path / "b.tar")
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar.getmembers())
    # within a sample, members sorted by extension; samples kept in write order
    assert names == ["b2.jpg", "b2.json", "b2.txt", "a1.jpg", "a1.json", "a1.txt"]
    assert not (tmp_path / "a.tar.tmp").exists()


@pytest.mark.parametrize("key", ["a.b", "a/b", "..", "", "x" * 65, "a b", "ü"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="bad sample key"):
        check_key(key)


def test_member_set_and_duplicates_enforced(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has members"), TarShardWriter(tmp_path / "x.tar") as w:
        w.write("a", {"jpg": b"1", "txt": b"2"})
        w.write("b", {"jpg": b"1"})
    # the failed shard never appears under its final name, and no tmp is left behind
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.tmp").exists()
    with pytest.raises(ValueError, match="duplicate key"), TarShardWriter(tmp_path / "y.tar") as w:
        w.write("a", {"jpg": b"1"})
        w.write("a", {"jpg": b"1"})


def test_reader_groups_and_skips_unsafe_members(tmp_path: Path) -> None:
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("k1.jpg", b"img")
        add("k1.txt", b"cap")
        add("k1.lnk", kind=tarfile.SYMTYPE)
        add("dev.jpg", kind=tarfile.CHRTYPE)
        add("../evil.jpg", b"e")
        add("/abs.jpg", b"e")
        add("noext", b"e")
        add("dir/k2.seg.png", b"s")
    got = list(iter_tar_samples(path))
    assert got == [("k1", {"jpg": b"img", "txt": b"cap"}), ("dir/k2", {"seg.png": b"s"})]


def test_longest_key_fits_the_tar_header(tmp_path: Path) -> None:
    with TarShardWriter(tmp_path / "k.tar") as w:
        w.write("k" * 64, {"seg.png": b"1"})
    assert [k for k, _ in iter_tar_samples(tmp_path / "k.tar")] == ["k" * 64]
