"""Where an export is written, and writing it there without harming what is there.

An export path names one of:

- ``-``: standard output;
- a new file, or (with ``force``) an existing regular file: written to a temporary file
  beside it, then moved into place, so a failure leaves no half file;
- (with ``force``) a character device or a FIFO (``/dev/stdout``, a named pipe): written
  through, never replaced;
- a folder: the format's default file name in it.

A symlink is followed to what it names and never replaced itself. Anything else (a block
device, a socket, a dangling link) is refused with a one-line message, and so is a FIFO
no process reads. A failed write (a full disk, ``ENOSPC`` from ``/dev/full``) raises.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["STDOUT", "ExportTarget", "resolve_target", "write_to"]

STDOUT = "-"  # the path that means standard output

WriteStream = Callable[[IO[str]], None]


@dataclass(frozen=True)
class ExportTarget:
    """A checked export destination: ``path`` as the user named it (folder default
    resolved), and ``kind``: ``stdout``, ``new`` (no file yet), ``file`` (an existing
    regular file, replaced) or ``stream`` (a character device or FIFO, written through).
    ``real_path`` is what a symlink leads to (``path`` itself otherwise)."""

    path: Path
    kind: str
    real_path: Path


def _describe(mode: int) -> str:
    """What a file of ``st_mode`` is, in a few words, for messages."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISFIFO, "a FIFO"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def resolve_target(path: str | os.PathLike[str], default_name: str, force: bool) -> ExportTarget:
    """Check where an export to ``path`` would go; nothing is written.

    Raises ``FileExistsError`` for an existing file without ``force``,
    ``FileNotFoundError`` for a missing folder or a dangling symlink, and
    ``IsADirectoryError``/``OSError`` naming what is there for anything that is neither a
    regular file, a character device nor a FIFO."""
    if str(path) == STDOUT:
        return ExportTarget(Path(STDOUT), "stdout", Path(STDOUT))
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / default_name
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}: the folder {target.parent} does not exist "
            "(create it, or give a path in an existing folder)"
        )
    try:
        link = os.lstat(target)
    except FileNotFoundError:
        return ExportTarget(target, "new", target)
    if not force:
        raise FileExistsError(f"{target} already exists; use --force to overwrite it")
    real = Path(os.path.realpath(target)) if stat.S_ISLNK(link.st_mode) else target
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(
            f"cannot write {target}: it is a symlink to {os.readlink(target)}, which does not "
            "exist; give the file's own path"
        ) from None
    if stat.S_ISREG(mode):
        return ExportTarget(target, "file", real)
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return ExportTarget(target, "stream", real)
    raise OSError(
        errno.EINVAL,
        f"cannot write {target}: it is {_describe(mode)}; give a regular file, a folder, "
        "a character device, a FIFO or - (standard output)",
    )


def write_to(target: ExportTarget, write: WriteStream) -> None:
    """Run ``write(stream)`` on a text stream into ``target`` (UTF-8, ``\\n`` newlines).

    Raises ``OSError`` naming ``target.path`` when the write fails (nothing half-written
    is left for files); a character device or FIFO is never replaced."""
    try:
        if target.kind == "stdout":
            write(sys.stdout)
            sys.stdout.flush()
        elif target.kind == "stream":
            with _open_stream(target.real_path) as stream:
                write(stream)
        else:
            _write_file(target, write)
    except OSError as error:  # named by the path asked for, not a temporary file
        if error.errno is None or (error.strerror and str(target.path) in error.strerror):
            raise
        raise type(error)(
            error.errno, f"cannot write {target.path}: {error.strerror or error}"
        ) from None


@contextmanager
def _open_stream(path: Path) -> Iterator[IO[str]]:
    """A character device or FIFO opened for writing, checked after opening (it may have
    changed since it was looked at). A FIFO without a reader fails at once (ENXIO)
    instead of waiting for one forever."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno != errno.ENXIO:
            raise
        raise OSError(
            errno.ENXIO, f"cannot write {path}: no process reads the FIFO (start the reader first)"
        ) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise OSError(errno.EINVAL, f"{path} changed while being opened; nothing written")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    with open(descriptor, "w", encoding="utf-8", newline="") as stream:
        yield stream


def _write_file(target: ExportTarget, write: WriteStream) -> None:
    """Write through a temporary file in the same folder, then move it into place.

    The temporary file is created with ``open(..., "x")`` so that it gets the usual
    permissions (umask), unlike ``tempfile.mkstemp``'s private 0600. A new file is
    linked into place, so a file that appeared meanwhile is not overwritten."""
    final = target.real_path
    temp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as stream:
            write(stream)
        if target.kind == "new":
            try:
                os.link(temp, final)
            except FileExistsError:
                raise FileExistsError(
                    f"{target.path} appeared while it was being written; nothing overwritten"
                ) from None
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                os.replace(temp, final)  # a file system without hard links
        else:
            os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
