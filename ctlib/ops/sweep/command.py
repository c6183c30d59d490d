"""``python -m ctlib sweep``: the command's options, and what it does with them -- plan the
grid, check the data, print the cost, then run the cells here or submit them to SLURM.

Every option the sweep does not know is a ``cv`` option for its cells: the command line
parses with ``parse_known_args`` and hands those over as ``args.pass_on``. This module loads
the grid, torch and submitit only when the command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import functools
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ctlib.argtypes import Number
from ctlib.data.registry import REAL_DATASETS
from ctlib.errors import EXIT_HELD, DataError
from ctlib.ops.sweep.figures import (
    GPU_FIGURES_ENV,
    gpu_figures_path,
    measured_on_gpu,
    packing_memory_gib,
)
from ctlib.paths import weights_dir

if TYPE_CHECKING:
    import pandas as pd

    from ctlib.ops.sweep.grid import Grid, Task
    from ctlib.train import TrainConfig

__all__ = ["add_sweep_command", "cv_options", "run_sweep"]

#: Options that belong to one executor only, by ``args`` name.
_EXECUTOR_ONLY = {
    "local": ("slots", "retries", "cell_timeout"),
    "slurm": (
        "partition",
        "time",
        "gpus_per_job",
        "cpus_per_job",
        "mem_gb",
        "array_parallelism",
        "requeues",
        "sbatch",
        "setup",
        "job_name",
    ),
}


# -------------------------------------------------------------------------- the options
def add_sweep_command(
    subparsers: argparse._SubParsersAction,
    cv: argparse.ArgumentParser,
    train_config: Callable[[argparse.Namespace], TrainConfig],
) -> argparse.ArgumentParser:
    """Add ``sweep`` to the command line's subcommands.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers`` returned.
        cv: the ``cv`` command's parser: it checks the options passed on to the cells, and
            its ``--out`` default is the sweep's.
        train_config: the recipe the ``cv`` command makes of its options (run folder, epochs,
            batch, canvas).

    Returns:
        The sweep's parser; its ``func`` runs the sweep (:func:`run_sweep`).
    """
    p = subparsers.add_parser(
        "sweep",
        help="the full Table 2 grid: on this machine's GPUs or as a SLURM job array; resumable",
        description="Train every (data set, architecture, fold) cell, each as `python -m "
        "ctlib cv ... --only-folds k`: on this machine (--executor local) or as a SLURM job "
        "array through submitit (--executor slurm). Rerun the same command to skip finished "
        "cells and resume interrupted ones.",
        epilog="Every other option is a cv option, passed to each cell unchanged and checked "
        "by cv first: e.g. --epochs 2 --canvas 64 64 --num-workers 4 --compile --no-pretrained "
        "(see python -m ctlib cv --help).",
        allow_abbrev=False,  # an abbreviated cv option must not be taken for a sweep one
    )
    _grid_options(p, out=cv.get_default("out"))
    _local_options(p.add_argument_group("--executor local"))
    _slurm_options(p.add_argument_group("--executor slurm (one array task per cell)"))
    p.set_defaults(func=functools.partial(run_sweep, cv=cv, train_config=train_config), pass_on=[])
    return p


def _grid_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local: this machine's GPUs (or CPU); slurm: one submitit job array (default: local)",
    )
    p.add_argument(
        "--datasets", nargs="+", default=sorted(REAL_DATASETS), help="data sets (default: both)"
    )
    p.add_argument(
        "--archs",
        nargs="+",
        default=["paper"],
        help="architectures, or 'paper' for the paper's twelve (default)",
    )
    p.add_argument("--folds", type=_at_least(2), default=5, help="folds (default: 5)")
    p.add_argument("--out", default=out, help="results folder (default: CTLIB_RUNS_DIR or runs)")
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (cells, where each runs) and its cost; run nothing",
    )
    p.add_argument(
        "--gpu-figures",
        metavar="CSV",
        help="measured GPU throughput per architecture, from benchmarks/gpu_check.py "
        "(default: $CTLIB_GPU_FIGURES, else benchmarks/gpu_check.csv if present, else the "
        "estimate)",
    )
    p.add_argument(
        "--card",
        choices=["T4", "A100", "H100"],
        default="H100",
        help="the GPU kind whose estimate schedules and totals the cells where nothing is "
        "measured (default: H100; the dry run prints all three)",
    )
    p.add_argument(
        "--gpu-tflops",
        type=_positive(float),
        default=None,
        help="instead of a card kind's assumed share of its peak: the sustained TFLOP/s of "
        "your GPU, for the estimate",
    )


def _local_options(local: argparse._ArgumentGroup) -> None:
    local.add_argument(
        "--slots",
        help="comma-separated GPU indices to use, or 'cpu' entries, one cell each at a time "
        "(default: every visible GPU)",
    )
    local.add_argument(
        "--per-gpu",
        type=_at_least(1),
        metavar="N",
        help="cells sharing each GPU (default: 1): locally where their reserved memory fits; "
        "with --executor slurm, N cells side by side in each array task",
    )
    local.add_argument(
        "--retries",
        type=_at_least(0),
        metavar="N",
        help="tries again for a failed or timed-out cell; it resumes from its checkpoint "
        "(default: 1)",
    )
    local.add_argument(
        "--cell-timeout",
        type=_positive(float),
        metavar="MIN",
        help="minutes an attempt may run before it is stopped and counted failed (default: none)",
    )


def _slurm_options(slurm: argparse._ArgumentGroup) -> None:
    slurm.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    slurm.add_argument(
        "--time",
        type=_at_least(1),
        metavar="MIN",
        help="time limit per task in minutes; a cell still training then is requeued and "
        "resumes (default: 120)",
    )
    slurm.add_argument(
        "--gpus-per-job", type=_at_least(0), metavar="N", help="GPUs per task (default: 1)"
    )
    slurm.add_argument(
        "--cpus-per-job", type=_at_least(1), metavar="N", help="CPUs per task (default: 8)"
    )
    slurm.add_argument(
        "--mem-gb", type=_positive(float), help="memory per task in GB (default: the partition's)"
    )
    slurm.add_argument(
        "--array-parallelism",
        type=_at_least(1),
        metavar="N",
        help="at most N tasks at a time, sbatch --array=...%%N (default: 16)",
    )
    slurm.add_argument(
        "--requeues",
        type=_at_least(0),
        metavar="N",
        help="requeues after a time-out (preemptions do not count; default: 3)",
    )
    slurm.add_argument(
        "--sbatch",
        action="append",
        type=_sbatch_pair,
        metavar="NAME=VALUE",
        help="a further sbatch parameter, repeatable: --sbatch account=abc --sbatch qos=high "
        "--sbatch exclusive",
    )
    slurm.add_argument(
        "--setup",
        action="append",
        metavar="SHELL",
        help="a shell line run before each task, repeatable: --setup 'module load cuda'",
    )
    slurm.add_argument("--job-name", help="SLURM job name (default: ctlib-sweep)")


def _at_least(low: int) -> Number:
    """An argparse type: an integer >= ``low``."""
    return Number(int, low)


def _positive(kind: type) -> Number:
    """An argparse type: a positive finite number."""
    return Number(kind, above=0)


def _sbatch_pair(text: str) -> tuple[str, object]:
    """``name=value`` (or a bare ``name``, a flag) for ``--sbatch``."""
    name, sep, value = text.partition("=")
    name = name.strip().lstrip("-")
    if not name or (sep and not value.strip()):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE (e.g. account=abc) or a bare flag (exclusive), got {text!r}"
        )
    return name, (value.strip() if sep else True)


def cv_options(
    args: argparse.Namespace,
    cv: argparse.ArgumentParser,
    train_config: Callable[[argparse.Namespace], TrainConfig],
) -> tuple[list[str], argparse.Namespace, TrainConfig]:
    """The cv options every cell gets -- whatever sweep does not know itself (``args.pass_on``),
    checked by cv's own parser before anything runs -- and the recipe they make.

    Raises:
        ValueError: cv does not know an option either, or it is one the sweep sets per cell.
    """
    cv_args = [*args.pass_on, *(["--root", args.root] if args.root else [])]
    namespace, unknown = cv.parse_known_args(cv_args)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {' '.join(unknown)}: sweep passes every option it does not know "
            "to each `python -m ctlib cv` cell, and cv knows none of these (see `python -m "
            "ctlib sweep --help` and `python -m ctlib cv --help`)."
        )
    defaults = cv.parse_args([])
    for key, instead in (
        ("dataset", "--datasets"),
        ("arch", "--archs"),
        ("only_folds", "--folds (finished folds are skipped anyway)"),
        ("device", "--slots / --per-gpu (local) or --gpus-per-job (slurm)"),
    ):
        if getattr(namespace, key) != getattr(defaults, key):
            raise ValueError(
                f"--{key.replace('_', '-')} is set by the sweep for each cell; use {instead}."
            )
    if namespace.protocol == "official":
        raise ValueError(
            "--protocol official has a single test set, not folds to spread over a grid; run "
            "`python -m ctlib cv --protocol official --arch A` for each architecture instead."
        )
    return cv_args, namespace, train_config(namespace)


# ------------------------------------------------------------------------- the command
def run_sweep(
    args: argparse.Namespace,
    *,
    cv: argparse.ArgumentParser,
    train_config: Callable[[argparse.Namespace], TrainConfig],
) -> int:
    """What ``python -m ctlib sweep`` does; returns the exit status (1: a cell failed)."""
    from ctlib.models import list_models  # lazy: torch and timm, once the command runs
    from ctlib.ops.sweep.cost import cell_costs, estimate_cost  # lazy: pandas
    from ctlib.ops.sweep.grid import Grid, check_data  # lazy: torch, through ctlib.cv

    for executor, keys in _EXECUTOR_ONLY.items():
        given = [k for k in keys if getattr(args, k) not in (None, [])]
        if executor != args.executor and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ValueError(f"{flags}: only for --executor {executor} (this is {args.executor}).")
    archs = list_models(paper=True) if args.archs == ["paper"] else args.archs
    cv_args, namespace, config = cv_options(args, cv, train_config)
    grid = Grid(
        Path(args.out),
        args.folds,
        namespace.protocol,
        config.run_name[len(config.arch) :],
        tuple(cv_args),
    )
    todo = _plan(args, grid, archs, config)
    if not todo:
        return 0
    try:  # before any cell starts: every data set there and intact
        for line in check_data(args.datasets, args.root, progress=False):
            print(f"data: {line}")
    except DataError as error:
        if not args.dry_run:
            raise
        print(f"data NOT READY (without --dry-run the sweep stops here): {error}")
    figures_path = gpu_figures_path(args.gpu_figures)
    figures = _read_figures(figures_path) if figures_path else None
    costs = {"epochs": config.epochs, "n_folds": args.folds, "gpu_tflops": args.gpu_tflops,
             "card": args.card}  # fmt: skip
    cells = cell_costs(todo, figures=figures, **costs)
    _print_cost(estimate_cost(todo, figures=figures, **costs), figures_path, args)
    for note in _figures_caveats(figures, config, archs):
        print(f"  note: {note}")
    if args.executor == "local":
        return _run_local(args, grid, todo, cells, figures)
    if config.pretrained:
        _note_missing_weights(sorted({t.arch for t in todo}))
    return _run_slurm(args, grid, todo, cells)


def _note_missing_weights(archs: list[str]) -> None:
    """Compute nodes often have no internet: say which ImageNet files are not on this (shared)
    disk, where a cell starting from scratch would look for them. A resumed cell needs none."""
    from ctlib.models import get_spec  # lazy: torch and timm, once the command runs
    from ctlib.models.weights import weights_on_disk  # lazy: torch, once the command runs

    missing = [arch for arch in archs if weights_on_disk(get_spec(arch)) is None]
    if missing:
        print(
            f"  note: the ImageNet weights of {', '.join(missing)} are not on this disk; compute "
            "nodes without internet cannot start those cells. Put the files in a folder every "
            f"node sees and point CTLIB_WEIGHTS_DIR at it (now {weights_dir()}; the file names: "
            "docs/DEVELOPERS.md, Models), or start each once here to fetch them."
        )


def _plan(
    args: argparse.Namespace, grid: Grid, archs: list[str], config: TrainConfig
) -> list[Task]:
    """The cells to run (neither finished nor queued on SLURM), after printing the plan."""
    from ctlib.ops.sweep.grid import plan_tasks  # lazy: torch, through ctlib.cv

    todo, done = plan_tasks(
        args.datasets,
        archs,
        args.folds,
        args.out,
        protocol=grid.protocol,
        run_suffix=grid.run_suffix,
    )
    queued: dict[str, tuple[str, str]] = {}
    if args.executor == "slurm" and todo:
        from ctlib.ops.sweep.slurm import slurm_queued  # lazy: submitit, --executor slurm only

        queued = slurm_queued(args.out)
    waiting = [t for t in todo if t.label in queued]
    todo = [t for t in todo if t.label not in queued]
    print(
        f"{len(todo)} cells to run, {len(done)} finished already"
        + (f", {len(waiting)} queued or running on SLURM" if waiting else "")
        + f" ({len(args.datasets)} data sets x {len(archs)} architectures x {args.folds} "
        f"folds, {config.epochs} epochs; results in {args.out}/<dataset>/{grid.protocol}/"
        f"<arch>{grid.run_suffix})"
    )
    if done:
        shown = ", ".join(t.label for t in done[:8])
        print(f"  finished: {shown}" + (f" and {len(done) - 8} more" if len(done) > 8 else ""))
    for task in waiting:
        job, state = queued[task.label]
        print(f"  {state.lower()}: {task.label} (job {job}); not submitted again")
    return todo


def _read_figures(path: Path) -> pd.DataFrame:
    """The GPU figures in ``path`` (:func:`~ctlib.ops.sweep.cost.read_gpu_figures`) less the
    rows not measured on a CUDA GPU (:func:`~ctlib.ops.sweep.figures.measured_on_gpu`, e.g.
    the script's CPU example): those are named and left to the estimate."""
    from ctlib.ops.sweep.cost import read_gpu_figures  # lazy: pandas

    figures = read_gpu_figures(path)
    on_gpu = [measured_on_gpu(row) for row in figures.to_dict("records")]
    if not all(on_gpu):
        ignored = [str(arch) for arch, keep in zip(figures.index, on_gpu) if not keep]
        print(
            f"GPU figures: left out the row(s) of {', '.join(ignored)} in {path}: not measured "
            "on a CUDA GPU (the CPU example of benchmarks/gpu_check.py?)"
        )
        figures = figures[on_gpu]
    return figures


def _print_cost(cost: pd.DataFrame, figures_path: Path | None, args: argparse.Namespace) -> None:
    """Each architecture's throughput (measured or estimated, labelled), its start-up and
    checkpoint hours and its GPU hours per card kind, then the assumptions behind them."""
    import pandas as pd  # lazy: the command line starts without pandas

    from ctlib.ops.sweep.cost import ASSUMPTIONS, CARDS  # lazy: pandas

    measured = [a for a in cost.index if a != "total" and cost.loc[a, "source"] == "measured"]
    guessed = [a for a in cost.index if a != "total" and cost.loc[a, "source"] != "measured"]
    efficiency = ASSUMPTIONS["efficiency"]
    basis = (
        f"{args.gpu_tflops:g} TFLOP/s sustained (--gpu-tflops)"
        if args.gpu_tflops
        else f"{efficiency:.0%} of an {args.card}'s {CARDS[args.card]:g} TFLOP/s peak (--card)"
    )
    if figures_path is None:
        print(
            "cost: NO GPU FIGURES (--gpu-figures, "
            f"${GPU_FIGURES_ENV} or benchmarks/gpu_check.csv, written by `python "
            f"benchmarks/gpu_check.py` on the GPU): every GPU hour below is an estimate, at {basis}"
        )
    else:
        print(
            f"cost: images/s measured on the GPU for {len(measured)} architecture(s) "
            f"({figures_path})"
            + (f"; estimated at {basis} for {', '.join(guessed)}" if guessed else "")
        )
    table = pd.DataFrame(
        {
            "cells": cost["cells"],
            "images/s": cost["images_per_s"],
            "from": cost["source"],
            "cpu_h": cost["cpu_hours"],
            "startup_h": cost["startup_hours"],
            "ckpt_h": cost["checkpoint_hours"],
            **{f"{kind}_h (est.)": cost[f"gpu_hours_{kind}"] for kind in CARDS},
            "measured_h": cost["gpu_hours_measured"],
            "gpu_h": cost["gpu_hours"],
        }
    )
    if figures_path is None:
        table = table.drop(columns="measured_h")
    print(table.to_string(float_format=lambda v: f"{v:,.2f}", na_rep="-"))
    print(
        "  cpu_h: measured step times on this project's 2-core CPU. Estimated images/s: 3 x "
        f"forward FLOPs at {efficiency:.0%} of the card's peak (assumed: half of what an "
        f"MLPerf-tuned ResNet-50 reaches; peaks {', '.join(f'{k} {v:g}' for k, v in CARDS.items())}"
        " TFLOP/s, data sheets), or, where slower, the kernel launches "
        f"({ASSUMPTIONS['kernels_per_module']} per layer at {ASSUMPTIONS['launch_seconds'] * 1e6:g}"
        f" us). startup_h: {ASSUMPTIONS['startup_seconds']:g} s per cell (assumed). ckpt_h: a "
        f"checkpoint every {ASSUMPTIONS['checkpoint_minutes']:g} min copied to the host at "
        f"{ASSUMPTIONS['host_copy_gb_per_s']:g} GB/s and the last written at "
        f"{ASSUMPTIONS['disk_write_gb_per_s']:g} GB/s (assumed). gpu_h: measured where known, "
        f"else the estimate at {basis}. A goal such as 'the grid in two hours' counts only "
        "when measured."
    )


def _figures_caveats(
    figures: pd.DataFrame | None, config: TrainConfig, archs: list[str]
) -> list[str]:
    """Where the GPU figures were measured with another canvas or batch than this sweep's."""
    if figures is None:
        return []
    notes = []
    rows = figures.loc[[a for a in archs if a in figures.index]]
    if "gpu" in rows and len(rows):
        where = ", ".join(sorted({str(g) for g in rows["gpu"].dropna()}))
        when = ", ".join(sorted({str(t) for t in rows.get("measured_at", [])}))[:60]
        notes.append(f"measured on {where or 'an unnamed GPU'}" + (f" ({when})" if when else ""))
    if "batch_size" in rows and (rows["batch_size"] != config.batch_size).any():
        notes.append(
            f"measured at batch {sorted(set(rows['batch_size'].astype(int)))}, this sweep "
            f"trains at {config.batch_size}"
        )
    if config.canvas is not None and {"canvas_width", "canvas_height"} <= set(rows):
        other = rows[
            (rows["canvas_width"] != config.canvas[0]) | (rows["canvas_height"] != config.canvas[1])
        ]
        if len(other):
            notes.append(
                f"measured at each architecture's own canvas, this sweep uses "
                f"{config.canvas[0]}x{config.canvas[1]}: time scales roughly with pixels"
            )
    return notes


def _run_local(
    args: argparse.Namespace,
    grid: Grid,
    todo: list[Task],
    cells: pd.DataFrame,
    figures: pd.DataFrame | None,
) -> int:
    from ctlib.ops.sweep.cost import longest_first  # lazy: pandas
    from ctlib.ops.sweep.local import (  # lazy: torch, to see the GPUs
        gpu_memory_gib,
        local_slots,
        run_local,
        schedule_preview,
    )

    slots = local_slots(args.slots, args.per_gpu or 1)
    on_cpu = all(s.gpu is None for s in slots)
    hours = dict(zip(todo, cells["cpu_hours" if on_cpu else "gpu_hours"].fillna(0.0), strict=True))
    memory = packing_memory_gib(figures.to_dict("index")) if figures is not None else None
    gpu_memory = gpu_memory_gib([s.gpu for s in slots if s.gpu is not None])
    order = longest_first(todo, hours)
    retries = 1 if args.retries is None else args.retries
    timeout = f"{args.cell_timeout:g} min per attempt" if args.cell_timeout else "no time limit"
    gpus = sorted({s.gpu for s in slots if s.gpu is not None}, key=int)
    print(
        f"local executor: {len(slots)} slot(s)"
        + (f" = GPU {','.join(gpus)} x {args.per_gpu or 1} cell(s) each" if gpus else " on the CPU")
        + "; longest cells first, each to the first free slot"
        + (
            " whose GPU has room (peak_reserved_gib, else peak_memory_gib)"
            if memory and gpu_memory
            else ""
        )
        + f"; a failed cell is retried {retries} time(s), {timeout}; Ctrl-C stops them all"
    )
    if args.dry_run:
        width = max(len(s.label) for s in slots)
        unit = "CPU h" if on_cpu else "GPU h"
        placed = schedule_preview(order, slots, hours, memory_gib=memory, gpu_memory=gpu_memory)
        for slot, task, start, end in sorted(placed, key=lambda p: (slots.index(p[0]), p[2])):
            print(f"  {slot.label:<{width}}  {task.label:<36} {start:6.2f} to {end:6.2f} {unit}")
        last = max((end for *_, end in placed), default=0.0)
        sharing = (
            " (cells sharing a GPU each run slower than alone)" if (args.per_gpu or 1) > 1 else ""
        )
        print(f"  about {last:,.1f} h until the last cell ends{sharing}")
        print(f"  first cell: {shlex.join(grid.command(order[0], slots[0].device))}")
        print("dry run: nothing started")
        return 0
    outcomes = run_local(
        order,
        slots,
        grid,
        retries=retries,
        cell_timeout_min=args.cell_timeout,
        memory_gib=memory,
        gpu_memory=gpu_memory,
    )
    held = sorted(label for label, outcome in outcomes.items() if outcome.held)
    failed = sorted(
        label for label, outcome in outcomes.items() if not outcome.finished and not outcome.held
    )
    print(
        f"{len(outcomes) - len(failed) - len(held)} cells finished, {len(failed)} failed"
        + (f": {', '.join(failed)} (logs in {Path(args.out) / 'logs'})" if failed else "")
        + (
            f"; {len(held)} held by another process (run again later): {', '.join(held)}"
            if held
            else ""
        )  # fmt: skip
    )
    return 1 if failed else EXIT_HELD if held else 0


def _run_slurm(args: argparse.Namespace, grid: Grid, todo: list[Task], cells: pd.DataFrame) -> int:
    from ctlib.ops.sweep.cost import longest_first  # lazy: pandas
    from ctlib.ops.sweep.slurm import SlurmOptions, submit_array  # lazy: submitit, slurm only

    options = SlurmOptions(
        partition=args.partition,
        time_min=120 if args.time is None else args.time,
        gpus_per_job=1 if args.gpus_per_job is None else args.gpus_per_job,
        cpus_per_job=8 if args.cpus_per_job is None else args.cpus_per_job,
        mem_gb=args.mem_gb,
        array_parallelism=16 if args.array_parallelism is None else args.array_parallelism,
        requeues=3 if args.requeues is None else args.requeues,
        job_name=args.job_name or "ctlib-sweep",
        sbatch=tuple(args.sbatch or ()),
        setup=tuple(args.setup or ()),
    )
    column = "gpu_hours" if options.gpus_per_job else "cpu_hours"
    hours = dict(zip(todo, cells[column].fillna(0.0), strict=True))
    order = longest_first(todo, hours)
    folder = Path(args.out) / "slurm"
    per_task = args.per_gpu or 1
    n_tasks = -(-len(order) // per_task)
    print(
        "slurm executor (submitit): one job array, "
        + ("one task per cell" if per_task == 1 else f"{per_task} cells side by side per task")
        + f", at most {min(n_tasks, options.array_parallelism)} at a time; a task near its "
        f"time limit is requeued and resumes from its checkpoint (up to {options.requeues} "
        "time-outs; preemptions do not count)"
    )
    if per_task > 1:
        print(
            "  note: the cells of a task share its GPU and each runs slower than alone; their "
            "reserved memory must fit together (benchmarks/gpu_check.py's peak_reserved_gib)"
        )
    print(f"  sbatch {' '.join(options.sbatch_flags(n_tasks))}")
    device = "cuda" if options.gpus_per_job else "cpu"
    print(f"  task 0: {shlex.join(grid.command(order[0], device))}")
    print(f"  logs: {Path(args.out) / 'logs'}/<cell>.log; submitit's own in {folder}/<job>_<task>/")
    longest = max(hours.values(), default=0.0)
    if longest * 60 > options.time_min:
        requeues = int(longest * 60 // options.time_min)
        print(
            f"  note: the longest cell needs about {longest:.1f} h, more than --time "
            f"{options.time_min} min: it will be requeued about {requeues} time(s); raise "
            "--requeues or --time if needed"
        )
    groups = [order[i : i + per_task] for i in range(0, len(order), per_task)]
    if args.dry_run:
        for index, group in enumerate(groups):
            labels = " + ".join(t.label for t in group)
            print(f"  task {index:3d}: {labels}  ({max(hours[t] for t in group):.2f} h)")
        print("dry run: nothing submitted")
        return 0
    jobs = submit_array(order, grid, options, cells_per_task=per_task)
    array = str(jobs[0].job_id).split("_")[0]
    print(f"submitted job {array}: {len(jobs)} task(s)")
    for job, group in zip(jobs, groups, strict=True):
        print(f"  {job.job_id}: {' + '.join(t.label for t in group)}")
    print(
        f"watch: squeue -j {array}; sacct -j {array}; "
        f"tail -f {Path(args.out) / 'logs'}/<cell>.log. "
        "Once it has ended, run this same command again: finished cells are skipped, "
        f"failed ones are submitted again; then `python -m ctlib table {args.out}`."
    )
    return 0
