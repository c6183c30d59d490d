"""The day before a workshop: get the data, train what the lessons would train, time them.

``python -m ctlib prepare-workshop`` (:func:`prepare_workshop`) checks (and with
``--download`` fetches) the data sets, trains and caches every run that notebooks 02–05
would otherwise train in class (:data:`LESSON_RUNS`, with the recipes the notebooks use), then
runs each notebook once headless and prints how long it took -- what it will take in class,
now that nothing is left to train. Everything is resumable: a second call trains nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ctlib.cv import run_cv
from ctlib.data import REAL_DATASETS, DataError, download, load_dataset
from ctlib.notebook.datasets import get_dataset
from ctlib.notebook.folders import output_dir, repo_root, results_dir
from ctlib.notebook.mode import Mode, get_mode
from ctlib.notebook.tools import run_notebooks
from ctlib.recipes import finetune_config, recipe
from ctlib.results import collect_results
from ctlib.train import TrainConfig

__all__ = ["LESSON_RUNS", "LessonRun", "lesson_config", "lesson_runs", "prepare_workshop"]


@dataclass(frozen=True)
class LessonRun:
    """One training run a notebook needs, as the notebook itself asks for it.

    Attributes:
        notebook: the notebook's file stem.
        recipe: ``"lesson"`` (fine-tuning, :func:`ctlib.recipes.finetune_config`) or
            ``"explain"`` (the network of notebooks 04 and 05).
        protocol: the cross-validation protocol.
        folds: the folds it trains; None: all of them.
        quick: (data set, architecture) in quick mode.
        full: (data set, architecture) in full mode.
        why: what the notebook does with it.
    """

    notebook: str
    recipe: str
    protocol: str
    folds: tuple[int, ...] | None
    quick: tuple[str, str]
    full: tuple[str, str]
    why: str


#: What notebooks 02–05 train with their default parameters (05 reuses 04's network).
LESSON_RUNS: tuple[LessonRun, ...] = (
    LessonRun(
        "02_finetune",
        "lesson",
        "paper",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "fine-tunes one fold",
    ),
    LessonRun(
        "03_cross_validation",
        "lesson",
        "paper",
        None,
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "completes the 5-fold cross-validation",
    ),
    LessonRun(
        "04_tsne",
        "explain",
        "patient",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("covid19-ct", "inceptionv3"),
        "t-SNE of a fold split by patient",
    ),
    LessonRun(
        "04_tsne",
        "explain",
        "paper",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("covid19-ct", "inceptionv3"),
        "t-SNE of a fold split by image",
    ),
    LessonRun(
        "05_gradcam",
        "explain",
        "patient",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "the network it explains (04's, in quick mode)",
    ),
)


def lesson_config(name: str, mode: Mode, arch: str | None = None) -> TrainConfig:
    """The recipe a notebook trains with: ``lesson`` is :func:`~ctlib.recipes.finetune_config`;
    ``explain`` is the ``explain`` recipe in quick mode and the paper's in full mode."""
    if name == "lesson":
        return finetune_config(mode, arch)
    if name == "explain":
        return recipe("explain" if mode.quick else "paper", arch)
    raise ValueError(f"Unknown lesson recipe {name!r}; choose 'lesson' or 'explain'.")


def lesson_runs(mode: Mode) -> list[tuple[LessonRun, str, TrainConfig]]:
    """``(run, data set, config)`` for each of :data:`LESSON_RUNS` in ``mode``."""
    out = []
    for run in LESSON_RUNS:
        dataset, arch = run.quick if mode.quick else run.full
        out.append((run, dataset, lesson_config(run.recipe, mode, arch)))
    return out


def _finished(folder: Path) -> int:
    return len(list(folder.glob("*/*/*/fold*/metrics.json"))) if folder.is_dir() else 0


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
    for run, dataset, config in lesson_runs(mode):
        started = time.perf_counter()
        folder = results_dir(mode, config)
        before = _finished(folder)
        run_cv(
            get_dataset(dataset),
            config,
            protocol=run.protocol,
            only_folds=list(run.folds) if run.folds is not None else None,
            out=folder,
            progress=progress,
        )
        trained = _finished(folder) - before
        rows.append(
            {
                "step": "train",
                "what": f"{run.notebook}: {config.arch} on {dataset}, {run.protocol} ({run.why})",
                "seconds": time.perf_counter() - started,
                "note": f"{trained} fold(s) trained, "
                f"{len(collect_results(folder))} finished in {folder}",
            }
        )
    if rehearse:
        paths = notebooks or sorted(
            ((repo_root() or Path.cwd()) / "notebooks").glob("[0-9][0-9]_*.ipynb")
        )
        report = run_notebooks(paths, output_dir("rehearsal"))
        for row in report.itertuples(index=False):
            rows.append(
                {
                    "step": "rehearse",
                    "what": row.notebook,
                    "seconds": row.seconds,
                    "note": row.error or "ran through",
                }
            )
    frame = pd.DataFrame(rows)
    frame["seconds"] = frame["seconds"].astype(float).round(1)
    return frame
