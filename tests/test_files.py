"""spec/files.py: a reader never sees half a file, and a failure never loses the old one."""

from __future__ import annotations

import os
import stat

import pytest

from netparity.spec.files import atomic_path, atomic_writer, write_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_replaces_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and _leftovers(target.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="halfway"):
        with atomic_writer(target) as stream:
            stream.write("half of the new")
            raise RuntimeError("halfway")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_atomic_path_verifies_before_the_file_takes_its_name(tmp_path):
    target = tmp_path / "data.gz"
    target.write_bytes(b"good")
    seen = []

    def refuse(written):
        seen.append(written.read_bytes())
        raise ValueError(f"{written.name}: corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        with atomic_path(target, verify=refuse) as temporary:
            assert temporary.parent == tmp_path and temporary != target
            temporary.write_bytes(b"bad")
    assert seen == [b"bad"]  # verify saw the new content
    assert target.read_bytes() == b"good" and _leftovers(tmp_path) == []

    with atomic_path(target, verify=lambda written: None) as temporary:
        temporary.write_bytes(b"better")
    assert target.read_bytes() == b"better" and _leftovers(tmp_path) == []
