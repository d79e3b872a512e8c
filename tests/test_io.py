"""Atomic writes: all or nothing, with ordinary file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from tunespace.io import FILE_MODE, atomic_path, write_text


def test_written_files_get_the_usual_permissions(tmp_path):
    write_text("hello", tmp_path / "a.txt")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # readable by others under a normal umask, unlike mkstemp's 0600


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    write_text("old", tmp_path / "a.txt")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert (tmp_path / "a.txt").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
