"""Run notebooks headless (papermill) and time them: ``python -m ctlib.notebook run``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
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
) -> pd.DataFrame:
    """Execute notebooks headless with papermill; executed copies go to ``out``.

    Returns one row per notebook: ``notebook``, ``seconds``, ``output``, ``error`` (empty if
    it ran through). A failing notebook does not stop the others; the caller decides.
    """
    import papermill  # lazy: in the notebooks extra, not the core dependencies

    target = Path(out) if out is not None else output_dir()
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in map(Path, paths):
        started = time.perf_counter()
        destination = target / path.name
        error = ""
        try:
            papermill.execute_notebook(
                str(path),
                str(destination),
                parameters=dict(parameters or {}),
                kernel_name=kernel,
                cwd=str(path.parent),
                progress_bar=False,
            )
        except Exception as exc:  # a failing cell: PapermillExecutionError (ename, evalue)
            name = getattr(exc, "ename", type(exc).__name__)
            lines = str(getattr(exc, "evalue", exc)).strip().splitlines()
            error = f"{name}: {lines[-1] if lines else ''}"
        rows.append(
            {
                "notebook": path.name,
                "seconds": round(time.perf_counter() - started, 1),
                "output": str(destination),
                "error": error,
            }
        )
    return pd.DataFrame(rows)
