"""Atomic file writes: a reader never sees half a file, a crash never loses the old one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: Path | str, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary file beside ``path`` to fill by any means (a download, another library's
    writer). On a clean exit it is checked with ``verify(temporary)`` (which raises to refuse
    it), given the permissions of any new file and renamed over ``path``; on an exception,
    or when ``verify`` refuses it, it is removed and ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if verify is not None:
            verify(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a written file should look like any other
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_writer(path: Path | str, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it is fsynced and renamed
    over ``path``, on an exception it is removed and ``path`` stays as it was."""
    with atomic_path(path) as temporary, open(temporary, mode) as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def write_atomic(path: Path | str, text: str) -> None:
    with atomic_writer(path) as stream:
        stream.write(text)
