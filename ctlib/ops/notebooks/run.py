"""Run notebooks headless (papermill) and time them: ``python -m ctlib.notebook run``."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from ctlib.notebook.folders import output_dir

__all__ = ["run_notebooks"]


def run_notebooks(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Execute notebooks headless with papermill; executed copies go to ``out``.

    Args:
        paths: the notebooks, run in this order (``workers`` at a time).
        out: where the executed copies go (default: the quick-mode output folder).
        parameters: papermill parameters for every notebook.
        kernel: the kernel's name (default: each notebook's own).
        workers: notebooks run at once, each in its own process and kernel. More than one
            only for notebooks that train nothing the others read (e.g. after the
            pre-flight, ``python -m ctlib prepare-workshop``).

    Returns:
        One row per notebook, in ``paths``' order: ``notebook``, ``seconds``, ``output``,
        ``error`` (empty if it ran through). A failing notebook does not stop the others;
        the caller decides.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    target = Path(out) if out is not None else output_dir()
    target.mkdir(parents=True, exist_ok=True)
    jobs = [(Path(p), target / Path(p).name, dict(parameters or {}), kernel) for p in paths]
    if workers == 1 or len(jobs) < 2:
        return pd.DataFrame([_execute(*job) for job in jobs])
    # processes, not threads: each papermill run drives its own kernel and event loop
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        return pd.DataFrame(list(pool.map(_execute, *zip(*jobs, strict=True))))


def _execute(
    path: Path, destination: Path, parameters: dict[str, Any], kernel: str | None
) -> dict[str, Any]:
    """Run one notebook; its row of :func:`run_notebooks`' report."""
    import papermill  # lazy: in the notebooks extra, not the core dependencies

    started = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(
            str(path),
            str(destination),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(path.parent),
            progress_bar=False,
        )
    except Exception as exc:  # a failing cell: PapermillExecutionError (ename, evalue)
        name = getattr(exc, "ename", type(exc).__name__)
        lines = str(getattr(exc, "evalue", exc)).strip().splitlines()
        error = f"{name}: {lines[-1] if lines else ''}"
    return {
        "notebook": path.name,
        "seconds": round(time.perf_counter() - started, 1),
        "output": str(destination),
        "error": error,
    }
