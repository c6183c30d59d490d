"""Two processes never hold one fold's lock (issue 30): many races between processes started
together, with no lock beforehand, with a dead process's lock, and with an empty lock file;
a lock is released only by its holder, and a live lock from another machine (a container
that shares the host name) is honoured."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ctlib.files import FolderLock
from ctlib.ops.sweep.process import signal_group, stop

#: races per scenario (three scenarios, so 600 in all); ``CTLIB_LOCK_TRIALS`` for more
TRIALS = int(os.environ.get("CTLIB_LOCK_TRIALS", "200"))
RACERS = 3


#: seconds between two races' starts
GAP_S = 0.02


def _race(paths: list[str], start: float, out: Any) -> None:
    """One racer: tries to take each lock at its trial's moment, ``start + trial * GAP_S``,
    the same for all racers (a lock won is kept: this process lives on, so it is no one's
    stale lock)."""
    for trial, path in enumerate(paths):
        at = start + trial * GAP_S
        while time.time() < at:  # spin: a sleep would wake the racers at different moments
            pass
        out.put((trial, FolderLock(path).acquire()))


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@pytest.mark.slow
@pytest.mark.parametrize("before", ["none", "dead holder", "empty file"])
def test_many_races_never_end_with_two_holders(tmp_path: Path, before: str) -> None:
    paths = [tmp_path / f"fold{trial}" / "train.lock" for trial in range(TRIALS)]
    dead = _dead_pid()
    for path in paths:
        path.parent.mkdir()
        if before == "dead holder":
            path.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
        elif before == "empty file":
            path.write_text("")
            os.utime(path, (0, 0))  # its writer died long ago
    context = mp.get_context("fork")
    out, start = context.Queue(), time.time() + 0.5  # every racer forked by then
    racers = [
        context.Process(target=_race, args=([str(p) for p in paths], start, out))
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    wins = [0] * TRIALS
    try:
        for _ in range(TRIALS * RACERS):
            trial, won = out.get(timeout=60)
            wins[trial] += won
    finally:
        for racer in racers:
            racer.join(30)
            if racer.is_alive():
                racer.kill()
    assert all(w >= 1 for w in wins), f"a free or stale lock nobody took ({before})"
    double = sum(w > 1 for w in wins)
    assert double == 0, f"{double} of {TRIALS} races ended with two holders ({before})"


def test_release_removes_only_its_own_lock(tmp_path: Path) -> None:
    first = FolderLock(tmp_path / "x.lock")
    assert first.acquire()
    # someone judged it stale and took over: first's release must not remove theirs
    (tmp_path / "x.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "t"}))
    first.release()
    assert (tmp_path / "x.lock").is_file() and not first.held


def test_a_lock_is_never_seen_half_written(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path / "x.lock")
    assert lock.acquire()
    record = json.loads((tmp_path / "x.lock").read_text())
    assert {"pid", "host", "machine", "since", "token"} <= set(record)
    assert record["token"] == lock.token and len(lock.token) == 32
    assert not list(tmp_path.glob(".*.tmp")), "the temporary record is gone"


def test_a_live_lock_from_another_container_with_the_same_host_name_is_honoured(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.lock"
    record = {"pid": _dead_pid(), "host": socket.gethostname(), "machine": "other/boot/ns"}
    path.write_text(json.dumps(record))  # its pid means nothing here: another PID namespace
    assert not FolderLock(path).acquire()
    record["machine"] = FolderLock(path)._record()["machine"]  # the same machine: it is dead
    path.write_text(json.dumps(record))
    assert FolderLock(path).acquire()


def test_a_lock_written_by_an_older_kit_is_still_understood(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": 0}))
    assert FolderLock(path).acquire(), "a dead holder's old-format lock is taken over"
    path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "since": 0}))
    assert not FolderLock(path).acquire(), "a live holder's old-format lock is honoured"


class _InterruptedMidRelease(FolderLock):
    """A lock whose holder is pressed Ctrl-C while it reads its own lock file to release it."""

    @property
    def holder(self) -> dict:
        if self.held:
            os.kill(os.getpid(), signal.SIGINT)
        return super().holder


def test_a_second_ctrl_c_while_releasing_does_not_leave_the_lock(tmp_path: Path) -> None:
    # Python's own Ctrl-C handler (a run started in the background inherits SIGINT ignored);
    # a thread that does not block signals, as torch's and the test servers' threads do
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    idle = threading.Event()
    bystander = threading.Thread(target=idle.wait, daemon=True)
    bystander.start()
    try:
        lock = _InterruptedMidRelease(tmp_path / "train.lock")
        assert lock.acquire()
        with pytest.raises(KeyboardInterrupt):  # delivered, but only once the release is done
            lock.release()
    finally:
        idle.set()
        signal.signal(signal.SIGINT, previous)
    assert not lock.path.exists()


def test_a_stopped_cell_gets_one_sigint_only(tmp_path: Path) -> None:
    """The sweep signals every running cell, then waits for each: never a second SIGINT,
    which would cut the cell's clean-up short (its lock left behind, issue 30's CI failure)."""
    count = tmp_path / "count"
    child = (
        "import signal, sys, time\n"
        "n = 0\n"
        "def on_int(*_):\n"
        "    global n\n"
        "    n += 1\n"
        f"    open({str(count)!r}, 'w').write(str(n))\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        f"open({str(count)!r}, 'w').write('0')\n"
        "while n == 0: time.sleep(0.01)\n"
        "time.sleep(0.5)\n"  # a clean-up that takes a moment
    )
    process = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    deadline = time.time() + 30
    while not count.exists() and time.time() < deadline:
        time.sleep(0.01)
    signal_group(process, signal.SIGINT)
    stop(process, grace_s=20, signalled=True)
    assert count.read_text() == "1"
