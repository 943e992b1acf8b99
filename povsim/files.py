"""Files and folders written whole or not at all: made under a temporary name beside their place, then renamed.

This module owns how povsim writes anything a reader may open while it is being written
(results, experiment folders, figures, generated pages).  Every writer here

* writes to a new temporary beside the target, named ``.<name>.<random>.tmp``, and
  renames it over the target (:func:`os.replace`, atomic on one file system) only once
  the writing has finished, so a reader sees the old file or the new one, never half of one;
* creates that temporary as a normal new file or folder (mode ``0o666`` or ``0o777``
  less the user's umask, applied by the operating system), so the finished file has the
  permissions any new file would have, not the owner-only ones of :func:`tempfile.mkstemp`;
* deletes the temporary when the writing fails or is interrupted, leaving the target as
  it was, and deletes nothing else: not a file of the same name pattern it did not make,
  and not what a symbolic link it replaces points to.

:func:`atomic_file` gives the path to write to (for writers that want a path, such as
``DataFrame.to_parquet`` or ``Figure.savefig``); :func:`write_bytes_atomically` and
:func:`write_text_atomically` write data already in memory; :func:`write_folder_atomically`
does the same for a whole folder, and :func:`remove_folder` deletes one so that a stop
midway never leaves a half-deleted folder under its name.

:func:`check_output_place` tries an output folder's place before any work is done: a file
where a folder must be, a folder that cannot be written (read-only, no permission) or a
disk without room is refused then (:class:`OutputPlaceError`), not after hours of
simulation.  A write that fails later all the same (the disk filled meanwhile) is
reported by the caller as :class:`OutputWriteError`, with nothing left that looks complete.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "atomic_file",
    "write_bytes_atomically",
    "write_text_atomically",
    "write_folder_atomically",
    "remove_folder",
    "sha256",
    "is_temporary",
    "TEMPORARY_SUFFIXES",
    "OutputPlaceError",
    "OutputWriteError",
    "check_output_place",
    "writing_into",
]

#: how the names of this module's temporaries end: ``.<name>.<random>.tmp`` is a file or folder being
#: written, ``.<name>.<random>.old`` a folder being replaced or deleted
TEMPORARY_SUFFIXES = (".tmp", ".old")

_ATTEMPTS = 100


class OutputPlaceError(ValueError):
    """An output folder's place cannot be used: found before any work (bad input: exit status 2)."""


class OutputWriteError(OSError):
    """Writing the results failed part way (e.g. the disk is full): nothing written looks complete."""

    @classmethod
    def from_error(cls, err: OSError, directory: str | Path, kept: str = "") -> "OutputWriteError":
        """The one-line report of ``err``, raised while writing into ``directory``; ``kept``: what is kept."""
        what = err.strerror or str(err)
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        hint = " free some space and" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return cls(
            err.errno,
            f"cannot write the results in {str(directory)!r}: {what}{where}; nothing there is marked complete"
            f"{kept};{hint} run the same command again",
        )

    def __str__(self) -> str:
        return self.strerror or super().__str__()


#: room an output folder needs besides its runs: the tables, figures and report of an experiment
OUTPUT_BYTES_FIXED = 8 << 20
#: room one run's files take (metrics, events, delays, config and manifest: about 0.2 MB measured for
#: 1,000 to 1,000,000 households over 2013-2020; they grow with the months, not the households)
OUTPUT_BYTES_PER_RUN = 1 << 20


def check_output_place(directory: str | Path, runs: int = 1) -> None:
    """Refuse, before any work, an output folder that cannot be made, written, or has no room.

    The nearest part of ``directory`` that exists must be a folder in which a file can be
    made (a probe file is made and deleted there: read-only file systems and permissions
    are found as the writer would find them), and its disk must have room for ``runs``
    runs' files (:data:`OUTPUT_BYTES_PER_RUN` each, plus :data:`OUTPUT_BYTES_FIXED`).
    Raises :class:`OutputPlaceError` naming the path, the problem and what is allowed.
    Nothing is left behind.
    """
    directory = Path(directory)
    place = directory
    while not os.path.lexists(place) and place != place.parent:
        place = place.parent
    allowed = "allowed: a folder you can write to, or a new one under such a folder"
    if not place.is_dir():
        what = "is a file, not a folder" if place.exists() else "is a broken link"
        raise OutputPlaceError(f"output folder {str(directory)!r}: {str(place)!r} {what}; {allowed}")
    try:
        probe = _temporary(place / ".povsim-probe", ".tmp", _make_file)
    except OSError as err:
        raise OutputPlaceError(
            f"output folder {str(directory)!r}: cannot write in {str(place)!r} ({err.strerror or err}); {allowed}"
        ) from None
    probe.unlink(missing_ok=True)
    need = OUTPUT_BYTES_FIXED + runs * OUTPUT_BYTES_PER_RUN
    free = shutil.disk_usage(place).free
    if free < need:
        raise OutputPlaceError(
            f"output folder {str(directory)!r}: its disk has {free / 2**20:.1f} MiB free, and {runs:,} run(s) need "
            f"about {need / 2**20:.0f} MiB; allowed: a disk with room (free some space, or choose another --out)"
        )


@contextmanager
def writing_into(directory: str | Path, kept: str = "") -> Iterator[None]:
    """Report an ``OSError`` of the block (a full disk, a lost mount) as one :class:`OutputWriteError`.

    ``kept`` says what stays usable (e.g. "; the finished runs are kept").  A refusal
    (``FileExistsError``: a foreign file, another writer's lock) passes through unchanged.
    """
    try:
        yield
    except (FileExistsError, OutputWriteError):
        raise
    except OSError as err:
        raise OutputWriteError.from_error(err, directory, kept) from err


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex (read in 1 MiB pieces)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of this module's temporaries (``.<name>.<random>.tmp`` / ``.old``)."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIXES)


def _temporary(path: Path, suffix: str, make: Callable[[Path], None]) -> Path:
    """A new temporary beside ``path``, named ``.<name>.<random><suffix>``, made by ``make`` (never an existing one)."""
    for _ in range(_ATTEMPTS):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            make(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {str(path)!r} after {_ATTEMPTS} attempts")


def _make_file(path: Path) -> None:
    # O_EXCL: never open a file someone else made; 0o666: the umask decides the permissions, as for any new file
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))


def _make_folder(path: Path) -> None:
    os.mkdir(path, 0o777)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Give a new empty temporary file beside ``path`` to write to; rename it to ``path`` when the block ends.

    ``path``'s folder must exist.  On leaving the ``with`` block normally, the temporary
    (whatever was written to it) replaces ``path``; if the block raises (or is
    interrupted), the temporary is deleted and ``path`` is left as it was::

        with atomic_file("table.csv") as tmp:
            frame.to_csv(tmp)

    The temporary's name ends in ``.tmp``, so a writer that picks a format from the file
    name must be told the format.
    """
    path = Path(path)
    tmp = _temporary(path, ".tmp", _make_file)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (see :func:`atomic_file`); return ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomically(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` in ``encoding`` (see :func:`atomic_file`); return ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_folder_atomically(directory: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a new empty temporary folder beside ``directory``, then rename it to ``directory``.

    ``directory``'s parent must exist.  An existing ``directory`` is replaced only once
    the new folder is complete: it is renamed aside (``.<name>.<random>.old``), the new
    folder renamed into place, and only then is the old one deleted; should the second
    rename fail, the old folder is put back.  Whether an existing folder may be replaced
    at all is the caller's to decide (:func:`povsim.results.check_replaceable`).  If
    ``write`` fails (or is interrupted), the temporary folder and everything in it is
    deleted and ``directory`` is left as it was.  Returns ``directory``.
    """
    directory = Path(directory)
    tmp = _temporary(directory, ".tmp", _make_folder)
    try:
        write(tmp)
        _replace_folder(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_folder(new: Path, directory: Path) -> None:
    """Rename the folder ``new`` to ``directory``, replacing what is there once ``new`` is in place."""
    if not os.path.lexists(directory):
        os.replace(new, directory)
        return
    aside = _temporary(directory, ".old", _make_folder)
    previous = aside / "previous"
    try:
        os.replace(directory, previous)
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.replace(new, directory)
    except BaseException:
        os.replace(previous, directory)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


def remove_folder(directory: str | Path) -> None:
    """Delete the folder ``directory``: renamed aside first (``.<name>.<random>.old``), then deleted.

    A stop midway leaves the folder whole under its name, or gone from it (what is left
    of it then lies in the ``.old`` folder beside it).  A symbolic link is removed, not
    what it points to.  Nothing happens if ``directory`` does not exist.
    """
    directory = Path(directory)
    if not os.path.lexists(directory):
        return
    aside = _temporary(directory, ".old", _make_folder)
    try:
        os.replace(directory, aside / "previous")
    except BaseException:
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
