from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from curate.shards.tar import TarShardWriter, check_key, iter_tar_samples, read_keys

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


def _tarfile_bytes(samples: dict[str, dict[str, bytes]]) -> bytes:
    """What the standard library writes for the same members and fixed fields."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples.items():
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(members[ext]), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(members[ext]))
    return buf.getvalue()


@pytest.mark.parametrize("n", [1, 7, 40])
def test_writer_bytes_equal_tarfile_ustar(tmp_path: Path, n: int) -> None:
    """Hand-built headers: the same bytes as tarfile, for sizes across block boundaries and
    archives ending on and off a 10240-byte record."""
    samples = {
        f"{'k' * (1 + i % 64)}{i}"[-64:]: {
            "jpg": bytes(range(256)) * (i * 37 % 9) + b"x" * (i * 131 % 1025),
            "seg.png": b"" if i % 3 else b"p" * 512,
            "txt": f"caption {i}".encode(),
        }
        for i in range(n)
    }
    path = tmp_path / "s.tar"
    with TarShardWriter(path) as w:
        for key, members in samples.items():
            w.write(key, members)
    assert path.read_bytes() == _tarfile_bytes(samples)
    expected = [(k, dict(sorted(m.items()))) for k, m in samples.items()]
    assert list(iter_tar_samples(path)) == expected


def test_reader_fast_path_and_tarfile_agree(tmp_path: Path) -> None:
    """A pax-format archive (other headers) goes through tarfile; same groups come out."""
    samples = {"a": {"jpg": b"1" * 700, "txt": b"t"}, "b": {"jpg": b"2", "txt": b"u" * 513}}
    plain, pax = tmp_path / "plain.tar", tmp_path / "pax.tar"
    plain.write_bytes(_tarfile_bytes(samples))
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in samples.items():
            for ext, data in sorted(members.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.pax_headers = len(data), {"comment": "ü"}
                tar.addfile(info, io.BytesIO(data))
    assert list(iter_tar_samples(plain)) == list(iter_tar_samples(pax))
    assert [k for k, _ in iter_tar_samples(pax)] == ["a", "b"]
    broken = tmp_path / "cut.tar"
    broken.write_bytes(plain.read_bytes()[:1000])  # cut inside the first body
    with pytest.raises(tarfile.ReadError):
        list(iter_tar_samples(broken))


def test_read_keys_reads_only_the_listed_keys_and_stops_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.tar"
    with TarShardWriter(path) as w:
        for k in ("a", "b", "c"):
            w.write(k, {"jpg": k.encode() * 3, "txt": b"caption " + k.encode()})
    assert read_keys(path, ["b"]) == {"b": {"jpg": b"bbb", "txt": b"caption b"}}
    assert read_keys(path, ["a", "c"], lambda ext: ext == "txt") == {
        "a": {"txt": b"caption a"},
        "c": {"txt": b"caption c"},
    }
    assert read_keys(path, []) == {} and read_keys(path, ["zz"]) == {}
    # the walk stops at the first header past the last listed key: nothing later is read
    seen: list[int] = []
    real_open = Path.open

    class Spy:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def read(self, n: int = -1) -> bytes:
            data = self.f.read(n)
            seen.append(self.f.tell())
            return bytes(data)

        def seek(self, *args: int) -> int:
            return int(self.f.seek(*args))

    with monkeypatch.context() as m:
        m.setattr(Path, "open", lambda self, *a, **k: Spy(real_open(self, *a, **k)))
        assert read_keys(path, iter(["a"])) == {"a": {"jpg": b"aaa", "txt": b"caption a"}}
    assert max(seen) == 5 * 512  # a's two members (4 blocks), then b's first header
    # a listed member cut short is an error, not short bytes
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: 9 * 512 + 1])  # 1 of c.jpg's 3 bytes
    with pytest.raises(tarfile.ReadError, match=r"unexpected end of data in c\.jpg"):
        read_keys(cut, ["c"])
    # head: only the first bytes of the named extensions
    assert read_keys(path, ["b"], head={"txt": 4}) == {"b": {"jpg": b"bbb", "txt": b"capt"}}
    # an archive tarfile wrote (GNU/pax headers are not plain USTAR) goes through tarfile
    other = tmp_path / "gnu.tar"
    with tarfile.open(other, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("x.jpg", b"1"), ("y." + "e" * 120, b"2")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert read_keys(other, ["y"]) == {"y": {"e" * 120: b"2"}}
