"""network3.fileio: complete files or none."""
import os
import time

import pytest

from network3.fileio import STALE_SECONDS, atomic_path, sha256_of


def test_success_renames_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(str(target)) as tmp:
        with open(tmp, "w") as f:
            f.write("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert os.listdir(target.parent) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_exception_keeps_the_old_version_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    stale = tmp_path / ".out.txt.abc123.tmp"
    young = tmp_path / ".out.txt.def456.tmp"
    other = tmp_path / ".else.txt.abc123.tmp"
    for f in (stale, young, other):
        f.write_text("x")
    old = time.time() - STALE_SECONDS - 10
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    with atomic_path(str(tmp_path / "out.txt")) as tmp:
        open(tmp, "w").close()
    assert sorted(os.listdir(tmp_path)) == sorted([young.name, other.name, "out.txt"])


def test_sha256(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_of(str(tmp_path / "f")) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
