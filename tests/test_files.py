"""Atomic writes (povsim.files): new files get the umask's permissions, a failure leaves everything as it was."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest

from povsim.files import (
    atomic_file,
    remove_folder,
    write_bytes_atomically,
    write_folder_atomically,
    write_text_atomically,
)


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class Boom(Exception):
    pass


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_files_and_folders_get_the_permissions_of_new_ones_under_the_umask(tmp_path, mask):
    with umask(mask):
        write_text_atomically(tmp_path / "a.txt", "text")
        write_bytes_atomically(tmp_path / "b.bin", b"\x00\x01")
        with atomic_file(tmp_path / "c.csv") as tmp:
            tmp.write_text("x,y\n")
        write_folder_atomically(tmp_path / "folder", lambda d: (d / "inside.txt").write_text("in"))
        (tmp_path / "plain.txt").write_text("a file made the ordinary way")
        (tmp_path / "plain").mkdir()
    expected_file = _mode(tmp_path / "plain.txt")
    assert expected_file == 0o666 & ~mask
    for name in ("a.txt", "b.bin", "c.csv", "folder/inside.txt"):
        assert _mode(tmp_path / name) == expected_file, name
    assert _mode(tmp_path / "folder") == _mode(tmp_path / "plain") == 0o777 & ~mask


def test_replacing_a_file_gives_it_the_umask_permissions_not_the_old_ones(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o600)
    with umask(0o022):
        write_text_atomically(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o644


def test_the_content_is_complete_and_the_target_is_untouched_until_the_rename(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    data = os.urandom(3_000_000)
    with atomic_file(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".data.bin.") and tmp.name.endswith(".tmp")
        assert tmp.read_bytes() == b"", "a new, empty file"
        with open(tmp, "wb") as f:
            for k in range(0, len(data), 65536):
                f.write(data[k:k + 65536])
        assert path.read_bytes() == b"old", "the target changes only when the block ends"
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["data.bin"]
    text = "línea de pobreza ±\n" * 10_000
    write_text_atomically(tmp_path / "t.md", text)
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == text


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failed_file_write_leaves_no_temporary_and_the_old_file(tmp_path, error):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(error):
        with atomic_file(path) as tmp:
            tmp.write_text("half of the new")
            raise error()
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
    with pytest.raises(error):
        with atomic_file(tmp_path / "new.txt") as tmp:
            raise error()
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_a_failed_rename_leaves_the_target_and_no_temporary(tmp_path):
    """A file cannot replace a folder: the folder and what is in it stay."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep")
    with pytest.raises(OSError):
        write_text_atomically(tmp_path / "folder", "text")
    assert (tmp_path / "folder" / "keep.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["folder"]


def test_nothing_is_deleted_that_the_writer_did_not_make(tmp_path):
    """Files that look like temporaries, but were not made by this write, stay after a failure and a success."""
    theirs = [tmp_path / ".a.txt.abcd1234.tmp", tmp_path / ".out.abcd1234.tmp"]
    theirs[0].write_text("someone else's")
    theirs[1].mkdir()
    (theirs[1] / "f").write_text("someone else's")
    with pytest.raises(Boom):
        with atomic_file(tmp_path / "a.txt"):
            raise Boom()

    def failing(d):
        (d / "part").write_text("x")
        raise Boom()

    with pytest.raises(Boom):
        write_folder_atomically(tmp_path / "out", failing)
    write_text_atomically(tmp_path / "a.txt", "a")
    write_folder_atomically(tmp_path / "out", lambda d: (d / "f").write_text("mine"))
    assert theirs[0].read_text() == "someone else's" and (theirs[1] / "f").read_text() == "someone else's"
    assert sorted(os.listdir(tmp_path)) == sorted([".a.txt.abcd1234.tmp", ".out.abcd1234.tmp", "a.txt", "out"])


def test_a_folder_is_replaced_whole_once_the_new_one_is_complete(tmp_path):
    target = tmp_path / "result"
    target.mkdir()
    (target / "old.txt").write_text("old")
    seen = []

    def write(d):
        (d / "new.txt").write_text("new")
        seen.append(sorted(os.listdir(target)))  # the old folder is still in place while writing

    assert write_folder_atomically(target, write) == target
    assert seen == [["old.txt"]]
    assert sorted(os.listdir(target)) == ["new.txt"] and (target / "new.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["result"], "no .tmp or .old folder left"


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failed_folder_write_leaves_the_old_folder_and_no_temporary(tmp_path, error):
    target = tmp_path / "result"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def failing(d):
        (d / "sub").mkdir()
        (d / "sub" / "half.txt").write_text("half")
        raise error()

    with pytest.raises(error):
        write_folder_atomically(target, failing)
    assert sorted(os.listdir(target)) == ["old.txt"] and (target / "old.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["result"]
    with pytest.raises(error):
        write_folder_atomically(tmp_path / "fresh", failing)
    assert sorted(os.listdir(tmp_path)) == ["result"]


def test_a_failed_folder_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "result"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append((str(src), str(dst)))
        if len(calls) == 2:  # the new folder into place
            raise OSError("rename refused")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename refused"):
        write_folder_atomically(target, lambda d: (d / "new.txt").write_text("new"))
    monkeypatch.setattr(os, "replace", real)
    assert len(calls) == 3, "aside, into place (refused), back"
    assert sorted(os.listdir(target)) == ["old.txt"]
    assert sorted(os.listdir(tmp_path)) == ["result"]


def test_replacing_or_removing_a_link_leaves_what_it_points_to(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "precious.txt").write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    write_folder_atomically(link, lambda d: (d / "new.txt").write_text("new"))
    assert not link.is_symlink() and sorted(os.listdir(link)) == ["new.txt"]
    assert (real / "precious.txt").read_text() == "keep"
    other = tmp_path / "other"
    other.symlink_to(real, target_is_directory=True)
    remove_folder(other)
    assert not os.path.lexists(other) and (real / "precious.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]


def test_remove_folder(tmp_path):
    folder = tmp_path / "f"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "c.txt").write_text("c")
    remove_folder(folder)
    assert os.listdir(tmp_path) == []
    remove_folder(folder)  # not there: nothing to do
    assert os.listdir(tmp_path) == []
