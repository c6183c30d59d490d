"""Writing files so that an interruption never leaves half of one, and hashing them.

Every result the kit writes (JSON, CSV, checkpoints, figures, caches) goes through
:func:`atomic_write`: the content is written to a hidden temporary file in the same folder
and renamed into place, so a reader sees either the old file or the new one, never a torn
one, whatever moment a run is killed at.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["FolderLock", "atomic_write", "sha256_file", "write_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    The temporary name keeps the suffix (some writers choose the format by it) and carries
    the process ID, so two processes never share one. On an error the temporary file is
    removed and nothing is replaced. Parent folders are made.

    Example:
        >>> write_csv = lambda tmp: frame.to_csv(tmp, index=False)  # doctest: +SKIP
        >>> atomic_write("out/table.csv", write_csv)  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1) -> Path:
    """``obj`` as JSON at ``path``, written atomically."""
    text = json.dumps(obj, indent=indent)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderLock:
    """A lock file that says one process is working in a folder (e.g. training a fold).

    :meth:`acquire` creates the file exclusively (``O_EXCL``) with the holder's process ID,
    host and start time, and answers False while another live process holds it. A lock
    left by a process that died (same host, the process ID no longer running) is stale and
    taken over; a lock from another host is honoured, since its process cannot be checked
    from here (:attr:`holder` says whose it is, for the message).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.held = False

    @property
    def holder(self) -> dict[str, Any]:
        """What the lock file says (``pid``, ``host``, ``since``); empty if unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _stale(self) -> bool:
        holder = self.holder
        if not holder:  # torn or empty: its writer died between creating and writing it
            return True
        if holder.get("host") != socket.gethostname():
            return False
        pid = int(holder.get("pid", -1))
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError):
            return False
        return False

    def acquire(self) -> bool:
        """Take the lock; False if another live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            self.held = True
            return True
        return False

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
