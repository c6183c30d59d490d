"""Writing files so that an interruption never leaves half of one, and hashing them.

Every result the kit writes (JSON, CSV, checkpoints, figures, caches) goes through
:func:`atomic_write`: the content is written to a hidden temporary file in the same folder
and renamed into place, so a reader sees either the old file or the new one, never a torn
one, whatever moment a run is killed at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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


def _machine() -> str:
    """Who can check this process's ID: the host name, the kernel's boot and the PID
    namespace together (containers that share a host name differ in the last two). A reboot
    changes the boot ID too, and this cannot tell a reboot from another machine of the same
    name: a lock from before one is honoured, and its message says to delete it by hand."""
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(
                Path(source).read_text().strip()
                if "boot" in source
                else str(os.stat(source).st_ino)
            )
        except OSError:
            parts.append("?")
    return "/".join(parts)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back until the block ends, then deliver them.

    Their handlers are swapped for one that only notes the signal (a signal mask would not
    do: the kernel hands a process's signal to any thread that does not block it, and
    Python runs its handler in the main thread at once). Signals that were ignored stay
    ignored. Only the main thread can set handlers, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # Windows has no SIGHUP
        handler = signal.getsignal(sig) if sig is not None else None
        if handler is None or handler == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, lambda signum, _frame: noted.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(noted):  # now, with the handlers as they were
            signal.raise_signal(signum)


class FolderLock:
    """A lock file that says one process is working in a folder (e.g. training a fold).

    Safe on the shared file systems clusters use (NFS, Lustre), where ``flock`` may not be:

    * :meth:`acquire` writes the whole record (``pid``, ``host``, ``machine``, ``since`` and a
      random ``token``) to a temporary file and links it into place (``os.link`` fails if the
      lock exists), so a lock file is never seen half-written;
    * a stale lock (its process is dead: same machine, the process ID no longer running) is
      taken over under a second lock, ``<name>.takeover``, taken the same way, and only if
      the file is still the one judged stale, so two takers cannot both win;
    * :meth:`release` removes the lock only while it still carries this holder's token.

    A lock from another machine (another host, boot or container) is honoured, since its
    process cannot be checked from here (:attr:`holder` says whose it is, for the message).
    """

    #: a takeover lock older than this (seconds) was left by a taker that died mid-way
    TAKEOVER_TIMEOUT_S = 30.0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.held = False
        self.token = ""

    @property
    def holder(self) -> dict[str, Any]:
        """What the lock file says (``pid``, ``host``, ``since``, ...); empty if unreadable."""
        return self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _link(self, path: Path, record: dict[str, Any]) -> bool:
        """Create ``path`` holding ``record``, complete or not at all; False if it exists."""
        tmp = path.with_name(f".{path.name}.{record['token']}.tmp")
        tmp.write_text(json.dumps(record))
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        """Whether the process named in ``holder`` is known to be gone."""
        if not holder:  # unreadable: only a lock written by an older kit in place can be
            try:  # half-written; give its writer a moment
                return time.time() - self.path.stat().st_mtime > self.TAKEOVER_TIMEOUT_S
            except OSError:
                return False
        if holder.get("machine", _machine()) != _machine():
            return False
        if holder.get("host") != socket.gethostname():
            return False
        try:
            pid = int(holder.get("pid", -1))
        except (TypeError, ValueError):
            return False
        if pid == os.getpid():  # this process holds it (through another FolderLock)
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError):
            return False
        return False

    def _take_over(self, stale: dict[str, Any]) -> bool:
        """Replace the stale lock whose record is ``stale``, under the takeover lock."""
        guard = self.path.with_name(self.path.name + ".takeover")
        record = {"pid": os.getpid(), "token": self.token, "since": time.time()}
        if not self._link(guard, record):
            try:  # a taker that died mid-way left it
                if time.time() - guard.stat().st_mtime > self.TAKEOVER_TIMEOUT_S:
                    guard.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        try:
            if self.holder != stale:  # someone else replaced it meanwhile
                return False
            self.path.unlink(missing_ok=True)
            return self._link(self.path, self._record())
        finally:
            if self._read(guard).get("token") == self.token:
                guard.unlink(missing_ok=True)

    def _record(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "machine": _machine(),
            "since": time.time(),
            "token": self.token,
        }

    def acquire(self) -> bool:
        """Take the lock; False if another live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.held:
            return True
        self.token = uuid.uuid4().hex
        with _signals_held():  # a Ctrl-C now would leave a lock file no one holds
            if self._link(self.path, self._record()):
                self.held = True
                return True
            holder = self.holder
            if self._is_stale(holder) and self._take_over(holder):
                self.held = True
                return True
        return False

    def release(self) -> None:
        """Remove the lock file if it is still this holder's (its token is ours).

        Stop signals wait until it is done (in the main thread): a second Ctrl-C while a
        stopped run unwinds must not leave its lock behind.
        """
        with _signals_held():
            if self.held and self.holder.get("token") == self.token:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
