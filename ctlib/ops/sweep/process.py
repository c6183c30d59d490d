"""A cell as a process group: started with the stop signals at their defaults, stopped with
one signal to the group (the cell and everything it started), SIGKILL after a grace period.
Both executors, :mod:`~ctlib.ops.sweep.local` and :mod:`~ctlib.ops.sweep.slurm`, use these.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

__all__ = ["default_stop_signals", "signal_group", "stamp", "stop"]


def stamp() -> str:
    """The time of day, for a line about a cell."""
    return time.strftime("%H:%M:%S")


def signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the cell's process group (the cell and all it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(process.pid, sig)


def stop(
    process: subprocess.Popen,
    grace_s: float,
    hurry: threading.Event | None = None,
    *,
    signalled: bool = False,
) -> None:
    """Stop a cell: SIGINT to its group (cv saves nothing more, releases its lock and exits),
    SIGKILL once ``grace_s`` have passed (or ``hurry`` is set), then reap it.

    ``signalled``: the group already had its SIGINT; it is not sent twice (a second one
    would interrupt the cell's clean-up, e.g. the release of its fold's lock).
    """
    if process.poll() is None:
        if not signalled:
            signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while process.poll() is None and time.monotonic() < deadline:
            if hurry is not None and hurry.is_set():
                break
            time.sleep(0.05)
    signal_group(process, signal.SIGKILL)  # the cell if it lingers, and any leftover worker
    process.wait()


def default_stop_signals() -> None:
    """In a cell, before it starts: SIGINT and SIGTERM back to their defaults, so the cell
    answers them even when this process inherited them ignored (a command started with ``&``
    from a script, or ``nohup``'s shell, ignores SIGINT, and a child inherits that: the cell
    would then train on through the grace period instead of stopping)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
