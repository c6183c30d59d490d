"""The local executor: the sweep's cells on this machine's GPUs (or CPU), one process per slot,
longest first, retried after a failure or a time-out, every cell stopped on Ctrl-C. A small
scheduler of the kit's own; ``docs/DEVELOPERS.md`` ("The sweep") says why not submitit's.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctlib.errors import EXIT_HELD
from ctlib.ops.sweep.grid import Grid, Task
from ctlib.ops.sweep.process import default_stop_signals, signal_group, stamp, stop

__all__ = [
    "CellOutcome",
    "Slot",
    "gpu_memory_gib",
    "local_slots",
    "run_local",
    "schedule_preview",
    "visible_gpus",
]


# ------------------------------------------------------------------------ slots and GPUs
@dataclass(frozen=True)
class Slot:
    """A place for one running cell: a GPU (as ``CUDA_VISIBLE_DEVICES`` names it) or the CPU,
    and which of the cells sharing that device it is."""

    gpu: str | None
    share: int = 0

    @property
    def device(self) -> str:
        return "cpu" if self.gpu is None else "cuda"

    @property
    def label(self) -> str:
        return f"{'CPU' if self.gpu is None else f'GPU {self.gpu}'} #{self.share + 1}"


#: How CUDA_VISIBLE_DEVICES may name a GPU: an index, a GPU UUID (or a unique prefix of one),
#: or a MIG instance (``MIG-<uuid>``, or the older ``MIG-GPU-<uuid>/<gi>/<ci>``).
GPU_ID = re.compile(r"\d+|GPU-[0-9A-Fa-f-]+|MIG-(GPU-)?[0-9A-Fa-f-]+(/\d+/\d+)?")


def visible_gpus() -> list[str]:
    """The GPU indices this process may use (``CUDA_VISIBLE_DEVICES`` or all CUDA devices)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def local_slots(devices: str | Sequence[str] | None = None, per_gpu: int = 1) -> list[Slot]:
    """The local executor's slots: each GPU ``per_gpu`` times; each ``"cpu"`` entry once.

    Args:
        devices: GPU indices (``"0,1"``) and/or ``"cpu"`` entries (``"cpu,cpu"``: two cells on
            the CPU); default every visible GPU.
        per_gpu: cells sharing each GPU.

    Raises:
        ValueError: no device at all, or ``per_gpu`` below 1.
    """
    if per_gpu < 1:
        raise ValueError(f"per_gpu must be >= 1 (cells sharing each GPU), got {per_gpu}.")
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = list(devices) if devices is not None else visible_gpus()
    if not devices:
        raise ValueError(
            "No GPU is visible (CUDA_VISIBLE_DEVICES / torch.cuda.device_count() is empty). "
            "Run on a GPU machine, pass --slots 0,1 to name GPUs, or --slots cpu to use the CPU."
        )
    slots, cpus = [], 0
    for device in devices:
        if device.lower() == "cpu":
            slots.append(Slot(None, cpus))
            cpus += 1
        elif GPU_ID.fullmatch(device):
            slots.extend(Slot(device, k) for k in range(per_gpu))
        else:
            raise ValueError(
                f"--slots entry {device!r} is neither a GPU (an index such as 0, a UUID such as "
                "GPU-8f3c..., a MIG instance such as MIG-6a2b... or MIG-GPU-8f3c.../1/0, as "
                "CUDA_VISIBLE_DEVICES and nvidia-smi -L name them) nor 'cpu'."
            )
    return slots


def gpu_memory_gib(gpus: Sequence[str]) -> dict[str, float]:
    """Total memory of each named GPU (``CUDA_VISIBLE_DEVICES`` numbering), where torch sees it."""
    if not torch.cuda.is_available():
        return {}
    visible = visible_gpus()
    memory = {}
    for gpu in dict.fromkeys(gpus):
        if gpu in visible:  # torch numbers the visible devices in CUDA_VISIBLE_DEVICES' order
            index = visible.index(gpu)
        elif gpu.isdigit():
            index = int(gpu)
        else:  # a UUID outside CUDA_VISIBLE_DEVICES: torch cannot say which it is
            continue
        if index < torch.cuda.device_count():
            memory[gpu] = torch.cuda.get_device_properties(index).total_memory / 2**30
    return memory


def _pick(
    queue: Sequence[Task],
    used_gib: float,
    busy: bool,
    capacity_gib: float | None,
    memory_gib: Mapping[str, float] | None,
) -> int | None:
    """Which queued cell to start on a free slot: the first whose peak memory fits in what the
    GPU's running cells leave; any on an idle GPU or where memory is unknown; None: wait."""
    if not queue:
        return None
    if not busy or capacity_gib is None or not memory_gib:
        return 0
    for index, task in enumerate(queue):
        if used_gib + memory_gib.get(task.arch, 0.0) <= capacity_gib:
            return index
    return None


def schedule_preview(
    tasks: Sequence[Task],
    slots: Sequence[Slot],
    hours: Mapping[Task, float],
    *,
    memory_gib: Mapping[str, float] | None = None,
    gpu_memory: Mapping[str, float] | None = None,
) -> list[tuple[Slot, Task, float, float]]:
    """Where and when each cell would run with :func:`run_local`'s rule, if each took its
    estimated ``hours``: ``(slot, cell, start, end)`` in hours from the start."""
    free_at = {slot: 0.0 for slot in slots}
    placed: list[tuple[Slot, Task, float, float]] = []
    queue = list(tasks)
    while queue and slots:
        slot = min(slots, key=lambda s: (free_at[s], slots.index(s)))
        now = free_at[slot]
        sharing = [
            (task, end)
            for other, task, start, end in placed
            if slot.gpu is not None and other.gpu == slot.gpu and start <= now < end
        ]
        used = sum((memory_gib or {}).get(task.arch, 0.0) for task, _ in sharing)
        capacity = (gpu_memory or {}).get(slot.gpu) if slot.gpu is not None else None
        index = _pick(queue, used, bool(sharing), capacity, memory_gib)
        if index is None:  # no cell fits beside those running: wait for the first to end
            free_at[slot] = min(end for _, end in sharing)
            continue
        task = queue.pop(index)
        end = now + (hours.get(task, 0.0) or 0.0)
        placed.append((slot, task, now, end))
        free_at[slot] = end
    return placed


# ------------------------------------------------------------------------- the scheduler
@dataclass
class CellOutcome:
    """How one cell of a local sweep ended."""

    task: Task
    finished: bool = False
    #: another process trains the cell's fold (cv exited with EXIT_HELD): try again later
    held: bool = False
    returncode: int | None = None
    attempts: int = 0
    timed_out: int = 0
    slot: str = ""


@dataclass
class _Attempt:
    task: Task
    slot: Slot
    process: subprocess.Popen
    handle: Any
    started: float
    kill_at: float | None = None


class _StopSignals:
    """Turn SIGINT/SIGTERM/SIGHUP into a flag the scheduler checks (never an exception raised in the
    middle of starting a process); a second one asks to hurry. Main thread only."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.hurry = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            self.hurry.set()
        self.signum = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_local(
    tasks: Sequence[Task],
    slots: Sequence[Slot],
    grid: Grid,
    *,
    retries: int = 1,
    cell_timeout_min: float | None = None,
    memory_gib: Mapping[str, float] | None = None,
    gpu_memory: Mapping[str, float] | None = None,
    grace_s: float = 30.0,
    poll_s: float = 0.5,
    echo: bool = True,
) -> dict[str, CellOutcome]:
    """Run the cells on this machine, one ``python -m ctlib cv`` process per slot at a time.

    Args:
        tasks: the cells, in the order to start them (:func:`~ctlib.ops.sweep.grid.plan_tasks`,
            :func:`~ctlib.ops.sweep.cost.longest_first`).
        slots: from :func:`local_slots`.
        grid: the results folder and the options the cells share.
        retries: how often a failed or timed-out cell is tried again (it resumes from its
            checkpoint).
        cell_timeout_min: minutes an attempt may run before it is stopped and counted as failed.
        memory_gib: peak GPU memory per architecture (the GPU figures); with ``gpu_memory`` a
            cell starts beside others on a GPU only where it fits.
        gpu_memory: total memory per GPU (:func:`gpu_memory_gib`).
        grace_s: seconds a stopped cell has to exit after SIGINT before SIGKILL.
        poll_s: how often to look at the running cells.
        echo: print a line when a cell starts, ends, fails or is retried.

    Returns:
        Cell label -> :class:`CellOutcome`. A failed cell does not stop the others; its log
        says why.

    Raises:
        KeyboardInterrupt: on SIGINT, SIGTERM or SIGHUP, once every running cell is stopped (what
            was stopped is printed; the same command resumes).
    """
    if not slots:
        raise ValueError("No slot to run cells on; see local_slots().")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}.")
    if cell_timeout_min is not None and not cell_timeout_min > 0:
        raise ValueError(
            f"The cell timeout must be a positive number of minutes, got {cell_timeout_min}."
        )
    say = (lambda text: print(f"[{stamp()}] {text}", flush=True)) if echo else (lambda text: None)
    (Path(grid.out) / "logs").mkdir(parents=True, exist_ok=True)
    run = _LocalRun(
        grid=grid,
        slots=slots,
        retries=retries,
        cell_timeout_min=cell_timeout_min,
        memory_gib=memory_gib,
        gpu_memory=gpu_memory,
        grace_s=grace_s,
        say=say,
        queue=list(tasks),
        outcomes={t.label: CellOutcome(t) for t in tasks},
    )
    with _StopSignals() as stop_signals:
        while run.queue or run.running:
            if stop_signals.signum is not None:
                _interrupt(run.running, run.queue, stop_signals, grace_s, say)
            run.fill_free_slots()
            time.sleep(poll_s)
            run.look_at_running(time.monotonic())
    return run.outcomes


@dataclass
class _LocalRun:
    """One :func:`run_local`: the queue, the running attempts, how each cell fared."""

    grid: Grid
    slots: Sequence[Slot]
    retries: int
    cell_timeout_min: float | None
    memory_gib: Mapping[str, float] | None
    gpu_memory: Mapping[str, float] | None
    grace_s: float
    say: Callable[[str], None]
    queue: list[Task]
    outcomes: dict[str, CellOutcome] = field(default_factory=dict)
    running: dict[Slot, _Attempt] = field(default_factory=dict)

    def start(self, task: Task, slot: Slot) -> _Attempt:
        """Start one attempt of ``task`` on ``slot``: its own process group, its log appended."""
        outcome = self.outcomes[task.label]
        outcome.attempts += 1
        outcome.slot = slot.label
        env = dict(os.environ)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        command = self.grid.command(task, slot.device)
        handle = open(self.grid.log(task), "a")  # noqa: SIM115 (closed when the attempt ends)
        handle.write(f"$ {shlex.join(command)}  # attempt {outcome.attempts}, {slot.label}\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_stop_signals,  # noqa: PLW1509 (the child only calls sigaction)
        )
        self.say(
            f"start {task.label} on {slot.label} (pid {process.pid}, attempt {outcome.attempts})"
        )
        return _Attempt(task, slot, process, handle, time.monotonic())

    def fill_free_slots(self) -> None:
        """Each free slot takes the next queued cell that fits beside its GPU's running ones."""
        for slot in self.slots:
            if slot in self.running or not self.queue:
                continue
            sharing = [
                a for s, a in self.running.items() if slot.gpu is not None and s.gpu == slot.gpu
            ]
            used = sum((self.memory_gib or {}).get(a.task.arch, 0.0) for a in sharing)
            capacity = (self.gpu_memory or {}).get(slot.gpu) if slot.gpu is not None else None
            index = _pick(self.queue, used, bool(sharing), capacity, self.memory_gib)
            if index is not None:
                self.running[slot] = self.start(self.queue.pop(index), slot)

    def look_at_running(self, now: float) -> None:
        """Stop an attempt past its time limit; record each one that has ended."""
        limit_s = None if self.cell_timeout_min is None else 60 * self.cell_timeout_min
        for slot, attempt in list(self.running.items()):
            code = attempt.process.poll()
            if code is not None:
                self.ended(slot, attempt, code, now)
            elif (
                limit_s is not None and attempt.kill_at is None and now - attempt.started > limit_s
            ):
                self.outcomes[attempt.task.label].timed_out += 1
                signal_group(attempt.process, signal.SIGINT)
                attempt.kill_at = now + self.grace_s
                self.say(
                    f"timed out: {attempt.task.label} ran past {self.cell_timeout_min:g} "
                    "min; stopping it"
                )
            elif attempt.kill_at is not None and now > attempt.kill_at:
                signal_group(attempt.process, signal.SIGKILL)

    def ended(self, slot: Slot, attempt: _Attempt, code: int, now: float) -> None:
        """An attempt has exited: finished, to be retried (first in the queue), or failed."""
        signal_group(attempt.process, signal.SIGKILL)  # a worker left behind
        attempt.handle.close()
        del self.running[slot]
        outcome = self.outcomes[attempt.task.label]
        outcome.returncode = code
        outcome.finished = code == 0 and self.grid.finished(attempt.task)
        minutes = (now - attempt.started) / 60
        if outcome.finished:
            self.say(f"done: {attempt.task.label} ({minutes:.1f} min)")
            return
        if code == EXIT_HELD:  # another process trains this fold: neither failed nor done
            outcome.held = True
            self.say(f"held elsewhere: {attempt.task.label} (another process trains it); "
                     "run the sweep again later to collect it")  # fmt: skip
            return
        why = (
            "timed out"
            if attempt.kill_at is not None
            else f"exit {code}"
            if code != 0
            else "exit 0 but no metrics.json (another process holds the fold?)"
        )
        if outcome.attempts <= self.retries:
            self.queue.insert(0, attempt.task)  # next, while its checkpoint is fresh
            self.say(
                f"failed ({why}): {attempt.task.label}; retry {outcome.attempts} of "
                f"{self.retries}, resuming from its checkpoint"
            )
        else:
            self.say(f"FAILED ({why}): {attempt.task.label}, see {self.grid.log(attempt.task)}")


def _interrupt(
    running: dict[Slot, _Attempt],
    queue: list[Task],
    stop_signals: _StopSignals,
    grace_s: float,
    say: Any,
) -> None:
    """Stop every running cell, say so, and raise KeyboardInterrupt."""
    signum = stop_signals.signum
    name = signal.Signals(signum).name if signum is not None else "a signal"
    labels = [f"{a.task.label} (pid {a.process.pid})" for a in running.values()]
    say(
        f"{name}: stopping {len(running)} running cell(s){': ' if labels else ''}"
        f"{', '.join(labels)}"
    )
    for attempt in running.values():
        signal_group(attempt.process, signal.SIGINT)
    for attempt in running.values():
        stop(attempt.process, grace_s, stop_signals.hurry, signalled=True)
        attempt.handle.close()
    say(
        f"stopped {len(running)} cell(s); {len(queue)} had not started. Run the same command "
        "again: finished cells are skipped, stopped ones resume from their last checkpoint."
    )
    running.clear()
    raise KeyboardInterrupt
