"""What the grid costs: each cell's CPU and GPU hours, from the GPU figures where measured and
from a first-principles estimate elsewhere (``docs/DEVELOPERS.md``, "The sweep", gives the
arithmetic), and the order to start cells in. The step costs ship as package data,
``ctlib/step_costs.csv``.
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
    "ASSUMPTIONS",
    "CARDS",
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

#: Peak dense tensor-core throughput, TFLOP/s, in the precision the kit trains in on each card
#: (bf16 from compute capability 8.0, else fp16), from NVIDIA's data sheets: T4 (fp16) 65,
#: A100 SXM (bf16) 312, H100 SXM (bf16) 989.
CARDS = {"T4": 65.0, "A100": 312.0, "H100": 989.0}

#: What the estimate assumes where nothing is measured; each is printed with the estimate.
ASSUMPTIONS = {
    # a training step in eager PyTorch at batch 32 sustains about this share of the card's
    # peak: half the ~20 % an MLPerf-tuned ResNet-50 reaches on an H100 (issue 28's figure),
    # since the kit does not tune kernels, layouts or batch sizes per network
    "efficiency": 0.10,
    # eager PyTorch launches about 3 kernels per leaf module and step (forward, two for the
    # backward), each costing about 10 microseconds on the host: the floor of a small network
    "launch_seconds": 10e-6,
    "kernels_per_module": 3,
    # per cell: a fresh process imports torch, starts CUDA, builds the network and loads its
    # weights, draws the canvases (or reads them cached) and autotunes cuDNN
    "startup_seconds": 25.0,
    # a checkpoint holds about 12 bytes per parameter (fp32 weights and LAMB's two moments);
    # the training waits only for the copy to the host (the write runs on a thread), and for
    # the last write at the end of the cell
    "checkpoint_bytes_per_param": 12,
    "host_copy_gb_per_s": 10.0,
    "disk_write_gb_per_s": 0.5,
    "checkpoint_minutes": 10.0,
    "batch_size": 32,
}


def seconds_per_image(
    step: Mapping[str, Any], tflops: float, assumptions: Mapping[str, float] = ASSUMPTIONS
) -> float:
    """First-principles training seconds per image of one architecture (a ``step_costs.csv``
    row) on a card sustaining ``tflops``: 3 x its forward FLOPs at that rate, or, where more,
    its kernel launches (``leaf_modules`` x kernels x launch time, per batch)."""
    compute = 3 * float(step["gflops_forward"]) * 1e9 / (tflops * 1e12)
    modules = float(step.get("leaf_modules", 0) or 0)
    launches = modules * assumptions["kernels_per_module"] * assumptions["launch_seconds"]
    return max(compute, launches / assumptions["batch_size"])


def overhead_hours(
    params_m: float, train_hours: float, assumptions: Mapping[str, float] = ASSUMPTIONS
) -> tuple[float, float]:
    """A cell's start-up and checkpoint hours, given its network's size (millions of
    parameters) and its training time: one start-up; a checkpoint every
    ``checkpoint_minutes`` and one at the end, each costing the copy to the host, the last
    also the write."""
    if math.isnan(train_hours):
        return math.nan, math.nan
    size_gb = params_m * 1e6 * assumptions["checkpoint_bytes_per_param"] / 1e9
    count = math.floor(train_hours * 60 / assumptions["checkpoint_minutes"]) + 1
    seconds = count * size_gb / assumptions["host_copy_gb_per_s"]
    seconds += size_gb / assumptions["disk_write_gb_per_s"]
    return assumptions["startup_seconds"] / 3600, seconds / 3600


def measured_overheads(
    row: Mapping[str, Any], params_m: float, assumptions: Mapping[str, float] = ASSUMPTIONS
) -> dict[str, float]:
    """The start-up and checkpoint-copy terms a GPU figures row measured (``startup_s``,
    ``checkpoint_s``, as ``benchmarks/gpu_check.py`` writes them), as overrides of
    :data:`ASSUMPTIONS`; an older file without them overrides nothing."""
    seen: dict[str, float] = {}
    startup = pd.to_numeric(pd.Series([row.get("startup_s")]), errors="coerce").iloc[0]
    if pd.notna(startup) and startup > 0:
        seen["startup_seconds"] = float(startup)
    copy = pd.to_numeric(pd.Series([row.get("checkpoint_s")]), errors="coerce").iloc[0]
    size_gb = params_m * 1e6 * assumptions["checkpoint_bytes_per_param"] / 1e9
    if pd.notna(copy) and copy > 0 and size_gb > 0:
        seen["host_copy_gb_per_s"] = size_gb / float(copy)
    return seen


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
    gpu_tflops: float | None = None,
    card: str = "H100",
    costs: str | os.PathLike[str] = COSTS_FILE,
    figures: pd.DataFrame | None = None,
    assumptions: Mapping[str, float] = ASSUMPTIONS,
) -> pd.DataFrame:
    """Expected cost of each cell (see "The sweep" in ``docs/DEVELOPERS.md``), one row per cell.

    Columns: ``cell, dataset, arch, fold, images_trained`` (training images x epochs),
    ``cpu_hours`` (this project's CPU, measured step time); ``startup_hours`` and
    ``checkpoint_hours`` (:func:`overhead_hours`, assumed); ``gpu_hours_<card>`` for each of
    :data:`CARDS` (the first-principles estimate, :func:`seconds_per_image` at
    ``assumptions["efficiency"]`` of the card's peak, plus the two overheads);
    ``gpu_hours_estimate`` (the same for ``card``, or at ``gpu_tflops`` sustained when given);
    ``gpu_hours_measured`` (training images / the measured ``images_per_s`` of ``figures``,
    :func:`read_gpu_figures`, plus the overheads; NaN where the architecture is not in them);
    ``gpu_hours`` (measured where known, else the estimate) and ``source`` (``"measured"`` or
    ``"estimate"``; ``"unknown"`` for an architecture in neither file).
    """
    table = pd.read_csv(costs).set_index("arch")
    sizes = _dataset_sizes()
    if card not in CARDS:
        raise ValueError(f"Unknown card {card!r}; the cost model knows {', '.join(CARDS)}.")
    efficiency, nan = assumptions["efficiency"], math.nan
    rows = []
    for task in tasks:
        images = sizes.get(task.dataset, 0) * (n_folds - 1) / n_folds * epochs
        step = table.loc[task.arch].to_dict() if task.arch in table.index else None
        params_m = float(step.get("params_m", 0.0) or 0.0) if step else 0.0
        params_m = 0.0 if math.isnan(params_m) else params_m

        def train_hours(tflops: float, step: dict | None = step, images: float = images) -> float:
            return images * seconds_per_image(step, tflops, assumptions) / 3600 if step else nan

        def with_overheads(
            train: float, params_m: float = params_m, seen: Mapping[str, float] | None = None
        ) -> float:
            return train + sum(overhead_hours(params_m, train, {**assumptions, **(seen or {})}))

        measured = figures is not None and task.arch in figures.index
        trained = images / figures.loc[task.arch, "images_per_s"] / 3600 if measured else nan
        estimated = train_hours(gpu_tflops or CARDS[card] * efficiency)
        seen = measured_overheads(figures.loc[task.arch], params_m, assumptions) if measured else {}
        startup, checkpoint = overhead_hours(
            params_m, trained if measured else estimated, {**assumptions, **seen}
        )
        rows.append(
            {
                "cell": task.label,
                "dataset": task.dataset,
                "arch": task.arch,
                "fold": task.fold,
                "images_trained": images,
                "cpu_hours": images * step["cpu_ms_per_image"] / 1000 / 3600 if step else nan,
                "startup_hours": startup if step or measured else nan,
                "checkpoint_hours": checkpoint if step or measured else nan,
                **{
                    f"gpu_hours_{kind}": with_overheads(train_hours(peak * efficiency))
                    for kind, peak in CARDS.items()
                },  # fmt: skip
                "gpu_hours_estimate": with_overheads(estimated),
                "gpu_hours_measured": with_overheads(trained, seen=seen),
                "gpu_hours": with_overheads(trained, seen=seen)
                if measured
                else with_overheads(estimated),
                "source": "measured" if measured else "estimate" if step else "unknown",
            }
        )
    columns = ["cell", "dataset", "arch", "fold", "images_trained", "cpu_hours"]
    columns += ["startup_hours", "checkpoint_hours", *(f"gpu_hours_{k}" for k in CARDS)]
    columns += ["gpu_hours_estimate", "gpu_hours_measured", "gpu_hours", "source"]
    return pd.DataFrame(rows, columns=columns)


def estimate_cost(
    tasks: Sequence[Task],
    *,
    epochs: int = 100,
    n_folds: int = 5,
    gpu_tflops: float | None = None,
    card: str = "H100",
    costs: str | os.PathLike[str] = COSTS_FILE,
    figures: pd.DataFrame | None = None,
    assumptions: Mapping[str, float] = ASSUMPTIONS,
) -> pd.DataFrame:
    """Expected cost per architecture of the given cells (see :func:`cell_costs`).

    Returns one row per architecture (and a ``total`` row): ``cells``, ``images_trained``,
    ``images_per_s`` (measured, or the estimate's on ``card``), and the sums over the cells of
    :func:`cell_costs`' hours (``cpu_hours``, ``startup_hours``, ``checkpoint_hours``,
    ``gpu_hours_<card>`` per card kind, ``gpu_hours_estimate``, ``gpu_hours_measured``,
    ``gpu_hours``), with ``source`` (``"measured"``, ``"estimate"``, ``"mixed"`` in the total).
    """
    cells = cell_costs(
        tasks,
        epochs=epochs,
        n_folds=n_folds,
        gpu_tflops=gpu_tflops,
        card=card,
        costs=costs,
        figures=figures,
        assumptions=assumptions,
    )
    numbers = ["images_trained", "cpu_hours", "startup_hours", "checkpoint_hours"]
    numbers += [f"gpu_hours_{kind}" for kind in CARDS]
    numbers += ["gpu_hours_estimate", "gpu_hours_measured", "gpu_hours"]
    frame = cells.groupby("arch", sort=True).agg(
        cells=("cell", "size"),
        **{c: (c, lambda s: s.sum(min_count=1)) for c in numbers},
        source=("source", "first"),
    )
    if len(frame):
        training = frame["gpu_hours"] - frame["startup_hours"] - frame["checkpoint_hours"]
        frame.insert(2, "images_per_s", frame["images_trained"] / (3600 * training))
        frame["images_trained"] = frame["images_trained"].astype(int)
        total = frame.drop(columns=["source", "images_per_s"]).sum(min_count=1)
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
    """Write ``step_costs.csv`` rows (``arch, canvas, cpu_ms_per_image, gflops_forward,
    params_m, param_tensors, leaf_modules``)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
