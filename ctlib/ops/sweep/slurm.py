"""The SLURM executor: the sweep's cells as one submitit job array, one task per cell, each
requeued near its time limit and resumed from its checkpoint; a rerun submits only the cells
neither finished nor still queued. The only module of the kit that imports submitit.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ctlib.cv import LOCK_FILE
from ctlib.errors import EXIT_HELD, CtlibError
from ctlib.files import FolderLock, write_json
from ctlib.ops.sweep.grid import Grid, Task
from ctlib.ops.sweep.process import default_stop_signals, signal_group, stamp

__all__ = [
    "CellGroup",
    "CellJob",
    "SlurmOptions",
    "slurm_executor",
    "slurm_queued",
    "submit_array",
]

#: SLURM job states in which a task may still run (``sacct``); any other state is final.
_ALIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "COMPLETING",
    "CONFIGURING",
    "PREEMPTED",
    "SIGNALING",
    "STAGE_OUT",
}


@dataclass(frozen=True)
class SlurmOptions:
    """One array task's resources (each task trains one cell).

    Args:
        partition: SLURM partition (None: the cluster's default).
        time_min: time limit per task in minutes; a cell still training then is requeued and
            resumes from its checkpoint.
        gpus_per_job: GPUs per task (0: a CPU partition).
        cpus_per_job: CPUs per task (DataLoader workers live on them).
        mem_gb: memory per task (None: the partition's default).
        array_parallelism: at most this many tasks run at the same time (``%N``).
        requeues: how often a task is requeued after a time-out (preemptions do not count).
        job_name: SLURM job name.
        sbatch: further sbatch parameters as (name, value) pairs, e.g. ``("account", "abc")``;
            a value of True writes a bare flag.
        setup: shell lines run before the task (``module load cuda``, activating an
            environment).
        signal_delay_s: seconds before the time limit at which SLURM signals the task.
    """

    partition: str | None = None
    time_min: int = 120
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: float | None = None
    array_parallelism: int = 16
    requeues: int = 3
    job_name: str = "ctlib-sweep"
    sbatch: tuple[tuple[str, Any], ...] = ()
    setup: tuple[str, ...] = ()
    signal_delay_s: int = 120

    def array(self, n_tasks: int) -> str:
        """The ``--array`` value submitit writes for ``n_tasks`` tasks."""
        return f"0-{n_tasks - 1}%{min(n_tasks, self.array_parallelism)}"

    def sbatch_flags(self, n_tasks: int) -> list[str]:
        """The main sbatch flags of the array, as ``--name=value`` (for the plan)."""
        flags = {
            "job-name": self.job_name,
            "partition": self.partition,
            "time": self.time_min,
            "gpus-per-node": self.gpus_per_job or None,
            "cpus-per-task": self.cpus_per_job,
            "mem": None if self.mem_gb is None else f"{self.mem_gb:g}GB",
            "array": self.array(n_tasks) if n_tasks > 1 else None,
            "signal": f"{submitit.JobEnvironment.USR_SIG}@{self.signal_delay_s}",
            **{k.replace("_", "-"): v for k, v in self.sbatch},
        }
        return [f"--{k}" if v is True else f"--{k}={v}" for k, v in flags.items() if v is not None]


def slurm_executor(folder: str | os.PathLike[str], options: SlurmOptions) -> submitit.AutoExecutor:
    """A submitit executor for SLURM with ``options``; its files go to ``folder/<job id>``.

    Raises:
        FileNotFoundError: ``sbatch`` or ``srun`` is not on PATH (not a SLURM login node).
    """
    absent = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if absent:
        raise FileNotFoundError(
            f"{' and '.join(absent)} not found on PATH: this is not a SLURM login node. Run the "
            "sweep there (the results folder must be on a file system the compute nodes "
            "share), or use --executor local on this machine."
        )
    executor = submitit.AutoExecutor(
        folder=Path(folder) / "%j", cluster="slurm", slurm_max_num_timeout=options.requeues
    )
    executor.update_parameters(
        name=options.job_name,
        timeout_min=options.time_min,
        gpus_per_node=options.gpus_per_job or None,
        cpus_per_task=options.cpus_per_job,
        mem_gb=options.mem_gb,
        tasks_per_node=1,
        stderr_to_stdout=True,
        slurm_partition=options.partition,
        slurm_array_parallelism=options.array_parallelism,
        slurm_signal_delay_s=options.signal_delay_s,
        slurm_additional_parameters=dict(options.sbatch) or None,
        slurm_setup=list(options.setup) or None,
    )
    return executor


def _current_job_id() -> str | None:
    try:
        return str(submitit.JobEnvironment().job_id)
    except (RuntimeError, KeyError):  # not inside a submitit job
        return None


def _job_states(folder: Path, job_ids: Sequence[str]) -> dict[str, str]:
    """SLURM states of the jobs (one ``sacct`` call, through submitit); UNKNOWN where sacct
    does not answer."""
    jobs = {job_id: submitit.SlurmJob(folder=folder / "%j", job_id=job_id) for job_id in job_ids}
    return {job_id: job.state.split(" ")[0].upper() for job_id, job in jobs.items()}


class CellJob(submitit.helpers.Checkpointable):
    """One cell as a SLURM array task: runs the cell's command, and on a time-out or a
    preemption stops it and hands itself back to be requeued (the fold resumes from its
    checkpoint).

    Args:
        command: the cell's command line (:meth:`~ctlib.ops.sweep.grid.Grid.command`).
        label: the cell's name (:attr:`~ctlib.ops.sweep.grid.Task.label`).
        folder: its fold folder (``metrics.json`` says finished, ``train.lock`` who trains it).
        log: its log file (appended to by every attempt).
        attempts: a folder recording each attempt's process, so a lock left by an earlier
            attempt of the same task is recognised.
        grace_s: seconds the cell has to exit after SIGINT before SIGKILL.
    """

    def __init__(
        self,
        command: Sequence[str],
        label: str,
        folder: str | os.PathLike[str],
        log: str | os.PathLike[str],
        attempts: str | os.PathLike[str],
        grace_s: float = 60.0,
    ) -> None:
        self.command = list(command)
        self.label = label
        self.folder = Path(folder)
        self.log = Path(log)
        self.attempts = Path(attempts)
        self.grace_s = grace_s
        self._process: subprocess.Popen | None = None
        self._exited = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        # a running process does not travel to the requeued task
        return {k: v for k, v in self.__dict__.items() if k not in ("_process", "_exited")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _process=None, _exited=threading.Event())

    def __call__(self) -> dict[str, Any]:
        if self.finished():
            return {"cell": self.label, "status": "finished before"}
        self.start()
        try:
            while not self._exited.wait(1.0):
                pass
        finally:
            self._halt()
        return self.outcome()

    def finished(self) -> bool:
        """Whether the fold has its ``metrics.json``."""
        return (self.folder / "metrics.json").is_file()

    def start(self) -> None:
        """Start the cell's process (its output appended to the log) and the thread that
        reaps it; :meth:`outcome` says how it ended once ``_exited`` is set."""
        self.release_stale_lock()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        job_id = _current_job_id()
        with open(self.log, "a") as handle:
            handle.write(
                f"$ {shlex.join(self.command)}  # job {job_id} on {socket.gethostname()}\n"
            )
            handle.flush()
            self._process = subprocess.Popen(
                self.command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # the cluster signals every process of the task near its time limit; only this
                # wrapper should answer (it stops the cell gracefully, then requeues)
                preexec_fn=_ignore_checkpoint_signal,  # noqa: PLW1509 (single-threaded here)
            )
        self.attempts.mkdir(parents=True, exist_ok=True)
        write_json(
            {"job": job_id, "host": socket.gethostname(), "pid": self._process.pid},
            self.attempts / f"{self.label}.json",
        )
        # a thread reaps the cell, so that checkpoint(), run by the signal handler in this
        # thread while it waits, can wait for the cell too (Popen.wait is not re-entrant)
        self._exited = threading.Event()
        threading.Thread(target=_reap, args=(self._process, self._exited), daemon=True).start()

    def outcome(self) -> dict[str, Any]:
        """How the cell's process ended; raises when it failed or left its fold unfinished."""
        code = self._process.returncode if self._process is not None else None
        if code == EXIT_HELD:  # another process trains this fold: not failed, not done
            return {"cell": self.label, "status": "held elsewhere"}
        if code != 0:
            raise RuntimeError(f"cell {self.label} failed (exit {code}); see {self.log}")
        if not self.finished():
            raise RuntimeError(
                f"cell {self.label} exited without finishing its fold: another process holds "
                f"{self.folder / LOCK_FILE}? See {self.log}."
            )
        return {"cell": self.label, "status": "finished"}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on a time-out or preemption: stop the cell (the fold's last
        checkpoint is on disk), then resubmit the same cell; it resumes from there."""
        if self._process is not None and not self._exited.is_set():
            self._halt()
            with open(self.log, "a") as handle:
                handle.write(f"# {stamp()} stopped for a requeue; the next attempt resumes\n")
        return super().checkpoint(*args, **kwargs)

    def _halt(self) -> None:
        """Stop the cell if it runs (SIGINT to its group, SIGKILL after the grace period) and
        whatever it left behind."""
        if self._process is None:
            return
        if not self._exited.is_set():
            signal_group(self._process, signal.SIGINT)
            if not self._exited.wait(self.grace_s):
                signal_group(self._process, signal.SIGKILL)
                self._exited.wait(60)
        signal_group(self._process, signal.SIGKILL)  # a worker left behind

    def release_stale_lock(self) -> bool:
        """Remove the fold's lock if an earlier attempt of this cell left it: the lock names
        that attempt's process, and that attempt was this very job (a requeue) or a SLURM job
        that has ended. Returns whether a lock was removed."""
        lock = FolderLock(self.folder / LOCK_FILE)
        record = self.attempts / f"{self.label}.json"
        if not lock.path.is_file() or not record.is_file():
            return False
        try:
            previous = json.loads(record.read_text())
        except ValueError:
            return False
        holder = lock.holder
        if (holder.get("host"), holder.get("pid")) != (previous.get("host"), previous.get("pid")):
            return False  # someone else's lock: cv will skip the fold and say whose it is
        job = previous.get("job")
        ended = False
        if job and job != _current_job_id() and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            state = _job_states(self.attempts.parent, [str(job)])[str(job)]
            ended = state not in _ALIVE_STATES and state != "UNKNOWN"
        if job == _current_job_id() or ended:
            lock.path.unlink(missing_ok=True)
            return True
        return False


class CellGroup(submitit.helpers.Checkpointable):
    """Several cells side by side in one array task: small networks sharing one GPU, where
    alone each would leave it mostly idle (``--per-gpu N`` with ``--executor slurm``). The
    cells start together and the task ends when all have; on a time-out or a preemption each
    is stopped and the group is requeued, its finished cells skipped, the others resuming
    from their checkpoints."""

    def __init__(self, cells: Sequence[CellJob]) -> None:
        self.cells = list(cells)
        self.label = "+".join(cell.label for cell in self.cells)

    def __call__(self) -> list[dict[str, Any]]:
        running = [cell for cell in self.cells if not cell.finished()]
        for cell in running:
            cell.start()
        try:
            for cell in running:
                while not cell._exited.wait(1.0):  # noqa: SLF001 - the group drives its cells
                    pass
        finally:
            for cell in running:
                cell._halt()  # noqa: SLF001
        outcomes, failures = [], []
        for cell in self.cells:
            if cell not in running:
                outcomes.append({"cell": cell.label, "status": "finished before"})
                continue
            try:
                outcomes.append(cell.outcome())
            except RuntimeError as error:
                failures.append(str(error))
        if failures:
            raise RuntimeError("; ".join(failures))
        return outcomes

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Stop every running cell (each fold's last checkpoint is on disk), then resubmit the
        group."""
        for cell in self.cells:
            if cell._process is not None and not cell._exited.is_set():  # noqa: SLF001
                cell._halt()  # noqa: SLF001
                with open(cell.log, "a") as handle:
                    handle.write(f"# {stamp()} stopped for a requeue; the next attempt resumes\n")
        return super().checkpoint(*args, **kwargs)


def _reap(process: subprocess.Popen, exited: threading.Event) -> None:
    """Wait for the cell and set ``exited``. The thread blocks the signals a scheduler sends,
    so the kernel hands them to the main thread, whose wait they interrupt at once (delivered
    to this thread, the handler would run only when the main thread's wait times out)."""
    signal.pthread_sigmask(
        signal.SIG_BLOCK,
        {getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIGTERM, signal.SIGINT},
    )
    process.wait()
    exited.set()


def _ignore_checkpoint_signal() -> None:
    default_stop_signals()
    signal.signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIG_IGN)


def slurm_queued(out: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """The cells whose SLURM task (recorded by :func:`submit_array`) may still run: label ->
    (job id, state). One ``sacct`` call; a job sacct does not know counts as ended."""
    record = Path(out) / "slurm" / "cells.json"
    if not record.is_file():
        return {}
    cells: dict[str, str] = json.loads(record.read_text())
    states = _job_states(Path(out) / "slurm", sorted(set(cells.values())))
    return {
        label: (job, states[job]) for label, job in cells.items() if states[job] in _ALIVE_STATES
    }


def submit_array(
    tasks: Sequence[Task],
    grid: Grid,
    options: SlurmOptions,
    *,
    executor: submitit.Executor | None = None,
    cells_per_task: int = 1,
) -> list[submitit.Job]:
    """Submit the cells as one SLURM job array, one task per cell (:class:`CellJob`), or per
    ``cells_per_task`` cells side by side (:class:`CellGroup`, in the order given: pass them
    longest first, so that a task's cells end at about the same time).

    The submission is recorded in ``<out>/slurm/cells.json`` (which task trains which cell), so
    a rerun does not submit a cell that is still queued or running (:func:`slurm_queued`).

    Raises:
        FileNotFoundError: not on a SLURM login node (see :func:`slurm_executor`).
        CtlibError: sbatch refused the array (its message is quoted).
    """
    if not tasks:
        return []
    folder = Path(grid.out) / "slurm"
    executor = executor or slurm_executor(folder, options)
    device = "cuda" if options.gpus_per_job else "cpu"
    cells = [
        CellJob(grid.command(t, device), t.label, grid.folder(t), grid.log(t), folder / "attempts")
        for t in tasks
    ]
    if cells_per_task < 1:
        raise ValueError(f"cells_per_task must be >= 1, got {cells_per_task}.")
    if cells_per_task > 1:
        cells = [CellGroup(cells[i : i + cells_per_task])
                 for i in range(0, len(cells), cells_per_task)]  # fmt: skip
    try:
        with executor.batch():
            jobs = [executor.submit(cell) for cell in cells]
    except (RuntimeError, subprocess.SubprocessError) as error:  # sbatch said no
        raise CtlibError(
            f"sbatch refused the job array: {str(error).strip()[-800:]}\nCheck the partition, "
            "time limit and resources (--partition, --time, --gpus-per-job, --sbatch ...); "
            "nothing was submitted."
        ) from error
    record = folder / "cells.json"
    cells_so_far = json.loads(record.read_text()) if record.is_file() else {}
    per_task = [jobs[i // cells_per_task] for i in range(len(tasks))]
    cells_so_far.update({t.label: str(j.job_id) for t, j in zip(tasks, per_task, strict=True)})
    write_json(cells_so_far, record)
    return jobs
