"""The grid of the paper's Table 2: its cells (one fold of one architecture on one data set),
each a ``python -m ctlib cv`` command line, which of them are finished, and the check that
every data set they need is there before any starts.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctlib.cv import fold_dir
from ctlib.data import REAL_DATASETS, dataset_info, load_dataset, verify_dataset
from ctlib.errors import DataError
from ctlib.models import get_spec
from ctlib.paths import data_dir

__all__ = ["Grid", "Task", "check_data", "plan_tasks"]


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
        raise DataError(_not_ready(missing, damaged, root))
    return found


def _not_ready(
    missing: list[tuple[str, str]],
    damaged: list[tuple[str, str]],
    root: str | os.PathLike[str] | None,
) -> str:
    """The message naming every data set that is missing or damaged, and how to fix each."""
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
    return (
        "The sweep needs data sets that are not ready, so no cell was started:\n"
        + "\n".join(lines)
        + "\nFix: "
        + "; ".join(fixes)
        + "; then run the same command again."
    )
