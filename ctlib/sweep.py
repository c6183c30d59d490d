"""The paper's full Table 2 grid on a GPU machine: every (data set, architecture, fold).

``python -m ctlib sweep`` runs 12 architectures x 5 folds x 2 data sets (pretrained,
100 epochs, the paper's recipe) as independent ``python -m ctlib cv --only-folds k``
processes, **one per visible GPU** (``CUDA_VISIBLE_DEVICES`` set per process), handing
the next unfinished cell to whichever GPU frees up first. It is resumable like every
ctlib run: finished folds (``metrics.json``) are skipped, an interrupted fold resumes from
its last epoch checkpoint, so the same command can simply be run again. Each cell's
output goes to ``<out>/logs/<dataset>-<arch>-fold<k>.log``.

``--dry-run`` prints the plan and its expected cost, from two per-architecture numbers in
``ctlib/step_costs.csv`` (package data, written by ``python benchmarks/bench_models.py --csv``):

* ``cpu_ms_per_image``: one training step (forward + backward) per image at the paper
  canvas, *measured* on this project's 2-core CPU;
* ``gflops_forward``: the forward pass's floating-point operations per image at that
  canvas, *counted* (``torch.utils.flop_counter``).

The GPU hours are an **estimate**: ``3 x forward FLOPs x images trained`` divided by an
assumed sustained throughput (``--gpu-tflops``, default 25 TFLOP/s -- a conservative guess
for convolutional networks in mixed precision on a data-centre GPU; small networks such as
SqueezeNet or ShuffleNet are limited by data loading instead). Measure one epoch on your GPU
and scale, rather than trusting the guess.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ctlib.cv import fold_dir
from ctlib.data import REAL_DATASETS, manifest_path
from ctlib.models import get_spec

__all__ = ["COSTS_FILE", "Task", "estimate_cost", "plan_tasks", "run_sweep", "visible_gpus"]

#: Per-architecture step costs, shipped with the package (``benchmarks/bench_models.py --csv``
#: writes it).
COSTS_FILE = Path(__file__).resolve().parent / "step_costs.csv"


@dataclass(frozen=True)
class Task:
    """One cell of the grid: a fold of an architecture on a data set."""

    dataset: str
    arch: str
    fold: int

    @property
    def label(self) -> str:
        return f"{self.dataset}-{self.arch}-fold{self.fold}"


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
        for arch in archs:
            get_spec(arch)  # unknown names fail before anything runs
            for fold in range(n_folds):
                task = Task(dataset, arch, fold)
                finished = (
                    fold_dir(out, dataset, protocol, arch + run_suffix, fold) / "metrics.json"
                ).is_file()
                (done if finished else todo).append(task)
    return todo, done


def _dataset_sizes() -> dict[str, int]:
    return {name: sum(1 for _ in open(manifest_path(name))) - 1 for name in REAL_DATASETS}


def estimate_cost(
    tasks: Sequence[Task],
    *,
    epochs: int = 100,
    n_folds: int = 5,
    gpu_tflops: float = 25.0,
    costs: str | os.PathLike[str] = COSTS_FILE,
) -> pd.DataFrame:
    """Expected cost per architecture of the given cells (see the module docstring).

    Returns one row per architecture (and a ``total`` row): ``cells``, ``images_trained``
    (training images x epochs over the cells), ``cpu_hours`` (measured step time x
    images, this project's CPU) and ``gpu_hours_estimate``.
    """
    table = pd.read_csv(costs).set_index("arch")
    sizes = {**_dataset_sizes()}
    rows = []
    for arch in sorted({t.arch for t in tasks}):
        cells = [t for t in tasks if t.arch == arch]
        images = sum(sizes.get(t.dataset, 0) * (n_folds - 1) / n_folds * epochs for t in cells)
        row = {"arch": arch, "cells": len(cells), "images_trained": int(images)}
        if arch in table.index:
            row["cpu_hours"] = images * table.loc[arch, "cpu_ms_per_image"] / 1000 / 3600
            row["gpu_hours_estimate"] = (
                images * 3 * table.loc[arch, "gflops_forward"] * 1e9 / (gpu_tflops * 1e12) / 3600
            )
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("arch")
    if len(frame):
        frame.loc["total"] = frame.sum(numeric_only=True)
    return frame


def visible_gpus() -> list[str]:
    """The GPU indices this process may use (``CUDA_VISIBLE_DEVICES`` or all CUDA devices)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]

    return [str(i) for i in range(torch.cuda.device_count())]


def run_sweep(
    tasks: Sequence[Task],
    slots: Sequence[str],
    out: str | os.PathLike[str],
    cv_args: Sequence[str] = (),
    *,
    n_folds: int = 5,
    poll_s: float = 2.0,
    echo: bool = True,
) -> dict[str, int]:
    """Run the cells, one ``python -m ctlib cv`` process per slot at a time.

    Args:
        tasks: the cells to run (from :func:`plan_tasks`).
        slots: a GPU index per parallel process (``["0", "1"]``), or ``"cpu"`` entries to
            run on the CPU (how the scheduler is tested without a GPU).
        out: the results folder (``--out``).
        cv_args: further ``cv`` options (``--epochs``, ``--amp`` ...).
        n_folds: folds of the cross-validation.
        poll_s: how often to look for finished processes.
        echo: print a line when a cell starts and ends.

    Returns:
        Cell label -> exit status (0: finished). A failed cell does not stop the others;
        its log names the error.
    """
    if not slots:
        raise ValueError(
            "No GPU is visible (CUDA_VISIBLE_DEVICES / torch.cuda.device_count() is "
            "empty). Run on a GPU machine, or pass --slots cpu to use the CPU."
        )
    logs = Path(out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue = list(tasks)
    running: dict[str, tuple[subprocess.Popen, Task, object]] = {}
    status: dict[str, int] = {}
    while queue or running:
        for slot in slots:
            if slot in running or not queue:
                continue
            task = queue.pop(0)
            env = dict(os.environ)
            device = "cpu" if slot == "cpu" else "cuda"
            if slot != "cpu":
                env["CUDA_VISIBLE_DEVICES"] = slot
            command = [
                sys.executable,
                "-m",
                "ctlib",
                "cv",
                "--dataset",
                task.dataset,
                "--arch",
                task.arch,
                "--folds",
                str(n_folds),
                "--only-folds",
                str(task.fold),
                "--out",
                str(out),
                "--device",
                device,
                "-q",
                *cv_args,
            ]
            handle = open(logs / f"{task.label}.log", "a")  # noqa: SIM115 (closed when it ends)
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            running[slot] = (
                subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT),
                task,
                handle,
            )
            if echo:
                print(f"[{time.strftime('%H:%M:%S')}] start {task.label} on {slot}", flush=True)
        time.sleep(poll_s if running else 0)
        for slot, (process, task, handle) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            handle.close()
            status[task.label] = code
            del running[slot]
            if echo:
                word = "done" if code == 0 else f"FAILED (exit {code}, see {logs / task.label}.log)"
                print(f"[{time.strftime('%H:%M:%S')}] {word}: {task.label}", flush=True)
    return status


def write_costs(rows: Sequence[dict[str, object]], path: str | os.PathLike[str]) -> None:
    """Write ``step_costs.csv`` rows (``arch, canvas, cpu_ms_per_image, gflops_forward``)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
