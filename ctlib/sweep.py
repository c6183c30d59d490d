"""The paper's full Table 2 grid: every (data set, architecture, fold), on GPUs or on SLURM.

``python -m ctlib sweep`` trains 12 architectures x 5 folds x 2 data sets (the paper's recipe:
pretrained, 100 epochs). Each **cell** is one fold of one architecture on one data set, run as
its own process (:meth:`Grid.command`)::

    python -m ctlib cv <cv options> --dataset D --arch A --folds K --only-folds k --out OUT
        --device cuda -q

Every option ``sweep`` does not know itself is such a ``cv`` option (``--epochs 2 --canvas 64
64 --num-workers 4 --compile``): cv's own parser checks them before anything runs, and each
cell gets them unchanged. The sweep is resumable like every ctlib run: a finished cell
(``metrics.json``) is skipped, an interrupted one resumes from its fold's ``checkpoint.pt``
(every ``--checkpoint-every`` epochs or ``--checkpoint-minutes``), and a fold being trained
holds ``<fold>/train.lock``; so the same command can simply be run again. A cell's output goes
to ``<out>/logs/<cell>.log``, the command line first.

**Why a process per cell** rather than the library called in the scheduler's (or the cluster
job's) own process: a cell that dies hard -- CUDA error, out of memory, a segfault, killed by
the kernel -- ends as an exit status that the scheduler, or the submitit wrapper on the
cluster, lives on to report, retry or requeue; a cell and everything it started (DataLoader
workers, compile workers) is one process group, stopped with one signal; the cv options pass
through untouched, so an option cv gains later works in a sweep at once; and the log begins
with the very command a person can paste to rerun that one cell.

**Before any cell starts** (:func:`check_data`) every data set the grid needs is checked
against its manifest (a full verification, remembered per copy) -- the synthetic set is
generated once, not by two cells at the same time -- and a missing or damaged set stops
the sweep with one message naming it and the command that gets it.

**Executors.**

* ``--executor local`` (:func:`run_local`): one machine. Slots are the GPUs
  (``CUDA_VISIBLE_DEVICES``, ``--slots 0,1``) x ``--per-gpu`` cells each (or ``--slots
  cpu,cpu``); the next cell, longest first, goes to the first free slot whose GPU has room for
  it (its ``peak_memory_gib`` in the GPU figures, when they are known). A cell that fails or
  runs past ``--cell-timeout`` minutes is stopped and tried again, up to ``--retries`` times,
  and resumes from its checkpoint. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every running cell --
  SIGINT to its process group, so cv releases its lock and exits, SIGKILL after a grace period
  -- and says what was stopped (a SIGKILL of the sweep itself cannot be answered: its cells
  would train on, their locks keeping a second sweep off their folds). This is a small
  scheduler of the kit's own (process groups through ``start_new_session=True`` and
  ``os.killpg``, a poll loop) rather than submitit's
  ``LocalExecutor``: that one starts every submitted job at once (no limit on how many run
  together), hands each job GPUs ``0..n-1`` (it cannot put a cell on the GPU that is free),
  and its job controllers are made to outlive the Python session that started them -- the
  opposite of "Ctrl-C stops everything".
* ``--executor slurm`` (:func:`submit_array`): one submitit job array, one array task per cell
  (:class:`CellJob`, a ``submitit.helpers.Checkpointable``), with the partition, time limit,
  GPUs, CPUs and memory per task, at most ``--array-parallelism`` tasks at a time
  (``--array=0-N%P``) and any further sbatch parameter (``--sbatch account=...``). Near its
  time limit SLURM sends the task USR2; submitit calls :meth:`CellJob.checkpoint`, which stops
  the cell (its last checkpoint is on disk) and hands back the same cell; submitit requeues
  the task (``scontrol requeue``, up to ``--requeues`` time-outs; preemptions do not count)
  and the requeued task resumes the fold. A lock left behind by an earlier attempt of the
  same task (a preemption kills the cell with it) is recognised and removed
  (``<out>/slurm/attempts/``). Rerunning the same command later submits only the cells that
  are neither finished nor still queued or running (``sacct``, ``<out>/slurm/cells.json``).

**Cost** (``--dry-run`` prints it, with where each cell would run). Two sources, each row
saying which one it used:

* *measured*: the GPU figures of ``benchmarks/gpu_check.py`` (a CSV, one row per
  architecture: ``arch, canvas_width, canvas_height, batch_size, precision, channels_last,
  data_path, images_per_s, data_wait_share, optimizer_share, peak_memory_gib, gpu, torch,
  measured_at``), found at ``--gpu-figures``, else ``$CTLIB_GPU_FIGURES``, else
  ``benchmarks/gpu_check.csv`` beside the package (:func:`gpu_figures_path`). GPU hours of a
  cell = training images x epochs / ``images_per_s`` / 3600.
* *FLOP guess*, for every architecture the figures lack: ``3 x forward FLOPs x images
  trained`` over an assumed sustained throughput (``--gpu-tflops``, 25 TFLOP/s -- a
  conservative guess for convolutional networks in mixed precision on a data-centre GPU;
  small networks such as SqueezeNet or ShuffleNet are limited by data loading instead).
  The FLOPs and the CPU step times come from ``ctlib/step_costs.csv`` (package data, written
  by ``python benchmarks/bench_models.py --csv``): ``cpu_ms_per_image`` *measured* on this
  project's 2-core CPU, ``gflops_forward`` *counted* (``torch.utils.flop_counter``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import submitit
import torch

from ctlib.cv import LOCK_FILE, fold_dir
from ctlib.data import REAL_DATASETS, dataset_info, load_dataset, manifest_path, verify_dataset
from ctlib.errors import CtlibError, DataError
from ctlib.files import FolderLock, write_json
from ctlib.models import get_spec
from ctlib.paths import data_dir

__all__ = [
    "COSTS_FILE",
    "GPU_FIGURES_ENV",
    "GPU_FIGURE_COLUMNS",
    "CellJob",
    "CellOutcome",
    "Grid",
    "Slot",
    "SlurmOptions",
    "Task",
    "cell_costs",
    "check_data",
    "estimate_cost",
    "gpu_figures_path",
    "gpu_memory_gib",
    "local_slots",
    "longest_first",
    "plan_tasks",
    "read_gpu_figures",
    "run_local",
    "schedule_preview",
    "slurm_executor",
    "slurm_queued",
    "submit_array",
    "visible_gpus",
    "write_costs",
]

#: Per-architecture step costs, shipped with the package (``benchmarks/bench_models.py --csv``
#: writes it).
COSTS_FILE = Path(__file__).resolve().parent / "step_costs.csv"

#: The environment variable naming the GPU figures file when ``--gpu-figures`` is not given.
GPU_FIGURES_ENV = "CTLIB_GPU_FIGURES"
_REPO_GPU_FIGURES = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.csv"

#: The columns ``benchmarks/gpu_check.py`` writes, one row per architecture.
GPU_FIGURE_COLUMNS = (
    "arch",
    "canvas_width",
    "canvas_height",
    "batch_size",
    "precision",
    "channels_last",
    "data_path",
    "images_per_s",
    "data_wait_share",
    "optimizer_share",
    "peak_memory_gib",
    "gpu",
    "torch",
    "measured_at",
)

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


# ------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class Task:
    """One cell of the grid: a fold of an architecture on a data set."""

    dataset: str
    arch: str
    fold: int

    @property
    def label(self) -> str:
        return f"{self.dataset}-{self.arch}-fold{self.fold}"


@dataclass(frozen=True)
class Grid:
    """What every cell of one sweep shares: the results folder, the folds, the cv options.

    Args:
        out: the results folder (cv's ``--out``).
        n_folds: folds of the cross-validation.
        protocol: cv's protocol (``--protocol``), to find finished folds.
        run_suffix: what :attr:`ctlib.train.TrainConfig.run_name` adds to the architecture
            (``"-scratch"`` for ``--no-pretrained``), to find finished folds.
        cv_args: further ``cv`` options, passed to every cell as they are.
    """

    out: Path
    n_folds: int = 5
    protocol: str = "paper"
    run_suffix: str = ""
    cv_args: tuple[str, ...] = ()

    def folder(self, task: Task) -> Path:
        """The cell's fold folder."""
        return fold_dir(
            self.out, task.dataset, self.protocol, task.arch + self.run_suffix, task.fold
        )

    def finished(self, task: Task) -> bool:
        return (self.folder(task) / "metrics.json").is_file()

    def log(self, task: Task) -> Path:
        return Path(self.out) / "logs" / f"{task.label}.log"

    def command(self, task: Task, device: str = "cuda") -> list[str]:
        """The cell as a command line (the cv options first, so the cell's own win)."""
        return [
            sys.executable,
            "-m",
            "ctlib",
            "cv",
            *self.cv_args,
            "--dataset",
            task.dataset,
            "--arch",
            task.arch,
            "--folds",
            str(self.n_folds),
            "--only-folds",
            str(task.fold),
            "--out",
            str(self.out),
            "--device",
            device,
            "-q",
        ]


def plan_tasks(
    datasets: Sequence[str],
    archs: Sequence[str],
    n_folds: int,
    out: str | os.PathLike[str],
    *,
    protocol: str = "paper",
    run_suffix: str = "",
) -> tuple[list[Task], list[Task]]:
    """All cells, split into (to do, already finished). A finished cell has ``metrics.json``.

    ``run_suffix`` is what :attr:`ctlib.train.TrainConfig.run_name` adds to the arch
    (``"-scratch"`` for ``--no-pretrained``), so finished folders are found.
    """
    if n_folds < 2:
        raise ValueError(f"A cross-validation needs at least 2 folds, got {n_folds} (--folds).")
    todo, done = [], []
    for dataset in datasets:
        dataset_info(dataset)  # unknown names fail before anything runs, with a suggestion
        for arch in archs:
            get_spec(arch)
            for fold in range(n_folds):
                task = Task(dataset, arch, fold)
                finished = (
                    fold_dir(out, dataset, protocol, arch + run_suffix, fold) / "metrics.json"
                ).is_file()
                (done if finished else todo).append(task)
    return todo, done


def check_data(
    datasets: Sequence[str], root: str | os.PathLike[str] | None = None, *, progress: bool = False
) -> list[str]:
    """Check, before any cell starts, that every data set the sweep needs is there and intact.

    A real data set is verified against its shipped manifest (every image decoded once per
    copy, then remembered, see :func:`ctlib.data.verify_dataset`); the synthetic set is
    generated here, once, rather than by two cells at the same time.

    Returns:
        One line per data set saying what was found.

    Raises:
        DataError: one message naming every data set that is missing or damaged and the
            command that gets it.
    """
    found, missing, damaged = [], [], []
    for name in dict.fromkeys(datasets):
        if not dataset_info(name).downloadable:
            dataset = load_dataset(name, root, progress=progress)
            found.append(f"{name}: {len(dataset)} images (generated)")
            continue
        try:
            report = verify_dataset(name, root, strict=False, progress=progress)
        except DataError as error:
            missing.append((name, str(error).split(". Get it")[0]))
            continue
        if report.ok:
            found.append(f"{name}: verified, {report.expected} images in {report.folder}")
        else:
            problems = [
                f"{len(items)} {word}"
                for word, items in (
                    ("missing", report.missing),
                    ("undecodable", report.undecodable),
                    ("altered", report.altered),
                )
                if items
            ]
            damaged.append((name, f"{', '.join(problems)} of {report.expected} images"))
    if missing or damaged:
        dest = shlex.quote(str(data_dir(root)))
        lines = [f"  {name}: {why}" for name, why in missing + damaged]
        fixes = []
        if missing:
            names = [n for n, _ in missing]
            which = ["all"] if len(names) > 1 and set(names) == set(REAL_DATASETS) else names
            commands = " and ".join(f"`python -m ctlib download {w} --dest {dest}`" for w in which)
            fixes.append(
                f"get {' and '.join(names)} with {commands} (or point CTLIB_DATA_DIR, or "
                "--root, at the folder that holds them)"
            )
        for name, _ in damaged:
            fixes.append(
                f"see `python -m ctlib verify {name}` for the files, or fetch a fresh copy with "
                f"`python -m ctlib download {name} --dest {dest} --force`"
            )
        raise DataError(
            "The sweep needs data sets that are not ready, so no cell was started:\n"
            + "\n".join(lines)
            + "\nFix: "
            + "; ".join(fixes)
            + "; then run the same command again."
        )
    return found


# ------------------------------------------------------------------------------- the cost
def _dataset_sizes() -> dict[str, int]:
    return {name: sum(1 for _ in open(manifest_path(name))) - 1 for name in REAL_DATASETS}


def gpu_figures_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The GPU figures file to cost the grid from: ``path`` if given, else
    ``$CTLIB_GPU_FIGURES``, else ``benchmarks/gpu_check.csv`` beside the package if it exists,
    else None (the FLOP guess is used).

    Raises:
        FileNotFoundError: ``path`` or ``$CTLIB_GPU_FIGURES`` names no file.
    """
    for value, origin in (
        (path, "--gpu-figures"),
        (os.environ.get(GPU_FIGURES_ENV), "$" + GPU_FIGURES_ENV),
    ):
        if value is not None and str(value).strip():
            chosen = Path(str(value).strip()).expanduser()
            if not chosen.is_file():
                raise FileNotFoundError(
                    f"{origin} names {str(chosen)!r}, which is not a file. Write it with "
                    "`python benchmarks/gpu_check.py` on the GPU, or leave it out to cost "
                    "the grid from the FLOP guess."
                )
            return chosen
    return _REPO_GPU_FIGURES if _REPO_GPU_FIGURES.is_file() else None


def read_gpu_figures(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The GPU figures (``benchmarks/gpu_check.py``'s CSV) indexed by architecture; where an
    architecture has several rows, the last one counts.

    Raises:
        ValueError: the file lacks ``arch`` or ``images_per_s``, or a throughput is not a
            positive number.
    """
    frame = pd.read_csv(path)
    absent = [c for c in ("arch", "images_per_s") if c not in frame]
    if absent:
        raise ValueError(
            f"{str(path)!r} lacks the column(s) {absent}; a GPU figures file has "
            f"{', '.join(GPU_FIGURE_COLUMNS)} (python benchmarks/gpu_check.py writes it)."
        )
    speed = pd.to_numeric(frame["images_per_s"], errors="coerce")
    bad = frame.loc[~(speed > 0), "arch"].tolist()
    if bad:
        raise ValueError(
            f"{str(path)!r}: images_per_s must be a positive number; it is not for {bad}. "
            "Measure those architectures again with python benchmarks/gpu_check.py."
        )
    frame = frame.assign(images_per_s=speed)
    return frame.drop_duplicates("arch", keep="last").set_index("arch")


def cell_costs(
    tasks: Sequence[Task],
    *,
    epochs: int = 100,
    n_folds: int = 5,
    gpu_tflops: float = 25.0,
    costs: str | os.PathLike[str] = COSTS_FILE,
    figures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Expected cost of each cell (see the module docstring), one row per cell.

    Columns: ``cell, dataset, arch, fold, images_trained`` (training images x epochs),
    ``cpu_hours`` (this project's CPU, measured step time), ``gpu_hours_estimate`` (the FLOP
    guess), ``gpu_hours_measured`` (from ``figures``, :func:`read_gpu_figures`; NaN where the
    architecture is not in them), ``gpu_hours`` (measured where known, else the guess) and
    ``source`` (``"measured"`` or ``"FLOP guess"``; ``"unknown"`` for an architecture in
    neither file).
    """
    table = pd.read_csv(costs).set_index("arch")
    sizes = _dataset_sizes()
    rows = []
    for task in tasks:
        images = sizes.get(task.dataset, 0) * (n_folds - 1) / n_folds * epochs
        row: dict[str, Any] = {
            "cell": task.label,
            "dataset": task.dataset,
            "arch": task.arch,
            "fold": task.fold,
            "images_trained": images,
            "cpu_hours": math.nan,
            "gpu_hours_estimate": math.nan,
            "gpu_hours_measured": math.nan,
        }
        if task.arch in table.index:
            row["cpu_hours"] = images * table.loc[task.arch, "cpu_ms_per_image"] / 1000 / 3600
            row["gpu_hours_estimate"] = (
                images
                * 3
                * table.loc[task.arch, "gflops_forward"]
                * 1e9
                / (gpu_tflops * 1e12)
                / 3600
            )
        measured = figures is not None and task.arch in figures.index
        if measured:
            row["gpu_hours_measured"] = images / figures.loc[task.arch, "images_per_s"] / 3600
        row["gpu_hours"] = row["gpu_hours_measured"] if measured else row["gpu_hours_estimate"]
        row["source"] = (
            "measured" if measured else "FLOP guess" if task.arch in table.index else "unknown"
        )
        rows.append(row)
    columns = ["cell", "dataset", "arch", "fold", "images_trained", "cpu_hours"]
    columns += ["gpu_hours_estimate", "gpu_hours_measured", "gpu_hours", "source"]
    return pd.DataFrame(rows, columns=columns)


def estimate_cost(
    tasks: Sequence[Task],
    *,
    epochs: int = 100,
    n_folds: int = 5,
    gpu_tflops: float = 25.0,
    costs: str | os.PathLike[str] = COSTS_FILE,
    figures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Expected cost per architecture of the given cells (see the module docstring).

    Returns one row per architecture (and a ``total`` row): ``cells``, ``images_trained``
    (training images x epochs over the cells), ``cpu_hours`` (measured step time x images,
    this project's CPU), ``gpu_hours_estimate`` (the FLOP guess), ``gpu_hours_measured``
    (from the GPU ``figures``, NaN without them), ``gpu_hours`` (measured where known, else the
    guess) and ``source`` (which of the two ``gpu_hours`` is: ``"measured"``, ``"FLOP guess"``,
    ``"mixed"`` in the total).
    """
    cells = cell_costs(
        tasks, epochs=epochs, n_folds=n_folds, gpu_tflops=gpu_tflops, costs=costs, figures=figures
    )
    numbers = ["images_trained", "cpu_hours", "gpu_hours_estimate", "gpu_hours_measured"]
    frame = cells.groupby("arch", sort=True).agg(
        cells=("cell", "size"),
        **{c: (c, lambda s: s.sum(min_count=1)) for c in [*numbers, "gpu_hours"]},
        source=("source", "first"),
    )
    if len(frame):
        frame["images_trained"] = frame["images_trained"].astype(int)
        total = frame.drop(columns="source").sum(min_count=1)
        sources = set(frame["source"])
        frame.loc["total"] = pd.Series(
            {**total.to_dict(), "source": sources.pop() if len(sources) == 1 else "mixed"}
        )
        frame["cells"] = frame["cells"].astype(int)
        frame["images_trained"] = frame["images_trained"].astype(int)
    return frame


def longest_first(tasks: Sequence[Task], hours: Mapping[Task, float]) -> list[Task]:
    """The cells in the order to start them: longest first (the last ones to finish are then
    short), the grid's order among equals."""
    return sorted(tasks, key=lambda t: -(hours.get(t, 0.0) or 0.0))


def write_costs(rows: Sequence[dict[str, object]], path: str | os.PathLike[str]) -> None:
    """Write ``step_costs.csv`` rows (``arch, canvas, cpu_ms_per_image, gflops_forward``)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------ local: slots and GPUs
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
        elif device.isdigit():
            slots.extend(Slot(device, k) for k in range(per_gpu))
        else:
            raise ValueError(
                f"--slots entry {device!r} is neither a GPU index (0, 1 ...) nor 'cpu'."
            )
    return slots


def gpu_memory_gib(gpus: Sequence[str]) -> dict[str, float]:
    """Total memory of each named GPU (``CUDA_VISIBLE_DEVICES`` numbering), where torch sees it."""
    if not torch.cuda.is_available():
        return {}
    visible = visible_gpus()
    memory = {}
    for gpu in dict.fromkeys(gpus):
        index = visible.index(gpu) if gpu in visible else int(gpu)
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


# ----------------------------------------------------------------- local: the scheduler
@dataclass
class CellOutcome:
    """How one cell of a local sweep ended."""

    task: Task
    finished: bool = False
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


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the cell's process group (the cell and all it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(process.pid, sig)


def _stop(process: subprocess.Popen, grace_s: float, hurry: threading.Event | None = None) -> None:
    """Stop a cell: SIGINT to its group (cv saves nothing more, releases its lock and exits),
    SIGKILL once ``grace_s`` have passed (or ``hurry`` is set), then reap it."""
    if process.poll() is None:
        _signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while process.poll() is None and time.monotonic() < deadline:
            if hurry is not None and hurry.is_set():
                break
            time.sleep(0.05)
    _signal_group(process, signal.SIGKILL)  # the cell if it lingers, and any leftover worker
    process.wait()


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


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


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
        tasks: the cells, in the order to start them (:func:`plan_tasks`,
            :func:`longest_first`).
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
    say = (lambda text: print(f"[{_stamp()}] {text}", flush=True)) if echo else (lambda text: None)
    (Path(grid.out) / "logs").mkdir(parents=True, exist_ok=True)
    queue = list(tasks)
    outcomes = {t.label: CellOutcome(t) for t in tasks}
    running: dict[Slot, _Attempt] = {}
    limit_s = None if cell_timeout_min is None else 60 * cell_timeout_min

    def start(task: Task, slot: Slot) -> _Attempt:
        outcome = outcomes[task.label]
        outcome.attempts += 1
        outcome.slot = slot.label
        env = dict(os.environ)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        command = grid.command(task, slot.device)
        handle = open(grid.log(task), "a")  # noqa: SIM115 (closed when the attempt ends)
        handle.write(f"$ {shlex.join(command)}  # attempt {outcome.attempts}, {slot.label}\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,  # noqa: PLW1509 (the child only calls sigaction)
        )
        say(f"start {task.label} on {slot.label} (pid {process.pid}, attempt {outcome.attempts})")
        return _Attempt(task, slot, process, handle, time.monotonic())

    with _StopSignals() as stop:
        while queue or running:
            if stop.signum is not None:
                _interrupt(running, queue, stop, grace_s, say)
            for slot in slots:
                if slot in running or not queue:
                    continue
                sharing = [
                    a for s, a in running.items() if slot.gpu is not None and s.gpu == slot.gpu
                ]
                used = sum((memory_gib or {}).get(a.task.arch, 0.0) for a in sharing)
                capacity = (gpu_memory or {}).get(slot.gpu) if slot.gpu is not None else None
                index = _pick(queue, used, bool(sharing), capacity, memory_gib)
                if index is not None:
                    running[slot] = start(queue.pop(index), slot)
            time.sleep(poll_s)
            now = time.monotonic()
            for slot, attempt in list(running.items()):
                code = attempt.process.poll()
                outcome = outcomes[attempt.task.label]
                if code is None:
                    if (
                        limit_s is not None
                        and attempt.kill_at is None
                        and now - attempt.started > limit_s
                    ):
                        outcome.timed_out += 1
                        _signal_group(attempt.process, signal.SIGINT)
                        attempt.kill_at = now + grace_s
                        say(
                            f"timed out: {attempt.task.label} ran past {cell_timeout_min:g} "
                            "min; stopping it"
                        )
                    elif attempt.kill_at is not None and now > attempt.kill_at:
                        _signal_group(attempt.process, signal.SIGKILL)
                    continue
                _signal_group(attempt.process, signal.SIGKILL)  # a worker left behind
                attempt.handle.close()
                del running[slot]
                outcome.returncode = code
                outcome.finished = code == 0 and grid.finished(attempt.task)
                minutes = (now - attempt.started) / 60
                if outcome.finished:
                    say(f"done: {attempt.task.label} ({minutes:.1f} min)")
                    continue
                why = (
                    "timed out"
                    if attempt.kill_at is not None
                    else f"exit {code}"
                    if code != 0
                    else "exit 0 but no metrics.json (another process holds the fold?)"
                )
                if outcome.attempts <= retries:
                    queue.insert(0, attempt.task)  # next, while its checkpoint is fresh
                    say(
                        f"failed ({why}): {attempt.task.label}; retry {outcome.attempts} of "
                        f"{retries}, resuming from its checkpoint"
                    )
                else:
                    say(f"FAILED ({why}): {attempt.task.label}, see {grid.log(attempt.task)}")
    return outcomes


def _interrupt(
    running: dict[Slot, _Attempt],
    queue: list[Task],
    stop: _StopSignals,
    grace_s: float,
    say: Any,
) -> None:
    """Stop every running cell, say so, and raise KeyboardInterrupt."""
    name = signal.Signals(stop.signum).name if stop.signum is not None else "a signal"
    labels = [f"{a.task.label} (pid {a.process.pid})" for a in running.values()]
    say(
        f"{name}: stopping {len(running)} running cell(s){': ' if labels else ''}"
        f"{', '.join(labels)}"
    )
    for attempt in running.values():
        _signal_group(attempt.process, signal.SIGINT)
    for attempt in running.values():
        _stop(attempt.process, grace_s, stop.hurry)
        attempt.handle.close()
    say(
        f"stopped {len(running)} cell(s); {len(queue)} had not started. Run the same command "
        "again: finished cells are skipped, stopped ones resume from their last checkpoint."
    )
    running.clear()
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------------- SLURM
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
        command: the cell's command line (:meth:`Grid.command`).
        label: the cell's name (:attr:`Task.label`).
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
        if (self.folder / "metrics.json").is_file():
            return {"cell": self.label, "status": "finished before"}
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
            process, exited = self._process, self._exited
            threading.Thread(target=_reap, args=(process, exited), daemon=True).start()
            try:
                while not exited.wait(1.0):
                    pass
            finally:
                self._halt()
        code = process.returncode
        if code != 0:
            raise RuntimeError(f"cell {self.label} failed (exit {code}); see {self.log}")
        if not (self.folder / "metrics.json").is_file():
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
                handle.write(f"# {_stamp()} stopped for a requeue; the next attempt resumes\n")
        return super().checkpoint(*args, **kwargs)

    def _halt(self) -> None:
        """Stop the cell if it runs (SIGINT to its group, SIGKILL after the grace period) and
        whatever it left behind."""
        if self._process is None:
            return
        if not self._exited.is_set():
            _signal_group(self._process, signal.SIGINT)
            if not self._exited.wait(self.grace_s):
                _signal_group(self._process, signal.SIGKILL)
                self._exited.wait(60)
        _signal_group(self._process, signal.SIGKILL)  # a worker left behind

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


def _default_stop_signals() -> None:
    """In a cell, before it starts: SIGINT and SIGTERM back to their defaults, so the cell
    answers them even when this process inherited them ignored (a command started with ``&``
    from a script, or ``nohup``'s shell, ignores SIGINT, and a child inherits that: the cell
    would then train on through the grace period instead of stopping)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _ignore_checkpoint_signal() -> None:
    _default_stop_signals()
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
) -> list[submitit.Job]:
    """Submit the cells as one SLURM job array, one task per cell (:class:`CellJob`).

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
    cells_so_far.update({t.label: str(j.job_id) for t, j in zip(tasks, jobs, strict=True)})
    write_json(cells_so_far, record)
    return jobs
