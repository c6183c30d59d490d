"""The day before a workshop (``python -m ctlib prepare-workshop``): get the data, train every
run the lessons would train (:data:`ctlib.notebook.lessons.LESSON_RUNS`), then run each notebook
once headless and time it. Resumable: a second call trains nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ctlib.cv import run_cv
from ctlib.data import REAL_DATASETS, DataError, download, load_dataset
from ctlib.notebook.datasets import get_dataset
from ctlib.notebook.folders import output_dir, repo_root, results_dir
from ctlib.notebook.lessons import lesson_runs, plan_problems
from ctlib.notebook.mode import Mode, get_mode
from ctlib.ops.notebooks.run import run_notebooks
from ctlib.recipes import recipe_runtime
from ctlib.results import collect_results

__all__ = ["prepare_workshop", "workshop_plan"]


def prepare_workshop(
    mode: Mode | None = None,
    *,
    download_missing: bool = False,
    rehearse: bool = True,
    notebooks: Sequence[str | Path] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Prepare a room: data, every run the notebooks would train, one timed rehearsal.

    Args:
        mode: quick or full (default :func:`ctlib.notebook.get_mode`).
        download_missing: fetch a real data set that is not here (else it is only reported).
        rehearse: run each numbered notebook once headless and time it.
        notebooks: the notebooks to rehearse (default: the repository's ``notebooks/NN_*``).
        progress: progress bars while training.

    Returns:
        One row per step: ``step``, ``what``, ``seconds``, ``note`` (folds trained, a data
        set's state, a notebook's run time or its error).
    """
    mode = mode or get_mode()
    missing = [str(p) for p in notebooks or () if not Path(p).is_file()]
    if missing:  # found now, not after an hour of training
        raise FileNotFoundError(f"No such notebook: {', '.join(missing)}; nothing was run.")
    problems = plan_problems(mode)
    if problems:  # the whole plan is checked before the first network trains
        raise ValueError(f"The lesson plan ({mode}) cannot run: " + "; ".join(problems))
    rows = _data_rows(download_missing, progress) + _train_rows(mode, progress)
    if rehearse:
        rows += _rehearsal_rows(notebooks)
    frame = pd.DataFrame(rows)
    frame["seconds"] = frame["seconds"].astype(float).round(1)
    return frame


def _data_rows(download_missing: bool, progress: bool) -> list[dict[str, object]]:
    """One row per real data set: here (how many images), downloaded, or how to fetch it."""
    rows: list[dict[str, object]] = []
    for name in REAL_DATASETS:
        started = time.perf_counter()
        try:
            note = f"{len(load_dataset(name, progress=False))} images here"
        except DataError:
            if download_missing:
                download(name, progress=progress)
                note = f"downloaded, {len(load_dataset(name, progress=False))} images"
            else:
                note = (
                    "not here: the notebooks use the synthetic set and the committed "
                    f"results; `python -m ctlib download {name}` to fetch it"
                )
        rows.append(
            {"step": "data", "what": name, "seconds": time.perf_counter() - started, "note": note}
        )
    return rows


def _finished(folder: Path) -> int:
    return len(list(folder.glob("*/*/*/fold*/metrics.json"))) if folder.is_dir() else 0


def _train_rows(mode: Mode, progress: bool) -> list[dict[str, object]]:
    """Train (or find trained) every lesson run in ``mode``; one row per run."""
    rows: list[dict[str, object]] = []
    for run, dataset, config in lesson_runs(mode):
        started = time.perf_counter()
        folder = results_dir(mode, config)
        before = _finished(folder)
        run_cv(
            get_dataset(dataset),
            config,
            runtime=recipe_runtime(run.recipe, mode=mode),
            protocol=run.protocol_in(mode),
            only_folds=list(run.folds) if run.folds is not None else None,
            out=folder,
            progress=progress,
        )
        trained = _finished(folder) - before
        rows.append(
            {
                "step": "train",
                "what": f"{run.notebook}: {config.arch} on {dataset}, {run.protocol_in(mode)} "
                f"({run.why})",
                "seconds": time.perf_counter() - started,
                "note": f"{trained} fold(s) trained, "
                f"{len(collect_results(folder))} finished in {folder}",
            }
        )
    return rows


def _rehearsal_rows(notebooks: Sequence[str | Path] | None) -> list[dict[str, object]]:
    """Run each notebook once headless (default: the repository's ``notebooks/NN_*``)."""
    paths = notebooks or sorted(
        ((repo_root() or Path.cwd()) / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    report = run_notebooks(paths, output_dir("rehearsal"))
    return [
        {
            "step": "rehearse",
            "what": row.notebook,
            "seconds": row.seconds,
            "note": row.error or "ran through",
        }
        for row in report.itertuples(index=False)
    ]


def workshop_plan(mode: Mode | None = None) -> pd.DataFrame:
    """What ``prepare-workshop`` would do in ``mode``, without doing it: one row per lesson
    run (notebook, data set, architecture, protocol, folds, results folder, folds finished
    already) and the plan's problems (:func:`ctlib.notebook.lessons.plan_problems`)."""
    mode = mode or get_mode()
    rows = []
    for run, dataset, config in lesson_runs(mode):
        folder = results_dir(mode, config)
        protocol = run.protocol_in(mode)
        rows.append(
            {
                "notebook": run.notebook,
                "data set": dataset,
                "network": config.arch,
                "protocol": protocol,
                "folds": "all" if run.folds is None else ",".join(map(str, run.folds)),
                "finished": len(list(folder.glob(f"{dataset}/{protocol}/*/fold*/metrics.json"))),
                "results": str(folder),
            }
        )
    return pd.DataFrame(rows)
