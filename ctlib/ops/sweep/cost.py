"""What the grid costs: each cell's CPU and GPU hours, from the GPU figures where measured and
from a FLOP guess elsewhere (``docs/DEVELOPERS.md``, "The sweep", gives the arithmetic), and
the order to start cells in. The step costs ship as package data, ``ctlib/step_costs.csv``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ctlib.data import REAL_DATASETS, manifest_path
from ctlib.ops.sweep.figures import GPU_FIGURE_COLUMNS
from ctlib.ops.sweep.grid import Task

__all__ = [
    "COSTS_FILE",
    "cell_costs",
    "estimate_cost",
    "longest_first",
    "read_gpu_figures",
    "write_costs",
]

#: Per-architecture step costs, shipped with the package (``benchmarks/bench_models.py --csv``
#: writes it). This file is ctlib/ops/sweep/cost.py; the costs lie in ctlib/.
COSTS_FILE = Path(__file__).resolve().parents[2] / "step_costs.csv"


def _dataset_sizes() -> dict[str, int]:
    return {name: sum(1 for _ in open(manifest_path(name))) - 1 for name in REAL_DATASETS}


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
    """Expected cost of each cell (see "The sweep" in ``docs/DEVELOPERS.md``), one row per cell.

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
    """Expected cost per architecture of the given cells (see :func:`cell_costs`).

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
